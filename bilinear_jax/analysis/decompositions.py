"""Decompositions of the whole tensor ``B``: HOSVD (an SVD of the output mode) and CP.

**HOSVD.** Reshape ``sym(B)`` to ``(d_out, d_in²)`` and take its SVD::

    sym(B)_o = Σ_r U_or σ_r M_r,      ‖M_r‖_F = 1,  ⟨M_r, M_s⟩ = δ_rs,

so the output directions ``U_r`` with the largest ``σ_r`` read the most interaction, and each
*singular interaction matrix* ``M_r = Q_{U_r} / σ_r`` is itself an interaction matrix (eigendecompose
it with :func:`~bilinear_jax.analysis.spectra.eigh`). The default ``method="gram"`` never forms
``B``: the output Gram matrix ``G_oo' = ⟨sym B_o, sym B_o'⟩ = ½ P (WWᵀ ⊙ VVᵀ + WVᵀ ⊙ VWᵀ) Pᵀ``
costs ``O(h² (d + d_out))`` and ``M_r`` comes from the factors. ``method="explicit"`` builds ``B``
(refused if it would not fit) and calls ``jnp.linalg.svd``: more accurate for tiny ``σ_r``.

**CP.** ``B ≈ Σ_r λ_r a_r ⊗ b_r ⊗ c_r`` by alternating least squares, with every MTTKRP computed
from the factors (``P((W b) ⊙ (V c))`` etc.), so ``B`` is never formed either. A bilinear layer's
own factors are a CP decomposition of rank ``d_hidden``; CP finds a smaller one.
"""

from __future__ import annotations

from functools import partial
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from bilinear_jax.analysis import algebra
from bilinear_jax.analysis.budget import array_bytes, check_fits
from bilinear_jax.analysis.interactions import BilinearFactors, factors_of, fold_out_bias, interaction_matrices

__all__ = ["CP", "HOSVD", "cp_decomposition", "hosvd", "output_gram"]


class HOSVD(NamedTuple):
    """``sym(B)_o = Σ_r output_vectors[o, r] · singular_values[r] · interaction_matrices[r]``.

    ``singular_values (r,)`` descending, ``output_vectors (d_out, r)`` orthonormal columns,
    ``interaction_matrices (r, d, d)`` symmetric and Frobenius-orthonormal.
    """

    singular_values: Float[Array, " r"]
    output_vectors: Float[Array, "o r"]
    interaction_matrices: Float[Array, "r d d"]

    def tensor(self) -> Float[Array, "o d d"]:
        """The (truncated) reconstruction of ``sym(B)``."""
        return jnp.einsum("or,r,rij->oij", self.output_vectors, self.singular_values, self.interaction_matrices)


class CP(NamedTuple):
    """``B ≈ Σ_r weights[r] · output[:, r] ⊗ left[:, r] ⊗ right[:, r]`` (unit-norm columns).

    ``relative_error = ‖B − B̂‖_F / ‖B‖_F`` of the fit.
    """

    weights: Float[Array, " r"]
    output: Float[Array, "o r"]
    left: Float[Array, "d r"]
    right: Float[Array, "d r"]
    relative_error: Float[Array, ""]

    def tensor(self) -> Float[Array, "o d d"]:
        return jnp.einsum("r,or,ir,jr->oij", self.weights, self.output, self.left, self.right)


def _projection(factors: BilinearFactors) -> jax.Array:
    return jnp.eye(factors.d_hidden, dtype=factors.w.dtype) if factors.p is None else factors.p


def output_gram(factors: BilinearFactors) -> Float[Array, "o o"]:
    """``G_oo' = ⟨sym B_o, sym B_o'⟩_F = ½ P (WWᵀ ⊙ VVᵀ + WVᵀ ⊙ VWᵀ) Pᵀ``, from the factors."""
    factors = fold_out_bias(factors_of(factors))
    w, v = factors.w, factors.v
    h = w.shape[0]
    check_fits(3 * array_bytes((h, h), w.dtype), f"three ({h}×{h}) hidden Gram matrices")
    inner = 0.5 * ((w @ w.T) * (v @ v.T) + (w @ v.T) * (v @ w.T))
    p = _projection(factors).astype(inner.dtype)
    return p @ inner @ p.T


def _fix_signs(u: jax.Array) -> jax.Array:
    """Each column's largest-magnitude entry made positive (a deterministic SVD sign)."""
    idx = jnp.argmax(jnp.abs(u), axis=0)
    signs = jnp.sign(u[idx, jnp.arange(u.shape[1])])
    return u * jnp.where(signs == 0, 1, signs)


def hosvd(
    factors: BilinearFactors,
    rank: int | None = None,
    *,
    method: Literal["gram", "explicit"] = "gram",
    chunk_size: int | None = None,
) -> HOSVD:
    """The SVD of ``sym(B)`` reshaped to ``(d_out, d²)``: the top-``rank`` singular interaction matrices.

    Args:
      factors: :class:`BilinearFactors` (or a layer; see ``factors_of``).
      rank: how many to return (default ``min(d_out, d²)``).
      method: ``"gram"`` (from the factors, never forming ``B``) or ``"explicit"``.
      chunk_size: stream the ``M_r`` computation in chunks of this many (``gram`` only).
    """
    factors = factors_of(factors)
    d, d_out = factors.d_in, factors.d_out
    full = min(d_out, d * d)
    rank = full if rank is None else int(rank)
    if not 0 < rank <= full:
        raise ValueError(f"rank must be in [1, {full}], got {rank}.")
    if method == "explicit":
        check_fits(2 * array_bytes((d_out, d, d), factors.dtype), f"the full tensor B ({d_out}, {d}, {d})",
                   suggestion="Use method='gram', which never forms B.")
        b = algebra.symmetrize(algebra.bilinear_tensor(*factors))
        u, s, vt = jnp.linalg.svd(b.reshape(d_out, d * d), full_matrices=False)
        u, s, vt = u[:, :rank], s[:rank], vt[:rank]
        signs = jnp.sign(u[jnp.argmax(jnp.abs(u), axis=0), jnp.arange(rank)])
        signs = jnp.where(signs == 0, 1, signs)
        return HOSVD(s, u * signs, (vt * signs[:, None]).reshape(rank, d, d))
    if method != "gram":
        raise ValueError(f"method must be 'gram' or 'explicit', got {method!r}.")
    values, vectors = jnp.linalg.eigh(output_gram(factors))
    values, vectors = values[::-1][:rank], _fix_signs(vectors[:, ::-1][:, :rank])
    s = jnp.sqrt(jnp.maximum(values, 0))
    safe = jnp.where(s > 0, s, 1)
    m = interaction_matrices(factors, (vectors / safe).T, chunk_size=chunk_size)
    return HOSVD(s, vectors, m)


# -- CP by ALS, from the factors -------------------------------------------------------------------

def _normalize(x):
    norms = jnp.linalg.norm(x, axis=0)
    return x / jnp.where(norms > 0, norms, 1), norms


@partial(jax.jit, static_argnums=(1, 2))
def _cp_als(factors: BilinearFactors, rank: int, num_iters: int, key: jax.Array) -> CP:
    w, v, p = factors.w, factors.v, _projection(factors)
    dtype = w.dtype
    d, d_out = w.shape[1], p.shape[0]
    ka, kb, kc = jax.random.split(key, 3)
    a0 = jax.random.normal(ka, (d_out, rank), dtype)
    b0 = _normalize(jax.random.normal(kb, (d, rank), dtype))[0]
    c0 = _normalize(jax.random.normal(kc, (d, rank), dtype))[0]

    def solve(mttkrp, g1, g2):
        return mttkrp @ jnp.linalg.pinv(g1 * g2)

    def step(_, abc):
        a, b, c, _ = abc
        a, _ = _normalize(solve(p @ ((w @ b) * (v @ c)), b.T @ b, c.T @ c))
        b, _ = _normalize(solve(w.T @ ((p.T @ a) * (v @ c)), a.T @ a, c.T @ c))
        c, lam = _normalize(solve(v.T @ ((p.T @ a) * (w @ b)), a.T @ a, b.T @ b))
        return a, b, c, lam

    a, b, c, lam = jax.lax.fori_loop(0, num_iters, step, (a0, b0, c0, jnp.ones((rank,), dtype)))
    norm_b2 = jnp.sum((p.T @ p) * (w @ w.T) * (v @ v.T))
    inner = jnp.sum(lam * jnp.sum((p.T @ a) * (w @ b) * (v @ c), axis=0))
    norm_x2 = lam @ ((a.T @ a) * (b.T @ b) * (c.T @ c)) @ lam
    error = jnp.sqrt(jnp.maximum(norm_b2 - 2 * inner + norm_x2, 0) / norm_b2)
    order = jnp.argsort(-jnp.abs(lam))
    return CP(lam[order], a[:, order], b[:, order], c[:, order], error)


def cp_decomposition(
    factors: BilinearFactors,
    rank: int,
    *,
    num_iters: int = 200,
    key: jax.Array | None = None,
) -> CP:
    """Rank-``rank`` CP decomposition of ``B`` (not symmetrized) by ALS, never forming ``B``.

    Memory ``O(h² + (d + d_out) · rank)``; each iteration costs ``O(h (d + d_out) rank)``.
    """
    factors = fold_out_bias(factors_of(factors))
    if rank <= 0:
        raise ValueError(f"rank must be positive, got {rank}.")
    h = factors.d_hidden
    check_fits(3 * array_bytes((h, h), factors.dtype), f"three ({h}×{h}) hidden Gram matrices")
    return _cp_als(factors, int(rank), int(num_iters), jax.random.key(0) if key is None else key)

