"""Exact recovery of B by ``jax.hessian``, against explicit tensors, and refusal of non-quadratics."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from bilinear_jax.analysis import fold_quadratic, hessian_tensor, quadratic_form, symmetrize
from bilinear_jax.layers import MLP, Bilinear, TensorBilinear
from tests.helpers import randomize_biases, relative_error

dims = st.integers(min_value=1, max_value=6)


@settings(max_examples=12, deadline=None)
@given(dims, dims, st.one_of(st.none(), dims), st.booleans(), st.sampled_from(["hessian", "jacfwd_jacrev"]),
       st.integers(0, 2**16))
def test_quadratic_form_recovers_the_explicit_tensor_float64(d_in, d_hidden, d_out, bias, method, seed):
    with jax.enable_x64(True):
        layer = Bilinear(d_in, d_hidden, d_out, bias=bias, param_dtype=jnp.float64, rngs=nnx.Rngs(seed))
        randomize_biases(layer, seed)
        form = quadratic_form(layer, d_in, method=method)
        explicit = symmetrize(layer.tensor())
        if bias:
            # Over x̃ = [x; 1]: the quadratic block, twice the off-diagonal column, the corner.
            assert relative_error(fold_quadratic(*form), explicit) <= 1e-10
            assert relative_error(form.linear, 2 * explicit[:, :d_in, d_in]) <= 1e-10
            assert relative_error(form.constant, explicit[:, d_in, d_in]) <= 1e-10
        else:
            assert relative_error(form.quadratic, explicit) <= 1e-10
            np.testing.assert_array_equal(form.linear, 0.0)
            np.testing.assert_array_equal(form.constant, 0.0)


@settings(max_examples=10, deadline=None)
@given(dims, dims, dims, st.integers(0, 2**16))
def test_hessian_tensor_recovers_the_tensor_float32(d_in, d_hidden, d_out, seed):
    layer = Bilinear(d_in, d_hidden, d_out, rngs=nnx.Rngs(seed))
    assert relative_error(hessian_tensor(layer, d_in), symmetrize(layer.tensor())) <= 1e-5


def test_hessian_tensor_recovers_a_trained_layer():
    """Train a biased bilinear layer on a random quadratic target, then recover its tensor."""
    with jax.enable_x64(True):
        layer = Bilinear(4, 8, 3, bias=True, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
        target = TensorBilinear(4, 3, param_dtype=jnp.float64, rngs=nnx.Rngs(1))
        optimizer = nnx.Optimizer(layer, optax.adam(1e-2), wrt=nnx.Param)
        x = jax.random.normal(jax.random.key(2), (256, 4), jnp.float64)

        @nnx.jit
        def step(layer, optimizer):
            loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x) - target(x)) ** 2))(layer)
            optimizer.update(layer, grads)
            return loss

        losses = [float(step(layer, optimizer)) for _ in range(200)]
        assert losses[-1] < 0.1 * losses[0]  # it really trained
        assert float(jnp.max(jnp.abs(layer.up_bias[...]))) > 0  # and the biases moved
        form = quadratic_form(layer, 4)
        assert relative_error(fold_quadratic(*form), symmetrize(layer.tensor())) <= 1e-10


def test_hessian_tensor_of_a_black_box_with_an_embedding_folded_in():
    """``x ↦ layer(E x)`` has tensor ``Eᵀ B_o E``; recover it from the function alone."""
    with jax.enable_x64(True):
        layer = Bilinear(5, 7, 2, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
        embed = jax.random.normal(jax.random.key(1), (5, 3), jnp.float64)
        recovered = hessian_tensor(lambda x: layer(embed @ x), 3)
        expected = np.einsum("ia,oij,jb->oab", embed, symmetrize(layer.tensor()), embed)
        assert relative_error(recovered, expected) <= 1e-10


def test_outputs_of_any_shape_are_flattened():
    with jax.enable_x64(True):
        b = jax.random.normal(jax.random.key(0), (2, 3, 4, 4), jnp.float64)
        recovered = hessian_tensor(lambda x: jnp.einsum("i,abij,j->ab", x, b, x), 4)
        assert relative_error(recovered, symmetrize(b.reshape(6, 4, 4))) <= 1e-10


@pytest.mark.parametrize("kind", ["swiglu", "reglu", "geglu", "relu", "gelu"])
def test_non_quadratic_layers_are_refused_with_the_residual(kind):
    mlp = MLP(4, 6, kind, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"not a quadratic form.*relative \d"):
        hessian_tensor(mlp, 4)
    with pytest.raises(ValueError, match="not a quadratic form"):
        quadratic_form(mlp, 4)


def test_a_cubic_term_is_refused_even_when_small():
    with jax.enable_x64(True):
        with pytest.raises(ValueError, match="not a quadratic form"):
            hessian_tensor(lambda x: jnp.sum(x**2) + 1e-3 * jnp.sum(x**3), 3)


def test_hessian_tensor_runs_under_jit_without_the_check():
    layer = Bilinear(3, 4, 2, rngs=nnx.Rngs(0))
    w = nnx.state(layer)
    graphdef = nnx.graphdef(layer)

    @jax.jit
    def recover(state):
        return hessian_tensor(nnx.merge(graphdef, state), 3, check=False)

    assert relative_error(recover(w), symmetrize(layer.tensor())) <= 1e-5


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="method must be"):
        hessian_tensor(lambda x: x * x, 2, method="finite_differences")
