"""A small transformer LM on ``text_corpus``, set up exactly as training does, for timing.

:func:`lm_plan` runs the real :func:`~bilinear_jax.training.plan.plan_run` on the LM config
(``experiments/configs/lm.py``) with a small corpus, in a throw-away workdir; :func:`TrainSetup`
then holds the sharded state, the train step and a few global batches.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np

from benchmarks.timing import timed_compile
from bilinear_jax import data
from bilinear_jax.training import sharding, trainer
from bilinear_jax.training.plan import Plan, plan_run
from experiments.configs import lm

__all__ = ["TrainSetup", "cached_step", "lm_config", "lm_plan", "make_setup", "jit_train_step", "shared_setup",
           "tokens_per_step"]

MAX_BYTES = 200_000  # of the default corpus: a few seconds to prepare


def lm_config(
    data_dir: str | Path,
    *,
    d_model: int,
    n_layers: int,
    seq_len: int,
    batch_size: int,
    compute_dtype: str = "float32",
    n_heads: int | None = None,
    num_devices: int = -1,
) -> Any:
    """The LM config at these sizes (bilinear MLP, hidden width matched to a 4·d_model plain MLP).

    ``num_devices=-1`` shards the batch over every device (data parallel), as training does.
    """
    config = lm.get_config()
    config.data.data_dir = str(data_dir)
    config.data.options.max_bytes = MAX_BYTES
    config.data.options.seq_len = seq_len
    config.batch_size = batch_size
    config.eval_batch_size = batch_size
    config.num_steps = 10_000
    config.progress = False
    config.compute_dtype = compute_dtype
    config.mesh.num_devices = num_devices
    config.model.d_model = d_model
    config.model.n_layers = n_layers
    config.model.n_heads = n_heads or max(1, d_model // 32)
    config.model.matched_hidden = 4 * d_model
    return config


def lm_plan(data_dir: str | Path, **sizes: Any) -> Plan:
    """``plan_run`` of :func:`lm_config` in a fresh temporary workdir (nothing is written there)."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-lm-")) / "run"
    return plan_run(lm_config(data_dir, **sizes), workdir)


def tokens_per_step(plan: Plan) -> int:
    """Tokens predicted per train step: batch × sequence length."""
    return int(plan.config.batch_size) * int(plan.info.seq_len or 1)


def jit_train_step(plan: Plan, shardings: Any, *, donate: bool = True) -> Callable:
    """The training loop's step: ``jax.jit`` with explicit shardings and (by default) donated state."""
    return jax.jit(
        trainer.make_train_step(plan),
        in_shardings=(shardings, plan.batch_sharding),
        out_shardings=(shardings, sharding.replicated(plan.mesh)),
        donate_argnums=0 if donate else (),
    )


@dataclasses.dataclass
class TrainSetup:
    """A plan with its state shardings, a fresh state and ``num_batches`` global batches."""

    plan: Plan
    shardings: Any
    batches: list[dict[str, jax.Array]]
    compiled: dict[bool, tuple[float, Any]] = dataclasses.field(default_factory=dict)

    def fresh_state(self) -> Any:
        """Newly initialized, sharded parameters and optimizer state."""
        return trainer.initialize_state(self.plan, self.shardings)

    def batch(self, step: int) -> dict[str, jax.Array]:
        return self.batches[step % len(self.batches)]

    def iterator(self, prefetch: int) -> data.TrainIterator:
        """The training input pipeline of this plan (process-local numpy batches)."""
        config = self.plan.config
        source = self.plan.load_split("train")
        return data.TrainIterator(source, int(config.batch_size), seed=int(config.seed),
                                  process_index=jax.process_index(), process_count=jax.process_count(),
                                  preprocess=self.plan.preprocess, prefetch=prefetch)

    def to_global(self, local: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        return trainer.to_global(local, trainer.batch_keys(self.plan), self.plan.batch_sharding)


def make_setup(plan: Plan, num_batches: int = 4) -> TrainSetup:
    """Shardings and ``num_batches`` device batches for ``plan`` (read without prefetching)."""
    shardings = trainer.state_shardings(plan)
    setup = TrainSetup(plan=plan, shardings=shardings, batches=[])
    iterator = setup.iterator(prefetch=0)
    try:
        setup.batches = [setup.to_global(next(iterator)) for _ in range(num_batches)]
    finally:
        iterator.close()
    return setup


_SETUPS: dict[tuple, TrainSetup] = {}


def shared_setup(data_dir: str | Path, **sizes: Any) -> TrainSetup:
    """:func:`make_setup` of :func:`lm_plan`, shared by the sections of one run (same sizes, same setup)."""
    key = (str(data_dir), tuple(sorted(sizes.items())))
    if key not in _SETUPS:
        _SETUPS[key] = make_setup(lm_plan(data_dir, **sizes))
    return _SETUPS[key]


def cached_step(setup: TrainSetup, state: Any, *, donate: bool = True) -> tuple[float, Any]:
    """``(compile seconds, compiled step)``, compiled once per setup: later sections reuse it."""
    if donate not in setup.compiled:
        setup.compiled[donate] = timed_compile(
            lambda: jit_train_step(setup.plan, setup.shardings, donate=donate), state, setup.batch(0))
    return setup.compiled[donate]
