"""Interactions between input features, read by output features, from the factors.

For input feature directions ``D = [d_1 … d_m]`` (columns, e.g. a dictionary's decoder) and output
directions ``U`` (rows)::

    I[k, i, j] = u_kᵀ B(d_i, d_j) = Σ_h (Pᵀu_k)_h (W d_i)_h (V d_j)_h,

computed as ``(W D)`` and ``(V D)`` then one contraction: ``O(h m (d + k m))``, no ``B``. When
features ``i`` and ``j`` are both active (with unit coefficients) the output reads
``I_ij + I_ji`` from the pair, ``I_ii`` from a feature alone: :func:`feature_interactions` ranks
the pairs ``i ≤ j`` by that magnitude for each output feature.
"""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jaxtyping import Array, Float, Int

from bilinear_jax.analysis.budget import array_bytes, check_fits
from bilinear_jax.analysis.interactions import (
    BilinearFactors,
    _check_directions,
    _chunks,
    factors_of,
    hidden_weights,
    place_rows,
    replicate,
)

__all__ = ["FeatureInteractions", "feature_interactions", "top_pairs"]


class FeatureInteractions(NamedTuple):
    """``tensor[k, i, j] = u_kᵀ B(d_i, d_j)``; for each output ``k`` the ``top`` pairs ``(i, j)``,
    ``i ≤ j``, ranked by ``|pair_values|`` with ``pair_values = I_ij + I_ji`` (``I_ii`` if ``i = j``)."""

    tensor: Float[Array, "k m m"]
    pairs: Int[Array, "k top 2"]
    pair_values: Float[Array, "k top"]


def top_pairs(tensor: Float[Array, "*k m m"], top: int) -> tuple[Int[Array, "*k top 2"], Float[Array, "*k top"]]:
    """The ``top`` pairs ``i ≤ j`` of each ``tensor[k]`` by ``|I_ij + I_ji|`` (``|I_ii|`` on the diagonal)."""
    m = tensor.shape[-1]
    rows, cols = np.triu_indices(m)
    pair = tensor + jnp.swapaxes(tensor, -1, -2)
    pair = jnp.where(jnp.eye(m, dtype=bool), tensor, pair)[..., rows, cols]
    top = min(int(top), rows.size)
    _, idx = jax.lax.top_k(jnp.abs(pair), top)
    pairs = jnp.stack([jnp.asarray(rows)[idx], jnp.asarray(cols)[idx]], axis=-1)
    return pairs, jnp.take_along_axis(pair, idx, axis=-1)


def _interactions_chunk(factors: BilinearFactors, wd, vd, last, u):
    s = hidden_weights(factors, u.astype(wd.dtype))
    out = jnp.einsum("kh,hi,hj->kij", s, wd, vd)
    if factors.out_bias is not None:
        out = out + (u.astype(wd.dtype) @ factors.out_bias.astype(wd.dtype))[:, None, None] * jnp.outer(last, last)
    return out


_interactions_chunk_jit = jax.jit(_interactions_chunk)


def feature_interactions(
    factors: BilinearFactors,
    features: Float[Array, "d m"],
    u: Float[Array, "k o"],
    *,
    top: int = 10,
    include_constant: bool = False,
    chunk_size: int | None = None,
    mesh: Mesh | None = None,
) -> FeatureInteractions:
    """``I[k, i, j] = u_kᵀ B(d_i, d_j)`` and each output's top pairs, from the factors.

    Args:
      factors: :class:`BilinearFactors` (or a layer; see ``factors_of``).
      features: input feature directions as columns, ``(d, m)``. Over augmented factors, a
        ``(d−1, m)`` matrix is padded with a zero row (the features carry no constant).
      u: output directions as rows, ``(k, d_out)``.
      top: pairs reported per output.
      include_constant: append the constant input ``e_{d}`` (``x̃``'s 1) as a last feature, so
        linear terms and the output bias show up as its interactions (augmented factors only).
      chunk_size, mesh: stream (and shard) over output directions.
    """
    factors = factors_of(factors)
    chex.assert_rank(features, 2)
    _check_directions(factors, u)
    chex.assert_rank(u, 2)
    d = factors.d_in
    dtype = jnp.result_type(factors.w.dtype, features.dtype, u.dtype)
    features = features.astype(dtype)
    if features.shape[0] == d - 1:
        features = jnp.pad(features, ((0, 1), (0, 0)))
    if features.shape[0] != d:
        raise ValueError(f"features have {features.shape[0]} rows; the layer's input has {d} dimensions.")
    if include_constant:
        features = jnp.concatenate([features, jnp.zeros((d, 1), dtype).at[-1, 0].set(1)], axis=1)
    m, k = features.shape[1], u.shape[0]
    check_fits(array_bytes((k, m, m), dtype), f"the feature-interaction tensor ({k}, {m}, {m})",
               suggestion="Use fewer output directions or features per call.")
    wd, vd = factors.w.astype(dtype) @ features, factors.v.astype(dtype) @ features
    placed = replicate((factors, wd, vd, features[-1]), mesh)
    fn = _interactions_chunk if isinstance(u, jax.core.Tracer) else _interactions_chunk_jit
    parts = []
    size = min(int(chunk_size or k), k)
    for rows in _chunks(k, size):
        chunk, n = place_rows(u[rows], mesh, size)
        parts.append(fn(*placed, chunk)[:n])
    tensor = parts[0] if len(parts) == 1 else jnp.concatenate(parts)
    pairs, values = top_pairs(tensor, top)
    return FeatureInteractions(tensor, pairs, values)
