"""A decoder-only transformer with bilinear (or any-kind) MLPs, stacked layers, and analysis hooks.

Pre-norm residual blocks, for layer ``l``::

    x ← x + Attn_l(N1_l(x))          causal multi-head attention with RoPE
    x ← x + MLP_l(N2_l(x))           bilinear by default: P((W x) ⊙ (V x))
    logits = N_f(x) W_U              W_U = W_Eᵀ when the embedding is tied

``N`` is RMSNorm, or the identity with ``use_norm=False`` (the model is then exactly a polynomial
in the embeddings once attention patterns are frozen). The blocks' parameters are stacked with a
leading ``layers`` axis (created with ``nnx.vmap``, run with ``nnx.scan``), so compile time does
not grow with depth; :meth:`Transformer.block` returns layer ``i`` as an ordinary
:class:`Block`.

For exact path expansion, ``model(tokens, return_intermediates=True)`` returns the residual
stream inputs, norm inverse-RMS values and attention patterns of the forward pass, and
``model(tokens, frozen=intermediates)`` reruns the model with those patterns and norm scales held
fixed (identical output, but now linear in attention and norms).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import chex
import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float, Int

from bilinear_jax.layers import MLP, MLP_KINDS, RMSNorm, matched_hidden_width, param
from bilinear_jax.models.attention import CausalSelfAttention
from bilinear_jax.models.common import check_positive

__all__ = ["Block", "Transformer", "LAYERS_AXIS", "FROZEN_KEYS"]

LAYERS_AXIS = "layers"
_STACK = {nnx.PARTITION_NAME: LAYERS_AXIS}
# Per-layer keys of the intermediates dict that `frozen=` reads (each stacked on a leading layer
# axis), plus the final norm's.
FROZEN_KEYS = ("attn_inverse_rms", "pattern", "mlp_inverse_rms")


def _norm(norm: RMSNorm | None, x: jax.Array, inverse_rms: jax.Array | None) -> jax.Array:
    return x if norm is None else norm(x, inverse_rms)


class Block(nnx.Module):
    """One pre-norm residual block: ``x + Attn(N1(x))``, then ``+ MLP(N2(x))``.

    ``norm1``/``norm2`` are None (the identity) with ``use_norm=False``; ``mlp`` (and ``norm2``)
    is None for an attention-only block.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_hidden: int,
        *,
        mlp: str | None = "bilinear",
        use_norm: bool = True,
        mlp_bias: bool = False,
        rope_base: float = 10000.0,
        dtype: jnp.dtype | None = None,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.norm1 = RMSNorm(d_model, param_dtype=param_dtype) if use_norm else None
        self.attn = CausalSelfAttention(
            d_model, n_heads, rope_base=rope_base, dtype=dtype, param_dtype=param_dtype, rngs=rngs
        )
        has_mlp = mlp is not None
        self.norm2 = RMSNorm(d_model, param_dtype=param_dtype) if use_norm and has_mlp else None
        self.mlp = (
            MLP(d_model, d_hidden, mlp, bias=mlp_bias, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
            if has_mlp else None
        )

    def forward(
        self,
        x: Float[Array, "B T d_model"],
        *,
        attn_inverse_rms: Float[Array, "B T 1"] | None = None,
        pattern: Float[Array, "B heads T T"] | None = None,
        mlp_inverse_rms: Float[Array, "B T 1"] | None = None,
    ) -> tuple[Float[Array, "B T d_model"], dict[str, jax.Array]]:
        """The block's output and its intermediates (the frozen values are used where given).

        Intermediates: ``resid_pre`` (input), ``pattern``, ``resid_mid`` (input to the MLP, if
        any), and ``attn_inverse_rms`` / ``mlp_inverse_rms`` when the norms are on.
        """
        inter: dict[str, jax.Array] = {"resid_pre": x}
        if self.norm1 is not None:
            attn_inverse_rms = self.norm1.inverse_rms(x) if attn_inverse_rms is None else attn_inverse_rms
            inter["attn_inverse_rms"] = attn_inverse_rms
        h = _norm(self.norm1, x, attn_inverse_rms)
        pattern = self.attn.pattern(h) if pattern is None else pattern
        inter["pattern"] = pattern
        x = x + self.attn(h, pattern).astype(x.dtype)
        if self.mlp is not None:
            inter["resid_mid"] = x
            if self.norm2 is not None:
                mlp_inverse_rms = self.norm2.inverse_rms(x) if mlp_inverse_rms is None else mlp_inverse_rms
                inter["mlp_inverse_rms"] = mlp_inverse_rms
            x = x + self.mlp(_norm(self.norm2, x, mlp_inverse_rms)).astype(x.dtype)
        return x, inter

    def __call__(self, x: Float[Array, "B T d_model"], **frozen: jax.Array | None) -> Float[Array, "B T d_model"]:
        return self.forward(x, **frozen)[0]


class Transformer(nnx.Module):
    """Decoder-only transformer: token embedding, ``n_layers`` stacked blocks, final norm, unembed.

    Args:
      vocab_size, max_len: vocabulary size and the longest sequence accepted.
      d_model, n_heads: residual width and number of heads (``d_model / n_heads`` must be even).
      n_layers: number of blocks (stacked on a leading ``layers`` axis).
      d_hidden: MLP hidden width; defaults to ``matched_hidden_width(mlp, 4 * d_model)``.
      mlp: a kind from :data:`bilinear_jax.layers.MLP_KINDS` (bilinear by default), or None for
        an attention-only model.
      use_norm: RMSNorm before attention, MLP and unembedding; False makes them identities.
      tied_embedding: use ``W_U = W_Eᵀ`` (no separate unembedding parameter).
      mlp_bias: biases in the MLPs.
      rope_base: RoPE frequency base.
      dtype: computation dtype (logits are returned in float32 or wider); parameters use
        ``param_dtype``.

    Parameters: ``embed (vocab, embed)``, ``unembed (embed, vocab)`` unless tied, and
    ``blocks`` (a :class:`Block` whose every parameter has a leading ``layers`` axis).
    """

    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        *,
        d_model: int = 128,
        n_heads: int = 4,
        n_layers: int = 2,
        d_hidden: int | None = None,
        mlp: str | None = "bilinear",
        use_norm: bool = True,
        tied_embedding: bool = False,
        mlp_bias: bool = False,
        rope_base: float = 10000.0,
        dtype: jnp.dtype | None = None,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        check_positive(vocab_size=vocab_size, max_len=max_len, d_model=d_model, n_heads=n_heads,
                       n_layers=n_layers)
        if mlp is not None and mlp not in MLP_KINDS:
            raise ValueError(f"Unknown mlp kind {mlp!r}; choose one of {', '.join(MLP_KINDS)}, or None.")
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}.")
        if (d_model // n_heads) % 2:
            raise ValueError(f"RoPE needs an even head dimension; d_model/n_heads = {d_model // n_heads}.")
        if d_hidden is None:
            d_hidden = matched_hidden_width(mlp, 4 * d_model) if mlp is not None else 4 * d_model
        check_positive(d_hidden=d_hidden)

        self.vocab_size, self.max_len, self.d_model = vocab_size, max_len, d_model
        self.n_heads, self.n_layers, self.d_hidden = n_heads, n_layers, d_hidden
        self.mlp_kind, self.use_norm, self.tied_embedding = mlp, use_norm, tied_embedding
        self.dtype = dtype

        # Unit-RMS residual stream for an untied embedding; a tied one doubles as the unembedding,
        # so it is initialised at 1/sqrt(d_model) to keep the initial logits O(1).
        embed_std = 1.0 / math.sqrt(d_model) if tied_embedding else 1.0
        self.embed = param(embed_std * jax.random.normal(rngs.params(), (vocab_size, d_model), param_dtype),
                           ("vocab", "embed"))

        block_kwargs: dict[str, Any] = dict(
            mlp=mlp, use_norm=use_norm, mlp_bias=mlp_bias, rope_base=rope_base, dtype=dtype,
            param_dtype=param_dtype,
        )

        @nnx.split_rngs(splits=n_layers)
        @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata=_STACK)
        def make_blocks(rngs: nnx.Rngs) -> Block:
            return Block(d_model, n_heads, d_hidden, rngs=rngs, **block_kwargs)

        self.blocks = make_blocks(rngs)
        self.final_norm = RMSNorm(d_model, param_dtype=param_dtype) if use_norm else None
        self.unembed = None if tied_embedding else param(
            jax.random.normal(rngs.params(), (d_model, vocab_size), param_dtype) / math.sqrt(d_model),
            ("embed", "vocab"),
        )

    # -- Weights, for analysis. -------------------------------------------------------------------

    @property
    def W_E(self) -> Float[Array, "vocab d_model"]:  # noqa: N802
        return self.embed[...]

    @property
    def W_U(self) -> Float[Array, "d_model vocab"]:  # noqa: N802
        return self.embed[...].T if self.unembed is None else self.unembed[...]

    def _layer_index(self, i: int) -> int:
        if not -self.n_layers <= i < self.n_layers:
            raise IndexError(f"Layer {i} out of range for a {self.n_layers}-layer model.")
        return i % self.n_layers

    def block(self, i: int) -> Block:
        """Layer ``i`` as an ordinary (unstacked) :class:`Block`: a copy of its weights.

        Edits to the returned block do not reach the model; use :meth:`set_block` for that.
        """
        i = self._layer_index(i)
        graphdef, state = nnx.split(self.blocks)

        def take(v: nnx.Variable) -> nnx.Variable:
            sharding = v.get_metadata("out_sharding", None)
            updates = {"out_sharding": tuple(sharding[1:])} if sharding else {}
            return v.copy(v[...][i], **updates)

        state = jax.tree.map(take, state, is_leaf=lambda v: isinstance(v, nnx.Variable))
        return nnx.merge(graphdef, state)

    def set_block(self, i: int, block: Block) -> None:
        """Write ``block``'s weights into layer ``i`` of the stack (inverse of :meth:`block`)."""
        i = self._layer_index(i)
        stacked = nnx.state(self.blocks)
        single = nnx.state(block)
        is_var = lambda v: isinstance(v, nnx.Variable)  # noqa: E731
        updated = jax.tree.map(lambda s, b: s.copy(s[...].at[i].set(b[...])), stacked, single, is_leaf=is_var)
        nnx.update(self.blocks, updated)

    # -- Forward. ---------------------------------------------------------------------------------

    def embed_tokens(self, tokens: Int[Array, "B T"]) -> Float[Array, "B T d_model"]:
        """Rows of ``W_E``, in the computation dtype."""
        x = jnp.take(self.embed[...], tokens, axis=0)
        return x.astype(self.dtype or x.dtype)

    def unembed_resid(self, x: Float[Array, "B T d_model"], inverse_rms: jax.Array | None = None) -> Float[Array, "B T vocab"]:
        """``N_f(x) W_U``: logits from the final residual stream (float32 or wider)."""
        h = _norm(self.final_norm, x, inverse_rms)
        logits = jnp.einsum("btd,dv->btv", h, self.W_U.astype(h.dtype))
        return logits.astype(jnp.promote_types(logits.dtype, jnp.float32))

    def __call__(
        self,
        tokens: Int[Array, "B T"],
        *,
        return_intermediates: bool = False,
        frozen: Mapping[str, jax.Array] | None = None,
    ) -> Float[Array, "B T vocab"] | tuple[Float[Array, "B T vocab"], dict[str, jax.Array]]:
        """Causal logits for every position.

        Args:
          tokens: int ``(B, T)`` with ``T ≤ max_len``.
          return_intermediates: also return a dict, per-layer entries stacked on a leading
            ``n_layers`` axis: ``resid_pre (L,B,T,d)``, ``pattern (L,B,heads,T,T)``,
            ``resid_mid (L,B,T,d)`` (with an MLP), ``attn_inverse_rms``/``mlp_inverse_rms``
            ``(L,B,T,1)`` (with norms); and ``resid_final (B,T,d)``,
            ``final_inverse_rms (B,T,1)`` (with norms).
          frozen: values to hold fixed instead of recomputing: any of ``pattern``,
            ``attn_inverse_rms``, ``mlp_inverse_rms`` (stacked per layer) and
            ``final_inverse_rms``. An intermediates dict can be passed as is (other keys are
            ignored). With all of them frozen the model is linear in attention and norms.
        """
        chex.assert_rank(tokens, 2)
        if not jnp.issubdtype(tokens.dtype, jnp.integer):
            raise ValueError(f"tokens must be integers, got dtype {tokens.dtype}.")
        if tokens.shape[1] > self.max_len:
            raise ValueError(f"Sequence length {tokens.shape[1]} exceeds max_len={self.max_len}.")
        frozen = dict(frozen or {})
        per_layer = {k: frozen[k] for k in FROZEN_KEYS if frozen.get(k) is not None}
        for k, v in per_layer.items():
            if v.shape[0] != self.n_layers:
                raise ValueError(f"frozen[{k!r}] has leading axis {v.shape[0]}, expected n_layers={self.n_layers}.")

        @nnx.scan(in_axes=(nnx.Carry, 0, 0), out_axes=(nnx.Carry, 0), transform_metadata=_STACK)
        def run(x: jax.Array, block: Block, frozen_i: dict[str, jax.Array]):
            x, inter = block.forward(x, **frozen_i)
            return x, (inter if return_intermediates else None)

        x, inter = run(self.embed_tokens(tokens), self.blocks, per_layer)
        final_inverse_rms = frozen.get("final_inverse_rms")
        if self.final_norm is not None and final_inverse_rms is None:
            final_inverse_rms = self.final_norm.inverse_rms(x)
        logits = self.unembed_resid(x, final_inverse_rms)
        if not return_intermediates:
            return logits
        inter = dict(inter)
        inter["resid_final"] = x
        if self.final_norm is not None:
            inter["final_inverse_rms"] = final_inverse_rms
        return logits, inter
