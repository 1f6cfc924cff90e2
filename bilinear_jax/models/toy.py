"""A one-layer model for sparse boolean tasks (AND, XOR, OR of pairs of binary inputs).

``y = P((W x + b_w) ⊙ (V x + b_v)) + b_p``, i.e. ``y_o = x̃ᵀ B_o x̃`` over ``x̃ = [x; 1]``. On bits
``AND(a, b) = ab``, ``XOR(a, b) = a + b − 2ab`` and ``OR(a, b) = a + b − ab``: the linear terms
come from the bias (the ``1`` in ``x̃``). ``full_rank=True`` learns ``B`` directly
(:class:`~bilinear_jax.layers.TensorBilinear` over ``x̃``).
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from bilinear_jax.analysis.algebra import augment_input
from bilinear_jax.layers import MLP, MLP_KINDS, Bilinear, TensorBilinear
from bilinear_jax.models.common import check_positive

__all__ = ["ToyModel"]


class ToyModel(nnx.Module):
    """A single MLP layer ``n_inputs → n_outputs``, bilinear by default, returning raw outputs.

    Args:
      n_inputs, n_outputs: widths.
      d_hidden: hidden width (ignored with ``full_rank``).
      kind: MLP kind; ``"bilinear"`` builds :class:`~bilinear_jax.layers.Bilinear`.
      bias: biases (``x̃ = [x; 1]`` for the full-rank layer).
      full_rank: learn the tensor ``B (n_outputs, d, d)`` itself (``kind`` must be bilinear).

    Attribute ``layer`` holds the layer; ``model.tensor()`` gives ``B`` (bilinear only).
    """

    def __init__(
        self,
        n_inputs: int,
        n_outputs: int,
        *,
        d_hidden: int = 16,
        kind: str = "bilinear",
        bias: bool = True,
        full_rank: bool = False,
        dtype: jnp.dtype | None = None,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        check_positive(n_inputs=n_inputs, n_outputs=n_outputs, d_hidden=d_hidden)
        if kind not in MLP_KINDS:
            raise ValueError(f"Unknown MLP kind {kind!r}; choose one of {', '.join(MLP_KINDS)}.")
        if full_rank and kind != "bilinear":
            raise ValueError(f"full_rank=True needs kind='bilinear', got {kind!r}.")
        self.n_inputs, self.n_outputs, self.d_hidden = n_inputs, n_outputs, d_hidden
        self.kind, self.bias, self.full_rank, self.dtype = kind, bias, full_rank, dtype
        if full_rank:
            self.layer = TensorBilinear(n_inputs + int(bias), n_outputs, param_dtype=param_dtype, rngs=rngs)
        elif kind == "bilinear":
            self.layer = Bilinear(n_inputs, d_hidden, n_outputs, bias=bias, dtype=dtype,
                                  param_dtype=param_dtype, rngs=rngs)
        else:
            self.layer = MLP(n_inputs, d_hidden, kind, d_out=n_outputs, bias=bias, dtype=dtype,
                             param_dtype=param_dtype, rngs=rngs)

    def tensor(self) -> Float[Array, "n_outputs d d"]:
        """``B`` with ``y_o = x̃ᵀ B_o x̃`` (over ``x̃ = [x; 1]`` with bias); bilinear only."""
        return self.layer.tensor()

    def __call__(self, x: Float[Array, "*batch n_inputs"]) -> Float[Array, "*batch n_outputs"]:
        if not jnp.issubdtype(x.dtype, jnp.floating):
            x = x.astype(jnp.float32)
        if self.full_rank:
            if self.dtype is not None:
                x = x.astype(self.dtype)
            return self.layer(augment_input(x) if self.bias else x)
        return self.layer(x)
