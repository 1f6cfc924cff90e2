"""Input-pipeline benchmark: streaming (ArrayRecord) vs in-memory sources, with and without prefetching.

Run: python -m benchmarks.input_pipeline
Prepares `digits` in a temporary directory (deleted afterwards) and loads the
train split twice: streamed from ArrayRecord (`in_memory=False`) and as numpy
arrays (`in_memory=True`, the default for small splits). It first times the raw
read of one batch (`_read`: gather + stack), then runs a training-like loop whose
step is either a sleep or a jitted matmul of a few ms, and prints the time
`next(iterator)` blocks per step. With prefetch the input work (reading,
normalization, Gaussian noise) overlaps the step; in memory there is little
input work left to overlap.
"""

from __future__ import annotations

import tempfile
import time
from typing import Callable

import numpy as np

STEPS, WARMUP, BATCH = 40, 5, 512


def _sleep_step(ms: float) -> Callable[[dict], None]:
    return lambda batch: time.sleep(ms / 1000)


def _matmul_step() -> Callable[[dict], None]:
    import jax
    import jax.numpy as jnp

    w = jnp.ones((1024, 1024), jnp.float32)

    @jax.jit
    def step(x, w):
        h = x @ w[: x.shape[1]]
        for _ in range(4):
            h = jnp.tanh(h @ w)
        return h.sum()

    def run(batch: dict) -> None:
        x = jnp.asarray(batch["image"].reshape(len(batch["image"]), -1))
        step(x, w).block_until_ready()

    return run


def _measure(source, preprocess, step_fn, prefetch: int) -> tuple[float, float, float]:
    from bilinear_jax import data

    it = data.TrainIterator(source, global_batch_size=BATCH, seed=0, preprocess=preprocess, prefetch=prefetch)
    waits, steps = [], []
    for k in range(STEPS + WARMUP):
        t0 = time.perf_counter()
        batch = next(it)
        t1 = time.perf_counter()
        step_fn(batch)
        t2 = time.perf_counter()
        if k >= WARMUP:
            waits.append(t1 - t0)
            steps.append(t2 - t1)
    it.close()
    return 1000 * float(np.mean(waits)), 1000 * float(np.percentile(waits, 90)), 1000 * float(np.mean(steps))


def _read_ms(source, preprocess, reps: int = 20) -> tuple[float, float]:
    """Mean ms to read one batch, and to read + preprocess it, without a training step."""
    from bilinear_jax import data
    from bilinear_jax.data.pipeline import _read

    indices = [data.global_batch_indices(len(source), 0, k, BATCH) for k in range(reps)]
    _read(source, indices[0])
    t0 = time.perf_counter()
    batches = [_read(source, idx) for idx in indices]
    t1 = time.perf_counter()
    for k, batch in enumerate(batches):
        preprocess(batch, k)
    t2 = time.perf_counter()
    return 1000 * (t1 - t0) / reps, 1000 * (t2 - t0) / reps


def main() -> None:
    from bilinear_jax import data

    with tempfile.TemporaryDirectory() as tmp:
        sources = {}
        for label, in_memory in (("stream", False), ("memory", True)):
            t0 = time.perf_counter()
            sources[label] = data.load_split("digits", "train", data_dir=tmp, in_memory=in_memory)
            sources[label + "_load_ms"] = 1000 * (time.perf_counter() - t0)
        preprocess = data.image_preprocess(max_value=16.0, noise_std=0.1, seed=0)
        matmul = _matmul_step()
        matmul(next(data.TrainIterator(sources["memory"], global_batch_size=BATCH, prefetch=0)))  # compile
        reads = {label: _read_ms(sources[label], preprocess) for label in ("stream", "memory")}
        rows = []
        for label, step_fn in [("sleep 5 ms", _sleep_step(5)), ("sleep 15 ms", _sleep_step(15)),
                               ("jit matmul", matmul)]:
            for prefetch in (0, 2):
                for src in ("stream", "memory"):
                    wait, wait90, step = _measure(sources[src], preprocess, step_fn, prefetch)
                    rows.append((label, src, prefetch, step, wait, wait90))
    print(f"digits train ({len(sources['memory'])} examples), global batch {BATCH}, "
          f"normalize + gaussian noise, {STEPS} steps after {WARMUP} warm-up")
    print(f"\n{'source':<8} {'load_split ms':>14} {'read ms/batch':>14} {'read+preprocess ms':>19}")
    for src in ("stream", "memory"):
        print(f"{src:<8} {sources[src + '_load_ms']:>14.1f} {reads[src][0]:>14.3f} {reads[src][1]:>19.3f}")
    print(f"\n{'step':<12} {'source':<8} {'prefetch':>8} {'step ms':>8} {'wait ms/step':>13} "
          f"{'p90 wait ms':>12} {'wait/step':>10}")
    for label, src, prefetch, step, wait, wait90 in rows:
        print(f"{label:<12} {src:<8} {prefetch:>8} {step:>8.2f} {wait:>13.3f} {wait90:>12.3f} {wait / step:>10.1%}")


if __name__ == "__main__":
    main()
