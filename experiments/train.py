r"""Train a model from a config file.

    python -m experiments.train --config experiments/configs/digits.py --workdir workdirs/digits \
        [--config.num_steps=500 --config.mesh.data=8 ...]

Rerunning with the workdir of an existing run resumes it. Multi-process runs are started by
``launch.local`` (one machine) or ``launch.tpu`` / SLURM; they join the process group here.
Bad input gets one line on stderr and exit code 2, before anything compiles.
"""

from __future__ import annotations

import logging
import sys

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from bilinear_jax.training import distributed

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to an experiment config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and TensorBoard logs.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for explicit multi-host runs.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes, with --coordinator_address.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index, with --coordinator_address.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
    del argv
    distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    absl_logging.set_verbosity(absl_logging.WARNING)  # Orbax and TFDS are chatty at INFO
    logging.getLogger("bilinear_jax").setLevel(logging.INFO)

    import jax

    from bilinear_jax.training.checkpoint import CheckpointError
    from bilinear_jax.training.plan import ConfigError
    from bilinear_jax.training.trainer import TrainingDiverged, train

    try:
        config = _CONFIG.value
        config.get("seed")  # config_flags reports a file it could not load on first access
    except OSError as error:
        reason = [line.strip() for line in str(error).splitlines() if line.strip()]
        print(f"error: cannot load the --config file: {' '.join(reason[-2:])}", file=sys.stderr)
        sys.exit(2)
    try:
        final = train(config, _WORKDIR.value)
    except (ConfigError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except TrainingDiverged as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(3)
    if jax.process_index() == 0:
        shown = ", ".join(f"{k}={v:.4g}" for k, v in final.items() if k.startswith(("train/loss", "eval/")))
        print(f"done: step {final['step']}: {shown}. Workdir: {_WORKDIR.value}")


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing, with a bad flag or an unknown ``--config.KEY`` reported in one line."""
    try:
        return flags.FLAGS(argv)
    except (flags.Error, AttributeError, KeyError, ValueError, TypeError) as error:
        message = str(error).strip("\"'")
        if isinstance(error, (AttributeError, KeyError)):
            message = f"unknown config key {message!r}; see the config file for the valid keys"
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
