"""Normalization, deterministic Gaussian noise and tokenizers."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from bilinear_jax import data
from bilinear_jax.data.sources import ArraySource


def test_normalize_scale_and_standardize():
    x = np.array([[0, 128, 255]], dtype=np.uint8)
    np.testing.assert_allclose(data.normalize(x, max_value=255), x / 255.0, rtol=1e-6)
    out = data.normalize({"image": x, "label": np.int32(1)}, max_value=255, mean=0.5, std=0.25)
    np.testing.assert_allclose(out["image"], (x / 255.0 - 0.5) / 0.25, rtol=1e-5, atol=1e-5)
    assert out["label"] == 1 and out["image"].dtype == np.float32


def test_dataset_stats_matches_numpy():
    images = np.random.default_rng(0).integers(0, 17, size=(30, 8, 8, 1)).astype(np.float32)
    mean, std = data.dataset_stats(ArraySource({"image": images}), max_value=16.0)
    np.testing.assert_allclose([mean, std], [(images / 16).mean(), (images / 16).std()], rtol=1e-5)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**40), step=st.integers(0, 10**6), std=st.floats(0.01, 3.0))
def test_gaussian_noise_is_pure_and_keyed_by_seed_step_index(seed, step, std):
    x = np.zeros((4, 5, 5, 1), np.float32)
    batch = {"image": x, "index": np.array([3, 9, 1, 7])}
    a = data.gaussian_noise(batch, seed, step, std)
    np.testing.assert_array_equal(a["image"], data.gaussian_noise(batch, seed, step, std)["image"])
    assert not np.array_equal(a["image"], data.gaussian_noise(batch, seed, step + 1, std)["image"])
    permuted = {"image": x[::-1], "index": batch["index"][::-1]}
    np.testing.assert_array_equal(data.gaussian_noise(permuted, seed, step, std)["image"], a["image"][::-1])
    assert np.all(batch["image"] == 0)  # input not modified


def test_gaussian_noise_statistics():
    batch = {"image": np.full((2000, 64), 1.0, np.float32), "index": np.arange(2000)}
    noise = data.gaussian_noise(batch, seed=0, step=5, std=0.5)["image"] - 1.0
    assert abs(noise.mean()) < 0.01 and abs(noise.std() - 0.5) < 0.01
    # standard normal tails: ~4.55% beyond 2 sigma
    assert abs(np.mean(np.abs(noise) > 1.0) - 0.0455) < 0.005
    corr = np.corrcoef(noise[:, 0], noise[:, 1])[0, 1]
    assert abs(corr) < 0.1


def test_byte_tokenizer_roundtrip():
    tok = data.ByteTokenizer()
    text = "héllo, wörld\n"
    ids = tok.encode(text)
    np.testing.assert_array_equal(ids, list(text.encode("utf-8")))
    assert tok.vocab_size == 256 and tok.decode(ids) == text


def test_sentencepiece_trained_locally_is_deterministic(tmp_path):
    import textwrap

    corpus = tmp_path / "c.txt"
    corpus.write_text(open(textwrap.__file__).read())
    p1 = data.train_sentencepiece([corpus], 400, tmp_path / "w1")
    p2 = data.train_sentencepiece([corpus], 400, tmp_path / "w2")
    assert p1.parent == tmp_path / "w1" and p1.is_file()
    # same pieces and scores (the .model file also records its own path, so compare the vocab)
    assert p1.with_suffix(".vocab").read_text() == p2.with_suffix(".vocab").read_text()
    tok = data.SentencePieceTokenizer(p1)
    assert tok.vocab_size == 400
    text = "def wrap(text, width=70):\n    return text"
    assert tok.decode(tok.encode(text)) == text
