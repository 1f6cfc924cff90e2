"""HOSVD, CP and feature interactions from the factors, against explicit numpy tensors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bilinear_jax.analysis import (
    cp_decomposition,
    factors_of,
    feature_interactions,
    hosvd,
    output_gram,
    top_pairs,
)
from bilinear_jax.layers import Bilinear
from tests.helpers import explicit_tensor, fast_model, relative_error


def _sym(b):
    return 0.5 * (b + np.swapaxes(b, -1, -2))


def _tensor(layer):
    return explicit_tensor(*(None if a is None else np.asarray(a, np.float64) for a in layer.factors()))


def _layer(d, h, o, bias, seed=0):
    layer = fast_model(Bilinear, d, h, o, bias=bias, param_dtype=jnp.float64, seed=seed)
    return layer


@pytest.mark.parametrize("bias", [False, True])
def test_hosvd_matches_the_svd_of_the_explicit_tensor(bias):
    with jax.enable_x64(True):
        layer = _layer(5, 8, 6, bias)
        b = _sym(_tensor(layer))
        d_out, d = b.shape[0], b.shape[1]
        u, s, vt = np.linalg.svd(b.reshape(d_out, -1), full_matrices=False)
        assert relative_error(output_gram(factors_of(layer)), b.reshape(d_out, -1) @ b.reshape(d_out, -1).T) <= 1e-12
        for method in ("gram", "explicit"):
            result = hosvd(factors_of(layer), method=method)
            np.testing.assert_allclose(result.singular_values, s, rtol=1e-8, atol=1e-10)
            assert relative_error(result.tensor(), b) <= 1e-9
            # Each singular interaction matrix equals ±(the SVD's right vector), symmetric, unit norm.
            m = np.asarray(result.interaction_matrices).reshape(len(s), -1)
            np.testing.assert_allclose(np.abs(np.sum(m * vt, axis=1)), 1, atol=1e-8)
            np.testing.assert_allclose(result.interaction_matrices, np.swapaxes(result.interaction_matrices, 1, 2))
        top = hosvd(factors_of(layer), 2, chunk_size=1)
        assert top.interaction_matrices.shape == (2, d, d)
        np.testing.assert_allclose(top.singular_values, s[:2], rtol=1e-10)
        with pytest.raises(ValueError, match="rank"):
            hosvd(factors_of(layer), 1000)


def test_hosvd_float32_under_jit():
    layer = fast_model(Bilinear, 6, 10, 4, seed=1)
    b = _sym(_tensor(layer))
    s = np.linalg.svd(b.reshape(4, -1), compute_uv=False)
    result = jax.jit(lambda f: hosvd(f, 3))(factors_of(layer))
    assert result.singular_values.dtype == jnp.float32
    np.testing.assert_allclose(result.singular_values, s[:3], rtol=1e-4)


def test_cp_decomposition_error_matches_the_explicit_tensor():
    with jax.enable_x64(True):
        layer = _layer(5, 3, 4, bias=False, seed=2)  # exactly CP rank ≤ 3
        b = _tensor(layer)
        cp = cp_decomposition(factors_of(layer), 3, num_iters=500)
        explicit_error = np.linalg.norm(np.asarray(cp.tensor()) - b) / np.linalg.norm(b)
        np.testing.assert_allclose(cp.relative_error, explicit_error, rtol=1e-6, atol=1e-9)
        assert explicit_error < 1e-4
        np.testing.assert_allclose(np.linalg.norm(cp.left, axis=0), 1, rtol=1e-10)
        # A lower rank, with biases: the reported error is still the true one.
        biased = _layer(4, 6, 3, bias=True, seed=3)
        cp = cp_decomposition(factors_of(biased), 2, num_iters=100)
        b = _tensor(biased)
        explicit_error = np.linalg.norm(np.asarray(cp.tensor()) - b) / np.linalg.norm(b)
        np.testing.assert_allclose(cp.relative_error, explicit_error, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("bias", [False, True])
def test_feature_interactions_match_the_explicit_tensor(bias):
    with jax.enable_x64(True):
        layer = _layer(6, 9, 5, bias, seed=4)
        b = _tensor(layer)
        features = jax.random.normal(jax.random.key(0), (6, 4), jnp.float64)
        u = jax.random.normal(jax.random.key(1), (3, 5), jnp.float64)
        result = feature_interactions(factors_of(layer), features, u, top=3, chunk_size=2)
        f = np.asarray(features)
        if bias:
            f = np.concatenate([f, np.zeros((1, 4))])
        reference = np.einsum("ko,oij,ia,jb->kab", np.asarray(u), b, f, f)
        assert relative_error(result.tensor, reference) <= 1e-12
        # Brute-force ranking of the pairs i ≤ j.
        for k in range(3):
            scores = {(i, j): reference[k, i, j] + (reference[k, j, i] if i != j else 0)
                      for i in range(4) for j in range(i, 4)}
            best = sorted(scores, key=lambda p: -abs(scores[p]))[:3]
            assert [tuple(p) for p in np.asarray(result.pairs[k])] == best
            np.testing.assert_allclose(result.pair_values[k], [scores[p] for p in best], rtol=1e-12)
        if bias:  # the constant as a feature: its self-interaction is uᵀ(b_p + Σ P W̃_·d Ṽ_·d)
            with_const = feature_interactions(factors_of(layer), features, u, include_constant=True)
            e = np.zeros((7, 1))
            e[-1] = 1
            fc = np.concatenate([f, e], axis=1)
            reference = np.einsum("ko,oij,ia,jb->kab", np.asarray(u), b, fc, fc)
            assert relative_error(with_const.tensor, reference) <= 1e-12
        jitted = jax.jit(lambda fa, fe, u: feature_interactions(fa, fe, u, top=2))(factors_of(layer), features, u)
        assert relative_error(jitted.tensor, result.tensor) <= 1e-12


def test_top_pairs_on_a_hand_made_tensor():
    tensor = jnp.array([[[1.0, 0.5, 0.0], [-3.0, 0.1, 0.0], [0.0, 2.0, 0.0]]])
    pairs, values = top_pairs(tensor, 3)
    np.testing.assert_array_equal(pairs[0], [[0, 1], [1, 2], [0, 0]])
    np.testing.assert_allclose(values[0], [-2.5, 2.0, 1.0])
