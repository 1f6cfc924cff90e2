"""Causal multi-head self-attention with rotary position embeddings (RoPE), built for analysis.

For head ``h`` with ``q_t = R_t W_Q[h]ᵀ x_t``, ``k_s = R_s W_K[h]ᵀ x_s`` (``R_t`` the RoPE rotation
at position ``t``)::

    A[h, t, s] = softmax_s( q_t · k_s / sqrt(d_head) ),  s ≤ t          (the pattern)
    out_t      = Σ_h Σ_s A[h, t, s] W_O[h]ᵀ W_V[h]ᵀ x_s                 (sum of head outputs)

RoPE makes ``q_t · k_s`` depend on positions only through ``t - s``. Given a frozen pattern ``A``
the layer is linear in ``x`` (:meth:`CausalSelfAttention.head_outputs`), which is what exact
path expansion needs.
"""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float, Int

from bilinear_jax.layers import param
from bilinear_jax.models.common import check_positive

__all__ = ["CausalSelfAttention", "apply_rope", "causal_mask"]


def apply_rope(
    x: Float[Array, "*batch T d_head"],
    positions: Int[Array, " T"],
    base: float = 10000.0,
) -> Float[Array, "*batch T d_head"]:
    """Rotate pairs ``(x_i, x_{i+d/2})`` by angle ``p · base^(-2i/d)`` (the "rotate-half" RoPE).

    ``apply_rope(q, m) · apply_rope(k, n)`` depends on ``m, n`` only through ``m - n``.
    """
    d_head = x.shape[-1]
    if d_head % 2:
        raise ValueError(f"RoPE needs an even head dimension, got {d_head}.")
    half = d_head // 2
    freqs = base ** (-jnp.arange(half, dtype=jnp.float32) * 2.0 / d_head)
    angles = positions.astype(jnp.float32)[:, None] * freqs[None, :]  # (T, half)
    cos, sin = jnp.cos(angles).astype(x.dtype), jnp.sin(angles).astype(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)


def causal_mask(length: int) -> jax.Array:
    """``(T, T)`` boolean mask, True where key position ``s ≤`` query position ``t``."""
    return jnp.tril(jnp.ones((length, length), dtype=bool))


class CausalSelfAttention(nnx.Module):
    """Causal multi-head self-attention with RoPE and no biases.

    Parameters (logical axes): ``qkv (embed, 3, heads, kv)`` (query, key and value fused in one
    kernel) and ``out (heads, kv, embed)``. Per-head matrices are the properties
    :attr:`W_Q`, :attr:`W_K`, :attr:`W_V` ``(heads, d_model, d_head)`` and :attr:`W_O`
    ``(heads, d_head, d_model)``.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        rope_base: float = 10000.0,
        dtype: jnp.dtype | None = None,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        check_positive(d_model=d_model, n_heads=n_heads)
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}.")
        d_head = d_model // n_heads
        if d_head % 2:
            raise ValueError(f"RoPE needs an even head dimension; d_model/n_heads = {d_head}.")
        if not rope_base > 0:
            raise ValueError(f"rope_base must be positive, got {rope_base!r}.")
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_head
        self.rope_base, self.dtype = float(rope_base), dtype
        std = 1.0 / math.sqrt(d_model)
        self.qkv = param(
            std * jax.random.normal(rngs.params(), (d_model, 3, n_heads, d_head), param_dtype),
            ("embed", None, "heads", "kv"),
        )
        self.out = param(
            std * jax.random.normal(rngs.params(), (n_heads, d_head, d_model), param_dtype),
            ("heads", "kv", "embed"),
        )

    # -- Per-head matrices, for analysis. ---------------------------------------------------------

    @property
    def W_Q(self) -> Float[Array, "heads d_model d_head"]:  # noqa: N802
        return jnp.moveaxis(self.qkv[...][:, 0], 1, 0)

    @property
    def W_K(self) -> Float[Array, "heads d_model d_head"]:  # noqa: N802
        return jnp.moveaxis(self.qkv[...][:, 1], 1, 0)

    @property
    def W_V(self) -> Float[Array, "heads d_model d_head"]:  # noqa: N802
        return jnp.moveaxis(self.qkv[...][:, 2], 1, 0)

    @property
    def W_O(self) -> Float[Array, "heads d_head d_model"]:  # noqa: N802
        return self.out[...]

    # -- Forward pieces. --------------------------------------------------------------------------

    def _dtype(self, x: jax.Array) -> jnp.dtype:
        return self.dtype or jnp.result_type(x, self.qkv[...])

    def _project(self, x: Float[Array, "B T d_model"], which: slice) -> jax.Array:
        chex.assert_rank(x, 3)
        chex.assert_axis_dimension(x, -1, self.d_model)
        dtype = self._dtype(x)
        kernel = self.qkv[...][:, which].astype(dtype)
        return jnp.einsum("btd,dshk->sbhtk", x.astype(dtype), kernel)  # (s, B, heads, T, d_head)

    def scores(self, x: Float[Array, "B T d_model"]) -> Float[Array, "B heads T T"]:
        """Pre-mask attention scores ``q_t · k_s / sqrt(d_head)`` with RoPE applied to q and k."""
        q, k = self._project(x, slice(0, 2))
        positions = jnp.arange(x.shape[1])
        q = apply_rope(q, positions, self.rope_base)
        k = apply_rope(k, positions, self.rope_base)
        return jnp.einsum("bhtk,bhsk->bhts", q, k) / jnp.sqrt(jnp.asarray(self.d_head, q.dtype))

    def pattern(self, x: Float[Array, "B T d_model"]) -> Float[Array, "B heads T T"]:
        """Attention weights ``A[b, h, t, s]``: softmax over ``s ≤ t`` (float32 or wider), 0 above."""
        scores = self.scores(x)
        scores = scores.astype(jnp.promote_types(scores.dtype, jnp.float32))
        mask = causal_mask(x.shape[1])
        scores = jnp.where(mask, scores, jnp.finfo(scores.dtype).min)
        return jnp.where(mask, jax.nn.softmax(scores, axis=-1), 0.0)

    def values(self, x: Float[Array, "B T d_model"]) -> Float[Array, "B heads T d_head"]:
        return self._project(x, slice(2, 3))[0]

    def _mix(self, x: jax.Array, pattern: jax.Array | None) -> Float[Array, "B heads T d_head"]:
        a = self.pattern(x) if pattern is None else pattern
        chex.assert_shape(a, (x.shape[0], self.n_heads, x.shape[1], x.shape[1]))
        v = self.values(x)
        return jnp.einsum("bhts,bhsk->bhtk", a.astype(v.dtype), v)

    def head_outputs(
        self, x: Float[Array, "B T d_model"], pattern: Float[Array, "B heads T T"] | None = None
    ) -> Float[Array, "B heads T d_model"]:
        """Each head's contribution ``Σ_s A[h,t,s] W_O[h]ᵀ W_V[h]ᵀ x_s``; they sum to the output.

        With a frozen ``pattern`` (e.g. from :meth:`pattern` on the forward pass being
        decomposed) the result is linear in ``x``.
        """
        z = self._mix(x, pattern)
        return jnp.einsum("bhtk,hke->bhte", z, self.out[...].astype(z.dtype))

    def __call__(
        self, x: Float[Array, "B T d_model"], pattern: Float[Array, "B heads T T"] | None = None
    ) -> Float[Array, "B T d_model"]:
        """``Σ_h head_outputs(x, pattern)[:, h]``, without materialising the per-head outputs."""
        z = self._mix(x, pattern)
        return jnp.einsum("bhtk,hke->bte", z, self.out[...].astype(z.dtype))
