"""Public TFDS datasets (`mnist`, `fashion_mnist`, `tiny_shakespeare`, `lm1b`, `huggingface:...`).

They are prepared as ArrayRecord with TFDS's own builders and mapped onto the
same record keys as the offline datasets: image classification datasets give
{'image', 'label'}; text datasets give byte windows {'tokens': int32 [seq_len + 1]}
built in memory from the split's concatenated text (fine for tiny_shakespeare;
lm1b needs several GB of RAM). Without network access preparation fails fast
with `DatasetDownloadError`, which names the offline alternatives.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from bilinear_jax.data.builders.base import FILE_FORMAT, file_lock, split_sizes
from bilinear_jax.data.info import OFFLINE_DATASETS, DatasetInfo
from bilinear_jax.data.sources import ArraySource, MappedSource, cast_record

PUBLIC_OPTIONS = {"seq_len": 256}
_PROBE_HOSTS = (("storage.googleapis.com", 443), ("huggingface.co", 443), ("pypi.org", 443))
_PROBE_TIMEOUT_S = 3.0


class DatasetDownloadError(RuntimeError):
    """A public dataset could not be downloaded or prepared."""


def _download_error(name: str, reason: str) -> DatasetDownloadError:
    return DatasetDownloadError(
        f"Could not download public dataset '{name}' ({reason}); without network access use one of "
        f"the offline datasets {', '.join(OFFLINE_DATASETS)}, or copy a prepared ArrayRecord "
        f"copy of '{name}' into the data_dir.")


def _network_available(timeout: float = _PROBE_TIMEOUT_S) -> bool:
    """True if a download host accepts a TCP connection within `timeout` seconds."""
    if any(os.environ.get(v) for v in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")):
        return True
    ok = threading.Event()

    def probe(host: str, port: int) -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                ok.set()
        except OSError:
            pass

    threads = [threading.Thread(target=probe, args=hp, daemon=True) for hp in _PROBE_HOSTS[:2]]
    for t in threads:
        t.start()
    ok.wait(timeout)  # DNS lookups are not bounded by the socket timeout; this wait is.
    return ok.is_set()


def public_builder(name: str, data_dir: str | os.PathLike) -> tfds.core.DatasetBuilder:
    """Returns a prepared (ArrayRecord) TFDS builder for a public dataset."""
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise ValueError(
            f"Unknown dataset '{name}': it is neither an offline dataset ({', '.join(OFFLINE_DATASETS)}) "
            "nor a TFDS dataset; check the name.") from e
    except Exception as e:  # e.g. huggingface:* without the `datasets` package or network
        if ":" in name:
            raise _download_error(name, f"{type(e).__name__}: {e}") from e
        raise
    if builder.is_prepared():
        return _check_format(builder, name)
    if not _network_available():
        raise _download_error(name, "no network connection")
    lock = Path(data_dir) / ".locks" / f"{name.replace(':', '_').replace('/', '_')}.lock"
    with file_lock(lock):
        builder = tfds.builder(name, data_dir=data_dir)
        if not builder.is_prepared():
            try:
                builder.download_and_prepare(file_format=FILE_FORMAT)
            except Exception as e:  # network, checksum, missing optional dependency...
                raise _download_error(name, f"{type(e).__name__}: {e}") from e
    return _check_format(tfds.builder(name, data_dir=data_dir), name)


def _check_format(builder: tfds.core.DatasetBuilder, name: str) -> tfds.core.DatasetBuilder:
    fmt = builder.info.file_format
    if fmt is not None and getattr(fmt, "value", fmt) != FILE_FORMAT:
        raise ValueError(
            f"Dataset '{name}' in {builder.data_dir} is prepared as {getattr(fmt, 'value', fmt)}, "
            f"not {FILE_FORMAT}; delete it or use another data_dir so it is re-prepared as {FILE_FORMAT}.")
    return builder


def _feature_kinds(features: tfds.features.FeaturesDict) -> dict[str, str]:
    kinds = {}
    for key, feat in features.items():
        if isinstance(feat, tfds.features.Image):
            kinds[key] = "image"
        elif isinstance(feat, tfds.features.ClassLabel):
            kinds[key] = "label"
        elif isinstance(feat, tfds.features.Text):
            kinds[key] = "text"
    return kinds


def describe_public(name: str, builder: tfds.core.DatasetBuilder, options: dict[str, Any]) -> DatasetInfo:
    kinds = _feature_kinds(builder.info.features)
    image = [k for k, v in kinds.items() if v == "image"]
    label = [k for k, v in kinds.items() if v == "label"]
    text = [k for k, v in kinds.items() if v == "text"]
    sizes = split_sizes(builder)
    if image and label:
        feat = builder.info.features[image[0]]
        return DatasetInfo(name=name, task="classification", input_shape=tuple(feat.shape),
                           num_classes=int(builder.info.features[label[0]].num_classes),
                           num_examples=sizes, input_key="image", target_key="label",
                           input_range=(0.0, 255.0), options=options,
                           metadata={"feature_keys": {"image": image[0], "label": label[0]}})
    if text:
        seq_len = options["seq_len"]
        source_sizes = {s: len(_text_windows(builder, s, text[0], seq_len)) for s in sizes}
        return DatasetInfo(name=name, task="sequence", input_shape=(seq_len,), vocab_size=256,
                           seq_len=seq_len, num_examples=source_sizes, input_key="tokens",
                           target_key="tokens", options=options, metadata={"feature_keys": {"text": text[0]}})
    raise ValueError(
        f"Dataset '{name}' has features {dict(builder.info.features.items())}, which map to neither "
        "image classification (Image + ClassLabel) nor text (Text); load it with tfds.data_source directly.")


_WINDOW_CACHE: dict[tuple[str, str, str, int], ArraySource] = {}


def _text_windows(builder: tfds.core.DatasetBuilder, split: str, key: str, seq_len: int) -> ArraySource:
    cache_key = (str(builder.data_dir), split, key, seq_len)
    if cache_key not in _WINDOW_CACHE:
        _WINDOW_CACHE.clear()  # keep at most one split of windows in memory
        _WINDOW_CACHE[cache_key] = _build_text_windows(builder, split, key, seq_len)
    return _WINDOW_CACHE[cache_key]


def _build_text_windows(builder: tfds.core.DatasetBuilder, split: str, key: str, seq_len: int) -> ArraySource:
    source = builder.as_data_source(split=split)
    data = b"\n".join(
        r[key] if isinstance(r[key], bytes) else str(r[key]).encode() for r in
        (source[i] for i in range(len(source))))
    tokens = np.frombuffer(data, dtype=np.uint8).astype(np.int32)
    n_win = len(tokens) // (seq_len + 1)
    if n_win < 1:
        raise ValueError(f"seq_len={seq_len} is longer than split '{split}' of {builder.name} "
                         f"({len(tokens)} bytes); use a shorter seq_len.")
    return ArraySource({"tokens": tokens[: n_win * (seq_len + 1)].reshape(n_win, seq_len + 1)})


def public_source(info: DatasetInfo, builder: tfds.core.DatasetBuilder, split: str) -> Any:
    keys = info.metadata["feature_keys"]
    if info.task == "sequence":
        return _text_windows(builder, split, keys["text"], info.seq_len)
    fn = cast_record({"image": None, "label": np.int32}, rename={keys["image"]: "image", keys["label"]: "label"})
    return MappedSource(builder.as_data_source(split=split), fn)
