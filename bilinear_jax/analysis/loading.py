"""Load a trained run for analysis: ``load(workdir)`` → model, config and parameters.

    from bilinear_jax.analysis import load, load_split_arrays
    run = load("workdirs/digits")           # newest checkpoint, on the current devices
    x, y = load_split_arrays(run, "test")   # preprocessed inputs and labels, as numpy

A thin wrapper of :func:`bilinear_jax.training.restore.load_run`: a run trained on a pod can be
read on one CPU (``mesh`` overrides the mesh sizes, default all devices along ``data``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections
import numpy as np
from etils import epath
from flax import nnx

from bilinear_jax import data

__all__ = ["Loaded", "load", "load_split_arrays"]


@dataclasses.dataclass
class Loaded:
    """A restored run: ``model`` (weights restored), ``config``, ``params`` (its ``nnx.Param``
    state), the dataset ``info``, the checkpoint ``step``, ``workdir`` and the input ``preprocess``."""

    model: nnx.Module
    config: ml_collections.ConfigDict
    params: nnx.State
    info: Any
    step: int
    workdir: epath.Path
    preprocess: Any = None


def load(workdir: str | epath.Path, *, mesh: dict[str, int] | None = None) -> Loaded:
    """The model, config and parameters of the newest checkpoint in ``workdir``, on the current devices."""
    from bilinear_jax.training.restore import load_run  # the training stack is heavy: import lazily

    run = load_run(workdir, mesh=mesh)
    return Loaded(model=run.model, config=run.config, params=nnx.state(run.model, nnx.Param), info=run.info,
                  step=run.step, workdir=run.workdir, preprocess=run.preprocess)


def load_split_arrays(run: Loaded, split: str = "test", *, max_examples: int | None = None,
                      batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """``(inputs, targets)`` of a split, preprocessed exactly as in training's evaluation."""
    from bilinear_jax.training.plan import load_config_split

    source = load_config_split(run.config, split)
    inputs, targets = [], []
    count = 0
    for batch in data.eval_batches(source, batch_size, preprocess=run.preprocess):
        real = batch["mask"] > 0
        inputs.append(np.asarray(batch[run.info.input_key])[real])
        targets.append(np.asarray(batch[run.info.target_key])[real])
        count += int(real.sum())
        if max_examples is not None and count >= max_examples:
            break
    x, y = np.concatenate(inputs), np.concatenate(targets)
    return (x, y) if max_examples is None else (x[:max_examples], y[:max_examples])
