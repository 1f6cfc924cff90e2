r"""A single-layer bilinear classifier on TFDS ``mnist`` (needs the network to download it once).

Embed 784 → 128 (no bias), one bilinear layer, a linear head; input noise and weight decay as
in Pearce et al. (2024). Offline, use ``digits.py`` instead.

    python -m experiments.train --config experiments/configs/mnist.py --workdir workdirs/mnist
"""

from experiments.configs.common import base_config


def get_config():
    config = base_config()
    config.num_steps = 5000
    config.batch_size = 256
    config.log_every = 100
    config.eval_every = 1000
    config.checkpoint_every = 1000
    config.data.name = "mnist"
    config.model.name = "classifier"
    config.model.d_model = 128
    config.model.d_hidden = 128
    config.model.n_layers = 1
    config.model.input_noise_std = 0.5
    config.optim.learning_rate = 1e-3
    config.optim.weight_decay = 0.5
    return config
