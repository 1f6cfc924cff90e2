"""Deterministic, shardable, resumable, prefetching batch iterators over random-access sources.

Global batch k is a pure function of (len(source), seed, k, global_batch_size):
epoch e is `np.random.default_rng([seed, e]).permutation(n)`, the epochs are
concatenated, and global batch k is the slice [k*B, (k+1)*B) of that stream.
Process p of P reads only rows [p*B/P, (p+1)*B/P) of each global batch, so the
processes' local batches concatenate to the single-process batch. Batches are
produced by a `grain.MapDataset` over step numbers and prefetched by grain's
background thread; the iterator state counts consumed batches only.
"""

from __future__ import annotations

import functools
import inspect
import sys
from typing import Any, Callable, Iterator, Mapping

import grain
import numpy as np

from bilinear_jax.data.sources import Record, stack_records

Preprocess = Callable[..., Mapping[str, np.ndarray]]


@functools.lru_cache(maxsize=4)
def epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """The order of epoch `epoch`: a permutation of range(num_examples) seeded by (seed, epoch)."""
    perm = np.random.default_rng([seed, epoch]).permutation(num_examples)
    perm.setflags(write=False)
    return perm


def global_batch_indices(num_examples: int, seed: int, step: int, global_batch_size: int) -> np.ndarray:
    """Dataset indices of global batch `step` (may straddle an epoch boundary)."""
    out, pos, end = [], step * global_batch_size, (step + 1) * global_batch_size
    while pos < end:
        epoch, offset = divmod(pos, num_examples)
        take = min(end - pos, num_examples - offset)
        out.append(epoch_permutation(num_examples, seed, epoch)[offset: offset + take])
        pos += take
    return np.concatenate(out)


def process_rows(global_batch_size: int, process_index: int, process_count: int) -> slice:
    """Rows of each global batch that process `process_index` reads."""
    if global_batch_size < 1:
        raise ValueError(f"global_batch_size must be >= 1, got {global_batch_size}.")
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(f"process_index must be in [0, process_count), got {process_index} of {process_count}.")
    if global_batch_size % process_count:
        raise ValueError(
            f"global_batch_size={global_batch_size} is not divisible by process_count={process_count}; "
            "choose a global batch size that is a multiple of the number of processes.")
    local = global_batch_size // process_count
    return slice(process_index * local, (process_index + 1) * local)


def _with_step(preprocess: Preprocess | None) -> Callable[[Record, int], Record] | None:
    """Adapts `preprocess(batch)` or `preprocess(batch, step)` to the latter form."""
    if preprocess is None:
        return None
    try:
        params = inspect.signature(preprocess).parameters.values()
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        takes_step = len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)
    except (TypeError, ValueError):
        takes_step = False
    if takes_step:
        return lambda batch, step: dict(preprocess(batch, step))
    return lambda batch, step: dict(preprocess(batch))


def _read(source: Any, indices: np.ndarray) -> Record:
    """The records at `indices`, stacked, plus 'index'.

    Fast path: a source with `get_batch(indices) -> dict[str, np.ndarray]` (e.g. an in-memory
    `ArraySource`) returns the stacked batch itself; otherwise records are read and stacked.
    """
    get_batch = getattr(source, "get_batch", None)
    if get_batch is not None:
        batch = dict(get_batch(np.asarray(indices, dtype=np.int64)))
        batch["index"] = np.asarray(indices, dtype=np.int64)
        return batch
    idx = [int(i) for i in indices]
    records = source.__getitems__(idx) if hasattr(source, "__getitems__") else [source[i] for i in idx]
    batch = stack_records(records)
    batch["index"] = np.asarray(indices, dtype=np.int64)
    return batch


class _Range:
    """The integers [start, stop) as a random-access sequence (stop may be sys.maxsize)."""

    def __init__(self, start: int, stop: int):
        self.start, self.stop = start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, i: int) -> int:
        return self.start + int(i)


def _prefetched(fn: Callable[[int], Record], start: int, stop: int, prefetch: int) -> Iterator[Record]:
    """grain iterator over fn(start), fn(start + 1), ... with `prefetch` batches read ahead in a thread."""
    options = grain.ReadOptions(num_threads=1 if prefetch > 0 else 0, prefetch_buffer_size=max(prefetch, 1))
    return iter(grain.MapDataset.source(_Range(start, stop)).map(fn).to_iter_dataset(options))


class TrainIterator:
    """Infinite iterator of process-local training batches with exact, checkpointable state.

    Each batch is a dict of numpy arrays with leading dim global_batch_size // process_count,
    plus 'index' (int64 dataset indices). `preprocess(batch)` or `preprocess(batch, step)`
    is applied to each local batch; it must be a pure function for resume to be exact.
    """

    def __init__(self, source: Any, global_batch_size: int, seed: int = 0, process_index: int = 0,
                 process_count: int = 1, preprocess: Preprocess | None = None, prefetch: int = 2):
        self.source = source
        self.num_examples = len(source)
        if self.num_examples == 0:
            raise ValueError("Cannot iterate over an empty source; check the dataset split.")
        if prefetch < 0:
            raise ValueError(f"prefetch must be >= 0, got {prefetch}.")
        self.rows = process_rows(global_batch_size, process_index, process_count)
        self.global_batch_size, self.seed = int(global_batch_size), int(seed)
        self.process_index, self.process_count = process_index, process_count
        self.prefetch = int(prefetch)
        self._preprocess = _with_step(preprocess)
        self._step = 0
        self._it = _prefetched(self._make_batch, 0, sys.maxsize, self.prefetch)

    def _make_batch(self, step: int) -> Record:
        indices = global_batch_indices(self.num_examples, self.seed, step, self.global_batch_size)
        batch = _read(self.source, indices[self.rows])
        return self._preprocess(batch, step) if self._preprocess else batch

    @property
    def step(self) -> int:
        """Number of batches consumed so far (= the step of the next batch)."""
        return self._step

    @property
    def epoch(self) -> float:
        """Epochs consumed so far."""
        return self._step * self.global_batch_size / self.num_examples

    def __iter__(self) -> "TrainIterator":
        return self

    def __next__(self) -> Record:
        batch = next(self._it)
        self._step += 1
        return batch

    def get_state(self) -> dict[str, int]:
        """JSON-serializable state; independent of process_index/process_count."""
        return {"step": self._step, "seed": self.seed, "global_batch_size": self.global_batch_size,
                "num_examples": self.num_examples}

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restores a state from get_state(): the next batch is the one that followed it."""
        expected = {"seed": self.seed, "global_batch_size": self.global_batch_size,
                    "num_examples": self.num_examples}
        for key, value in expected.items():
            if key in state and int(state[key]) != value:
                raise ValueError(f"Iterator state has {key}={state[key]} but this iterator has {key}={value}; "
                                 "resume with the same dataset, seed and global batch size.")
        step = int(state["step"])
        if step < 0:
            raise ValueError(f"Iterator state step must be >= 0, got {step}.")
        self.close()
        self._step = step
        self._it = _prefetched(self._make_batch, step, sys.maxsize, self.prefetch)

    def close(self) -> None:
        """Stops the prefetch thread."""
        close = getattr(self._it, "close", None)
        if close is not None:
            close()


def num_eval_batches(num_examples: int, global_batch_size: int) -> int:
    return -(-num_examples // global_batch_size)


def eval_batches(source: Any, global_batch_size: int, process_index: int = 0, process_count: int = 1,
                 preprocess: Preprocess | None = None, prefetch: int = 2) -> Iterator[Record]:
    """Every example exactly once, in order, over all processes.

    The last global batch is padded to full size with copies of example 0; batch['mask'] is
    float32, 1 for real rows and 0 for padding. Every process gets the same number of batches.
    """
    n = len(source)
    rows = process_rows(global_batch_size, process_index, process_count)
    pre = _with_step(preprocess)

    def make(step: int) -> Record:
        positions = np.arange(step * global_batch_size, (step + 1) * global_batch_size)[rows]
        real = positions < n
        batch = _read(source, np.where(real, positions, 0))
        batch["mask"] = real.astype(np.float32)
        return pre(batch, step) if pre else batch

    return _closing(_prefetched(make, 0, num_eval_batches(n, global_batch_size), prefetch))


def _closing(it: Iterator[Record]) -> Iterator[Record]:
    try:
        yield from it
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()
