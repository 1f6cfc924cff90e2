r"""A transformer language model on real text, with any MLP kind at equal parameters.

The offline default corpus is the Python standard library's own source (see
``bilinear_jax.data.builders.text_corpus``), byte-level. ``--config.mlp`` picks the MLP; gated
kinds get 2/3 of the plain hidden width (``model.matched_hidden``), so every kind has the same
parameter count and compute.

    python -m experiments.train --config experiments/configs/lm.py --workdir workdirs/lm_bilinear \
        --config.mlp=bilinear      # or relu | gelu | swiglu | reglu | geglu
"""

from experiments.configs.common import base_config


def get_config():
    config = base_config()
    config.mlp = "bilinear"
    config.num_steps = 2000
    config.batch_size = 32
    config.log_every = 50
    config.eval_every = 500
    config.checkpoint_every = 500
    config.eval_batch_size = 64
    config.data.name = "text_corpus"
    config.data.options.seq_len = 128
    config.data.options.tokenizer = "bytes"
    config.model.name = "transformer"
    config.model.d_model = 128
    config.model.n_heads = 4
    config.model.n_layers = 2
    config.model.matched_hidden = 512
    config.model.mlp = config.get_ref("mlp")
    config.model.use_norm = True
    config.optim.learning_rate = 3e-3
    config.optim.warmup_steps = 100
    config.optim.weight_decay = 0.1
    return config
