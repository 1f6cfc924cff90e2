"""Keys every config has, with defaults; each experiment config starts from :func:`base_config`."""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.num_steps = 1000
    config.batch_size = 128  # global, over all processes and devices
    config.eval_batch_size = 0  # 0: the training batch size
    config.grad_accum_steps = 1
    config.log_every = 50
    config.eval_every = 250
    config.checkpoint_every = 500
    config.keep_checkpoints = 3
    config.compute_dtype = "float32"  # or "bfloat16": parameters stay float32
    config.loss = "mse"  # multilabel tasks only: "mse" or "bce"
    config.progress = True

    # Sizes of the (data, fsdp, tensor) device mesh; -1 fills the rest. num_devices=-1: all devices.
    config.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1, "num_devices": -1})

    config.data = ml_collections.ConfigDict()
    config.data.name = "digits"
    config.data.data_dir = ml_collections.config_dict.placeholder(str)
    config.data.options = ml_collections.ConfigDict()
    config.data.normalize = True
    config.data.prefetch = 2

    config.model = ml_collections.ConfigDict()

    config.optim = ml_collections.ConfigDict()
    config.optim.learning_rate = 1e-3
    config.optim.warmup_steps = 50
    config.optim.schedule = "cosine"
    config.optim.final_lr_fraction = 0.0
    config.optim.weight_decay = 0.0
    config.optim.b1 = 0.9
    config.optim.b2 = 0.999
    config.optim.eps = 1e-8
    config.optim.clip_norm = 1.0
    return config
