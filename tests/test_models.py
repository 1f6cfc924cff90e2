"""Tests for bilinear_jax.models against independent computations (tiny shapes, CPU)."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bilinear_jax.analysis.algebra import augment_input, fold_quadratic
from bilinear_jax.layers import MLP, Bilinear, RMSNorm, count_params
from bilinear_jax.models import (
    MODELS,
    BilinearClassifier,
    Block,
    ToyModel,
    Transformer,
    apply_rope,
    build_model,
)

VOCAB, MAX_LEN, D, HEADS, LAYERS, HIDDEN = 13, 8, 16, 2, 2, 12
LOGICAL_AXES = {"vocab", "embed", "mlp", "heads", "kv", "layers", "classes", "input"}


def _tokens(seed: int = 0, batch: int = 2, length: int = 6) -> jax.Array:
    return jax.random.randint(jax.random.key(seed), (batch, length), 0, VOCAB)


def _transformer(seed: int = 0, **kw) -> Transformer:
    kw = {"d_model": D, "n_heads": HEADS, "n_layers": LAYERS, "d_hidden": HIDDEN, **kw}
    return Transformer(VOCAB, MAX_LEN, rngs=nnx.Rngs(seed), **kw)


def _randomize_norm_scales(model: nnx.Module, seed: int = 1) -> None:
    """Norm scales start at 1; make them random so tests would notice a skipped norm."""
    state = nnx.state(model, nnx.Param)
    flat = dict(nnx.to_flat_state(state))
    keys = jax.random.split(jax.random.key(seed), len(flat))
    for key, (path, var) in zip(keys, flat.items()):
        if path[-1] == "scale":
            var[...] = 1.0 + 0.5 * jax.random.normal(key, var[...].shape)
    nnx.update(model, state)


@pytest.fixture(scope="module")
def model() -> Transformer:
    m = _transformer()
    _randomize_norm_scales(m)
    return m


def _loop_forward(model: Transformer, tokens: jax.Array) -> jax.Array:
    """Reference forward: a Python loop over the unstacked blocks."""
    x = model.embed_tokens(tokens)
    for i in range(model.n_layers):
        x = model.block(i)(x)
    return model.unembed_resid(x)


# -- Transformer: stacking, scan, block access. ---------------------------------------------------


def test_scanned_forward_equals_python_loop(model):
    tokens = _tokens()
    logits = model(tokens)
    assert logits.shape == (2, 6, VOCAB)
    np.testing.assert_allclose(logits, _loop_forward(model, tokens), rtol=1e-5, atol=1e-5)
    # And under jit, through split/merge as a training step would use it.
    graphdef, state = nnx.split(model)
    jitted = jax.jit(lambda s, t: nnx.merge(graphdef, s)(t))(state, tokens)
    np.testing.assert_allclose(jitted, logits, rtol=1e-5, atol=1e-5)


def test_block_is_unstacked_layer_and_set_block_round_trips(model):
    assert isinstance(model.block(0), Block)
    stacked_up = model.blocks.mlp.up[...]
    assert stacked_up.shape[0] == LAYERS
    for i in range(LAYERS):
        b = model.block(i)
        np.testing.assert_array_equal(b.mlp.up[...], stacked_up[i])
        assert b.mlp.W.shape == (HIDDEN, D) and b.attn.W_Q.shape == (HEADS, D, D // HEADS)
        for _, var in nnx.to_flat_state(nnx.state(b, nnx.Param)):
            assert "layers" not in var.get_metadata("out_sharding")
    np.testing.assert_array_equal(model.block(-1).mlp.down[...], model.blocks.mlp.down[...][-1])
    with pytest.raises(IndexError):
        model.block(LAYERS)

    m = _transformer(seed=5)
    b = m.block(1)
    b.mlp.down[...] = jnp.zeros_like(b.mlp.down[...])
    assert jnp.any(m.block(1).mlp.down[...] != 0)  # a copy: the model is untouched ...
    m.set_block(1, b)  # ... until written back.
    np.testing.assert_array_equal(m.blocks.mlp.down[...][1], 0.0)
    assert jnp.all(m.blocks.mlp.down[...][0] != 0)


def test_compile_size_does_not_grow_with_depth():
    tokens = _tokens(length=4)

    def n_eqns(n_layers):
        m = nnx.eval_shape(lambda: _transformer(n_layers=n_layers))  # abstract: nothing to compile
        graphdef, state = nnx.split(m)
        jaxpr = jax.make_jaxpr(lambda s: nnx.merge(graphdef, s)(tokens))(state)
        return len(jaxpr.jaxpr.eqns), str(jaxpr)

    (n1, text), (n8, _) = n_eqns(1), n_eqns(8)
    assert "scan" in text
    assert n1 == n8


def test_gradients_flow_to_every_parameter(model):
    tokens = _tokens()
    graphdef, params = nnx.split(model, nnx.Param)

    def loss(p):
        logits = nnx.merge(graphdef, p)(tokens)
        return -jnp.mean(jax.nn.log_softmax(logits)[..., 0])

    grads = jax.jit(jax.grad(loss))(params)
    for path, g in nnx.to_flat_state(grads):
        assert jnp.all(jnp.isfinite(g[...])) and jnp.any(g[...] != 0), path


# -- Transformer: attention. ----------------------------------------------------------------------


def _reference_attention(attn, x: np.ndarray) -> np.ndarray:
    """Independent float64 numpy attention, RoPE as explicit 2x2 rotations of (i, i + d/2)."""
    wq, wk, wv, wo = (np.asarray(w, np.float64) for w in (attn.W_Q, attn.W_K, attn.W_V, attn.W_O))
    x = np.asarray(x, np.float64)
    batch, length, _ = x.shape
    dh, half = attn.d_head, attn.d_head // 2
    out = np.zeros_like(x)
    for b, h in itertools.product(range(batch), range(attn.n_heads)):
        q, k, v = x[b] @ wq[h], x[b] @ wk[h], x[b] @ wv[h]
        for t in range(length):
            for i in range(half):
                theta = t * attn.rope_base ** (-2.0 * i / dh)
                c, s = np.cos(theta), np.sin(theta)
                for mat in (q, k):
                    a0, a1 = mat[t, i], mat[t, i + half]
                    mat[t, i], mat[t, i + half] = c * a0 - s * a1, s * a0 + c * a1
        scores = q @ k.T / np.sqrt(dh)
        scores[np.triu(np.ones((length, length), bool), 1)] = -np.inf
        a = np.exp(scores - scores.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        out[b] += a @ v @ wo[h]
    return out


def test_attention_matches_numpy_reference(model):
    attn = model.block(0).attn
    x = jax.random.normal(jax.random.key(3), (2, 5, D))
    np.testing.assert_allclose(attn(x), _reference_attention(attn, x), rtol=1e-4, atol=1e-5)


def test_causality(model):
    tokens = _tokens(length=7)
    base = model(tokens)
    for t in (0, 3, 6):
        changed = tokens.at[:, t].set((tokens[:, t] + 1) % VOCAB)
        out = model(changed)
        np.testing.assert_allclose(out[:, :t], base[:, :t], rtol=1e-5, atol=1e-6)
        assert jnp.max(jnp.abs(out[:, t] - base[:, t])) > 1e-4
    pattern = model.block(0).attn.pattern(model.embed_tokens(tokens))
    assert pattern.shape == (2, HEADS, 7, 7)
    np.testing.assert_array_equal(jnp.triu(pattern, 1), 0.0)
    np.testing.assert_allclose(pattern.sum(-1), 1.0, rtol=1e-5)


def test_rope_depends_only_on_relative_position():
    q, k = jax.random.normal(jax.random.key(0), (2, 8))
    pos = jnp.arange(7)

    def score(m, n):
        return apply_rope(q[None], jnp.array([m]))[0] @ apply_rope(k[None], jnp.array([n]))[0]

    for shift in (1, 5, 100):
        for m, n in [(3, 1), (6, 6), (2, 5)]:
            np.testing.assert_allclose(score(m + shift, n + shift), score(m, n), rtol=1e-4, atol=1e-5)
    assert abs(score(3, 1) - score(4, 1)) > 1e-3  # but it does depend on the offset
    rotated = apply_rope(jnp.broadcast_to(q, (7, 8)), pos)
    np.testing.assert_allclose(jnp.linalg.norm(rotated, axis=-1), jnp.linalg.norm(q), rtol=1e-5)


def test_attention_scores_are_toeplitz_for_a_constant_input(model):
    attn = model.block(1).attn
    x = jnp.broadcast_to(jax.random.normal(jax.random.key(4), (1, 1, D)), (1, 6, D))
    scores = attn.scores(x)[0]  # (heads, T, T)
    for t, s in itertools.product(range(1, 6), range(1, 6)):
        np.testing.assert_allclose(scores[:, t, s], scores[:, t - 1, s - 1], rtol=1e-4, atol=1e-5)


def test_head_outputs_sum_to_attention_output_and_frozen_pattern_is_linear(model):
    attn = model.block(1).attn
    x1, x2 = jax.random.normal(jax.random.key(5), (2, 2, 5, D))
    heads = attn.head_outputs(x1)
    assert heads.shape == (2, HEADS, 5, D)
    np.testing.assert_allclose(heads.sum(1), attn(x1), rtol=1e-5, atol=1e-5)
    pattern = attn.pattern(x1)
    np.testing.assert_allclose(attn(x1, pattern), attn(x1), rtol=1e-5, atol=1e-6)
    combo = attn.head_outputs(2.0 * x1 - 3.0 * x2, pattern)
    expected = 2.0 * attn.head_outputs(x1, pattern) - 3.0 * attn.head_outputs(x2, pattern)
    np.testing.assert_allclose(combo, expected, rtol=1e-4, atol=1e-4)


def test_intermediates_and_frozen_forward(model):
    tokens = _tokens()
    logits, inter = model(tokens, return_intermediates=True)
    np.testing.assert_allclose(logits, model(tokens), rtol=1e-6, atol=1e-6)
    B, T = tokens.shape
    assert inter["resid_pre"].shape == (LAYERS, B, T, D)
    assert inter["resid_mid"].shape == (LAYERS, B, T, D)
    assert inter["pattern"].shape == (LAYERS, B, HEADS, T, T)
    assert inter["attn_inverse_rms"].shape == inter["mlp_inverse_rms"].shape == (LAYERS, B, T, 1)
    assert inter["resid_final"].shape == (B, T, D) and inter["final_inverse_rms"].shape == (B, T, 1)
    # Intermediates agree with a Python loop over the blocks.
    x = model.embed_tokens(tokens)
    for i in range(LAYERS):
        block = model.block(i)
        np.testing.assert_allclose(inter["resid_pre"][i], x, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(inter["pattern"][i], block.attn.pattern(block.norm1(x)), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(inter["attn_inverse_rms"][i], block.norm1.inverse_rms(x), rtol=1e-5)
        x = block(x)
    np.testing.assert_allclose(inter["resid_final"], x, rtol=1e-5, atol=1e-5)
    # Freezing everything reproduces the forward pass exactly ...
    np.testing.assert_allclose(model(tokens, frozen=inter), logits, rtol=1e-5, atol=1e-5)
    # ... and frozen values really are used: a uniform causal pattern changes the output.
    uniform = jnp.tril(jnp.ones((T, T))) / jnp.arange(1, T + 1)[:, None]
    frozen = {"pattern": jnp.broadcast_to(uniform, inter["pattern"].shape)}
    assert jnp.max(jnp.abs(model(tokens, frozen=frozen) - logits)) > 1e-3


# -- Transformer: variants. -----------------------------------------------------------------------


def _manual_no_norm_forward(m: Transformer, tokens: jax.Array) -> jax.Array:
    x = m.W_E[tokens]
    for i in range(m.n_layers):
        b = m.block(i)
        x = x + b.attn(x)
        if b.mlp is not None:
            x = x + b.mlp(x)
    return jnp.einsum("btd,dv->btv", x, m.W_U)


def test_use_norm_false_removes_norms():
    m = _transformer(use_norm=False)
    paths = [path for path, _ in nnx.to_flat_state(nnx.state(m))]
    assert not any("scale" in p or "norm1" in p or "final_norm" in p for p in paths)
    assert not any(isinstance(node, RMSNorm) for _, node in nnx.iter_graph(m))
    tokens = _tokens()
    logits, inter = m(tokens, return_intermediates=True)
    assert not any("inverse_rms" in k for k in inter)
    np.testing.assert_allclose(logits, _manual_no_norm_forward(m, tokens), rtol=1e-5, atol=1e-4)
    # Norms on: one scale vector per norm (two per layer plus the final one) is all they add.
    normed = _transformer(use_norm=True)
    assert count_params(normed) == count_params(m) + (2 * LAYERS + 1) * D


def test_attention_only_has_no_mlp():
    m = _transformer(mlp=None)
    assert m.block(0).mlp is None and m.block(0).norm2 is None
    paths = [path for path, _ in nnx.to_flat_state(nnx.state(m))]
    assert not any("mlp" in p for p in paths)
    d_attn = 4 * D * D
    assert count_params(m) == 2 * VOCAB * D + LAYERS * (d_attn + D) + D
    tokens = _tokens()
    _, inter = m(tokens, return_intermediates=True)
    assert "resid_mid" not in inter and "mlp_inverse_rms" not in inter
    no_norm = _transformer(mlp=None, use_norm=False)
    np.testing.assert_allclose(no_norm(tokens), _manual_no_norm_forward(no_norm, tokens), rtol=1e-5, atol=1e-4)


def test_tied_embedding_shares_the_matrix():
    tied, untied = _transformer(tied_embedding=True), _transformer(tied_embedding=False)
    assert tied.unembed is None
    assert count_params(untied) - count_params(tied) == D * VOCAB
    tokens = _tokens()
    _, inter = tied(tokens, return_intermediates=True)
    h = tied.final_norm(inter["resid_final"])
    np.testing.assert_allclose(tied(tokens), h @ tied.embed[...].T, rtol=1e-5, atol=1e-5)
    # One matrix: changing the embedding changes the unembedding too.
    tied.embed[...] = 2.0 * tied.embed[...]
    np.testing.assert_allclose(tied.W_U, tied.embed[...].T)


@pytest.mark.parametrize("kind", ["swiglu"])
def test_other_mlp_kinds(kind):
    m = _transformer(mlp=kind, use_norm=False)
    assert m.block(0).mlp.kind == kind
    tokens = _tokens()
    np.testing.assert_allclose(m(tokens), _manual_no_norm_forward(m, tokens), rtol=1e-5, atol=1e-4)


def test_bf16_compute_keeps_f32_params_and_logits():
    m = _transformer(dtype=jnp.bfloat16)
    assert all(v[...].dtype == jnp.float32 for _, v in nnx.to_flat_state(nnx.state(m)))
    logits = m(_tokens())
    assert logits.dtype == jnp.float32 and jnp.all(jnp.isfinite(logits))
    ref = _transformer()(_tokens())
    np.testing.assert_allclose(logits, ref, rtol=0.1, atol=0.1)


def test_transformer_validation():
    with pytest.raises(ValueError, match="divisible"):
        _transformer(d_model=10, n_heads=4)
    with pytest.raises(ValueError, match="even head"):
        _transformer(d_model=6, n_heads=2)
    with pytest.raises(ValueError, match="Unknown mlp kind 'tanh'"):
        _transformer(mlp="tanh")
    with pytest.raises(ValueError, match="n_layers"):
        _transformer(n_layers=0)
    m = _transformer()
    with pytest.raises(ValueError, match="max_len"):
        m(jnp.zeros((1, MAX_LEN + 1), jnp.int32))


# -- Classifier. ----------------------------------------------------------------------------------


def test_classifier_is_a_quadratic_form_of_its_input():
    with jax.enable_x64(True):
        m = BilinearClassifier(16, 3, d_model=6, d_hidden=5, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
        assert isinstance(m.blocks[0], Bilinear) and len(m.blocks) == 1
        x = jax.random.normal(jax.random.key(1), (4, 4, 4, 1), jnp.float64)
        logits = m(x)
        assert logits.shape == (4, 3) and logits.dtype == jnp.float64
        E, H = m.embed.kernel[...], m.head.kernel[...]
        blk = m.blocks[0]
        B = jnp.einsum("oh,hi,hj->oij", blk.P, blk.W, blk.V)
        Q = jnp.einsum("oc,ai,oij,bj->cab", H, E, B, E)  # logits_c = xᵀ Q_c x
        flat = x.reshape(4, -1)
        np.testing.assert_allclose(logits, jnp.einsum("na,cab,nb->nc", flat, Q, flat), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(logits, m.head(blk(m.embed(flat))), rtol=1e-12)
        # Homogeneous of degree 2.
        np.testing.assert_allclose(m(3.0 * x), 9.0 * logits, rtol=1e-10)


def test_classifier_noise_only_with_key_and_deterministic():
    m = BilinearClassifier(8, 2, d_model=4, d_hidden=4, input_noise_std=0.5, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (3, 8))
    clean = m(x)
    np.testing.assert_array_equal(m(x, noise_key=None), clean)
    k1, k2 = jax.random.fold_in(jax.random.key(7), 1), jax.random.fold_in(jax.random.key(7), 2)
    noisy = m(x, noise_key=k1)
    assert jnp.max(jnp.abs(noisy - clean)) > 1e-3
    np.testing.assert_array_equal(m(x, noise_key=k1), noisy)
    assert jnp.max(jnp.abs(m(x, noise_key=k2) - noisy)) > 1e-3
    # The noise is N(0, std²) on the input.
    expected = m.head(m.features(x + 0.5 * jax.random.normal(k1, x.shape)))
    np.testing.assert_allclose(noisy, expected, rtol=1e-5, atol=1e-6)
    quiet = BilinearClassifier(8, 2, d_model=4, d_hidden=4, rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(quiet(x, noise_key=k1), quiet(x))


def test_classifier_residual_layers_kind_and_validation():
    m = BilinearClassifier(12, 4, d_model=6, d_hidden=5, n_layers=2, residual=True, bias=True, rngs=nnx.Rngs(1))
    x = jax.random.normal(jax.random.key(0), (5, 3, 4))
    h = m.embed(x.reshape(5, -1))
    for b in m.blocks:
        h = h + b(h)
    np.testing.assert_allclose(m(x), m.head(h), rtol=1e-5, atol=1e-6)
    assert m.head.bias is not None and m.embed.bias is None
    relu = BilinearClassifier(12, 4, d_model=6, d_hidden=5, kind="relu", rngs=nnx.Rngs(1))
    assert type(relu.blocks[0]) is MLP and relu.blocks[0].kind == "relu"
    with pytest.raises(ValueError, match="d_input=12"):
        m(jnp.ones((2, 13)))
    with pytest.raises(ValueError, match="input_noise_std"):
        BilinearClassifier(12, 4, input_noise_std=-1.0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="Unknown MLP kind"):
        BilinearClassifier(12, 4, kind="nope", rngs=nnx.Rngs(0))


# -- Toy model. -----------------------------------------------------------------------------------


def test_toy_model_represents_and_xor_or_exactly():
    """Outputs: AND(x0,x1), XOR(x0,x1), OR(x0,x1), XOR(x1,x2), set by hand.

    Hidden units: s01 = (x0 + x1)·1, p01 = x0·x1, s12 = (x1 + x2)·1, p12 = x1·x2 (the ``·1`` is
    the V-bias), so AND = p01, XOR = s01 − 2 p01, OR = s01 − p01.
    """
    m = ToyModel(3, 4, d_hidden=4, rngs=nnx.Rngs(0))
    w = np.zeros((3, 4)); v = np.zeros((3, 4)); bw = np.zeros(4); bv = np.zeros(4)
    w[[0, 1], 0] = 1; bv[0] = 1            # s01
    w[0, 1] = 1; v[1, 1] = 1               # p01
    w[[1, 2], 2] = 1; bv[2] = 1            # s12
    w[1, 3] = 1; v[2, 3] = 1               # p12
    p = np.array([[0, 1, 0, 0], [1, -2, 0, 0], [1, -1, 0, 0], [0, 0, 1, -2]], float).T  # (hidden, out)
    m.layer.up[...] = jnp.stack([w, v], axis=1).astype(jnp.float32)
    m.layer.up_bias[...] = jnp.stack([bw, bv]).astype(jnp.float32)
    m.layer.down[...] = jnp.asarray(p, jnp.float32)
    m.layer.down_bias[...] = jnp.zeros(4)
    x = np.array(list(itertools.product([0, 1], repeat=3)), np.float32)
    expected = np.stack([x[:, 0] * x[:, 1], np.logical_xor(x[:, 0], x[:, 1]),
                         np.logical_or(x[:, 0], x[:, 1]), np.logical_xor(x[:, 1], x[:, 2])], 1)
    np.testing.assert_array_equal(m(jnp.asarray(x)), expected)
    # The same function through the explicit tensor over x̃ = [x; 1].
    np.testing.assert_allclose(jnp.einsum("ni,oij,nj->no", augment_input(x), m.tensor(), augment_input(x)),
                               expected, atol=1e-6)


def test_toy_full_rank_and_kinds():
    m = ToyModel(2, 1, full_rank=True, rngs=nnx.Rngs(0))
    assert m.layer.B[...].shape == (1, 3, 3)
    # XOR(a, b) = a + b - 2ab as a tensor over [a, b, 1].
    m.layer.B[...] = fold_quadratic(jnp.array([[[0.0, -1.0], [-1.0, 0.0]]]), jnp.array([[1.0, 1.0]]), jnp.zeros(1))
    x = jnp.array([[0, 0], [0, 1], [1, 0], [1, 1]], jnp.float32)
    np.testing.assert_allclose(m(x)[:, 0], [0, 1, 1, 0], atol=1e-6)
    relu = ToyModel(5, 3, d_hidden=7, kind="relu", rngs=nnx.Rngs(0))
    assert type(relu.layer) is MLP and relu(jnp.ones((2, 5))).shape == (2, 3)
    biased = ToyModel(5, 3, rngs=nnx.Rngs(0))
    assert isinstance(biased.layer, Bilinear) and biased.layer.up_bias is not None
    xs = jax.random.bernoulli(jax.random.key(0), 0.3, (6, 5)).astype(jnp.float32)
    np.testing.assert_allclose(biased(xs), biased.layer.tensor_forward(xs), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="full_rank"):
        ToyModel(2, 1, kind="relu", full_rank=True, rngs=nnx.Rngs(0))


# -- Shared contract. -----------------------------------------------------------------------------


@pytest.mark.parametrize("name,kwargs", [
    ("transformer", dict(vocab_size=VOCAB, max_len=MAX_LEN, d_model=D, n_heads=HEADS, n_layers=2, d_hidden=HIDDEN)),
    ("transformer", dict(vocab_size=VOCAB, max_len=MAX_LEN, d_model=D, n_heads=HEADS, n_layers=2, mlp=None)),
    ("transformer", dict(vocab_size=VOCAB, max_len=MAX_LEN, d_model=D, n_heads=HEADS, n_layers=2, mlp="swiglu",
                         mlp_bias=True, tied_embedding=True)),
    ("classifier", dict(d_input=16, num_classes=3, d_model=4, d_hidden=4, n_layers=2, bias=True)),
    ("toy", dict(n_inputs=4, n_outputs=2)),
    ("toy", dict(n_inputs=4, n_outputs=2, full_rank=True)),
])
def test_every_parameter_has_logical_axis_names(name, kwargs):
    m = nnx.eval_shape(lambda: build_model(name, rngs=nnx.Rngs(0), **kwargs))  # abstract: fast
    assert isinstance(m, MODELS[name])
    specs = nnx.to_flat_state(nnx.get_partition_spec(nnx.state(m, nnx.Param)))
    values = dict(nnx.to_flat_state(nnx.state(m, nnx.Param)))
    assert len(specs) == len(values) > 0
    for path, spec in specs:
        spec = tuple(spec.get_value())
        assert len(spec) == len(values[path].get_value().shape), path
        names = [a for a in spec if a is not None]
        assert names and set(names) <= LOGICAL_AXES, (path, spec)
        if name == "transformer" and path[0] == "blocks":
            assert spec[0] == "layers", (path, spec)


def test_build_model_errors():
    rngs = nnx.Rngs(0)
    before = rngs.params.count[...]
    with pytest.raises(ValueError, match="classifier, toy, transformer"):
        build_model("mlp", rngs=rngs)
    with pytest.raises(ValueError, match="'d_modle'"):
        build_model("transformer", rngs=rngs, vocab_size=5, max_len=4, d_modle=8)
    with pytest.raises(ValueError, match="n_inputs"):
        build_model("toy", rngs=rngs, n_outputs=2)
    assert rngs.params.count[...] == before  # nothing was created
    toy = build_model("toy", rngs=rngs, n_inputs=3, n_outputs=2, d_hidden=5)
    assert isinstance(toy, ToyModel) and toy.layer.d_hidden == 5
