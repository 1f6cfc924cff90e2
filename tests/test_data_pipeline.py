"""Iterator order, resume, process sharding and eval coverage against independent numpy computations."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bilinear_jax import data
from bilinear_jax.data.sources import ArraySource


def _source(n: int) -> ArraySource:
    return ArraySource({"x": np.arange(n, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32),
                        "y": np.arange(n, dtype=np.int32)})


def _expected_indices(n: int, seed: int, steps: int, batch: int) -> np.ndarray:
    """Independent recomputation: concatenated seeded epoch permutations, cut into batches."""
    epochs = -(-steps * batch // n) + 1
    stream = np.concatenate([np.random.default_rng([seed, e]).permutation(n) for e in range(epochs)])
    return stream[: steps * batch].reshape(steps, batch)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return data.load_split("digits", "train", data_dir=tmp_path_factory.mktemp("data"))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 40), batch=st.integers(1, 16), seed=st.integers(0, 2**31), prefetch=st.integers(0, 3))
def test_order_is_seeded_epoch_permutations(n, batch, seed, prefetch):
    steps = 7
    it = data.TrainIterator(_source(n), global_batch_size=batch, seed=seed, prefetch=prefetch)
    got = np.stack([next(it)["y"] for _ in range(steps)])
    it.close()
    np.testing.assert_array_equal(got, _expected_indices(n, seed, steps, batch))


def test_digits_order_deterministic_and_seed_dependent(digits):
    a = data.TrainIterator(digits, global_batch_size=100, seed=7)
    b = data.TrainIterator(digits, global_batch_size=100, seed=7)
    c = data.TrainIterator(digits, global_batch_size=100, seed=8)
    expected = _expected_indices(len(digits), 7, 20, 100)
    for k in range(20):  # crosses the epoch boundary (1438 examples)
        ba, bb, bc = next(a), next(b), next(c)
        np.testing.assert_array_equal(ba["index"], expected[k])
        np.testing.assert_array_equal(ba["image"], bb["image"])
        np.testing.assert_array_equal(ba["image"], np.stack([digits[int(i)]["image"] for i in expected[k]]))
        assert not np.array_equal(ba["index"], bc["index"])
    for it in (a, b, c):
        it.close()


@settings(max_examples=15, deadline=None)
@given(n=st.integers(3, 50), batch=st.integers(1, 12), stop=st.integers(0, 12), prefetch=st.integers(0, 4))
def test_resume_mid_epoch_gives_the_following_batches(n, batch, stop, prefetch):
    source = _source(n)
    ref = data.TrainIterator(source, global_batch_size=batch, seed=1, prefetch=prefetch)
    reference = [next(ref)["y"] for _ in range(stop + 5)]
    ref.close()
    it = data.TrainIterator(source, global_batch_size=batch, seed=1, prefetch=prefetch)
    for _ in range(stop):
        next(it)
    state = json.loads(json.dumps(it.get_state()))  # survives a JSON checkpoint
    assert state["step"] == stop  # consumed, not prefetched
    it.close()
    resumed = data.TrainIterator(source, global_batch_size=batch, seed=1, prefetch=prefetch)
    next(resumed)  # some progress that set_state must discard
    resumed.set_state(state)
    for k in range(5):
        np.testing.assert_array_equal(next(resumed)["y"], reference[stop + k])
    resumed.close()


def test_resume_with_prefetch_and_preprocess_on_digits(digits):
    pre = data.image_preprocess(max_value=16.0, noise_std=0.3, seed=4)
    it = data.TrainIterator(digits, global_batch_size=64, seed=3, preprocess=pre, prefetch=4)
    first = [next(it) for _ in range(13)]  # 13 * 64 = 832 < 1438: mid-epoch
    state = it.get_state()
    following = [next(it) for _ in range(4)]
    it.set_state(state)
    for want in following:
        got = next(it)
        np.testing.assert_array_equal(got["image"], want["image"])
        np.testing.assert_array_equal(got["label"], want["label"])
    assert first[0]["image"].dtype == np.float32
    it.close()


@pytest.mark.parametrize("process_count", [1, 2, 4])
def test_processes_disjoint_cover_and_concatenate_to_global(process_count):
    n, batch = 48, 8  # 6 steps = one epoch
    source = _source(n)
    single = data.TrainIterator(source, global_batch_size=batch, seed=9)
    procs = [data.TrainIterator(source, global_batch_size=batch, seed=9, process_index=p,
                                process_count=process_count) for p in range(process_count)]
    seen = [[] for _ in procs]
    for _ in range(n // batch):
        global_batch = next(single)
        local = [next(it) for it in procs]
        assert all(b["y"].shape == (batch // process_count,) for b in local)
        for key in ("x", "y", "index"):
            np.testing.assert_array_equal(np.concatenate([b[key] for b in local]), global_batch[key])
        for p, b in enumerate(local):
            seen[p].extend(b["y"].tolist())
    sets = [set(s) for s in seen]
    assert sum(len(s) for s in sets) == n and set().union(*sets) == set(range(n))
    # state is process-independent: a single-process state resumes every process
    state = single.get_state()
    for it in procs:
        it.set_state(state)
    np.testing.assert_array_equal(np.concatenate([next(it)["y"] for it in procs]), next(single)["y"])
    for it in [single, *procs]:
        it.close()


def test_gaussian_noise_is_process_count_independent(digits):
    pre = data.image_preprocess(max_value=16.0, noise_std=0.5, seed=2)
    single = data.TrainIterator(digits, global_batch_size=32, seed=0, preprocess=pre)
    pair = [data.TrainIterator(digits, global_batch_size=32, seed=0, preprocess=pre, process_index=p,
                               process_count=2) for p in range(2)]
    for _ in range(3):
        np.testing.assert_array_equal(np.concatenate([next(it)["image"] for it in pair]), next(single)["image"])


@settings(max_examples=20, deadline=None)
@given(n=st.integers(0, 45), per_process=st.integers(1, 8), process_count=st.sampled_from([1, 2, 4]))
def test_eval_covers_each_example_once_with_mask(n, per_process, process_count):
    batch = per_process * process_count
    source = _source(n)
    counts = np.zeros(n, dtype=int)
    num_batches = []
    for p in range(process_count):
        batches = list(data.eval_batches(source, global_batch_size=batch, process_index=p,
                                         process_count=process_count))
        num_batches.append(len(batches))
        for b in batches:
            assert b["mask"].dtype == np.float32 and b["y"].shape == (per_process,)
            real = b["mask"] == 1
            np.add.at(counts, b["y"][real], 1)
            assert set(np.unique(b["mask"])) <= {0.0, 1.0}
    assert np.all(counts == 1)
    assert len(set(num_batches)) == 1 and num_batches[0] == -(-n // batch)


def test_batch_size_must_divide_process_count():
    with pytest.raises(ValueError, match="not divisible by process_count=3"):
        data.TrainIterator(_source(10), global_batch_size=8, process_index=0, process_count=3)
    with pytest.raises(ValueError, match="not divisible"):
        next(data.eval_batches(_source(10), global_batch_size=8, process_count=3))


def test_set_state_rejects_mismatched_state():
    it = data.TrainIterator(_source(10), global_batch_size=2, seed=0)
    with pytest.raises(ValueError, match="seed=1"):
        it.set_state({"step": 3, "seed": 1, "global_batch_size": 2, "num_examples": 10})
    it.close()
