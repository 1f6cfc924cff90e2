"""The bilinear algebra, in one place.

A bilinear layer computes ``y = P((W x) ⊙ (V x))`` with ``W, V: (d_hidden, d_in)`` and
``P: (d_out, d_hidden)``. It is exactly a third-order tensor::

    y_o = xᵀ B_o x,        B_oij = Σ_h P_oh W_hi V_hj.

Facts used throughout the library:

* Only ``sym(B)_o = ½(B_o + B_oᵀ)`` affects the output (:func:`symmetrize`).
* Biases fold into the tensor over the augmented input ``x̃ = [x; 1]``:
  ``W̃ = [W | b_w]``, ``Ṽ = [V | b_v]``, and the output bias ``b_p`` sits at ``B_o[d, d]``
  (:func:`augment_input`, :func:`augment_factors`, :func:`bilinear_tensor`).
* For an output direction ``u`` the interaction matrix is
  ``Q_u = Σ_o u_o sym(B)_o = sym(Wᵀ diag(Pᵀu) V)``; it is computed from the factors,
  never from the full tensor (:func:`interaction_matrix`). With ``Q_u = Σ λ_i v_i v_iᵀ``,
  ``uᵀy = Σ λ_i (v_iᵀ x)²``.
* A quadratic function ``f(x) = xᵀ B x + L x + c`` is the tensor
  ``[[B, L/2], [L/2ᵀ, c]]`` over ``x̃`` (:func:`fold_quadratic`).

Every function here is pure ``jnp.einsum`` and works under ``jax.jit`` in any float dtype.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float

__all__ = [
    "augment_input",
    "augment_factors",
    "bilinear_tensor",
    "contract",
    "fold_quadratic",
    "interaction_matrix",
    "symmetrize",
]


def symmetrize(tensor: Float[Array, "*o i i"]) -> Float[Array, "*o i i"]:
    """``sym(B) = ½(B + Bᵀ)`` over the last two axes: the only part of B that affects ``xᵀBx``."""
    return 0.5 * (tensor + jnp.swapaxes(tensor, -1, -2))


def augment_input(x: Float[Array, "*batch d"]) -> Float[Array, "*batch d+1"]:
    """Append the constant input: ``x̃ = [x; 1]``, so that biases become tensor entries."""
    ones = jnp.ones(x.shape[:-1] + (1,), dtype=x.dtype)
    return jnp.concatenate([x, ones], axis=-1)


def augment_factors(
    w: Float[Array, "h d"],
    v: Float[Array, "h d"],
    w_bias: Float[Array, " h"] | None,
    v_bias: Float[Array, " h"] | None,
) -> tuple[Float[Array, "h d+1"], Float[Array, "h d+1"]]:
    """``W̃ = [W | b_w]`` and ``Ṽ = [V | b_v]``: ``W̃ x̃ = W x + b_w`` for ``x̃ = [x; 1]``."""
    zeros = jnp.zeros(w.shape[:1], dtype=w.dtype)
    w_bias = zeros if w_bias is None else w_bias
    v_bias = zeros if v_bias is None else v_bias
    return (jnp.concatenate([w, w_bias[:, None]], axis=1),
            jnp.concatenate([v, v_bias[:, None]], axis=1))


def bilinear_tensor(
    w: Float[Array, "h i"],
    v: Float[Array, "h j"],
    p: Float[Array, "o h"] | None = None,
    out_bias: Float[Array, " o"] | None = None,
) -> Float[Array, "o i j"]:
    """The explicit tensor ``B_oij = Σ_h P_oh W_hi V_hj`` (``P = I`` when ``p`` is None).

    With ``out_bias`` (the factors must then already be augmented, see :func:`augment_factors`),
    ``b_o`` is added at ``B_o[-1, -1]`` so that ``y_o = x̃ᵀ B_o x̃`` holds exactly.
    """
    if p is None:
        tensor = jnp.einsum("hi,hj->hij", w, v)
    else:
        tensor = jnp.einsum("oh,hi,hj->oij", p, w, v)
    if out_bias is not None:
        tensor = tensor.at[:, -1, -1].add(out_bias)
    return tensor


def contract(
    tensor: Float[Array, "o i j"],
    x: Float[Array, "*batch i"],
    y: Float[Array, "*batch j"] | None = None,
) -> Float[Array, "*batch o"]:
    """The forward pass over the explicit tensor: ``out_o = xᵀ B_o y`` (``y = x`` by default)."""
    return jnp.einsum("...i,oij,...j->...o", x, tensor, x if y is None else y)


def interaction_matrix(
    w: Float[Array, "h d"],
    v: Float[Array, "h d"],
    u: Float[Array, "*k o"],
    p: Float[Array, "o h"] | None = None,
    out_bias: Float[Array, " o"] | None = None,
) -> Float[Array, "*k d d"]:
    """``Q_u = sym(Wᵀ diag(Pᵀu) V) = Σ_o u_o sym(B)_o``, from the factors, for each row of ``u``.

    Cost ``O(k · d_hidden · d²)`` with no ``(d_out, d, d)`` intermediate. ``u`` lives in the
    output space (``d_out``), or in the hidden space when ``p`` is None. With augmented factors,
    ``out_bias`` adds ``uᵀb_p`` at ``Q[-1, -1]``, as in :func:`bilinear_tensor`.
    """
    hidden_weights = u if p is None else jnp.einsum("...o,oh->...h", u, p)
    q = symmetrize(jnp.einsum("hi,...h,hj->...ij", w, hidden_weights, v))
    if out_bias is not None:
        q = q.at[..., -1, -1].add(u @ out_bias)
    return q


def fold_quadratic(
    quadratic: Float[Array, "o d d"],
    linear: Float[Array, "o d"],
    constant: Float[Array, " o"],
) -> Float[Array, "o d+1 d+1"]:
    """The symmetric tensor over ``x̃ = [x; 1]`` of ``f(x) = xᵀ B x + L x + c``.

    ``[[sym(B), L/2], [L/2ᵀ, c]]``: the inverse of reading a biased layer's quadratic form.
    """
    d_out, d, _ = quadratic.shape
    folded = jnp.zeros((d_out, d + 1, d + 1), dtype=quadratic.dtype)
    folded = folded.at[:, :d, :d].set(symmetrize(quadratic))
    folded = folded.at[:, :d, d].set(0.5 * linear)
    folded = folded.at[:, d, :d].set(0.5 * linear)
    return folded.at[:, d, d].set(constant)
