"""The layers against independent references: numpy-built tensors, float64, random shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from bilinear_jax.analysis import algebra
from bilinear_jax.layers import (
    GATED_KINDS,
    MLP,
    MLP_KINDS,
    PLAIN_KINDS,
    Bilinear,
    RMSNorm,
    TensorBilinear,
    count_params,
    matched_hidden_width,
)
from tests.helpers import explicit_tensor, randomize_biases, relative_error

dims = st.integers(min_value=1, max_value=7)
layer_shapes = st.tuples(dims, dims, st.one_of(st.none(), dims), st.booleans(), st.integers(0, 2**16))


def make_bilinear(d_in, d_hidden, d_out, bias, seed, dtype):
    layer = Bilinear(d_in, d_hidden, d_out, bias=bias, param_dtype=dtype, rngs=nnx.Rngs(seed))
    randomize_biases(layer, seed + 1)
    return layer


@settings(max_examples=25, deadline=None)
@given(layer_shapes)
def test_tensor_forward_equals_factored_forward_float64(shape):
    d_in, d_hidden, d_out, bias, seed = shape
    with jax.enable_x64(True):
        layer = make_bilinear(d_in, d_hidden, d_out, bias, seed, jnp.float64)
        x = jax.random.normal(jax.random.key(seed), (5, d_in), jnp.float64)
        assert relative_error(layer.tensor_forward(x), layer(x)) <= 1e-10
        expected_out = d_hidden if d_out is None else d_out
        assert layer.tensor().shape == (expected_out, d_in + bias, d_in + bias)


@settings(max_examples=15, deadline=None)
@given(layer_shapes)
def test_tensor_forward_equals_factored_forward_float32(shape):
    d_in, d_hidden, d_out, bias, seed = shape
    layer = make_bilinear(d_in, d_hidden, d_out, bias, seed, jnp.float32)
    x = jax.random.normal(jax.random.key(seed), (5, d_in), jnp.float32)
    assert relative_error(layer.tensor_forward(x), layer(x)) <= 1e-5


@settings(max_examples=20, deadline=None)
@given(layer_shapes)
def test_tensor_matches_numpy_construction(shape):
    d_in, d_hidden, d_out, bias, seed = shape
    with jax.enable_x64(True):
        layer = make_bilinear(d_in, d_hidden, d_out, bias, seed, jnp.float64)
        up_bias = np.asarray(layer.up_bias[...]) if bias else (None, None)
        reference = explicit_tensor(
            layer.W, layer.V, layer.P,
            out_bias=None if layer.down_bias is None else layer.down_bias[...],
            w_bias=up_bias[0], v_bias=up_bias[1],
        )
        np.testing.assert_allclose(layer.tensor(), reference, rtol=1e-12, atol=1e-12)


def test_fused_kernel_holds_both_factors_in_one_parameter():
    layer = Bilinear(4, 6, 3, rngs=nnx.Rngs(0))
    assert layer.up.shape == (4, 2, 6)
    np.testing.assert_array_equal(layer.W, layer.up[...][:, 0, :].T)
    np.testing.assert_array_equal(layer.V, layer.up[...][:, 1, :].T)
    x = jax.random.normal(jax.random.key(1), (3, 4))
    manual = ((x @ layer.W.T) * (x @ layer.V.T)) @ layer.P.T
    np.testing.assert_allclose(layer(x), manual, rtol=1e-5, atol=1e-6)


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 6), st.integers(1, 3), st.integers(0, 2**16))
def test_antisymmetric_perturbations_change_no_output(d_in, d_out, seed):
    with jax.enable_x64(True):
        layer = TensorBilinear(d_in, d_out, param_dtype=jnp.float64, rngs=nnx.Rngs(seed))
        x = jax.random.normal(jax.random.key(seed + 1), (6, d_in), jnp.float64)
        before = layer(x)
        a = jax.random.normal(jax.random.key(seed + 2), (d_out, d_in, d_in), jnp.float64)
        layer.B[...] = layer.B[...] + (a - jnp.swapaxes(a, 1, 2))
        assert relative_error(layer(x), before) <= 1e-10
        # ...while a symmetric perturbation of the same size does change it.
        layer.B[...] = layer.B[...] + (a + jnp.swapaxes(a, 1, 2))
        assert relative_error(layer(x), before) > 1e-3


@settings(max_examples=20, deadline=None)
@given(layer_shapes, st.integers(1, 3))
def test_interaction_matrix_from_factors_equals_weighted_symmetric_tensor(shape, num_directions):
    d_in, d_hidden, d_out, bias, seed = shape
    with jax.enable_x64(True):
        layer = make_bilinear(d_in, d_hidden, d_out, bias, seed, jnp.float64)
        u = jax.random.normal(jax.random.key(seed + 3), (num_directions, layer.d_out), jnp.float64)
        reference = np.einsum("ko,oij->kij", u, algebra.symmetrize(layer.tensor()))
        np.testing.assert_allclose(layer.interaction_matrix(u), reference, rtol=1e-10, atol=1e-12)


def test_eigendecomposition_of_interaction_matrix_explains_the_output_direction():
    """``uᵀy = Σ λ_i (v_iᵀ x)²`` for the eigendecomposition of ``Q_u``."""
    with jax.enable_x64(True):
        layer = make_bilinear(5, 8, 4, False, 0, jnp.float64)
        u = jax.random.normal(jax.random.key(4), (4,), jnp.float64)
        eigenvalues, eigenvectors = jnp.linalg.eigh(layer.interaction_matrix(u))
        x = jax.random.normal(jax.random.key(5), (7, 5), jnp.float64)
        explained = jnp.sum(eigenvalues * (x @ eigenvectors) ** 2, axis=-1)
        assert relative_error(explained, layer(x) @ u) <= 1e-10


@pytest.mark.parametrize("kind", MLP_KINDS)
def test_every_mlp_kind_matches_its_formula(kind):
    with jax.enable_x64(True):
        mlp = MLP(5, 6, kind, bias=True, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
        randomize_biases(mlp)
        x = jax.random.normal(jax.random.key(1), (3, 5), jnp.float64)
        up, up_bias = np.asarray(mlp.up[...]), np.asarray(mlp.up_bias[...])
        left = np.asarray(x) @ up[:, 0, :] + up_bias[0]
        if kind in GATED_KINDS:
            gate = GATED_KINDS[kind]
            hidden = (left if gate is None else np.asarray(gate(left))) * (np.asarray(x) @ up[:, 1, :] + up_bias[1])
        else:
            hidden = np.asarray(PLAIN_KINDS[kind](left))
        expected = hidden @ np.asarray(mlp.down[...]) + np.asarray(mlp.down_bias[...])
        assert relative_error(mlp(x), expected) <= 1e-12


@pytest.mark.parametrize("plain_hidden", [6, 12, 30, 96])
def test_matched_hidden_width_equalizes_parameter_counts(plain_hidden):
    d_model = 8
    counts = {
        kind: count_params(MLP(d_model, matched_hidden_width(kind, plain_hidden), kind, rngs=nnx.Rngs(0)))
        for kind in MLP_KINDS
    }
    relu = counts["relu"]
    for kind, count in counts.items():
        # Exact when 2h/3 is whole; otherwise off by at most one hidden unit's weights.
        assert abs(count - relu) <= (0 if plain_hidden % 3 == 0 else 3 * d_model), (kind, count, relu)


def test_unknown_kind_and_tensor_of_a_non_bilinear_mlp_are_refused():
    with pytest.raises(ValueError, match="Unknown MLP kind 'tanh'.*bilinear"):
        MLP(4, 4, "tanh", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="only for kind='bilinear'"):
        MLP(4, 4, "swiglu", rngs=nnx.Rngs(0)).tensor()


def test_rmsnorm_matches_numpy_and_is_linear_with_a_frozen_scale():
    with jax.enable_x64(True):
        norm = RMSNorm(6, eps=1e-6, param_dtype=jnp.float64)
        norm.scale[...] = jnp.linspace(0.5, 2.0, 6)
        x = np.random.default_rng(0).normal(size=(4, 6))
        expected = x / np.sqrt(np.mean(x**2, axis=-1, keepdims=True) + 1e-6) * np.linspace(0.5, 2.0, 6)
        assert relative_error(norm(jnp.asarray(x)), expected) <= 1e-12
        frozen = norm.inverse_rms(jnp.asarray(x))
        y = np.random.default_rng(1).normal(size=(4, 6))
        lhs = norm(jnp.asarray(2.0 * x + 3.0 * y), inverse_rms=frozen)
        rhs = 2.0 * norm(jnp.asarray(x), inverse_rms=frozen) + 3.0 * norm(jnp.asarray(y), inverse_rms=frozen)
        assert relative_error(lhs, rhs) <= 1e-12


def test_every_parameter_carries_logical_axis_names():
    for module in (MLP(4, 6, "swiglu", bias=True, rngs=nnx.Rngs(0)), Bilinear(4, 6, rngs=nnx.Rngs(0)),
                   TensorBilinear(3, 2, rngs=nnx.Rngs(0)), RMSNorm(4)):
        state = nnx.state(module, nnx.Param)
        specs = nnx.get_partition_spec(state)
        for leaf, spec in zip(jax.tree.leaves(state), jax.tree.leaves(specs, is_leaf=lambda s: isinstance(s, jax.sharding.PartitionSpec))):
            assert isinstance(spec, jax.sharding.PartitionSpec) and len(spec) == leaf.ndim
        names = {name for spec in jax.tree.leaves(specs, is_leaf=lambda s: isinstance(s, jax.sharding.PartitionSpec)) for name in spec}
        assert names & {"embed", "mlp"}


def test_bfloat16_compute_keeps_float32_parameters():
    layer = Bilinear(4, 6, 3, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 4))
    y = layer(x)
    assert y.dtype == jnp.bfloat16 and layer.up[...].dtype == jnp.float32
    full = Bilinear(4, 6, 3, rngs=nnx.Rngs(0))
    assert relative_error(y.astype(jnp.float32), full(x)) < 5e-2
