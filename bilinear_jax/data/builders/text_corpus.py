"""`text_corpus`: next-token windows from local text files, as bytes or sentencepiece tokens.

Users pass their own files with `files` (a glob pattern, a path, or a list of
them; `**` is recursive). The offline default corpus is the top-level `*.py`
source files of the running Python's standard library (`sysconfig`'s 'stdlib'
path, about 170 files / 4.7 MB for CPython 3.11). It was chosen because it is
real, human-written text that exists wherever Python (and so this package) is
installed, needs no download, and is stable for a given Python version.

The files are read in sorted path order and concatenated (truncated to
`max_bytes` if set), tokenized (bytes by default, vocabulary 256; or a BPE
sentencepiece model with `vocab_size` pieces trained locally on the same files
and saved under `<data_dir>/bilinear_tokenizers/` and, if given, in `workdir`),
and cut into non-overlapping windows of `seq_len + 1` tokens. The last
`test_fraction` of the windows (at least one) form the test split, so the test
text never overlaps the train text. Records: {'tokens': int32 [seq_len + 1]}.
"""

from __future__ import annotations

import functools
import glob
import json
import os
import shutil
import sysconfig
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import tensorflow_datasets as tfds

from bilinear_jax.data.builders.base import OfflineBuilder
from bilinear_jax.data.info import DatasetInfo
from bilinear_jax.data.tokenizers import SentencePieceTokenizer, train_sentencepiece

TOKENIZERS = ("bytes", "sentencepiece")
_GLOB_CHARS = set("*?[")


def default_corpus_pattern() -> str:
    """Glob of the Python standard library's top-level source files."""
    return os.path.join(sysconfig.get_paths()["stdlib"], "*.py")


def resolve_files(files: str | os.PathLike | list | tuple | None) -> list[str]:
    """Expands globs/paths into a sorted list of existing files."""
    patterns = [default_corpus_pattern()] if files is None else (
        [files] if isinstance(files, (str, os.PathLike)) else list(files))
    if not patterns:
        raise ValueError("text_corpus: files is an empty list; pass a glob such as 'corpus/*.txt'.")
    out: set[str] = set()
    for pattern in map(str, patterns):
        if not _GLOB_CHARS & set(pattern):
            if not os.path.isfile(pattern):
                raise FileNotFoundError(f"text_corpus: corpus file '{pattern}' does not exist; check the path.")
            out.add(os.path.abspath(pattern))
            continue
        matches = [m for m in glob.glob(os.path.expanduser(pattern), recursive=True) if os.path.isfile(m)]
        if not matches:
            raise FileNotFoundError(f"text_corpus: no files match the glob '{pattern}'; check the pattern.")
        out.update(os.path.abspath(m) for m in matches)
    return sorted(out)


def corpus_bytes(files: list[str], max_bytes: int | None) -> bytes:
    chunks, total = [], 0
    for f in files:
        data = Path(f).read_bytes()
        chunks.append(data)
        total += len(data)
        if max_bytes is not None and total >= max_bytes:
            break
    data = b"".join(chunks)
    return data if max_bytes is None else data[:max_bytes]


def _too_short(seq_len: int, n_tokens: int, unit: str) -> ValueError:
    return ValueError(
        f"text_corpus: seq_len={seq_len} is too long for a corpus of {n_tokens} {unit}: "
        f"at least {2 * (seq_len + 1)} are needed (one train and one test window); "
        "use a shorter seq_len or more text.")


class TextCorpus(OfflineBuilder, skip_registration=True):
    name = "text_corpus"
    DESCRIPTION = "Next-token windows from local text files."
    DEFAULTS = {"files": None, "seq_len": 256, "tokenizer": "bytes", "vocab_size": 1024,
                "test_fraction": 0.05, "max_bytes": None, "workdir": None}
    NOT_HASHED = ("workdir",)

    @classmethod
    def validate(cls, options: dict[str, Any]) -> dict[str, Any]:
        files = resolve_files(options["files"])
        tokenizer, seq_len = str(options["tokenizer"]), int(options["seq_len"])
        if tokenizer not in TOKENIZERS:
            raise ValueError(f"text_corpus: unknown tokenizer '{tokenizer}'; choose one of {list(TOKENIZERS)}.")
        if seq_len < 1:
            raise ValueError(f"text_corpus: seq_len must be >= 1, got {seq_len}.")
        frac = float(options["test_fraction"])
        if not 0.0 < frac < 1.0:
            raise ValueError(f"text_corpus: test_fraction must be in (0, 1), got {frac}.")
        max_bytes = None if options["max_bytes"] is None else int(options["max_bytes"])
        size = sum(os.path.getsize(f) for f in files)
        size = size if max_bytes is None else min(size, max_bytes)
        if size == 0:
            raise ValueError(f"text_corpus: the corpus is empty (files {files} hold no bytes); pass non-empty text files.")
        if size < 2 * (seq_len + 1):  # tokens <= bytes for both tokenizers
            raise _too_short(seq_len, size, "bytes")
        return {"files": files, "seq_len": seq_len, "tokenizer": tokenizer,
                "vocab_size": 256 if tokenizer == "bytes" else int(options["vocab_size"]),
                "test_fraction": frac, "max_bytes": max_bytes,
                "workdir": None if options["workdir"] is None else str(options["workdir"])}

    @classmethod
    def content_key(cls, options: Mapping[str, Any]) -> Any:
        stats = [os.stat(f) for f in options["files"]]
        return [[s.st_size, s.st_mtime_ns] for s in stats]

    @classmethod
    def short_name(cls, options: Mapping[str, Any]) -> str:
        tok = "bytes" if options["tokenizer"] == "bytes" else f"spm{options['vocab_size']}"
        return f"{tok}-len{options['seq_len']}"

    @staticmethod
    def tokenizer_file(data_dir: Path, config_name: str) -> Path:
        return Path(data_dir) / "bilinear_tokenizers" / f"text_corpus-{config_name}.model"

    @classmethod
    def before_prepare(cls, options: Mapping[str, Any], data_dir: Path, config_name: str) -> None:
        if options["tokenizer"] == "sentencepiece":
            path = cls.tokenizer_file(data_dir, config_name)
            train_sentencepiece(options["files"], options["vocab_size"], path.parent, name=path.stem)
        _ = cls.windows(options, data_dir, config_name)  # validates the length early

    @classmethod
    def windows(cls, options: Mapping[str, Any], data_dir: Path, config_name: str) -> np.ndarray:
        """All windows [num_windows, seq_len + 1] in corpus order."""
        return _windows(json.dumps(dict(options), sort_keys=True), Path(data_dir), config_name)

    def features(self) -> tfds.features.FeaturesDict:
        return tfds.features.FeaturesDict({
            "tokens": tfds.features.Tensor(shape=(self.options["seq_len"] + 1,), dtype=np.int32)})

    def _root(self) -> Path:
        return Path(self.data_dir).parents[2]

    def examples(self, split: str) -> Iterator[tuple[int, dict[str, Any]]]:
        win = self.windows(self.options, self._root(), self.builder_config.name)
        n_test = max(1, int(round(self.options["test_fraction"] * len(win))))
        rows = range(len(win) - n_test) if split == "train" else range(len(win) - n_test, len(win))
        for k in rows:
            yield k, {"tokens": win[k]}

    def on_ready(self) -> None:
        workdir = self.options.get("workdir")
        if self.options["tokenizer"] == "sentencepiece" and workdir:
            src = self.tokenizer_file(self._root(), self.builder_config.name)
            dst = Path(workdir) / src.name
            if not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)

    def describe(self, num_examples: dict[str, int]) -> DatasetInfo:
        tok_path, vocab = None, 256
        if self.options["tokenizer"] == "sentencepiece":
            src = self.tokenizer_file(self._root(), self.builder_config.name)
            workdir = self.options.get("workdir")
            tok_path = str(Path(workdir) / src.name) if workdir else str(src)
            vocab = SentencePieceTokenizer(tok_path).vocab_size
        return DatasetInfo(
            name=self.name, task="sequence", input_shape=(self.options["seq_len"],),
            vocab_size=vocab, seq_len=self.options["seq_len"], num_examples=num_examples,
            input_key="tokens", target_key="tokens", config_name=self.builder_config.name,
            options=dict(self.options), tokenizer_path=tok_path,
        )


@functools.lru_cache(maxsize=2)
def _windows(options_json: str, data_dir: Path, config_name: str) -> np.ndarray:
    options = json.loads(options_json)
    data = corpus_bytes(options["files"], options["max_bytes"])
    if options["tokenizer"] == "bytes":
        tokens, unit = np.frombuffer(data, dtype=np.uint8).astype(np.int32), "bytes"
    else:
        tok = SentencePieceTokenizer(TextCorpus.tokenizer_file(data_dir, config_name))
        tokens, unit = tok.encode(data.decode("utf-8", errors="replace")), "sentencepiece tokens"
    width = options["seq_len"] + 1
    n_win = len(tokens) // width
    if n_win < 2:
        raise _too_short(options["seq_len"], len(tokens), unit)
    return tokens[: n_win * width].reshape(n_win, width)
