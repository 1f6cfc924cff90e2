"""Eigendecompositions of interaction matrices: ``Q_u = Σ_i λ_i v_i v_iᵀ``, so ``uᵀy = Σ λ_i (v_iᵀx)²``.

* :func:`eigh` — the full spectrum, ordered by ``|λ|`` (largest first), as a :class:`Spectrum`.
* :func:`top_eigenpairs` — the top-k positive and top-k negative eigenpairs from a dense ``Q``.
* :func:`top_eigenpairs_iterative` — the same for large ``d`` by LOBPCG
  (``jax.experimental.sparse.linalg.lobpcg_standard``) on the matrix-free product
  ``v ↦ Q_u v``; the negative ones from ``−Q_u``. ``Q_u`` is never formed.
* :func:`explained_fraction` — ``Σ_{i≤k} λ_i² / Σ_i λ_i²`` (the share of ``‖Q‖_F²``).
* :func:`project_to_input` — eigenvectors through the embedding: ``E v`` over pixels or tokens.
* :func:`contributions` — the per-input explanation ``λ_i (v_iᵀx)²``.

Results are NamedTuples (pytrees: they come out of ``jax.jit``, and render with treescope in a
notebook, e.g. after ``treescope.basic_interactive_setup()``).
"""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.sparse.linalg import lobpcg_standard
from jax.sharding import Mesh
from jaxtyping import Array, Float

from bilinear_jax.analysis.interactions import (
    BilinearFactors,
    _check_directions,
    _chunks,
    factors_of,
    interaction_matrices,
    interaction_matvec,
    iter_interaction_matrices,
    place_rows,
    replicate,
)

__all__ = [
    "Spectrum",
    "TopEigenpairs",
    "contributions",
    "eigh",
    "explained_fraction",
    "interaction_spectra",
    "project_to_input",
    "top_eigenpairs",
    "top_eigenpairs_iterative",
]


class Spectrum(NamedTuple):
    """``Q = Σ_i values[i] vectors[:, i] vectors[:, i]ᵀ``, ordered by ``|values|`` descending.

    ``values: (*k, n)``, ``vectors: (*k, d, n)`` (eigenvectors as columns, unit norm).
    """

    values: Float[Array, "*k n"]
    vectors: Float[Array, "*k d n"]

    def matrix(self) -> Float[Array, "*k d d"]:
        """``Σ_i λ_i v_i v_iᵀ``."""
        return jnp.einsum("...in,...n,...jn->...ij", self.vectors, self.values, self.vectors)


class TopEigenpairs(NamedTuple):
    """The ``k`` largest (``positive_*``, descending) and ``k`` smallest (``negative_*``, most
    negative first) eigenpairs of each ``Q``: ``values (*u, k)``, ``vectors (*u, d, k)``."""

    positive_values: Float[Array, "*u k"]
    positive_vectors: Float[Array, "*u d k"]
    negative_values: Float[Array, "*u k"]
    negative_vectors: Float[Array, "*u d k"]

    def as_spectrum(self) -> Spectrum:
        """Both sets merged into one :class:`Spectrum` ordered by ``|λ|`` (a truncated spectrum).

        When ``2k > d`` the two sets overlap (the ``k`` largest and ``k`` smallest of ``d``
        eigenvalues share ``2k − d``), so only the ``d − k`` most negative are added: every
        eigenpair appears once, and ``k = d`` gives back ``Q`` exactly.
        """
        k, d = self.positive_values.shape[-1], self.positive_vectors.shape[-2]
        keep = max(0, min(k, d - k))
        values = jnp.concatenate([self.positive_values, self.negative_values[..., :keep]], axis=-1)
        vectors = jnp.concatenate([self.positive_vectors, self.negative_vectors[..., :keep]], axis=-1)
        return _sort_by_magnitude(values, vectors)


def _sort_by_magnitude(values, vectors) -> Spectrum:
    order = jnp.argsort(-jnp.abs(values), axis=-1, stable=True)
    return Spectrum(jnp.take_along_axis(values, order, axis=-1),
                    jnp.take_along_axis(vectors, order[..., None, :], axis=-1))


def eigh(q: Float[Array, "*k d d"]) -> Spectrum:
    """The full eigendecomposition of symmetric ``Q`` (``jnp.linalg.eigh``), ordered by ``|λ|``."""
    chex.assert_rank(q, {2, 3})
    chex.assert_equal(q.shape[-1], q.shape[-2])
    values, vectors = jnp.linalg.eigh(q)
    return _sort_by_magnitude(values, vectors)


def top_eigenpairs(q: Float[Array, "*k d d"], k: int) -> TopEigenpairs:
    """The top-``k`` positive and top-``k`` negative eigenpairs of a dense symmetric ``Q``.

    These are the ``k`` algebraically largest and smallest: with fewer than ``k`` positive
    eigenvalues the list continues below zero (and likewise for the negative ones).
    """
    chex.assert_rank(q, {2, 3})
    d = q.shape[-1]
    if not 0 < k <= d:
        raise ValueError(f"k must be in [1, {d}], got {k}.")
    values, vectors = jnp.linalg.eigh(q)  # ascending
    return TopEigenpairs(values[..., ::-1][..., :k], vectors[..., ::-1][..., :k],
                         values[..., :k], vectors[..., :k])


def explained_fraction(values: Float[Array, "*k n"]) -> Float[Array, "*k n"]:
    """``f_k = Σ_{i≤k} λ_i² / ‖Q‖_F²`` for each ``k`` (``values`` ordered by ``|λ|``, as :func:`eigh`).

    For a truncated spectrum (e.g. :meth:`TopEigenpairs.as_spectrum`) the denominator is the
    sum over the given eigenvalues only; pass ``‖Q‖_F²`` yourself for the true fraction.
    """
    squares = jnp.square(values)
    return jnp.cumsum(squares, axis=-1) / jnp.sum(squares, axis=-1, keepdims=True)


def project_to_input(vectors: Float[Array, "*k d n"], embedding: Float[Array, "n_in d"]) -> Float[Array, "*k n_in n"]:
    """Eigenvectors as patterns over inputs: ``E v`` for ``e = Eᵀ x``, so ``vᵀe = (E v)ᵀ x``.

    ``embedding`` is a classifier's ``embed.kernel`` (pixels) or a transformer's ``W_E``
    (tokens), augmented to match augmented vectors (see
    :func:`~bilinear_jax.analysis.interactions.embedding_matrix`).
    """
    chex.assert_axis_dimension(embedding, 1, vectors.shape[-2])
    return jnp.einsum("ad,...dn->...an", embedding.astype(vectors.dtype), vectors)


def contributions(spectrum: Spectrum | TopEigenpairs, x: Float[Array, "*b d"]) -> Float[Array, "*b *k n"]:
    """The per-input explanation ``λ_i (v_iᵀx)²``; their sum over ``i`` is ``xᵀQx``.

    ``x``: ``(d,)`` or ``(B, d)``; an un-augmented input (one coordinate short of the vectors)
    is augmented with the constant 1. Returns ``(*B, *k, n)``.
    """
    if isinstance(spectrum, TopEigenpairs):
        spectrum = spectrum.as_spectrum()
    values, vectors = spectrum
    chex.assert_rank(x, {1, 2})
    d = vectors.shape[-2]
    if x.shape[-1] == d - 1:
        x = jnp.concatenate([x, jnp.ones(x.shape[:-1] + (1,), x.dtype)], axis=-1)
    chex.assert_axis_dimension(x, -1, d)
    dtype = jnp.result_type(values.dtype, x.dtype)
    projections = jnp.einsum("...d,kdn->...kn" if vectors.ndim == 3 else "...d,dn->...n",
                             x.astype(dtype), vectors.astype(dtype))
    return values.astype(dtype) * jnp.square(projections)


# -- Iterative top-k ------------------------------------------------------------------------------

def _lobpcg_one(factors: BilinearFactors, u, x0, max_iters: int, tol):
    def pos(x):
        return interaction_matvec(factors, u, x)

    def neg(x):
        return -interaction_matvec(factors, u, x)

    pv, pu, _ = lobpcg_standard(pos, x0, m=max_iters, tol=tol)
    nv, nu, _ = lobpcg_standard(neg, x0, m=max_iters, tol=tol)
    porder, norder = jnp.argsort(-pv), jnp.argsort(-nv)
    return pv[porder], pu[:, porder], -nv[norder], nu[:, norder]


def _iterative_chunk(factors, u, x0, max_iters, tol):
    return jax.lax.map(lambda args: _lobpcg_one(factors, args[0], args[1], max_iters, tol), (u, x0))


_iterative_chunk_jit = jax.jit(_iterative_chunk, static_argnums=(3, 4))


def top_eigenpairs_iterative(
    factors: BilinearFactors,
    u: Float[Array, "*n o"],
    k: int,
    *,
    max_iters: int = 200,
    tol: float | None = None,
    key: jax.Array | None = None,
    chunk_size: int = 8,
    mesh: Mesh | None = None,
) -> TopEigenpairs:
    """Top-``k`` positive and negative eigenpairs of each ``Q_u`` by LOBPCG, never forming ``Q_u``.

    Each iteration applies ``Q_u`` to a ``(d, 3k)`` block via :func:`interaction_matvec`
    (``O(d h k)``); memory is ``O(d k)`` per direction beyond the factors. LOBPCG needs
    ``5k < d``; smaller problems fall back to the dense :func:`top_eigenpairs`.

    Args:
      factors: :class:`BilinearFactors` (or anything ``factors_of`` accepts).
      u: ``(n, d_out)`` output directions, or one ``(d_out,)``.
      k: eigenpairs of each sign.
      max_iters: LOBPCG iteration cap; ``tol``: its convergence tolerance (default: dtype eps).
      key: PRNG key of the random start (default ``jax.random.key(0)``).
      chunk_size: directions solved per jitted call (``lax.map`` inside a chunk).
      mesh: shard each chunk's directions over this mesh's devices.
    """
    factors = factors_of(factors)
    single = u.ndim == 1
    u = u[None] if single else u
    _check_directions(factors, u)
    d = factors.d_in
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}.")
    # rank(Q_u) ≤ 2·d_hidden (+1 for an output bias): LOBPCG breaks down (NaN) when k exceeds it.
    rank_bound = 2 * factors.w.shape[0] + (factors.out_bias is not None)
    if 5 * k >= d or k > rank_bound:
        result = interaction_spectra(factors, u, k, chunk_size=chunk_size, mesh=mesh)
    else:
        dtype = jnp.result_type(factors.w.dtype, u.dtype)
        key = jax.random.key(0) if key is None else key
        x0 = jax.random.normal(key, (u.shape[0], d, k), dtype)
        placed = replicate(factors, mesh)
        traced = isinstance(u, jax.core.Tracer)
        parts = []
        chunk_size = min(int(chunk_size), u.shape[0])
        for rows in _chunks(u.shape[0], chunk_size):
            uc, n = place_rows(u[rows].astype(dtype), mesh, chunk_size)
            xc, _ = place_rows(x0[rows], mesh, chunk_size)
            fn = _iterative_chunk if traced else _iterative_chunk_jit
            parts.append(tuple(a[:n] for a in fn(placed, uc, xc, max_iters, tol)))
        result = TopEigenpairs(*(jnp.concatenate(p) if len(parts) > 1 else p[0] for p in zip(*parts)))
        if not traced:
            result = _dense_where_not_finite(factors, u, k, result)
    return TopEigenpairs(*(a[0] for a in result)) if single else result


def _dense_where_not_finite(factors: BilinearFactors, u, k: int, result: TopEigenpairs) -> TopEigenpairs:
    """Redo densely the directions where LOBPCG broke down (a zero or rank-deficient ``Q_u``)."""
    finite = jnp.isfinite(result.positive_values).all(-1) & jnp.isfinite(result.negative_values).all(-1)
    finite &= jnp.isfinite(result.positive_vectors).all((-2, -1)) & jnp.isfinite(result.negative_vectors).all((-2, -1))
    bad = np.flatnonzero(~np.asarray(finite))
    if bad.size == 0:
        return result
    dense = interaction_spectra(factors, u[bad], k)
    return TopEigenpairs(*(full.at[bad].set(part.astype(full.dtype)) for full, part in zip(result, dense)))


def interaction_spectra(
    factors: BilinearFactors,
    u: Float[Array, "n o"],
    k: int | None = None,
    *,
    chunk_size: int = 16,
    mesh: Mesh | None = None,
) -> Spectrum | TopEigenpairs:
    """Dense eigendecompositions of many ``Q_u``, streamed in chunks of ``chunk_size`` matrices.

    With ``k`` only the top-``k`` positive and negative eigenpairs of each are kept
    (:class:`TopEigenpairs`, ``O(n d k)`` memory); without, the full :class:`Spectrum`.
    """
    factors = factors_of(factors)
    if k is None:
        return eigh(interaction_matrices(factors, u, chunk_size=chunk_size, mesh=mesh))
    parts = [top_eigenpairs(q, min(k, factors.d_in))
             for _, q in iter_interaction_matrices(factors, u, chunk_size=chunk_size, mesh=mesh)]
    return TopEigenpairs(*(jnp.concatenate(p) if len(parts) > 1 else p[0] for p in zip(*parts)))

