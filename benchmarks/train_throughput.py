"""Section ``train``: LM training throughput, step time, compile time and MFU over model sizes.

Each grid point runs the real train step (``make_train_step`` under ``jax.jit`` with state
shardings and donated buffers, planned by ``plan_run``). Reported per point:

* ``compile_s``: trace + lower + compile of the step, separately from the step time;
* ``step_ms``: median of per-step times (each step waited for);
* ``tokens_per_s``: from a window of steps run back to back with one sync at the end, the way
  the training loop runs (no host sync in the hot loop);
* ``xla_flops_per_step``: XLA's cost analysis of the compiled step, per device. XLA counts the
  body of a loop once, and the layers run under ``nnx.scan``, so this is (roughly) the FLOPs of
  a one-layer model whatever ``n_layers`` is;
* ``model_flops_per_step``: the analytic count ``6·N·tokens + 12·L·T·d·tokens`` per device
  (``N``: parameters less the embedding lookup table), which MFU uses;
* ``mfu``: model FLOP/s ÷ the float32 matmul rate measured in this run
  (``measured_matmul_flops``), and on accelerators also ÷ the published bf16 peak
  (``peak_flops_per_device``).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import jax

from benchmarks import lm_setup
from benchmarks.timing import block, median
from bilinear_jax.training import metrics as metrics_lib

__all__ = ["TrainSizes", "run_train"]


@dataclasses.dataclass(frozen=True)
class TrainSizes:
    """The grid and the number of timed steps."""

    d_models: tuple[int, ...] = (64, 128)
    n_layers: tuple[int, ...] = (1, 2)
    seq_len: int = 64
    batch_size: int = 16
    timed_steps: int = 8
    window_steps: int = 4
    windows: int = 3
    num_devices: int = -1  # -1: every device, data parallel


def _published_peak() -> float | None:
    flops, source = metrics_lib.peak_flops_per_device()
    return flops if source.startswith("published") else None


def _model_flops_per_step(plan: Any, params: int) -> float:
    """Analytic training FLOPs per step over all devices (see ``metrics.transformer_train_flops``)."""
    config = plan.config.model
    return metrics_lib.transformer_train_flops(
        num_params=params, vocab_size=int(plan.info.vocab_size), d_model=int(config.d_model),
        n_layers=int(config.n_layers), seq_len=int(plan.info.seq_len), tokens=lm_setup.tokens_per_step(plan),
        tied_embedding=bool(config.get("tied_embedding", False)))


def measure_point(data_dir: Path, d_model: int, n_layers: int, sizes: TrainSizes) -> dict[str, Any]:
    """One grid point: compile, step times, throughput, FLOPs."""
    setup = lm_setup.shared_setup(data_dir, d_model=d_model, n_layers=n_layers,
                                  seq_len=sizes.seq_len, batch_size=sizes.batch_size,
                                  num_devices=sizes.num_devices)
    plan = setup.plan
    state = setup.fresh_state()
    params = sum(x.size for x in jax.tree.leaves(state["params"]))
    compile_s, compiled = lm_setup.cached_step(setup, state, donate=True)
    flops = metrics_lib.compiled_flops(compiled)

    for step in range(2):  # warm-up
        state, _ = compiled(state, setup.batch(step))
    block(state)
    step_times = []
    for step in range(sizes.timed_steps):
        start = time.perf_counter()
        state, _ = compiled(state, setup.batch(step))
        block(state)
        step_times.append(time.perf_counter() - start)
    window_times = []
    for _ in range(sizes.windows):  # back to back, one sync per window: the training loop's way
        start = time.perf_counter()
        for step in range(sizes.window_steps):
            state, metrics = compiled(state, setup.batch(step))
        block((state, metrics))
        window_times.append((time.perf_counter() - start) / sizes.window_steps)
    window_s = median(window_times)

    step_s = median(step_times)
    tokens = lm_setup.tokens_per_step(plan)
    return {
        "d_model": d_model,
        "n_layers": n_layers,
        "d_hidden": int(plan.model_kwargs["d_hidden"]),
        "params": int(params),
        "tokens_per_step": tokens,
        "compile_s": compile_s,
        "step_ms": 1e3 * step_s,
        "tokens_per_s": tokens / window_s,
        "xla_flops_per_step": flops,
        "model_flops_per_step": _model_flops_per_step(plan, params) / jax.device_count(),
        "loss": float(metrics["train/loss"]),
    }


def run_train(data_dir: Path, sizes: TrainSizes) -> dict[str, Any]:
    """The whole grid, with MFU against the matmul rate measured in this run."""
    peak_measured = metrics_lib.measured_matmul_flops()
    peak_published = _published_peak()
    rows = []
    for d_model in sizes.d_models:
        for n_layers in sizes.n_layers:
            row = measure_point(data_dir, d_model, n_layers, sizes)
            seconds = row["tokens_per_step"] / row["tokens_per_s"]
            row["achieved_flops_per_s"] = row["model_flops_per_step"] / seconds
            row["mfu_measured_peak"] = row["achieved_flops_per_s"] / peak_measured
            row["mfu_published_peak"] = None if peak_published is None else row["achieved_flops_per_s"] / peak_published
            rows.append(row)
    return {
        "sizes": dataclasses.asdict(sizes),
        "peak_flops_measured": peak_measured,
        "peak_flops_measured_source": "float32 1024x1024 matmul, best of 5 (measured_matmul_flops)",
        "peak_flops_published": peak_published,
        "flops_note": "xla_flops_per_step counts the scanned layer body once; MFU uses model_flops_per_step",
        "rows": rows,
    }


TABLE_COLUMNS = ("d_model", "n_layers", "params", "compile_s", "step_ms", "tokens_per_s",
                 "xla_flops_per_step", "model_flops_per_step", "mfu_measured_peak", "mfu_published_peak")
