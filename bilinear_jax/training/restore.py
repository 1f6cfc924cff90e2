"""Load a trained run for analysis: the model, its config and dataset, on the current devices.

``load_run(workdir)`` reads ``workdir/config.json``, rebuilds the model, and restores the
newest readable checkpoint onto a mesh over the devices this process has: a run trained on
8 devices or a TPU pod can be read on one CPU.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import jax
import ml_collections
from etils import epath
from flax import nnx

from bilinear_jax import data
from bilinear_jax.training import checkpoint as checkpoint_lib
from bilinear_jax.training.plan import ConfigError, plan_run


@dataclasses.dataclass
class LoadedRun:
    """A trained model with what it was trained on. ``model`` holds the restored weights."""

    model: nnx.Module
    config: ml_collections.ConfigDict
    info: data.DatasetInfo
    step: int
    workdir: epath.Path
    preprocess: Any

    @property
    def params(self) -> nnx.State:
        return nnx.state(self.model, nnx.Param)


def read_config(workdir: str | epath.Path) -> ml_collections.ConfigDict:
    path = epath.Path(workdir) / "config.json"
    if not path.exists():
        raise ConfigError(f"{workdir} has no config.json; is it the --workdir of a training run?")
    return ml_collections.ConfigDict(json.loads(path.read_text()))


def load_run(workdir: str | epath.Path, *, mesh: dict[str, int] | None = None) -> LoadedRun:
    """Restore the newest checkpoint in ``workdir`` onto the current devices.

    ``mesh`` overrides the run's mesh sizes (default: data parallel over as many devices as
    divide the run's batch size).
    """
    config = read_config(workdir)
    with config.unlocked():
        if mesh is None:
            # Data-parallel over as many devices as divide the run's batch (which must stay as it
            # was: it fixes the data order that the checkpoint's iterator state refers to).
            data = math.gcd(int(config.batch_size), jax.device_count())
            mesh = {"data": data, "fsdp": 1, "tensor": 1, "num_devices": data if jax.process_count() == 1 else -1}
        config.mesh = ml_collections.ConfigDict(mesh)
        config.grad_accum_steps = 1
        config.eval_batch_size = config.batch_size
    plan = plan_run(config, workdir)
    from bilinear_jax.training.trainer import abstract_state, state_shardings  # avoid an import cycle

    checkpoints = checkpoint_lib.Checkpointer(plan.checkpoint_dir)
    try:
        restored = checkpoints.restore_latest(abstract_state(state_shardings(plan), plan))
    finally:
        checkpoints.close()
    if restored is None:
        raise ConfigError(f"{workdir} has no readable checkpoint under {plan.checkpoint_dir}.")
    model = nnx.merge(plan.graphdef, restored.state["params"])
    return LoadedRun(model=model, config=config, info=plan.info, step=restored.step,
                     workdir=plan.workdir, preprocess=plan.preprocess)
