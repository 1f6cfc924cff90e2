"""Where training reports: ``metrics.jsonl``, TensorBoard, a console progress bar, and MFU.

Only process 0 writes. ``metrics.jsonl`` holds one JSON object per logged step (``step``,
``train/loss``, ``eval/*``, throughput, ``perf/mfu``). On resume, lines past the restored
step are dropped so that the file reads as one uninterrupted run.

MFU = (model FLOPs per step per device, from XLA's cost analysis of the compiled step) ×
steps/s ÷ the device's peak matmul rate: the published dense bf16 rate for known
accelerators, and a measured float32 matmul rate otherwise (CPUs).
"""

from __future__ import annotations

import functools
import json
import math
import sys
import time
from typing import Any, Mapping

import jax
import jax.numpy as jnp
from etils import epath

# Dense bf16 peak FLOP/s per device, by substring of ``device_kind``.
PEAK_FLOPS: dict[str, float] = {
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v5": 459e12,
    "TPU v6 lite": 918e12,
    "TPU v6e": 918e12,
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L4": 121e12,
}


@functools.cache
def measured_matmul_flops(size: int = 1024, repeats: int = 5) -> float:
    """FLOP/s of a float32 ``size × size`` matmul on the default device, best of ``repeats``."""
    x = jnp.ones((size, size), jnp.float32)
    matmul = jax.jit(lambda a: a @ a)
    matmul(x).block_until_ready()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(x).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def peak_flops_per_device(device: jax.Device | None = None) -> tuple[float, str]:
    """``(peak FLOP/s, where the number comes from)`` for ``device``."""
    device = device or jax.devices()[0]
    for name, flops in PEAK_FLOPS.items():
        if name.lower() in device.device_kind.lower():
            return flops, f"published bf16 peak of {device.device_kind}"
    return measured_matmul_flops(), f"measured float32 matmul rate of {device.device_kind}"


def compiled_flops(compiled: Any) -> float | None:
    """FLOPs per device of one call of an AOT-compiled function, from XLA's cost analysis."""
    try:
        analysis = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - some backends do not implement it
        return None
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else None
    flops = (analysis or {}).get("flops")
    return float(flops) if flops and flops > 0 else None


def transformer_train_flops(*, num_params: int, vocab_size: int, d_model: int, n_layers: int, seq_len: int,
                            tokens: int, tied_embedding: bool) -> float:
    """Analytic training FLOPs of a transformer step: ``6·N·tokens + 12·L·T·d·tokens``.

    ``N`` counts the parameters used in matmuls: all but the embedding lookup (a tied embedding
    is also the unembedding matmul, so it stays in). The second term is attention's score and
    value products, forward and backward.
    """
    matmul_params = num_params - (0 if tied_embedding else vocab_size * d_model)
    return float((6 * matmul_params + 12 * n_layers * seq_len * d_model) * tokens)


def train_flops_per_device(plan, compiled: Any) -> float | None:
    """Model FLOPs of one train step per device.

    XLA's cost analysis counts a scanned loop body once, so for the (layer-scanned) transformer
    the count is analytic; other models have no scan, and XLA's count of the compiled step is used.
    """
    if plan.model_name != "transformer":
        # Gradient accumulation is a scan over micro-batches, whose body XLA also counts once.
        flops = compiled_flops(compiled)
        return flops * int(plan.config.get("grad_accum_steps", 1)) if flops else None
    kwargs = plan.model_kwargs
    tokens = int(plan.config.batch_size) * int(plan.info.seq_len or plan.info.input_shape[-1])
    total = transformer_train_flops(
        num_params=sum(math.prod(shape) for shape in plan.meta["param_shapes"].values()),
        vocab_size=int(kwargs["vocab_size"]), d_model=int(kwargs.get("d_model", 128)),
        n_layers=int(kwargs.get("n_layers", 2)), seq_len=int(kwargs["max_len"]), tokens=tokens,
        tied_embedding=bool(kwargs.get("tied_embedding", False)))
    return total / jax.device_count()


def _logged_step(line: str) -> float:
    """The step of a metrics.jsonl line; infinity (dropped) for a line cut short by a crash."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf


class MetricsLogger:
    """Writes metrics on process 0; a no-op elsewhere."""

    def __init__(self, workdir: epath.Path, *, num_steps: int, start_step: int, enabled: bool, progress: bool = True):
        self.enabled = enabled
        if not enabled:
            return
        self.path = workdir / "metrics.jsonl"
        self._drop_lines_after(start_step)
        from tensorboardX import SummaryWriter
        from tqdm.auto import tqdm

        self.tensorboard = SummaryWriter(str(workdir / "tensorboard"))
        # Shown in terminals and notebooks; hidden when output goes to a log file.
        in_notebook = "ipykernel" in sys.modules
        self.bar = tqdm(total=num_steps, initial=start_step, desc="train", unit="step",
                        disable=(False if in_notebook else None) if progress else True,
                        mininterval=1.0, dynamic_ncols=True)

    def _drop_lines_after(self, step: int) -> None:
        if not self.path.exists():
            return
        kept = [line for line in self.path.read_text().splitlines() if _logged_step(line) <= step]
        self.path.write_text("".join(line + "\n" for line in kept))

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        for name, value in metrics.items():
            self.tensorboard.add_scalar(name, float(value), int(step))
        self.bar.n = int(step)
        shown = {k.split("/")[-1]: f"{v:.4g}" for k, v in metrics.items() if k in ("train/loss", "eval/accuracy")}
        self.bar.set_postfix(shown, refresh=True)

    def close(self) -> None:
        if self.enabled:
            self.tensorboard.close()
            self.bar.close()
