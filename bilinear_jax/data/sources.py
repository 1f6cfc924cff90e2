"""Random-access sources: `len(source)` and `source[i] -> dict[str, np.ndarray]`."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

Record = dict[str, np.ndarray]


class MappedSource:
    """Applies `fn` to each record of a random-access `base` source."""

    def __init__(self, base: Any, fn: Callable[[Mapping[str, Any]], Record]):
        self.base, self.fn = base, fn

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> Record:
        return self.fn(self.base[int(index)])

    def __getitems__(self, indices: Sequence[int]) -> list[Record]:
        idx = [int(i) for i in indices]
        if hasattr(self.base, "__getitems__"):
            return [self.fn(r) for r in self.base.__getitems__(idx)]
        return [self.fn(self.base[i]) for i in idx]

    def __repr__(self) -> str:
        return f"MappedSource({self.base!r})"


class ArraySource:
    """In-memory source over equally long arrays, e.g. {'tokens': [N, L]}.

    `source[i]` returns copies (0-d arrays for scalar features), like the streaming
    sources; `get_batch(indices)` gathers a stacked batch with one numpy take per key.
    """

    def __init__(self, arrays: Mapping[str, np.ndarray]):
        self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        lengths = {len(v) for v in self.arrays.values()}
        if len(lengths) != 1:
            raise ValueError(f"ArraySource arrays must have equal length, got {lengths}.")
        self._n = lengths.pop()

    def __len__(self) -> int:
        return self._n

    @property
    def nbytes(self) -> int:
        return sum(v.nbytes for v in self.arrays.values())

    def __getitem__(self, index: int) -> Record:
        index = int(index)
        if not -self._n <= index < self._n:
            raise IndexError(f"index {index} out of range for source of length {self._n}")
        return {k: np.array(v[index]) for k, v in self.arrays.items()}

    def get_batch(self, indices: Sequence[int] | np.ndarray) -> Record:
        """{key: array[indices]}: the records at `indices`, stacked (one gather per key)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < -self._n or idx.max() >= self._n):
            raise IndexError(f"indices out of range for source of length {self._n}")
        return {k: v.take(idx, axis=0) for k, v in self.arrays.items()}

    def __getitems__(self, indices: Sequence[int]) -> list[Record]:
        batch = self.get_batch(indices)
        return [{k: v[j, ...] for k, v in batch.items()} for j in range(len(indices))]

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {v.dtype}{list(v.shape)}" for k, v in self.arrays.items())
        return f"ArraySource({{{shapes}}})"


def materialize(source: Any, chunk_size: int = 4096) -> ArraySource:
    """Reads every record of a random-access `source` into an `ArraySource` (read-only arrays).

    Records must have fixed shapes per key. Reads `chunk_size` records at a time.
    """
    n = len(source)
    if n == 0:
        raise ValueError("Cannot load an empty source into memory.")
    first = source[0]
    arrays = {k: np.empty((n, *np.shape(v)), dtype=np.asarray(v).dtype) for k, v in first.items()}
    for start in range(0, n, chunk_size):
        idx = list(range(start, min(n, start + chunk_size)))
        records = source.__getitems__(idx) if hasattr(source, "__getitems__") else [source[i] for i in idx]
        for k, out in arrays.items():
            try:
                out[start: start + len(idx)] = np.stack([r[k] for r in records])
            except ValueError as e:
                raise ValueError(f"Cannot load the source into memory: records of '{k}' do not all have "
                                 f"shape {out.shape[1:]} ({e}); use in_memory=False.") from e
    for v in arrays.values():
        v.setflags(write=False)
    return ArraySource(arrays)


def cast_record(dtypes: Mapping[str, Any], rename: Mapping[str, str] | None = None) -> Callable[[Mapping[str, Any]], Record]:
    """A record function keeping `dtypes`' keys (after `rename`) as numpy arrays of those dtypes."""
    rename = dict(rename or {})

    def fn(record: Mapping[str, Any]) -> Record:
        out = {rename.get(k, k): v for k, v in record.items()}
        return {k: np.asarray(out[k], dtype=dt) for k, dt in dtypes.items()}

    return fn


def stack_records(records: Sequence[Mapping[str, np.ndarray]]) -> Record:
    """List of records -> dict of batched arrays."""
    return {k: np.stack([r[k] for r in records]) for k in records[0]}
