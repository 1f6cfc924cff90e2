"""Flax NNX layers: the bilinear layer, its GLU and plain-MLP baselines, and RMSNorm.

One implementation, :class:`MLP`, covers every kind::

    plain  (relu, gelu, swish):                  y = P act(W x + b_w) + b_p
    gated  (glu, reglu, geglu, swiglu, bilinear): y = P (act(W x + b_w) ⊙ (V x + b_v)) + b_p

``bilinear`` is the gated kind with no activation, so ``y_o = x̃ᵀ B_o x̃`` with
``B_oij = Σ_h P_oh W̃_hi Ṽ_hj`` exactly (:meth:`MLP.tensor`). ``W`` and ``V`` are one fused
kernel of shape ``(d_in, 2, d_hidden)``, so the layer runs one matmul for both.

Every parameter carries logical axis names (``embed``, ``mlp``, ...) as metadata only; training
maps them onto a device mesh with axis rules (see :mod:`bilinear_jax.training.sharding`).
"""

from __future__ import annotations

import math
from typing import Callable, Literal, Sequence

import chex
import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from bilinear_jax.analysis import algebra

__all__ = [
    "GATED_KINDS",
    "MLP_KINDS",
    "PLAIN_KINDS",
    "Bilinear",
    "MLP",
    "RMSNorm",
    "TensorBilinear",
    "count_params",
    "matched_hidden_width",
    "param",
]

MLPKind = Literal["bilinear", "relu", "gelu", "swish", "glu", "reglu", "geglu", "swiglu"]

# Activation on the W branch. Gated kinds multiply it with the V branch; ``None`` is the identity.
GATED_KINDS: dict[str, Callable | None] = {
    "bilinear": None,
    "glu": jax.nn.sigmoid,
    "reglu": jax.nn.relu,
    "geglu": jax.nn.gelu,
    "swiglu": jax.nn.silu,
}
PLAIN_KINDS: dict[str, Callable] = {"relu": jax.nn.relu, "gelu": jax.nn.gelu, "swish": jax.nn.silu}
MLP_KINDS: tuple[str, ...] = tuple(GATED_KINDS) + tuple(PLAIN_KINDS)


def param(value: jax.Array, axes: Sequence[str | None]) -> nnx.Param:
    """A parameter with logical axis names, stored as metadata (not sharded eagerly)."""
    chex.assert_rank(value, len(axes))
    return nnx.Param(value, out_sharding=tuple(axes), eager_sharding=False)


def _normal(rngs: nnx.Rngs, shape: tuple[int, ...], fan_in: int, dtype) -> jax.Array:
    return jax.random.normal(rngs.params(), shape, dtype) / math.sqrt(fan_in)


def matched_hidden_width(kind: str, plain_hidden: int) -> int:
    """Hidden width giving ``kind`` the parameter count of a plain MLP of width ``plain_hidden``.

    A plain MLP has ``2·d·h`` weights and a gated one ``3·d·h'``, so gated kinds use
    ``h' = round(2h/3)`` (Shazeer 2020).
    """
    _check_kind(kind)
    return plain_hidden if kind in PLAIN_KINDS else max(1, round(2 * plain_hidden / 3))


def count_params(module: nnx.Module) -> int:
    """Number of scalar parameters in ``module``."""
    return sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


def _check_kind(kind: str) -> None:
    if kind not in MLP_KINDS:
        raise ValueError(f"Unknown MLP kind {kind!r}; choose one of {', '.join(MLP_KINDS)}.")


class MLP(nnx.Module):
    """A plain or gated MLP: ``y = P (act(W x + b_w) [⊙ (V x + b_v)]) + b_p``.

    Args:
      d_model: input width ``d_in`` (and output width unless ``d_out`` is given).
      d_hidden: hidden width ``h``. For equal parameters across kinds use
        :func:`matched_hidden_width`.
      kind: one of :data:`MLP_KINDS`; ``"bilinear"`` (the default) is exactly a tensor.
      d_out: output width; defaults to ``d_model``.
      project: if False there is no output projection and the layer returns the hidden units.
      bias: add ``b_w``, ``b_v`` and ``b_p``.
      dtype: computation dtype (e.g. ``jnp.bfloat16``); parameters stay in ``param_dtype``.
    """

    def __init__(
        self,
        d_model: int,
        d_hidden: int,
        kind: MLPKind = "bilinear",
        *,
        d_out: int | None = None,
        project: bool = True,
        bias: bool = False,
        dtype: jnp.dtype | None = None,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        _check_kind(kind)
        self.kind, self.d_in, self.d_hidden, self.bias = kind, d_model, d_hidden, bias
        self.gated = kind in GATED_KINDS
        self.d_out = (d_model if d_out is None else d_out) if project else d_hidden
        self.dtype = dtype
        branches = 2 if self.gated else 1
        self.up = param(_normal(rngs, (d_model, branches, d_hidden), d_model, param_dtype), ("embed", None, "mlp"))
        self.up_bias = param(jnp.zeros((branches, d_hidden), param_dtype), (None, "mlp")) if bias else None
        self.down = (
            param(_normal(rngs, (d_hidden, self.d_out), d_hidden, param_dtype), ("mlp", "embed")) if project else None
        )
        self.down_bias = param(jnp.zeros((self.d_out,), param_dtype), ("embed",)) if bias and project else None

    def hidden(self, x: Float[Array, "*batch d_in"]) -> Float[Array, "*batch d_hidden"]:
        """The hidden units, ``act(W x + b_w) [⊙ (V x + b_v)]``, before the output projection."""
        chex.assert_axis_dimension(x, -1, self.d_in)
        dtype = self.dtype or jnp.result_type(x, self.up[...])
        # One flat (d_in, branches·h) matmul on the fused kernel: on CPU its backward pass is ~3×
        # faster than the 3-D einsum "...i,ibh->...bh" (benchmarks/ablations.py measures both).
        up = self.up[...].astype(dtype)
        pre = jnp.einsum("...i,ik->...k", x.astype(dtype), up.reshape(self.d_in, -1))
        pre = pre.reshape(*pre.shape[:-1], *up.shape[1:])
        if self.up_bias is not None:
            pre = pre + self.up_bias[...].astype(dtype)
        if self.gated:
            gate = GATED_KINDS[self.kind]
            left, right = pre[..., 0, :], pre[..., 1, :]
            return (left if gate is None else gate(left)) * right
        return PLAIN_KINDS[self.kind](pre[..., 0, :])

    def __call__(self, x: Float[Array, "*batch d_in"]) -> Float[Array, "*batch d_out"]:
        hidden = self.hidden(x)
        if self.down is None:
            return hidden
        y = jnp.einsum("...h,ho->...o", hidden, self.down[...].astype(hidden.dtype))
        if self.down_bias is not None:
            y = y + self.down_bias[...].astype(y.dtype)
        return y

    # -- The tensor view; defined for kind="bilinear" only. --------------------------------------

    def _require_bilinear(self, what: str) -> None:
        if self.kind != "bilinear":
            raise ValueError(
                f"{what} is defined only for kind='bilinear'; a {self.kind!r} MLP is not a quadratic "
                "form of its input. Use bilinear_jax.analysis.quadratic_form to test a black box."
            )

    @property
    def W(self) -> Float[Array, "h d_in"]:  # noqa: N802 (the paper's notation)
        """Left factor ``W`` in math orientation ``(d_hidden, d_in)``."""
        return self.up[...][:, 0, :].T

    @property
    def V(self) -> Float[Array, "h d_in"]:  # noqa: N802
        """Right factor ``V``, ``(d_hidden, d_in)``; bilinear and gated kinds only."""
        if not self.gated:
            raise ValueError(f"A {self.kind!r} MLP has no V factor.")
        return self.up[...][:, 1, :].T

    @property
    def P(self) -> Float[Array, "d_out h"] | None:  # noqa: N802
        """Output projection ``P``, ``(d_out, d_hidden)``, or None without projection."""
        return None if self.down is None else self.down[...].T

    def factors(self) -> tuple[jax.Array, jax.Array, jax.Array | None, jax.Array | None]:
        """``(W̃, Ṽ, P, b_p)``: the factors over ``x̃ = [x; 1]`` with bias, else ``(W, V, P, None)``."""
        self._require_bilinear("factors()")
        w, v = self.W, self.V
        if self.up_bias is not None:
            w, v = algebra.augment_factors(w, v, self.up_bias[...][0], self.up_bias[...][1])
        out_bias = None if self.down_bias is None else self.down_bias[...]
        return w, v, self.P, out_bias

    def tensor(self) -> Float[Array, "d_out d d"]:
        """The explicit tensor ``B`` with ``y_o = x̃ᵀ B_o x̃``.

        Shape ``(d_out, d_in, d_in)``, or ``(d_out, d_in+1, d_in+1)`` over ``x̃ = [x; 1]`` with bias.
        Without projection ``d_out = d_hidden`` and ``B_hij = W_hi V_hj``.
        """
        w, v, p, out_bias = self.factors()
        return algebra.bilinear_tensor(w, v, p, out_bias)

    def tensor_forward(self, x: Float[Array, "*batch d_in"]) -> Float[Array, "*batch d_out"]:
        """The forward pass through the explicit tensor, ``einsum('...i,oij,...j->...o', x̃, B, x̃)``."""
        chex.assert_axis_dimension(x, -1, self.d_in)
        x_tilde = algebra.augment_input(x) if self.bias else x
        return algebra.contract(self.tensor(), x_tilde)

    def interaction_matrix(self, u: Float[Array, "*k d_out"]) -> Float[Array, "*k d d"]:
        """``Q_u = Σ_o u_o sym(B_o)`` from the factors (over ``x̃`` with bias), never forming ``B``."""
        w, v, p, out_bias = self.factors()
        return algebra.interaction_matrix(w, v, u, p, out_bias)


class Bilinear(MLP):
    """The bilinear layer ``y = P((W x + b_w) ⊙ (V x + b_v)) + b_p``.

    With ``d_out=None`` there is no projection: ``y = (W x) ⊙ (V x)`` and ``B_hij = W_hi V_hj``.
    """

    def __init__(
        self,
        d_in: int,
        d_hidden: int,
        d_out: int | None = None,
        *,
        bias: bool = False,
        dtype: jnp.dtype | None = None,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        super().__init__(
            d_in, d_hidden, "bilinear", d_out=d_out, project=d_out is not None, bias=bias,
            dtype=dtype, param_dtype=param_dtype, rngs=rngs,
        )


class TensorBilinear(nnx.Module):
    """A full-rank bilinear layer whose parameter is the tensor itself: ``y_o = xᵀ B_o x``.

    ``d_out · d_in²`` parameters: meant for small toy models, where every entry is readable.
    """

    def __init__(self, d_in: int, d_out: int, *, param_dtype: jnp.dtype = jnp.float32, rngs: nnx.Rngs):
        self.d_in, self.d_out = d_in, d_out
        self.B = param(_normal(rngs, (d_out, d_in, d_in), d_in, param_dtype), (None, "embed", None))

    def tensor(self) -> Float[Array, "d_out d_in d_in"]:
        return self.B[...]

    def interaction_matrix(self, u: Float[Array, "*k d_out"]) -> Float[Array, "*k d_in d_in"]:
        """``Q_u = Σ_o u_o sym(B_o)``."""
        return algebra.symmetrize(jnp.einsum("...o,oij->...ij", u, self.B[...]))

    def __call__(self, x: Float[Array, "*batch d_in"]) -> Float[Array, "*batch d_out"]:
        chex.assert_axis_dimension(x, -1, self.d_in)
        return algebra.contract(self.B[...].astype(x.dtype), x)


class RMSNorm(nnx.Module):
    """``y = x · r(x) · g`` with the per-token inverse RMS ``r(x) = 1/sqrt(mean(x²) + ε)``.

    Not bilinear: for exact circuit analysis pass a frozen ``inverse_rms`` taken from the forward
    pass being decomposed, which makes the layer linear in ``x``.
    """

    def __init__(self, d: int, *, eps: float = 1e-6, use_scale: bool = True,
                 param_dtype: jnp.dtype = jnp.float32, rngs: nnx.Rngs | None = None):
        self.d, self.eps = d, eps
        self.scale = param(jnp.ones((d,), param_dtype), ("embed",)) if use_scale else None

    def inverse_rms(self, x: Float[Array, "*batch d"]) -> Float[Array, "*batch 1"]:
        return jax.lax.rsqrt(jnp.mean(jnp.square(x.astype(jnp.promote_types(x.dtype, jnp.float32))), axis=-1, keepdims=True) + self.eps)

    def __call__(self, x: Float[Array, "*batch d"], inverse_rms: jax.Array | None = None) -> Float[Array, "*batch d"]:
        chex.assert_axis_dimension(x, -1, self.d)
        r = self.inverse_rms(x) if inverse_rms is None else inverse_rms
        y = x * r.astype(x.dtype)
        return y if self.scale is None else y * self.scale[...].astype(x.dtype)
