"""An image classifier made of bilinear layers: exactly a polynomial of its input.

::

    h_0 = E x                              embed (no bias), x flattened to d_input
    h_l = B_l(h_{l-1}) [+ h_{l-1}]         bilinear blocks, residual optional
    logits = H h_n [+ b]                   head

With one block and no residual (and no biases), ``logits_c = xᵀ Q_c x`` with
``Q_c = Σ_o H_oc Eᵀ B_o E`` — a quadratic form whose eigenvectors are the features.
Training may add Gaussian input noise ``x + σ ε`` (as interpretable image models do).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from bilinear_jax.layers import MLP, MLP_KINDS, Bilinear
from bilinear_jax.models.common import Linear, check_positive

__all__ = ["BilinearClassifier"]


class BilinearClassifier(nnx.Module):
    """Embed → ``n_layers`` bilinear blocks (residual optional) → head.

    Args:
      d_input: number of input features (the product of an image's non-batch dims).
      num_classes: number of logits.
      d_model, d_hidden: block width and hidden width.
      n_layers: number of blocks.
      residual: ``h ← h + B(h)`` instead of ``h ← B(h)``.
      bias: biases in the blocks and the head (the embedding never has one).
      input_noise_std: std of the Gaussian input noise added when a ``noise_key`` is given.
      kind: MLP kind of the blocks (``"bilinear"``, or a baseline from ``MLP_KINDS``).

    Attributes: ``embed`` (:class:`Linear`, ``kernel (d_input, d_model)``), ``blocks`` (an
    ``nnx.List`` of :class:`~bilinear_jax.layers.Bilinear`, or :class:`~bilinear_jax.layers.MLP`
    for other kinds), ``head`` (:class:`Linear`, ``kernel (d_model, num_classes)``).
    """

    def __init__(
        self,
        d_input: int,
        num_classes: int,
        *,
        d_model: int = 64,
        d_hidden: int = 64,
        n_layers: int = 1,
        residual: bool = False,
        bias: bool = False,
        input_noise_std: float = 0.0,
        kind: str = "bilinear",
        dtype: jnp.dtype | None = None,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        check_positive(d_input=d_input, num_classes=num_classes, d_model=d_model, d_hidden=d_hidden,
                       n_layers=n_layers)
        if kind not in MLP_KINDS:
            raise ValueError(f"Unknown MLP kind {kind!r}; choose one of {', '.join(MLP_KINDS)}.")
        if not (isinstance(input_noise_std, (int, float)) and math.isfinite(input_noise_std)
                and input_noise_std >= 0):
            raise ValueError(f"input_noise_std must be a finite number >= 0, got {input_noise_std!r}.")
        self.d_input, self.num_classes, self.d_model, self.d_hidden = d_input, num_classes, d_model, d_hidden
        self.n_layers, self.residual, self.kind = n_layers, residual, kind
        self.input_noise_std = float(input_noise_std)
        self.dtype = dtype
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.embed = Linear(d_input, d_model, ("input", "embed"), **kw)
        self.blocks = nnx.List([
            Bilinear(d_model, d_hidden, d_model, bias=bias, **kw) if kind == "bilinear"
            else MLP(d_model, d_hidden, kind, bias=bias, **kw)
            for _ in range(n_layers)
        ])
        self.head = Linear(d_model, num_classes, ("embed", "classes"), bias=bias, **kw)

    def flatten(self, x: Float[Array, "B *dims"]) -> Float[Array, "B d_input"]:
        """Flatten all non-batch dims; their product must be ``d_input``."""
        flat = x.reshape(x.shape[0], -1)
        if flat.shape[1] != self.d_input:
            raise ValueError(f"Input of shape {x.shape} has {flat.shape[1]} features per example; "
                             f"the model expects d_input={self.d_input}.")
        return flat

    def add_noise(self, x: Float[Array, "B d_input"], noise_key: jax.Array | None) -> Float[Array, "B d_input"]:
        """``x + σ ε`` with ``ε ~ N(0, I)`` drawn from ``noise_key``; ``x`` unchanged when it is None."""
        if noise_key is None or self.input_noise_std == 0.0:
            return x
        return x + self.input_noise_std * jax.random.normal(noise_key, x.shape, x.dtype)

    def features(self, x: Float[Array, "B d_input"]) -> Float[Array, "B d_model"]:
        """The residual stream after the last block, from the flattened (noised) input."""
        h = self.embed(x)
        for block in self.blocks:
            out = block(h)
            h = h + out if self.residual else out
        return h

    def __call__(self, x: Float[Array, "B *dims"], noise_key: jax.Array | None = None) -> Float[Array, "B num_classes"]:
        """Logits ``(B, num_classes)``; Gaussian input noise only when ``noise_key`` is given."""
        x = self.flatten(x)
        if not jnp.issubdtype(x.dtype, jnp.floating):
            x = x.astype(jnp.float32)
        x = self.add_noise(x, noise_key)
        return self.head(self.features(x))
