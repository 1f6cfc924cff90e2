"""Interaction matrices from the factors, against explicit tensors built with numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

from bilinear_jax.analysis import (
    BilinearFactors,
    class_directions,
    class_interactions,
    classifier_factors,
    dictionary_directions,
    embedding_matrix,
    factors_of,
    fold_out_bias,
    interaction_matrices,
    interaction_matvec,
    iter_interaction_matrices,
    output_interactions,
    residual_directions,
    to_input_space,
    unembedding_directions,
)
from bilinear_jax.analysis.algebra import augment_input
from bilinear_jax.layers import Bilinear, TensorBilinear
from bilinear_jax.models import BilinearClassifier, ToyModel, Transformer
from tests.helpers import explicit_tensor, fast_model, relative_error


def _sym(b):
    return 0.5 * (b + np.swapaxes(b, -1, -2))


def _reference_q(layer, u):
    """``Σ_o u_o sym(B_o)`` from a numpy tensor built by loops over hidden units."""
    w, v, p, b = (None if a is None else np.asarray(a, np.float64) for a in layer.factors())
    tensor = explicit_tensor(w, v, p, b)
    return np.einsum("ko,oij->kij", np.asarray(u, np.float64), _sym(tensor))


@pytest.mark.parametrize("bias,d_out", [(False, 5), (True, 5), (False, None), (True, None)])
def test_interaction_matrices_match_the_explicit_tensor_float64(bias, d_out):
    with jax.enable_x64(True):
        layer = fast_model(Bilinear, 6, 7, d_out, bias=bias, param_dtype=jnp.float64, seed=0)
        u = jax.random.normal(jax.random.key(1), (4, layer.d_out), jnp.float64)
        q = interaction_matrices(factors_of(layer), u)
        assert q.dtype == jnp.float64
        assert relative_error(q, _reference_q(layer, u)) <= 1e-12
        assert relative_error(output_interactions(layer, u[0]), _reference_q(layer, u[:1])[0]) <= 1e-12
        # Q_u reproduces uᵀy exactly.
        x = jax.random.normal(jax.random.key(2), (3, 6), jnp.float64)
        xt = augment_input(x) if bias else x
        assert relative_error(jnp.einsum("bi,kij,bj->bk", xt, q, xt), layer(x) @ u.T) <= 1e-12


def test_interaction_matrices_float32_chunked_sharded_and_jitted_agree():
    layer = fast_model(Bilinear, 8, 12, 6, bias=True, seed=3)
    factors = factors_of(layer)
    u = jax.random.normal(jax.random.key(4), (11, 6))
    reference = _reference_q(layer, u)
    full = interaction_matrices(factors, u)
    assert full.dtype == jnp.float32
    assert relative_error(full, reference) <= 1e-5
    chunked = interaction_matrices(factors, u, chunk_size=3)
    np.testing.assert_allclose(chunked, full, rtol=1e-5, atol=1e-6)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    sharded = interaction_matrices(factors, u, chunk_size=5, mesh=mesh)
    np.testing.assert_allclose(sharded, full, rtol=1e-5, atol=1e-6)
    jitted = jax.jit(lambda f, u: interaction_matrices(f, u, chunk_size=4))(factors, u)
    np.testing.assert_allclose(jitted, full, rtol=1e-5, atol=1e-6)
    rows = [r for r, _ in iter_interaction_matrices(factors, u, chunk_size=4)]
    assert [(r.start, r.stop) for r in rows] == [(0, 4), (4, 8), (8, 11)]


def test_tensor_bilinear_and_toy_model_factors_are_exact():
    with jax.enable_x64(True):
        layer = fast_model(TensorBilinear, 5, 3, param_dtype=jnp.float64, seed=0)
        u = jax.random.normal(jax.random.key(1), (2, 3), jnp.float64)
        reference = np.einsum("ko,oij->kij", u, _sym(np.asarray(layer.tensor())))
        assert relative_error(interaction_matrices(factors_of(layer), u), reference) <= 1e-12
        toy = fast_model(ToyModel, 4, 3, d_hidden=6, bias=True, param_dtype=jnp.float64, seed=2)
        assert relative_error(interaction_matrices(factors_of(toy), u), _reference_q(toy.layer, u)) <= 1e-12
        folded = fold_out_bias(factors_of(toy))
        assert folded.out_bias is None
        assert relative_error(interaction_matrices(folded, u), _reference_q(toy.layer, u)) <= 1e-12
    with pytest.raises(TypeError, match="Cannot read bilinear factors"):
        factors_of(object())


def test_interaction_matvec_never_forms_q_but_matches_it():
    with jax.enable_x64(True):
        layer = fast_model(Bilinear, 9, 10, 4, bias=True, param_dtype=jnp.float64, seed=5)
        factors = factors_of(layer)
        u = jax.random.normal(jax.random.key(6), (4,), jnp.float64)
        q = _reference_q(layer, u[None])[0]
        x = jax.random.normal(jax.random.key(7), (10, 3), jnp.float64)
        assert relative_error(interaction_matvec(factors, u, x), q @ np.asarray(x)) <= 1e-12
        assert relative_error(jax.jit(interaction_matvec)(factors, u, x[:, 0]), q @ np.asarray(x[:, 0])) <= 1e-12


def test_directions():
    model = fast_model(BilinearClassifier, 20, 4, d_model=6, d_hidden=5, seed=0)
    np.testing.assert_array_equal(class_directions(model, [2, 0]), np.asarray(model.head.kernel[...]).T[[2, 0]])
    np.testing.assert_array_equal(residual_directions(3), np.eye(3))
    np.testing.assert_array_equal(residual_directions(4, [1]), np.eye(4)[[1]])
    dictionary = jax.random.normal(jax.random.key(0), (7, 6))
    rows = dictionary_directions(dictionary, [3, 5], normalize=True)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=-1), 1, rtol=1e-6)
    lm = fast_model(Transformer, 11, 8, d_model=8, n_heads=2, n_layers=1, d_hidden=6, seed=1)
    lm.final_norm.scale[...] = jnp.arange(1, 9, dtype=jnp.float32)
    directions = unembedding_directions(lm, [3, 4])
    np.testing.assert_allclose(directions, np.asarray(lm.W_U).T[[3, 4]] * np.arange(1, 9), rtol=1e-6)
    # Unembedding directions read the last MLP's output as its contribution to the logits.
    mlp = lm.block(0).mlp
    x = jax.random.normal(jax.random.key(2), (8,))
    q = output_interactions(mlp, directions)
    np.testing.assert_allclose(jnp.einsum("i,kij,j->k", x, q, x), directions @ mlp(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bias,residual", [(False, False), (True, False), (False, True), (True, True)])
def test_class_interactions_reproduce_the_logits_exactly(bias, residual):
    with jax.enable_x64(True):
        model = fast_model(BilinearClassifier, 12, 5, d_model=6, d_hidden=7, bias=bias, residual=residual,
                                   param_dtype=jnp.float64, seed=0)
        x = jax.random.normal(jax.random.key(1), (4, 12), jnp.float64)
        q = class_interactions(model)
        e = model.embed(x)
        et = augment_input(e) if (bias or residual) else e
        assert relative_error(jnp.einsum("bi,kij,bj->bk", et, q, et), model(x)) <= 1e-12
        # In pixel space: x̃ᵀ (Ẽ Q Ẽᵀ) x̃.
        pixels = class_interactions(model, [1, 3], input_space=True)
        xt = augment_input(x) if (bias or residual) else x
        assert relative_error(jnp.einsum("bi,kij,bj->bk", xt, pixels, xt), model(x)[:, jnp.array([1, 3])]) <= 1e-12
        np.testing.assert_allclose(to_input_space(q[jnp.array([1, 3])], embedding_matrix(model)), pixels, rtol=1e-12)
        # The brief's formula, without biases: Q_c = sym(Wᵀ diag(Pᵀ head[:, c]) V).
        block = model.blocks[0]
        s = np.asarray(block.P).T @ np.asarray(model.head.kernel[...])[:, 2]
        reference = _sym(np.asarray(block.W).T @ np.diag(s) @ np.asarray(block.V))
        d = model.d_model
        assert relative_error(q[2, :d, :d], reference) <= 1e-12


def test_classifier_factors_refuse_deep_or_non_bilinear_models():
    with pytest.raises(ValueError, match="one-block"):
        classifier_factors(fast_model(BilinearClassifier, 4, 2, d_model=3, d_hidden=3, n_layers=2, seed=0))
    with pytest.raises(ValueError, match="not bilinear"):
        classifier_factors(fast_model(BilinearClassifier, 4, 2, d_model=3, d_hidden=3, kind="relu", seed=0))


def test_wrong_direction_width_is_refused():
    factors = BilinearFactors(jnp.ones((3, 4)), jnp.ones((3, 4)), jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="d_out=2"):
        interaction_matrices(factors, jnp.ones((1, 5)))
