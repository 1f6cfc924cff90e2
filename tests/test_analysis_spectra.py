"""Spectra of interaction matrices against ``np.linalg.eigh`` in float64, dense and iterative."""

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

from bilinear_jax.analysis import (
    BilinearFactors,
    Spectrum,
    contributions,
    eigh,
    embedding_matrix,
    explained_fraction,
    factors_of,
    interaction_matrices,
    interaction_spectra,
    project_to_input,
    top_eigenpairs,
    top_eigenpairs_iterative,
)
from bilinear_jax.layers import Bilinear
from bilinear_jax.models import BilinearClassifier
from tests.helpers import fast_model, relative_error


def _numpy_spectrum(q):
    values, vectors = np.linalg.eigh(np.asarray(q, np.float64))
    order = np.argsort(-np.abs(values), axis=-1, kind="stable")
    return np.take_along_axis(values, order, -1), np.take_along_axis(vectors, order[..., None, :], -1)


def _projector(vectors):
    """``V Vᵀ``: the spanned subspace, free of eigenvector signs."""
    return np.einsum("...in,...jn->...ij", vectors, vectors)


def _layer(d=10, h=12, o=4, bias=True, dtype=jnp.float64, seed=0):
    layer = fast_model(Bilinear, d, h, o, bias=bias, param_dtype=dtype, seed=seed)
    return layer


def test_eigh_matches_numpy_and_reconstructs_q():
    with jax.enable_x64(True):
        layer = _layer()
        u = jax.random.normal(jax.random.key(1), (3, 4), jnp.float64)
        q = interaction_matrices(factors_of(layer), u)
        spectrum = jax.jit(eigh)(q)
        values, vectors = _numpy_spectrum(q)
        assert relative_error(spectrum.values, values) <= 1e-12
        assert np.all(np.diff(np.abs(np.asarray(spectrum.values)), axis=-1) <= 1e-12)
        assert relative_error(spectrum.matrix(), q) <= 1e-12
        # Eigenvectors agree up to sign.
        np.testing.assert_allclose(np.abs(np.einsum("kdn,kdn->kn", spectrum.vectors, vectors)), 1, atol=1e-9)


def test_top_eigenpairs_and_streamed_spectra():
    with jax.enable_x64(True):
        layer = _layer(d=12, h=15, o=5)
        u = jax.random.normal(jax.random.key(2), (5, 5), jnp.float64)
        q = np.asarray(interaction_matrices(factors_of(layer), u))
        values, vectors = np.linalg.eigh(q)
        top = top_eigenpairs(jnp.asarray(q), 3)
        np.testing.assert_allclose(top.positive_values, values[:, ::-1][:, :3], rtol=1e-10)
        np.testing.assert_allclose(top.negative_values, values[:, :3], rtol=1e-10)
        np.testing.assert_allclose(_projector(top.positive_vectors), _projector(vectors[:, :, ::-1][:, :, :3]),
                                   atol=1e-9)
        streamed = interaction_spectra(factors_of(layer), u, 3, chunk_size=2)
        for a, b in zip(streamed, top):
            np.testing.assert_allclose(np.abs(a), np.abs(b), atol=1e-9)
        full = interaction_spectra(factors_of(layer), u, chunk_size=2)
        assert isinstance(full, Spectrum)
        np.testing.assert_allclose(full.values, _numpy_spectrum(q)[0], rtol=1e-10)
        merged = top.as_spectrum()
        assert merged.values.shape == (5, 6)
        assert np.all(np.diff(np.abs(np.asarray(merged.values)), axis=-1) <= 1e-12)
    with pytest.raises(ValueError, match="k must be"):
        top_eigenpairs(jnp.eye(3), 4)


def test_iterative_top_k_matches_dense_float64_under_jit():
    with jax.enable_x64(True):
        layer = _layer(d=48, h=64, o=6, bias=True, seed=3)
        factors = factors_of(layer)
        u = jax.random.normal(jax.random.key(4), (2, 6), jnp.float64)
        values, vectors = np.linalg.eigh(np.asarray(interaction_matrices(factors, u), np.float64))
        scale = np.max(np.abs(values))
        one = jax.jit(lambda f, u: top_eigenpairs_iterative(f, u, 3, max_iters=300))(factors, u[0])
        assert one.positive_values.dtype == jnp.float64
        np.testing.assert_allclose(one.positive_values, values[0, ::-1][:3], atol=1e-8 * scale)
        np.testing.assert_allclose(one.negative_values, values[0, :3], atol=1e-8 * scale)
        np.testing.assert_allclose(_projector(one.negative_vectors), _projector(vectors[0, :, :3]), atol=1e-6)
        # Too small for LOBPCG (5k ≥ d): falls back to the dense solver.
        small = top_eigenpairs_iterative(factors, u, 10)
        np.testing.assert_allclose(small.negative_values, values[:, :10], atol=1e-10 * scale)


def test_contributions_sum_to_the_output_and_explained_fraction():
    with jax.enable_x64(True):
        layer = _layer(d=7, h=9, o=3)
        u = jnp.eye(3, dtype=jnp.float64)
        spectrum = eigh(interaction_matrices(factors_of(layer), u))
        x = jax.random.normal(jax.random.key(5), (4, 7), jnp.float64)
        terms = jax.jit(contributions)(spectrum, x)  # x is augmented automatically
        assert terms.shape == (4, 3, 8)
        assert relative_error(terms.sum(-1), layer(x)) <= 1e-12
        values, vectors = _numpy_spectrum(np.asarray(interaction_matrices(factors_of(layer), u)))
        xt = np.concatenate([np.asarray(x), np.ones((4, 1))], axis=1)
        reference = values[None] * np.einsum("bd,kdn->bkn", xt, vectors) ** 2
        assert relative_error(terms, reference) <= 1e-12
        one = contributions(Spectrum(spectrum.values[0], spectrum.vectors[0]), x[0])
        assert relative_error(one, reference[0, 0]) <= 1e-12
        fraction = explained_fraction(spectrum.values)
        reference = np.cumsum(values**2, -1) / np.sum(values**2, -1, keepdims=True)
        assert relative_error(fraction, reference) <= 1e-12
        np.testing.assert_allclose(fraction[:, -1], 1.0)


def test_project_to_input_through_the_embedding():
    with jax.enable_x64(True):
        model = fast_model(BilinearClassifier, 20, 3, d_model=6, d_hidden=5, bias=True, param_dtype=jnp.float64, seed=0)
        from bilinear_jax.analysis import class_interactions

        spectrum = eigh(class_interactions(model))
        patterns = project_to_input(spectrum.vectors, embedding_matrix(model))
        assert patterns.shape == (3, 21, 7)
        x = jax.random.normal(jax.random.key(1), (20,), jnp.float64)
        e = np.append(np.asarray(model.embed(x)), 1.0)
        xt = np.append(np.asarray(x), 1.0)
        # vᵀẽ = (Ẽ v)ᵀ x̃.
        np.testing.assert_allclose(np.einsum("a,kan->kn", xt, patterns),
                                   np.einsum("d,kdn->kn", e, spectrum.vectors), rtol=1e-10, atol=1e-12)


def _random_factors(d, h, o, key):
    kw, kv, kp = jax.random.split(key, 3)
    return BilinearFactors(jax.random.normal(kw, (h, d)) / np.sqrt(d), jax.random.normal(kv, (h, d)) / np.sqrt(d),
                           jax.random.normal(kp, (o, h)) / np.sqrt(h), None)


def test_iterative_top_k_float32_chunked_and_sharded():
    """The d_model=2048 benchmark's recipe at a size that runs in the default suite."""
    factors = _random_factors(128, 512, 32, jax.random.key(0))
    factors = BilinearFactors(*factors[:3], jax.random.normal(jax.random.key(2), (32,)))  # an output bias
    u = jax.random.normal(jax.random.key(1), (3, 32))
    mesh = Mesh(np.array(jax.devices()[:2]), ("data",))
    top = top_eigenpairs_iterative(factors, u, 4, max_iters=300, chunk_size=2, mesh=mesh)
    assert top.positive_vectors.shape == (3, 128, 4) and top.positive_values.dtype == jnp.float32
    values, vectors = np.linalg.eigh(np.asarray(interaction_matrices(factors, u), np.float64))
    np.testing.assert_allclose(top.positive_values, values[:, ::-1][:, :4], rtol=2e-3)
    np.testing.assert_allclose(top.negative_values, values[:, :4], rtol=2e-3)
    np.testing.assert_allclose(_projector(top.positive_vectors[:, :, :1]), _projector(vectors[:, :, -1:]), atol=2e-2)


@pytest.mark.slow
def test_iterative_top_k_at_d2048_h8192():
    """d_model=2048, d_hidden=8192 in float32: top-8 of a few directions by LOBPCG within memory."""
    factors = _random_factors(2048, 8192, 2048, jax.random.key(0))
    u = jax.random.normal(jax.random.key(1), (2, 2048))
    start = time.perf_counter()
    top = top_eigenpairs_iterative(factors, u, 8, max_iters=300)
    jax.block_until_ready(top)
    seconds = time.perf_counter() - start
    # Check against the dense solve of one direction (one 2048×2048 Q: 16 MiB).
    values = np.linalg.eigvalsh(np.asarray(interaction_matrices(factors, u[0]), np.float64))
    np.testing.assert_allclose(top.positive_values[0], values[::-1][:8], rtol=1e-2)
    np.testing.assert_allclose(top.negative_values[0], values[:8], rtol=1e-2)
    assert seconds < 300, seconds


@pytest.mark.parametrize("k", [2, 3, 5])
def test_merged_top_eigenpairs_count_each_pair_once(k):
    """With 2k > d the k largest and k smallest overlap; merged, k = d must give back Q exactly."""
    with jax.enable_x64(True):
        q = jax.random.normal(jax.random.key(0), (2, 5, 5), jnp.float64)
        q = q + jnp.swapaxes(q, -1, -2)
        spectrum = top_eigenpairs(q, k).as_spectrum()
        assert spectrum.values.shape[-1] == min(2 * k, 5)
        np.testing.assert_allclose(np.sort(spectrum.values, -1), np.sort(np.linalg.eigvalsh(q)[..., np.r_[:min(k, 5 - k), 5 - k:5]], -1), atol=1e-12)
        if k == 5:
            assert relative_error(spectrum.matrix(), q) <= 1e-12


def test_iterative_top_k_stays_finite_for_zero_and_rank_deficient_directions():
    """LOBPCG breaks down (NaN) when rank(Q_u) < k; those directions are solved densely instead."""
    with jax.enable_x64(True):
        layer = fast_model(Bilinear, 40, 5, 4, param_dtype=jnp.float64)
        factors = factors_of(layer)
        u = jax.random.normal(jax.random.key(1), (3, 4), jnp.float64).at[1].set(0.0)  # Q = 0 for row 1
        top = top_eigenpairs_iterative(factors, u, 3, max_iters=300)
        assert all(np.all(np.isfinite(np.asarray(a))) for a in top)
        values = np.linalg.eigvalsh(np.asarray(interaction_matrices(factors, u)))
        np.testing.assert_allclose(top.positive_values, values[:, ::-1][:, :3], atol=1e-6)
        np.testing.assert_allclose(top.negative_values, values[:, :3], atol=1e-6)
        rank_one = factors_of(fast_model(Bilinear, 40, 1, 4, param_dtype=jnp.float64))  # rank(Q) ≤ 2 < k
        top = top_eigenpairs_iterative(rank_one, u, 3)
        assert all(np.all(np.isfinite(np.asarray(a))) for a in top)
