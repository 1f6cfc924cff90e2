"""Small pieces shared by the models: a linear map with logical axis names, argument checks."""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from bilinear_jax.layers import param

__all__ = ["Linear", "check_positive"]


def check_positive(**sizes: int) -> None:
    """Raise a ValueError naming the first size that is not a positive int."""
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}.")


class Linear(nnx.Module):
    """``y = x K (+ b)`` with ``kernel K: (d_in, d_out)``, stored with logical axis names.

    Args:
      d_in, d_out: widths.
      axes: logical names of the kernel's two axes, e.g. ``("input", "embed")``.
      bias: add ``b`` (logical axis ``axes[1]``).
      init_std: kernel init standard deviation; defaults to ``1/sqrt(d_in)``.
    """

    def __init__(
        self,
        d_in: int,
        d_out: int,
        axes: tuple[str, str],
        *,
        bias: bool = False,
        init_std: float | None = None,
        dtype: jnp.dtype | None = None,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        check_positive(d_in=d_in, d_out=d_out)
        self.d_in, self.d_out, self.dtype = d_in, d_out, dtype
        std = 1.0 / math.sqrt(d_in) if init_std is None else init_std
        self.kernel = param(std * jax.random.normal(rngs.params(), (d_in, d_out), param_dtype), axes)
        self.bias = param(jnp.zeros((d_out,), param_dtype), (axes[1],)) if bias else None

    def __call__(self, x: Float[Array, "*batch d_in"]) -> Float[Array, "*batch d_out"]:
        chex.assert_axis_dimension(x, -1, self.d_in)
        dtype = self.dtype or jnp.result_type(x, self.kernel[...])
        y = jnp.einsum("...i,io->...o", x.astype(dtype), self.kernel[...].astype(dtype))
        if self.bias is not None:
            y = y + self.bias[...].astype(dtype)
        return y
