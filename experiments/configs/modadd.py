r"""A one-layer bilinear transformer on modular addition ``a + b mod 113`` (offline).

Tokens ``[a, b, =]``; the answer is read at the last position. No norms (``use_norm=False``) so
that the path expansion of the trained model is exact; half the pairs train, and strong weight
decay makes it generalize to the other half (see ``python -m experiments.reproduce modadd``).

    python -m experiments.train --config experiments/configs/modadd.py --workdir workdirs/modadd
"""

from experiments.configs.common import base_config


def get_config():
    config = base_config()
    config.num_steps = 3000
    config.batch_size = 512
    config.log_every = 100
    config.eval_every = 500
    config.checkpoint_every = 1000
    config.data.name = "modular_arithmetic"
    config.data.options.p = 113
    config.data.options.op = "add"
    config.data.options.train_fraction = 0.5
    config.model.name = "transformer"
    config.model.d_model = 128
    config.model.n_heads = 4
    config.model.n_layers = 1
    config.model.d_hidden = 512
    config.model.mlp = "bilinear"
    config.model.use_norm = False
    config.optim.learning_rate = 3e-3
    config.optim.warmup_steps = 100
    config.optim.weight_decay = 2.0
    config.optim.b2 = 0.98
    return config
