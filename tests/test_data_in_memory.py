"""In-memory split loading matches streaming; builder creation is quiet and DatasetInfo's repr is short."""

from __future__ import annotations

import io
import json
import logging

import numpy as np
import pytest

from bilinear_jax import data
from bilinear_jax.data import registry
from bilinear_jax.data.sources import ArraySource, MappedSource

OFFLINE_CASES = {
    "digits": {},
    "modular_arithmetic": {"p": 7, "op": "sub", "train_fraction": 0.5},
    "sparse_boolean": {"n_inputs": 6, "num_train": 300, "num_test": 70},
    "text_corpus": {"seq_len": 32, "max_bytes": 20000},
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


def _batches(it, k):
    return [next(it) for _ in range(k)]


def _assert_batches_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
        np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize("name", sorted(OFFLINE_CASES))
def test_in_memory_matches_streaming(name, data_dir):
    assert set(OFFLINE_CASES) == set(data.OFFLINE_DATASETS)
    opts = OFFLINE_CASES[name]
    for split in ("train", "test"):
        mem = data.load_split(name, split, data_dir=data_dir, in_memory=True, **opts)
        stream = data.load_split(name, split, data_dir=data_dir, in_memory=False, **opts)
        auto = data.load_split(name, split, data_dir=data_dir, **opts)
        assert isinstance(mem, ArraySource) and isinstance(stream, MappedSource) and isinstance(auto, ArraySource)
        assert len(mem) == len(stream)
        for i in (0, len(mem) // 2, len(mem) - 1):
            _assert_batches_equal(mem[i], stream[i])
        batch = min(64, len(mem) // 2 * 2)
        for a, b in zip(_batches(data.TrainIterator(mem, batch, seed=1, prefetch=0), 3),
                        _batches(data.TrainIterator(stream, batch, seed=1, prefetch=2), 3)):
            _assert_batches_equal(a, b)
        for a, b in zip(data.eval_batches(mem, batch, process_index=1, process_count=2),
                        data.eval_batches(stream, batch, process_index=1, process_count=2)):
            _assert_batches_equal(a, b)


def test_auto_streams_large_splits(data_dir, monkeypatch):
    monkeypatch.setattr(registry, "IN_MEMORY_MAX_BYTES", 1000)
    assert isinstance(data.load_split("digits", "train", data_dir=data_dir), MappedSource)
    assert isinstance(data.load_split("digits", "train", data_dir=data_dir, in_memory=True), ArraySource)


def test_array_source_gather_matches_records():
    rng = np.random.default_rng(0)
    src = ArraySource({"x": rng.normal(size=(20, 3, 2)).astype(np.float32), "y": np.arange(20, dtype=np.int32)})
    idx = np.array([5, 0, 19, 5, -1])
    batch = src.get_batch(idx)
    recs = src.__getitems__(list(idx))
    for j, i in enumerate(idx):
        for k in ("x", "y"):
            np.testing.assert_array_equal(batch[k][j], src[i][k])
            assert isinstance(recs[j][k], np.ndarray) and isinstance(src[i][k], np.ndarray)
            np.testing.assert_array_equal(recs[j][k], src[i][k])
    assert batch["y"].shape == (5,) and batch["x"].shape == (5, 3, 2)
    with pytest.raises(IndexError):
        src.get_batch([20])
    with pytest.raises(IndexError):
        src[20]


def test_text_corpus_info_is_quiet_and_repr_short(tmp_path, caplog, capsys):
    absl_logger = logging.getLogger("absl")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    absl_logger.addHandler(handler)
    try:
        with caplog.at_level(logging.DEBUG):
            for _ in range(2):  # prepares, then reuses
                info = data.dataset_info("text_corpus", data_dir=tmp_path, seq_len=32, max_bytes=100000)
    finally:
        absl_logger.removeHandler(handler)
    messages = [r.getMessage() for r in caplog.records] + stream.getvalue().splitlines()
    out = capsys.readouterr()
    messages += out.out.splitlines() + out.err.splitlines()
    assert not any("Using custom data configuration" in m for m in messages)
    assert max(map(len, messages), default=0) <= 500, max(messages, key=len)[:300]
    # The full options stay available: on the info object and in the prepared metadata.
    assert len(info.options["files"]) > 20
    assert len(repr(info)) < 1000 and f"{len(info.options['files'])} items" in repr(info)
    meta = json.loads(next(tmp_path.glob(f"text_corpus/{info.config_name}/*/metadata.json")).read_text())
    assert meta["options"]["files"] == info.options["files"]


def test_custom_config_warning_of_other_builders_is_kept(caplog):
    with caplog.at_level(logging.WARNING):
        logging.getLogger("absl").warning("Using custom data configuration: %s", "someone-else")
    assert any("someone-else" in r.getMessage() for r in caplog.records)
