"""Batch preprocessing: normalization and deterministic Gaussian input noise.

All functions are pure: the output depends only on the arguments, so a resumed
iterator reproduces exactly the batches of an uninterrupted run.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

Batch = Mapping[str, np.ndarray]
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def normalize(x: np.ndarray | Batch, *, max_value: float | None = None, mean: Any = None,
              std: Any = None, key: str = "image") -> Any:
    """Scales by 1/max_value (e.g. 255 -> [0, 1]) and/or standardizes (x - mean) / std.

    `x` is an array, or a batch dict whose `key` entry is normalized (other entries kept).
    """
    if isinstance(x, Mapping):
        return {**x, key: normalize(x[key], max_value=max_value, mean=mean, std=std)}
    if std is not None and np.any(np.asarray(std) <= 0):
        raise ValueError(f"normalize: std must be positive, got {std}.")
    out = np.asarray(x, dtype=np.float32)
    if max_value is not None:
        out = out / np.float32(max_value)
    if mean is not None:
        out = out - np.asarray(mean, dtype=np.float32)
    if std is not None:
        out = out / np.asarray(std, dtype=np.float32)
    return out


def dataset_stats(source: Any, key: str = "image", max_value: float | None = None,
                  max_examples: int | None = None) -> tuple[float, float]:
    """(mean, std) of `key` over the first `max_examples` examples of a source, after 1/max_value."""
    n = len(source) if max_examples is None else min(len(source), max_examples)
    if n == 0:
        raise ValueError("dataset_stats: the source is empty.")
    values = normalize(np.stack([np.asarray(source[i][key]) for i in range(n)]), max_value=max_value)
    return float(values.mean()), float(values.std())


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer, vectorized over uint64 arrays."""
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def counter_normal(seed: int, step: int, rows: np.ndarray, size: int) -> np.ndarray:
    """Standard normals [len(rows), size]; row r depends only on (seed, step, rows[r])."""
    mix = lambda v: np.uint64(int(v) & 0xFFFFFFFFFFFFFFFF)  # noqa: E731
    base = _splitmix64(_splitmix64(mix(seed)) ^ mix(step))
    with np.errstate(over="ignore"):
        row_keys = _splitmix64(base ^ _splitmix64(np.asarray(rows).astype(np.uint64)))
        counters = np.arange(2 * size, dtype=np.uint64) * _GOLDEN
        bits = _splitmix64(row_keys[:, None] + counters[None, :])
    u = (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53  # uniform in [0, 1)
    u1, u2 = 1.0 - u[:, :size], u[:, size:]  # u1 in (0, 1]
    return (np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)).astype(np.float32)


def gaussian_noise(batch: Batch, seed: int, step: int, std: float, key: str = "image") -> dict[str, np.ndarray]:
    """Adds N(0, std^2) noise to batch[key], deterministic in (seed, step, example).

    The noise of a row depends on batch['index'] (the dataset index, set by the
    iterators; the row position if absent), so it is the same whatever the number
    of processes, and a resumed run sees the same noise.
    """
    if std < 0:
        raise ValueError(f"gaussian_noise: std must be >= 0, got {std}.")
    x = np.asarray(batch[key], dtype=np.float32)
    if std == 0:
        return {**batch, key: x}
    rows = batch["index"] if "index" in batch else np.arange(len(x))
    noise = counter_normal(seed, step, rows, int(np.prod(x.shape[1:]))).reshape(x.shape)
    return {**batch, key: x + np.float32(std) * noise}


def image_preprocess(max_value: float | None = None, mean: Any = None, std: Any = None,
                     noise_std: float = 0.0, seed: int = 0, key: str = "image"
                     ) -> Callable[[Batch, int], dict[str, np.ndarray]]:
    """A `preprocess(batch, step)` for the iterators: normalize, then add Gaussian noise."""

    def fn(batch: Batch, step: int) -> dict[str, np.ndarray]:
        out = normalize(batch, max_value=max_value, mean=mean, std=std, key=key)
        return gaussian_noise(out, seed, step, noise_std, key=key)

    return fn
