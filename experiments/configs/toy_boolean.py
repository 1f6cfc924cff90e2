r"""``ToyModel`` on sparse boolean inputs: learn AND and XOR of fixed pairs of 8 sparse bits.

One bilinear layer with bias (XOR needs the linear terms that ``x̃ = [x; 1]`` gives); its
interaction matrices show which pairs each output reads. ``--config.model.kind=relu`` with
``--config.model.d_hidden=24`` is the ReLU MLP of about equal parameters.

    python -m experiments.train --config experiments/configs/toy_boolean.py --workdir workdirs/toy_boolean
"""

from experiments.configs.common import base_config


def get_config():
    config = base_config()
    config.num_steps = 2000
    config.batch_size = 256
    config.log_every = 100
    config.eval_every = 500
    config.checkpoint_every = 1000
    config.loss = "mse"
    config.data.name = "sparse_boolean"
    config.data.options.n_inputs = 8
    config.data.options.sparsity = 0.3
    config.data.options.ops = ("and", "xor")
    config.data.options.num_pairs = 2
    config.model.name = "toy"
    config.model.d_hidden = 16
    config.model.kind = "bilinear"
    config.model.bias = True
    config.optim.learning_rate = 1e-2
    config.optim.warmup_steps = 20
    return config
