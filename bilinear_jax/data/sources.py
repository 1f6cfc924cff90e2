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
    """In-memory source over equally long arrays, e.g. {'tokens': [N, L]}."""

    def __init__(self, arrays: Mapping[str, np.ndarray]):
        self.arrays = dict(arrays)
        lengths = {len(v) for v in self.arrays.values()}
        if len(lengths) != 1:
            raise ValueError(f"ArraySource arrays must have equal length, got {lengths}.")
        self._n = lengths.pop()

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: int) -> Record:
        if not -self._n <= index < self._n:
            raise IndexError(f"index {index} out of range for source of length {self._n}")
        return {k: v[index] for k, v in self.arrays.items()}

    def __getitems__(self, indices: Sequence[int]) -> list[Record]:
        return [self[int(i)] for i in indices]


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
