r"""A single-layer bilinear classifier on the 8×8 digits that scikit-learn ships (offline).

The quickstart default: embed (no bias) → one bilinear layer → head, trained with Gaussian input
noise and weight decay, as the interpretable image models of Pearce et al. (2024). A minute on a
laptop CPU.

    python -m experiments.train --config experiments/configs/digits.py --workdir workdirs/digits
"""

from experiments.configs.common import base_config


def get_config():
    config = base_config()
    config.num_steps = 1500
    config.batch_size = 128
    config.log_every = 50
    config.eval_every = 250
    config.checkpoint_every = 500
    config.data.name = "digits"
    config.model.name = "classifier"
    config.model.d_model = 64
    config.model.d_hidden = 64
    config.model.n_layers = 1
    config.model.input_noise_std = 0.3
    config.optim.learning_rate = 3e-3
    config.optim.weight_decay = 0.1
    return config
