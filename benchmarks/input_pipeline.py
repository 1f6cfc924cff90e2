"""Input-pipeline benchmark: the consumer's wait per step with and without prefetching.

Run: python -m benchmarks.input_pipeline
Prepares `digits` in a temporary directory (deleted afterwards), then runs a
training-like loop whose step is either a sleep or a jitted matmul of a few ms,
and prints the time `next(iterator)` blocks per step. With prefetch the input
work (reading ArrayRecord, normalization, Gaussian noise) overlaps the step, so
the wait should be a small fraction of the unprefetched input time.
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


def main() -> None:
    from bilinear_jax import data

    with tempfile.TemporaryDirectory() as tmp:
        source = data.load_split("digits", "train", data_dir=tmp)
        preprocess = data.image_preprocess(max_value=16.0, noise_std=0.1, seed=0)
        matmul = _matmul_step()
        matmul(next(data.TrainIterator(source, global_batch_size=BATCH, prefetch=0)))  # compile
        rows = []
        for label, step_fn in [("sleep 5 ms", _sleep_step(5)), ("sleep 15 ms", _sleep_step(15)),
                               ("jit matmul", matmul)]:
            for prefetch in (0, 2):
                wait, wait90, step = _measure(source, preprocess, step_fn, prefetch)
                rows.append((label, prefetch, step, wait, wait90))
    print(f"digits train, global batch {BATCH}, normalize + gaussian noise, {STEPS} steps after {WARMUP} warm-up")
    print(f"{'step':<12} {'prefetch':>8} {'step ms':>8} {'wait ms/step':>13} {'p90 wait ms':>12} {'wait/step':>10}")
    for label, prefetch, step, wait, wait90 in rows:
        print(f"{label:<12} {prefetch:>8} {step:>8.2f} {wait:>13.3f} {wait90:>12.3f} {wait / step:>10.1%}")


if __name__ == "__main__":
    main()
