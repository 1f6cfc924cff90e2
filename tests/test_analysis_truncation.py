"""Truncation curves, loading a trained run, and the memory guard."""

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bilinear_jax.analysis import (
    BilinearFactors,
    Spectrum,
    check_fits,
    class_interactions,
    classifier_truncation_curve,
    eigh,
    hosvd,
    interaction_matrices,
    load,
    load_split_arrays,
    run_truncation_curve,
    top_eigenpairs,
    truncate,
    truncated_outputs,
    truncation_curve,
)
from bilinear_jax.analysis.algebra import augment_input
from bilinear_jax.models import BilinearClassifier
from tests.helpers import fast_model, relative_error
from tests.training_helpers import small_digits_config


def test_truncated_outputs_against_brute_force():
    with jax.enable_x64(True):
        model = fast_model(BilinearClassifier, 10, 4, d_model=5, d_hidden=6, bias=True, param_dtype=jnp.float64, seed=0)
        q = np.asarray(class_interactions(model))
        spectrum = eigh(jnp.asarray(q))
        x = jax.random.normal(jax.random.key(1), (7, 10), jnp.float64)
        e = np.asarray(augment_input(model.embed(x)))
        outputs = truncated_outputs(spectrum, model.embed(x), [0, 1, 3, 6])
        for index, k in enumerate([0, 1, 3, 6]):
            values, vectors = np.linalg.eigh(q)
            reference = np.zeros((7, 4))
            for c in range(4):
                order = np.argsort(-np.abs(values[c]))[:k]
                q_k = (vectors[c][:, order] * values[c][order]) @ vectors[c][:, order].T
                reference[:, c] = np.einsum("bi,ij,bj->b", e, q_k, e)
            np.testing.assert_allclose(outputs[index], reference, atol=1e-10)
            np.testing.assert_allclose(truncate(spectrum, k).matrix(), [
                (vectors[c][:, np.argsort(-np.abs(values[c]))[:k]] * values[c][np.argsort(-np.abs(values[c]))[:k]])
                @ vectors[c][:, np.argsort(-np.abs(values[c]))[:k]].T for c in range(4)], atol=1e-10)
        assert relative_error(outputs[-1], model(x)) <= 1e-12  # full rank: the model itself


def test_classifier_truncation_curve_at_full_rank_is_the_model():
    with jax.enable_x64(True):
        model = fast_model(BilinearClassifier, 16, 3, d_model=6, d_hidden=8, residual=True, param_dtype=jnp.float64, seed=2)
        x = np.asarray(jax.random.normal(jax.random.key(3), (50, 16), jnp.float64))
        labels = np.array(jnp.argmax(model(x), -1))
        labels[:10] = (labels[:10] + 1) % 3
        curve = classifier_truncation_curve(model, x, labels, batch_size=16)
        np.testing.assert_array_equal(curve.ks, np.arange(1, 8))
        assert curve.accuracy[-1] == curve.model_accuracy == 0.8
        logits = np.asarray(model(x))
        loss = float(np.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels)))
        np.testing.assert_allclose([curve.loss[-1], curve.model_loss], loss, rtol=1e-10)
        # A truncated spectrum from the top-k eigenpairs gives the same curve for k ≤ its size.
        top = top_eigenpairs(class_interactions(model), 2)
        partial = truncation_curve(top, x @ np.asarray(model.embed.kernel[...]), labels, [1, 2])
        exact = truncation_curve(eigh(class_interactions(model)), x @ np.asarray(model.embed.kernel[...]), labels,
                                 [1, 2])
        if np.all(np.abs(np.asarray(top.as_spectrum().values)) > 0):
            np.testing.assert_allclose(partial.loss, exact.loss, rtol=1e-8)
    with pytest.raises(ValueError, match="ks must lie"):
        truncation_curve(Spectrum(jnp.ones((2, 3)), jnp.ones((2, 3, 3))), jnp.ones((4, 3)), jnp.zeros(4, int), [4])


def test_trained_digits_run_loads_and_its_full_rank_truncation_is_its_accuracy(tmp_path):
    from bilinear_jax.training.trainer import train

    config = small_digits_config(num_steps=150, eval_every=150, log_every=150, checkpoint_every=150,
                                 **{"model.d_model": 32, "model.d_hidden": 32})
    metrics = train(config, str(tmp_path))
    run = load(tmp_path)
    assert run.step == 150
    assert isinstance(run.model, BilinearClassifier)
    assert run.config.model.d_model == 32
    assert set(jax.tree.leaves(jax.tree.map(lambda a: a.shape, run.params)))
    inputs, labels = load_split_arrays(run, "test")
    assert len(inputs) == len(labels) == run.info.num_examples["test"]
    curve = run_truncation_curve(run)  # k = 1 .. full rank
    assert curve.model_accuracy == pytest.approx(metrics["eval/accuracy"], abs=1e-6)
    assert curve.model_accuracy > 0.8
    # Full rank (d_model, plus the constant with biases) equals the model exactly.
    assert curve.ks[-1] == 32 + int(bool(config.model.get("bias", False)))
    assert curve.accuracy[-1] == pytest.approx(curve.model_accuracy, abs=1e-6)
    assert curve.loss[-1] == pytest.approx(curve.model_loss, rel=1e-4)
    assert curve.accuracy[0] < curve.accuracy[-1]
    # From the workdir in one call, on a few examples.
    small = run_truncation_curve(str(tmp_path), ks=[int(curve.ks[-1])], max_examples=40, compare_with_model=False)
    assert small.model_accuracy is None and small.accuracy.shape == (1,)


def test_check_fits_refuses_absurd_sizes_instantly():
    d, h = 2048, 8192
    start = time.perf_counter()
    with pytest.raises(MemoryError, match=r"32\.00 GiB.*smaller chunk_size"):
        check_fits(4 * d**3, "the full tensor B (2048, 2048, 2048) float32")
    check_fits(1024, "a small array")
    # Abstract factors: no weights exist, so any allocation attempt would fail loudly.
    factors = BilinearFactors(jax.ShapeDtypeStruct((h, d), jnp.float32), jax.ShapeDtypeStruct((h, d), jnp.float32),
                              jax.ShapeDtypeStruct((d, h), jnp.float32), None)
    with pytest.raises(MemoryError, match=r"the full tensor B \(2048, 2048, 2048\).*method='gram'"):
        hosvd(factors, method="explicit")
    # d float32 (d, d) matrices, counted twice (the chunks and their concatenation): 64 GiB.
    with pytest.raises(MemoryError, match=rf"2048 interaction matrices.*{2 * 4 * d**3 / 2**30:.2f} GiB"):
        interaction_matrices(factors, jax.ShapeDtypeStruct((d, d), jnp.float32))
    with pytest.raises(MemoryError, match="GiB"):
        jax.eval_shape(lambda f, u: interaction_matrices(f, u), factors, jax.ShapeDtypeStruct((4096, d), jnp.float32))
    assert time.perf_counter() - start < 5
