"""Dataset names -> prepared builders, `DatasetInfo` and random-access split sources."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from bilinear_jax.data import public
from bilinear_jax.data.builders.base import OfflineBuilder, prepare, split_sizes
from bilinear_jax.data.builders.digits import Digits
from bilinear_jax.data.builders.modular_arithmetic import ModularArithmetic
from bilinear_jax.data.builders.sparse_boolean import SparseBoolean
from bilinear_jax.data.builders.text_corpus import TextCorpus
from bilinear_jax.data.info import DatasetInfo
from bilinear_jax.data.sources import ArraySource, MappedSource, cast_record, materialize

OFFLINE_BUILDERS: dict[str, type[OfflineBuilder]] = {
    b.name: b for b in (Digits, ModularArithmetic, SparseBoolean, TextCorpus)
}
DATA_DIR_ENV = "BILINEAR_JAX_DATA_DIR"
# load_split(in_memory=None) loads a split into numpy arrays when its estimated size is below this.
IN_MEMORY_MAX_BYTES = 256 * 2**20


def default_data_dir() -> str:
    """`$BILINEAR_JAX_DATA_DIR` if set, else TFDS's default data directory."""
    return os.environ.get(DATA_DIR_ENV) or os.path.expanduser(tfds.core.constants.DATA_DIR)


def _public_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(public.PUBLIC_OPTIONS))
    if unknown:
        raise ValueError(f"Unknown option(s) {unknown} for public dataset '{name}'; "
                         f"valid options are {sorted(public.PUBLIC_OPTIONS)}.")
    return {**public.PUBLIC_OPTIONS, **options}


def _resolve(name: str, data_dir: str | os.PathLike | None, options: dict[str, Any]):
    data_dir = str(data_dir) if data_dir is not None else default_data_dir()
    if name in OFFLINE_BUILDERS:
        builder = prepare(OFFLINE_BUILDERS[name], data_dir, options)
        return builder, builder.describe(split_sizes(builder))
    options = _public_options(name, options)
    builder = public.public_builder(name, data_dir)
    return builder, public.describe_public(name, builder, options)


def dataset_info(name: str, data_dir: str | os.PathLike | None = None, **options: Any) -> DatasetInfo:
    """Describes dataset `name` with `options`, preparing offline builders on first use."""
    return _resolve(name, data_dir, options)[1]


def estimated_split_bytes(features: tfds.features.FeaturesDict, num_examples: int) -> float:
    """Bytes of a split held as numpy arrays; inf if a feature has no fixed shape."""
    per_record = 0
    for feat in features.values():
        shape = getattr(feat, "shape", None)
        if shape is None or any(d is None or d < 0 for d in shape):
            return float("inf")
        per_record += int(np.prod(shape, dtype=np.int64)) * np.dtype(feat.np_dtype).itemsize
    return float(per_record) * num_examples


def load_split(name: str, split: str, data_dir: str | os.PathLike | None = None,
               in_memory: bool | None = None, **options: Any):
    """Random-access source of one split: `len(source)`, `source[i] -> dict[str, np.ndarray]`.

    in_memory: True loads the whole split into numpy arrays (an `ArraySource`, whose
    `get_batch` gathers a batch in microseconds); False streams records from ArrayRecord
    (~30 us/record); None (default) loads it when its estimated size is below
    `IN_MEMORY_MAX_BYTES` (256 MiB), else streams. Both give identical records.
    Public text datasets are always in memory (their windows are built in memory).
    """
    builder, info = _resolve(name, data_dir, options)
    if split not in info.num_examples:
        raise ValueError(f"Dataset '{name}' has no split '{split}'; available splits are {sorted(info.num_examples)}.")
    if name in OFFLINE_BUILDERS:
        dtypes = {k: np.dtype(f.np_dtype) for k, f in builder.info.features.items()}
        source = MappedSource(builder.as_data_source(split=split), cast_record(dtypes))
    else:
        source = public.public_source(info, builder, split)
    if isinstance(source, ArraySource) or in_memory is False:
        return source
    if in_memory is None:
        size = estimated_split_bytes(builder.info.features, info.num_examples[split])
        if size > IN_MEMORY_MAX_BYTES:
            return source
    return materialize(source)
