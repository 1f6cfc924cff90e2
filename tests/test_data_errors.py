"""Bad inputs fail fast with one clear message."""

from __future__ import annotations

import time

import pytest

from bilinear_jax import data


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="corpus file '.*nope.txt' does not exist"):
        data.dataset_info("text_corpus", data_dir=tmp_path, files=str(tmp_path / "nope.txt"))
    with pytest.raises(FileNotFoundError, match="no files match the glob"):
        data.dataset_info("text_corpus", data_dir=tmp_path, files=str(tmp_path / "*.md"))


def test_empty_corpus(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="the corpus is empty"):
        data.dataset_info("text_corpus", data_dir=tmp_path, files=str(tmp_path / "*.txt"))


def test_seq_len_longer_than_corpus(tmp_path):
    (tmp_path / "small.txt").write_text("x" * 50)
    with pytest.raises(ValueError, match="seq_len=100 is too long for a corpus of 50 bytes"):
        data.dataset_info("text_corpus", data_dir=tmp_path, files=str(tmp_path / "small.txt"), seq_len=100)


def test_unknown_dataset(tmp_path):
    with pytest.raises(ValueError, match="Unknown dataset 'no_such_dataset'.*digits, modular_arithmetic"):
        data.dataset_info("no_such_dataset", data_dir=tmp_path)


def test_unknown_option_and_bad_values(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown option\(s\) \['modulus'\] for dataset 'modular_arithmetic'"):
        data.dataset_info("modular_arithmetic", data_dir=tmp_path, modulus=7)
    with pytest.raises(ValueError, match="unknown op 'pow'"):
        data.dataset_info("modular_arithmetic", data_dir=tmp_path, op="pow")
    with pytest.raises(ValueError, match="needs a prime p"):
        data.dataset_info("modular_arithmetic", data_dir=tmp_path, p=8, op="div")
    with pytest.raises(ValueError, match="sparsity"):
        data.dataset_info("sparse_boolean", data_dir=tmp_path, sparsity=1.5)
    with pytest.raises(ValueError, match="unknown tokenizer 'words'"):
        data.dataset_info("text_corpus", data_dir=tmp_path, tokenizer="words", max_bytes=1000)
    with pytest.raises(ValueError, match="no split 'validation'"):
        data.load_split("modular_arithmetic", "validation", data_dir=tmp_path, p=5)
    assert not (tmp_path / "modular_arithmetic" / "p8-div").exists()


def test_public_dataset_without_network_fails_fast_and_names_offline_ones(tmp_path):
    start = time.monotonic()
    with pytest.raises(data.DatasetDownloadError, match="Could not download public dataset 'mnist'.*"
                       "digits, modular_arithmetic, sparse_boolean, text_corpus"):
        data.dataset_info("mnist", data_dir=tmp_path)
    with pytest.raises(data.DatasetDownloadError, match="huggingface:mnist"):
        data.load_split("huggingface:mnist", "train", data_dir=tmp_path)
    assert time.monotonic() - start < 20


def test_sentencepiece_vocab_too_large(tmp_path):
    (tmp_path / "t.txt").write_text("tiny corpus\n" * 10)
    with pytest.raises(ValueError, match="lower vocab_size"):
        data.train_sentencepiece([tmp_path / "t.txt"], 5000, tmp_path)
