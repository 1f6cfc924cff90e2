"""Tokenizers: raw bytes (default) and a sentencepiece BPE trained locally on a corpus."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np


class ByteTokenizer:
    """UTF-8 bytes as tokens: vocabulary 256, lossless for any text."""

    vocab_size: int = 256

    def encode(self, text: str | bytes) -> np.ndarray:
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        return np.frombuffer(data, dtype=np.uint8).astype(np.int32)

    def decode(self, tokens: Iterable[int]) -> str:
        return bytes(np.asarray(tokens, dtype=np.uint8).tolist()).decode("utf-8", errors="replace")


class SentencePieceTokenizer:
    """Encode/decode wrapper around a trained sentencepiece model file."""

    def __init__(self, model_path: str | os.PathLike):
        import sentencepiece as spm

        if not Path(model_path).is_file():
            raise FileNotFoundError(f"Sentencepiece model '{model_path}' does not exist; train one with train_sentencepiece().")
        self.model_path = str(model_path)
        self._sp = spm.SentencePieceProcessor(model_file=self.model_path)

    @property
    def vocab_size(self) -> int:
        return int(self._sp.get_piece_size())

    def encode(self, text: str | bytes) -> np.ndarray:
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        return np.asarray(self._sp.encode(text), dtype=np.int32)

    def decode(self, tokens: Iterable[int]) -> str:
        return self._sp.decode([int(t) for t in tokens])


def _lines(files: Sequence[str | os.PathLike], max_len: int) -> Iterator[str]:
    for f in files:
        with open(f, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                line = line.rstrip("\n")
                if line.strip():
                    yield line[:max_len]


def train_sentencepiece(files: Sequence[str | os.PathLike], vocab_size: int,
                        out_dir: str | os.PathLike, name: str = "spm") -> Path:
    """Trains a BPE sentencepiece model on `files`; returns the path of `<out_dir>/<name>.model`.

    Training is single-threaded and reads lines in file order, so it is
    deterministic. Byte fallback is on, so any text can be encoded.
    """
    import sentencepiece as spm

    files = [str(f) for f in files]
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise FileNotFoundError(f"Corpus file(s) {missing} do not exist; pass existing text files.")
    if vocab_size < 260:
        raise ValueError(f"sentencepiece vocab_size must be >= 260 (256 byte pieces + specials), got {vocab_size}.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = out_dir / name
    max_len = 4192
    if next(iter(_lines(files, max_len)), None) is None:
        raise ValueError(f"The corpus {files} is empty; sentencepiece needs some text to train on.")
    tmp_prefix = out_dir / f".{name}.{os.getpid()}.tmp"
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=_lines(files, max_len), model_prefix=str(tmp_prefix),
            vocab_size=vocab_size, model_type="bpe", character_coverage=0.9995,
            byte_fallback=True, num_threads=1, normalization_rule_name="identity",
            remove_extra_whitespaces=False, split_digits=True, shuffle_input_sentence=False,
            max_sentence_length=max_len, minloglevel=2,
        )
    except RuntimeError as e:
        raise ValueError(
            f"Sentencepiece training with vocab_size={vocab_size} failed ({e}); "
            "the corpus is probably too small for this vocabulary: lower vocab_size or add text.") from e
    os.replace(f"{tmp_prefix}.model", f"{prefix}.model")
    os.replace(f"{tmp_prefix}.vocab", f"{prefix}.vocab")
    return Path(f"{prefix}.model")
