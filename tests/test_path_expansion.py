"""Exact path expansion of transformer logits (bilinear_jax.analysis.paths)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bilinear_jax.analysis.paths import PathExpansion, TermNotFoundError, normalize_term_name, path_expansion
from bilinear_jax.models.transformer import Transformer
from tests.helpers import randomize_biases, relative_error

VOCAB, MAX_LEN = 13, 8

CONFIGS = {
    "1L-nonorm": dict(n_layers=1, use_norm=False),
    "1L-norm-tied": dict(n_layers=1, use_norm=True, tied_embedding=True),
    "2L-norm-bias": dict(n_layers=2, use_norm=True, mlp_bias=True),
    "2L-nonorm-tied-bias": dict(n_layers=2, use_norm=False, tied_embedding=True, mlp_bias=True),
    "2L-attn-only": dict(n_layers=2, use_norm=True, mlp=None),
    "3L-norm": dict(n_layers=3, use_norm=True),
}


def make_model(seed: int = 0, param_dtype=jnp.float32, **kwargs) -> Transformer:
    kwargs = {"d_model": 16, "n_heads": 2, "d_hidden": 24, **kwargs}
    model = Transformer(VOCAB, MAX_LEN, param_dtype=param_dtype, rngs=nnx.Rngs(seed), **kwargs)
    if kwargs.get("mlp_bias"):
        randomize_biases(model, seed + 1)
    return model


def make_tokens(batch: int = 3, length: int = 6, seed: int = 1) -> jax.Array:
    return jax.random.randint(jax.random.key(seed), (batch, length), 0, VOCAB)


def expected_terms(n_heads: int, n_layers: int, has_mlp: bool, bias: bool) -> int:
    """Terms of the default expansion: direct + heads + per MLP (stream paths [+ bias])²."""
    count, stream = 1, 1
    for _ in range(n_layers):
        count, stream = count + n_heads, stream + n_heads
        if has_mlp:
            count += (stream + bias) ** 2
            stream += 1
    return count


# -- Exactness. ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CONFIGS))
def test_terms_sum_to_logits_float32(name):
    kwargs = CONFIGS[name]
    model, tokens = make_model(**kwargs), make_tokens()
    expansion = path_expansion(model, tokens)
    assert isinstance(expansion, PathExpansion)
    np.testing.assert_allclose(expansion.logits, model(tokens), rtol=1e-5, atol=1e-5)
    assert expansion.values.shape == (len(expansion), 3, 6, VOCAB)
    assert len(expansion) == expected_terms(2, kwargs["n_layers"], kwargs.get("mlp", "bilinear") is not None,
                                            kwargs.get("mlp_bias", False))
    assert expansion.max_relative_error <= 1e-5
    assert relative_error(expansion.total(), expansion.logits) <= 1e-5
    # The terms are not trivially one big term: several carry real weight.
    sizes = list(expansion.sizes().values())
    assert sizes[0] < 0.95 * sum(sizes) and sizes == sorted(sizes, reverse=True)


@pytest.mark.parametrize("name", ["1L-nonorm", "2L-norm-bias", "2L-attn-only"])
def test_terms_sum_to_logits_float64(name):
    with jax.enable_x64(True):
        model = make_model(param_dtype=jnp.float64, **CONFIGS[name])
        expansion = path_expansion(model, make_tokens())
        assert expansion.values.dtype == jnp.float64 and expansion.logits.dtype == jnp.float64
        assert expansion.max_relative_error <= 1e-10


def test_finer_expansions_stay_exact():
    model, tokens = make_model(**CONFIGS["2L-norm-bias"]), make_tokens()
    default = path_expansion(model, tokens)
    for options in (dict(expand_heads=True), dict(expand_mlps=True), dict(max_order=2)):
        expansion = path_expansion(model, tokens, **options)
        assert expansion.max_relative_error <= 1e-5, options
        np.testing.assert_allclose(expansion.total(), default.total(), rtol=1e-4, atol=1e-4)
    fine = path_expansion(model, tokens, expand_heads=True)
    assert "layer 1 head 0 (layer 0 MLP)" in fine.names
    assert "layer 1 MLP: layer 1 head 1 (embedding) × bias" in fine.names
    capped = path_expansion(model, tokens, max_order=2)
    assert "layer 1 MLP: order > 2" in capped.names
    assert max(capped.orders[:-1]) <= 2 or capped.names[capped.orders.index(max(capped.orders))].endswith("order > 2")
    assert capped.order("layer 0 MLP: embedding × bias") == 1
    assert capped.order("layer 0 MLP, bias × bias") == 0


@pytest.fixture(scope="module")
def modadd_workdir(tmp_path_factory) -> str:
    """A one-layer bilinear transformer trained on a + b mod 23 (the modadd config, 300 steps)."""
    from experiments.examples.path_expansion import train_or_load

    workdir = str(tmp_path_factory.mktemp("modadd"))
    train_or_load(workdir, p=23, steps=300)
    return workdir


def test_trained_modular_addition_is_exact(modadd_workdir):
    from bilinear_jax.training.restore import load_run
    from experiments.examples.path_expansion import ONE_DEVICE

    run = load_run(modadd_workdir, mesh=ONE_DEVICE)
    assert run.step == 300 and run.config.data.options.p == 23 and not run.config.model.use_norm
    model, p = run.model, 23
    a, b = np.divmod(np.arange(p * p), p)
    tokens = jnp.asarray(np.stack([a, b, np.full_like(a, p)], axis=1), jnp.int32)
    expansion = path_expansion(model, tokens)
    assert len(expansion) == expected_terms(4, 1, True, False) == 30
    assert expansion.max_relative_error <= 1e-5
    np.testing.assert_array_equal(jnp.argmax(expansion.total()[:, -1], -1), jnp.argmax(model(tokens)[:, -1], -1))


# -- Individual terms, checked by hand. ---------------------------------------------------------------


def _np(x) -> np.ndarray:
    return np.asarray(x, np.float64)


def test_terms_match_hand_computation_without_norms():
    model, tokens = make_model(n_layers=1, use_norm=False, mlp_bias=True), make_tokens()
    expansion = path_expansion(model, tokens)
    _, inter = model(tokens, return_intermediates=True)
    block = model.block(0)
    attn, mlp = block.attn, block.mlp
    W_E, W_U = _np(model.W_E), _np(model.W_U)
    e = W_E[np.asarray(tokens)]  # (B, T, d)
    pattern = _np(inter["pattern"][0])  # (B, H, T, T)
    W_V, W_O = _np(attn.W_V), _np(attn.W_O)
    W, V, P = _np(mlp.W), _np(mlp.V), _np(mlp.P)
    b_w, b_v = _np(mlp.up_bias[...][0]), _np(mlp.up_bias[...][1])
    b_p = _np(mlp.down_bias[...])

    def close(name, reference):
        np.testing.assert_allclose(_np(expansion[name]), reference, rtol=1e-4, atol=1e-5, err_msg=name)

    close("direct: embedding", e @ W_U)
    heads = [np.einsum("bts,bsd,dk,ke->bte", pattern[:, h], e, W_V[h], W_O[h]) for h in range(2)]
    for h in range(2):
        close(f"layer 0 head {h}", heads[h] @ W_U)

    def pair(x, y):  # P((W x) ⊙ (V y)), then unembed
        return (((x @ W.T) * (y @ V.T)) @ P.T) @ W_U

    close("layer 0 MLP: embedding × embedding", pair(e, e))
    close("layer 0 MLP: layer 0 head 1 × embedding", pair(heads[1], e))
    close("layer 0 MLP: embedding × layer 0 head 0", pair(e, heads[0]))
    close("layer 0 MLP: layer 0 head 0 × layer 0 head 1", pair(heads[0], heads[1]))
    close("layer 0 MLP: bias × embedding", ((b_w * (e @ V.T)) @ P.T) @ W_U)
    close("layer 0 MLP: layer 0 head 1 × bias", ((((heads[1] @ W.T) * b_v)) @ P.T) @ W_U)
    close("layer 0 MLP: bias × bias", np.broadcast_to(((b_w * b_v) @ P.T + b_p) @ W_U, e.shape[:2] + (VOCAB,)))


def test_terms_match_hand_computation_with_frozen_norms():
    model, tokens = make_model(n_layers=1, use_norm=True), make_tokens()
    expansion = path_expansion(model, tokens)
    _, inter = model(tokens, return_intermediates=True)
    block = model.block(0)
    e = _np(model.W_E)[np.asarray(tokens)]
    g1, g2, gf = (_np(n.scale[...]) for n in (block.norm1, block.norm2, model.final_norm))
    r1, r2, rf = (_np(inter[k][0] if k != "final_inverse_rms" else inter[k])
                  for k in ("attn_inverse_rms", "mlp_inverse_rms", "final_inverse_rms"))
    W_U = _np(model.W_U)
    unembed = lambda x: (x * rf * gf) @ W_U  # noqa: E731

    np.testing.assert_allclose(_np(expansion["direct: embedding"]), unembed(e), rtol=1e-4, atol=1e-5)
    pattern = _np(inter["pattern"][0])
    resid_pre = _np(inter["resid_pre"][0])  # a head reads the whole (normalised) stream
    head0 = np.einsum("bts,bsd,dk,ke->bte", pattern[:, 0], resid_pre * r1 * g1, _np(block.attn.W_V[0]),
                      _np(block.attn.W_O[0]))
    np.testing.assert_allclose(_np(expansion["layer 0 head 0"]), unembed(head0), rtol=1e-4, atol=1e-5)
    W, V, P = _np(block.mlp.W), _np(block.mlp.V), _np(block.mlp.P)
    n2 = lambda x: x * r2 * g2  # noqa: E731
    mlp_term = ((n2(head0) @ W.T) * (n2(e) @ V.T)) @ P.T
    np.testing.assert_allclose(_np(expansion["layer 0 MLP, head 0 × embedding"]), unembed(mlp_term),
                               rtol=1e-4, atol=1e-5)


# -- Names. -------------------------------------------------------------------------------------------


def test_name_lookup():
    model, tokens = make_model(**CONFIGS["2L-norm-bias"]), make_tokens()
    expansion = path_expansion(model, tokens)
    canonical = "layer 0 MLP: layer 0 head 1 × embedding"
    assert canonical in expansion.names
    for query in ("layer 0 MLP, head 1 × embedding", "Layer 0 MLP: head 1 x embedding", "L0 MLP: L0H1 * emb",
                  "layer 0 mlp  layer 0 head 1 ⊗ embedding", canonical):
        assert expansion.resolve(query) == canonical, query
        np.testing.assert_array_equal(expansion[query], expansion.terms[canonical])
    assert expansion.resolve("embedding") == "direct: embedding"
    # A head without a layer fits layer 0's and layer 1's head 0 here: ambiguous, so it lists both.
    with pytest.raises(TermNotFoundError, match="fits 2 terms"):
        expansion.resolve("layer 1 MLP, layer 0 MLP × head 0")
    assert expansion.resolve("layer 1 MLP, layer 0 MLP × L1H0") == "layer 1 MLP: layer 0 MLP × layer 1 head 0"
    assert expansion.resolve("layer 1 mlp: bias x bias") == "layer 1 MLP: bias × bias"
    # Ordered pairs are different terms.
    assert expansion.resolve("layer 0 MLP, embedding × head 1") == "layer 0 MLP: embedding × layer 0 head 1"
    assert "layer 0 MLP, head 1 × embedding" in expansion and "layer 5 head 0" not in expansion
    assert normalize_term_name("Layer 0 MLP, head 1 x emb") == "layer 0 mlp head 1 × embedding"

    with pytest.raises(KeyError) as info:
        expansion["layer 0 MLP, head 7 × embedding"]
    message = str(info.value)
    assert "head 7" in message and "layer 0 MLP: layer 0 head 1 × embedding" in message


def test_dict_interface_and_repr():
    model, tokens = make_model(n_layers=1, use_norm=False), make_tokens()
    expansion = path_expansion(model, tokens)
    assert list(expansion.terms) == list(expansion.names) == list(expansion)
    assert expansion.names[:3] == ("direct: embedding", "layer 0 head 0", "layer 0 head 1")
    np.testing.assert_allclose(expansion.sum(expansion.names), expansion.total(), rtol=1e-6, atol=1e-6)
    top = expansion.top(3, position=-1)
    assert len(top) == 3 and top[0][1] >= top[1][1] >= top[2][1]
    assert "PathExpansion(12 terms" in repr(expansion)
    treescope = pytest.importorskip("treescope")
    assert "direct: embedding" in treescope.render_to_text(expansion)


# -- Errors, params, jit. -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["relu", "swiglu"])
def test_non_bilinear_mlp_raises(kind):
    model = make_model(n_layers=1, mlp=kind)
    with pytest.raises(ValueError, match="bilinear"):
        path_expansion(model, make_tokens())


def test_params_argument_and_jit():
    model, tokens = make_model(**CONFIGS["2L-norm-bias"]), make_tokens()
    eager = path_expansion(model, tokens)
    params = nnx.state(model, nnx.Param)

    jitted = jax.jit(lambda p, t: path_expansion(model, p, t))(params, tokens)
    assert jitted.names == eager.names
    np.testing.assert_allclose(jitted.values, eager.values, rtol=1e-4, atol=1e-5)
    assert jitted.max_relative_error <= 1e-5
    closed = jax.jit(lambda t: path_expansion(model, t))(tokens)
    np.testing.assert_allclose(closed.values, eager.values, rtol=1e-4, atol=1e-5)

    # Other parameters: the expansion of those, and the model is left as it was.
    other = jax.tree.map(lambda x: 2.0 * x, params)
    doubled = path_expansion(model, other, tokens)
    assert path_expansion(model, tokens, params=other).names == doubled.names
    assert doubled.max_relative_error <= 1e-5
    assert not np.allclose(doubled.logits, eager.logits)
    np.testing.assert_allclose(model(tokens), eager.logits, rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError):
        path_expansion(model)


# -- The example. -------------------------------------------------------------------------------------


def test_example_runs(modadd_workdir, capsys):
    from experiments.examples.path_expansion import main

    result = main(["--workdir", modadd_workdir, "--top", "3"])  # loads the run trained by the fixture
    assert result["max_relative_error"] <= 1e-5
    assert len(result["top"]) == 3
    out = capsys.readouterr().out
    assert "max relative error" in out and "MLP: head × head" in out


def test_an_ambiguous_name_lists_its_candidates_and_nested_terms_group_by_kind():
    from bilinear_jax.analysis import term_kind

    assert term_kind("layer 1 MLP: [layer 0 MLP: embedding × layer 0 head 1] × embedding") == "MLP: MLP × embedding"
    assert term_kind("layer 1 MLP: layer 1 head 0 × [layer 0 MLP: head × head]") == "MLP: head × MLP"
    assert term_kind("layer 0 MLP: bias × embedding") == "MLP: bias × embedding"
    model = Transformer(11, 4, d_model=8, n_heads=2, n_layers=2, d_hidden=8, use_norm=False, rngs=nnx.Rngs(0))
    expansion = path_expansion(model, jnp.zeros((2, 4), jnp.int32))
    with pytest.raises(TermNotFoundError, match="fits 4 terms") as raised:
        expansion.resolve("layer 1 MLP: head 0 × head 0")
    assert "layer 1 MLP: layer 0 head 0 × layer 1 head 0" in str(raised.value)
    assert expansion.resolve("layer 1 MLP: layer 0 MLP × layer 0 head 0") == "layer 1 MLP: layer 0 MLP × layer 0 head 0"
