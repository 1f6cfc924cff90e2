"""Offline builders prepare from scratch and hold the records an independent computation predicts."""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import sysconfig

import numpy as np
import pytest

from bilinear_jax import data


def _all(source) -> dict[str, np.ndarray]:
    recs = [source[i] for i in range(len(source))]
    return {k: np.stack([r[k] for r in recs]) for k in recs[0]}


def test_digits_matches_sklearn_with_seeded_split(tmp_path):
    from sklearn.datasets import load_digits

    raw = load_digits()
    info = data.dataset_info("digits", data_dir=tmp_path, seed=3)
    assert info.task == "classification" and info.num_classes == 10 and info.input_shape == (8, 8, 1)
    assert sum(info.num_examples.values()) == 1797
    perm = np.random.default_rng([3]).permutation(1797)
    n_test = round(0.2 * 1797)
    expected = {"train": np.sort(perm[n_test:]), "test": np.sort(perm[:n_test])}
    for split, idx in expected.items():
        recs = _all(data.load_split("digits", split, data_dir=tmp_path, seed=3))
        assert recs["image"].dtype == np.float32 and recs["label"].dtype == np.int32
        np.testing.assert_array_equal(recs["image"][..., 0], raw.images[idx])
        np.testing.assert_array_equal(recs["label"], raw.target[idx])
    # another seed gives another prepared dataset with another split
    other = data.dataset_info("digits", data_dir=tmp_path, seed=4)
    assert other.config_name != info.config_name
    assert sorted(p.name for p in (tmp_path / "digits").iterdir()) == sorted([info.config_name, other.config_name])


@pytest.mark.parametrize("op,p", [("add", 7), ("sub", 5), ("mul", 6), ("div", 7)])
def test_modular_arithmetic(tmp_path, op, p):
    info = data.dataset_info("modular_arithmetic", data_dir=tmp_path, p=p, op=op, train_fraction=0.5)
    assert info.vocab_size == p + 1 and info.num_classes == p and info.input_shape == (3,)
    pairs = {}
    for split in ("train", "test"):
        recs = _all(data.load_split("modular_arithmetic", split, data_dir=tmp_path, p=p, op=op, train_fraction=0.5))
        assert recs["tokens"].dtype == np.int32 and np.all(recs["tokens"][:, 2] == p)
        pairs[split] = {tuple(t[:2]) for t in recs["tokens"]}
        for (a, b, _), c in zip(recs["tokens"], recs["label"]):
            want = {"add": lambda: a + b, "sub": lambda: a - b, "mul": lambda: a * b,
                    "div": lambda: a * pow(int(b), -1, p)}[op]()
            assert c == want % p
    all_pairs = {(a, b) for a in range(p) for b in range(p) if op != "div" or b != 0}
    assert pairs["train"].isdisjoint(pairs["test"]) and pairs["train"] | pairs["test"] == all_pairs
    assert len(pairs["train"]) == round(0.5 * len(all_pairs))


def test_sparse_boolean(tmp_path):
    opts = dict(n_inputs=6, sparsity=0.3, ops=("and", "xor"), num_pairs=4, seed=5, num_train=2000, num_test=50)
    info = data.dataset_info("sparse_boolean", data_dir=tmp_path, **opts)
    outputs = info.metadata["outputs"]
    assert info.task == "multilabel" and info.num_outputs == 8 == len(outputs)
    pairs = info.metadata["pairs"]
    assert len({tuple(p) for p in pairs}) == 4 and all(0 <= i < j < 6 for i, j in pairs)
    assert [o[0] for o in outputs] == ["and"] * 4 + ["xor"] * 4
    recs = _all(data.load_split("sparse_boolean", "train", data_dir=tmp_path, **opts))
    x, y = recs["x"].astype(bool), recs["y"].astype(bool)
    assert set(np.unique(recs["x"])) <= {0.0, 1.0}
    assert abs(x.mean() - 0.3) < 0.03
    for k, (op, i, j) in enumerate(outputs):
        want = {"and": x[:, i] & x[:, j], "xor": x[:, i] ^ x[:, j]}[op]
        np.testing.assert_array_equal(y[:, k], want)
    explicit = data.dataset_info("sparse_boolean", data_dir=tmp_path, n_inputs=4, pairs=[[0, 3], [2, 1]],
                                 ops="or", num_train=10, num_test=10)
    assert explicit.metadata["outputs"] == [["or", 0, 3], ["or", 2, 1]]


def test_text_corpus_bytes_from_user_glob(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    texts = {"b.txt": "second file " * 40, "a.txt": "first file, héllo " * 30}
    for name, text in texts.items():
        (corpus / name).write_text(text)
    opts = dict(files=str(corpus / "*.txt"), seq_len=15, test_fraction=0.25)
    info = data.dataset_info("text_corpus", data_dir=tmp_path / "d", **opts)
    assert info.task == "sequence" and info.vocab_size == 256 and info.seq_len == 15
    stream = (texts["a.txt"] + texts["b.txt"]).encode()
    n_win = len(stream) // 16
    windows = np.frombuffer(stream[: n_win * 16], np.uint8).reshape(n_win, 16)
    n_test = round(0.25 * n_win)
    train = _all(data.load_split("text_corpus", "train", data_dir=tmp_path / "d", **opts))["tokens"]
    test = _all(data.load_split("text_corpus", "test", data_dir=tmp_path / "d", **opts))["tokens"]
    assert train.dtype == np.int32
    np.testing.assert_array_equal(train, windows[: n_win - n_test])
    np.testing.assert_array_equal(test, windows[n_win - n_test:])
    # changing a file's content changes the prepared dataset
    (corpus / "b.txt").write_text("changed " * 100)
    assert data.dataset_info("text_corpus", data_dir=tmp_path / "d", **opts).config_name != info.config_name


def test_text_corpus_default_is_stdlib_source(tmp_path):
    info = data.dataset_info("text_corpus", data_dir=tmp_path, seq_len=63, max_bytes=20_000)
    first = sorted(f for f in os.listdir(sysconfig.get_paths()["stdlib"]) if f.endswith(".py"))[0]
    head = open(os.path.join(sysconfig.get_paths()["stdlib"], first), "rb").read()[:64]
    rec = data.load_split("text_corpus", "train", data_dir=tmp_path, seq_len=63, max_bytes=20_000)[0]
    assert bytes(rec["tokens"].astype(np.uint8)) == head
    assert info.num_examples["train"] + info.num_examples["test"] == 20_000 // 64


def test_text_corpus_sentencepiece_end_to_end(tmp_path):
    files = sorted(os.path.join(sysconfig.get_paths()["stdlib"], f) for f in ("argparse.py", "textwrap.py"))
    opts = dict(files=files, tokenizer="sentencepiece", vocab_size=600, seq_len=32, workdir=str(tmp_path / "work"))
    info = data.dataset_info("text_corpus", data_dir=tmp_path / "d", **opts)
    assert info.vocab_size == 600 and info.tokenizer_path.startswith(str(tmp_path / "work"))
    assert os.path.isfile(info.tokenizer_path)
    tok = data.SentencePieceTokenizer(info.tokenizer_path)
    text = b"".join(open(f, "rb").read() for f in files).decode()
    expected = tok.encode(text)
    source = data.load_split("text_corpus", "train", data_dir=tmp_path / "d", **opts)
    got = np.concatenate([source[i]["tokens"] for i in range(3)])
    np.testing.assert_array_equal(got, expected[: 3 * 33])
    assert tok.decode(got) == text[: len(tok.decode(got))]
    assert max(int(source[i]["tokens"].max()) for i in range(len(source))) < 600
    batch = next(data.TrainIterator(source, global_batch_size=8, seed=0, prefetch=1))
    assert batch["tokens"].shape == (8, 33)


def _prepare_in_process(args):
    data_dir, seed = args
    return data.dataset_info("digits", data_dir=data_dir, seed=seed).num_examples


def test_concurrent_prepare_is_safe(tmp_path):
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.map(_prepare_in_process, [(str(tmp_path), 11)] * 2)
    assert results[0] == results[1] == {"train": 1438, "test": 359}
    recs = data.load_split("digits", "train", data_dir=tmp_path, seed=11)
    assert len(recs) == 1438 and len(list((tmp_path / "digits").iterdir())) == 1


def test_data_dir_env(tmp_path, monkeypatch):
    monkeypatch.setenv("BILINEAR_JAX_DATA_DIR", str(tmp_path))
    assert data.default_data_dir() == str(tmp_path)
    info = data.dataset_info("modular_arithmetic", p=5)
    assert (tmp_path / "modular_arithmetic" / info.config_name).is_dir()


def test_options_map_to_distinct_configs(tmp_path):
    names = {data.dataset_info("modular_arithmetic", data_dir=tmp_path, p=p, op=op, train_fraction=f).config_name
             for p, op, f in itertools.product((5, 7), ("add", "mul"), (0.3, 0.6))}
    assert len(names) == 8
