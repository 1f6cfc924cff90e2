"""Interaction matrices of output directions, from the factors, streamed in chunks.

For a bilinear layer ``y = P((W x) ⊙ (V x))`` and an output direction ``u``::

    Q_u = Σ_o u_o sym(B_o) = sym(Wᵀ diag(s) V),      s = Pᵀu,
    uᵀy = xᵀ Q_u x = Σ_i λ_i (v_iᵀ x)²                (Q_u = Σ_i λ_i v_i v_iᵀ).

Nothing here builds ``B``: one ``Q_u`` costs ``O(d² h)`` and the matrix-free product
``Q_u x = ½(Wᵀ(s ⊙ V x) + Vᵀ(s ⊙ W x))`` costs ``O(d h)`` (:func:`interaction_matvec`).
Biases live in the augmented input ``x̃ = [x; 1]`` (the output bias at ``Q[-1, -1]``).

Directions (rows of ``U``, in the layer's output space): class rows of a classifier's head
(:func:`class_directions`), unembedding directions of a transformer
(:func:`unembedding_directions`), residual basis directions (:func:`residual_directions`), or
the features of a dictionary (:func:`dictionary_directions`).

For a one-block :class:`~bilinear_jax.models.BilinearClassifier`, :func:`classifier_factors`
folds the head (and its bias, the block's biases and a residual connection) into the factors, so
``logits_c = ẽᵀ Q_c ẽ`` exactly for the (augmented) residual ``ẽ`` and
:func:`class_interactions` gives ``Q_c`` in the residual basis or ``E Q_c Eᵀ`` in input space.

All functions are pure ``jnp`` on :class:`BilinearFactors` (a pytree) and work under
``jax.jit`` in float32 or float64; ``chunk_size`` streams over directions and ``mesh`` shards a
chunk's directions over the mesh's devices.
"""

from __future__ import annotations

from typing import Iterator, NamedTuple, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import Array, Float, Int

from bilinear_jax.analysis import algebra
from bilinear_jax.analysis.budget import array_bytes, check_fits

__all__ = [
    "BilinearFactors",
    "class_directions",
    "class_interactions",
    "classifier_factors",
    "dictionary_directions",
    "embedding_matrix",
    "factors_of",
    "fold_out_bias",
    "hidden_weights",
    "interaction_matrices",
    "interaction_matvec",
    "iter_interaction_matrices",
    "output_interactions",
    "residual_directions",
    "to_input_space",
    "unembedding_directions",
]


class BilinearFactors(NamedTuple):
    """``y_o = x̃ᵀ B_o x̃`` with ``B_oij = Σ_h P_oh W_hi V_hj`` (+ ``b_o`` at ``B_o[-1, -1]``).

    ``w, v: (h, d)``; ``p: (d_out, h)`` or None (``P = I``, the output is the hidden layer);
    ``out_bias: (d_out,)`` or None. With ``out_bias`` the input must be augmented (its last
    coordinate is the constant 1).
    """

    w: Float[Array, "h d"]
    v: Float[Array, "h d"]
    p: Float[Array, "o h"] | None = None
    out_bias: Float[Array, " o"] | None = None

    @property
    def d_in(self) -> int:
        return self.w.shape[1]

    @property
    def d_hidden(self) -> int:
        return self.w.shape[0]

    @property
    def d_out(self) -> int:
        return self.w.shape[0] if self.p is None else self.p.shape[0]

    @property
    def dtype(self):
        return self.w.dtype

    def astype(self, dtype) -> "BilinearFactors":
        return BilinearFactors(*(None if a is None else jnp.asarray(a, dtype) for a in self))


def factors_of(layer, dtype=None) -> BilinearFactors:
    """The factors of a bilinear layer, a :class:`~bilinear_jax.models.ToyModel`, or a tensor layer.

    Accepts :class:`BilinearFactors` (returned as is), an :class:`~bilinear_jax.layers.MLP` of
    kind ``'bilinear'`` (``layer.factors()``, over ``x̃`` with bias), a
    :class:`~bilinear_jax.layers.TensorBilinear` (the exact rank-``d_out·d`` factorization
    ``W_{(o,i)} = e_i``, ``V_{(o,i)} = B_{o,i,:}``, ``P_{o,(o,i)} = 1``), or a model with a
    ``.layer`` attribute. For a classifier use :func:`classifier_factors`.
    """
    if isinstance(layer, BilinearFactors):
        factors = layer
    elif hasattr(layer, "factors") and callable(layer.factors):
        factors = BilinearFactors(*layer.factors())
    elif hasattr(layer, "B") and hasattr(layer, "tensor"):  # TensorBilinear
        b = layer.tensor()
        d_out, d, _ = b.shape
        w = jnp.tile(jnp.eye(d, dtype=b.dtype), (d_out, 1))
        v = b.reshape(d_out * d, d)
        p = jnp.repeat(jnp.eye(d_out, dtype=b.dtype), d, axis=1)
        factors = BilinearFactors(w, v, p, None)
    elif hasattr(layer, "layer"):
        return factors_of(layer.layer, dtype)
    else:
        raise TypeError(f"Cannot read bilinear factors from a {type(layer).__name__}; pass a bilinear MLP, "
                        "TensorBilinear, ToyModel or BilinearFactors (classifiers: classifier_factors).")
    return factors if dtype is None else factors.astype(dtype)


def fold_out_bias(factors: BilinearFactors) -> BilinearFactors:
    """The same tensor with the output bias as one extra hidden unit (``W_h = V_h = e_d``, ``P_·h = b``).

    Useful where only ``Σ_h P_oh W_h ⊗ V_h`` is handled (Gram matrices, CP). Needs augmented factors.
    """
    if factors.out_bias is None:
        return factors
    w, v, p, b = factors
    unit = jnp.zeros((1, w.shape[1]), w.dtype).at[0, -1].set(1)
    p = jnp.eye(w.shape[0], dtype=w.dtype) if p is None else p
    return BilinearFactors(jnp.concatenate([w, unit]), jnp.concatenate([v, unit]),
                           jnp.concatenate([p, b[:, None].astype(p.dtype)], axis=1), None)


def hidden_weights(factors: BilinearFactors, u: Float[Array, "*k o"]) -> Float[Array, "*k h"]:
    """``s = Pᵀu`` (``u`` itself when ``P = I``)."""
    return u if factors.p is None else jnp.einsum("...o,oh->...h", u, factors.p.astype(u.dtype))


def _dtype(factors: BilinearFactors, u) -> jnp.dtype:
    return jnp.result_type(factors.w.dtype, u.dtype)


def _check_directions(factors: BilinearFactors, u: jax.Array) -> None:
    chex.assert_rank(u, {1, 2})
    if u.shape[-1] != factors.d_out:
        raise ValueError(f"Output directions have {u.shape[-1]} entries but the layer has d_out={factors.d_out}.")


def _q_chunk(factors: BilinearFactors, u: Float[Array, "k o"]) -> Float[Array, "k d d"]:
    dtype = _dtype(factors, u)
    u = u.astype(dtype)
    cast = lambda x: None if x is None else x.astype(dtype)  # noqa: E731
    return algebra.interaction_matrix(cast(factors.w), cast(factors.v), u, cast(factors.p), cast(factors.out_bias))


_q_chunk_jit = jax.jit(_q_chunk)


def _is_traced(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def place_rows(x: jax.Array, mesh: Mesh | None, rows: int | None = None) -> tuple[jax.Array, int]:
    """Pad ``x``'s leading axis (repeating its last row) to ``rows`` rounded up to a multiple of
    the mesh's size, and shard it over all the mesh's devices.

    Padding every chunk to one size lets one compiled program serve them all. Returns the
    placed array and the number of real rows.
    """
    n = x.shape[0]
    target = max(n, rows or n)
    if mesh is not None:
        target += (-target) % mesh.size
    if target > n:
        x = jnp.concatenate([x, jnp.repeat(x[-1:], target - n, axis=0)])
    if mesh is None:
        return x, n
    sharding = NamedSharding(mesh, PartitionSpec(tuple(mesh.axis_names)))
    if _is_traced(x):
        return jax.lax.with_sharding_constraint(x, sharding), n
    return jax.device_put(x, sharding), n


def replicate(tree, mesh: Mesh | None):
    """``tree`` replicated on every device of ``mesh`` (unchanged without a mesh or under jit)."""
    if mesh is None:
        return tree
    sharding = NamedSharding(mesh, PartitionSpec())
    if any(_is_traced(leaf) for leaf in jax.tree.leaves(tree)):
        return jax.tree.map(lambda a: jax.lax.with_sharding_constraint(a, sharding), tree)
    return jax.device_put(tree, sharding)


def _chunks(n: int, chunk_size: int | None) -> Iterator[slice]:
    size = n if not chunk_size else int(chunk_size)
    if size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}.")
    for start in range(0, n, max(size, 1)):
        yield slice(start, min(start + size, n))


def iter_interaction_matrices(
    factors: BilinearFactors,
    u: Float[Array, "k o"],
    *,
    chunk_size: int = 64,
    mesh: Mesh | None = None,
) -> Iterator[tuple[slice, Float[Array, "c d d"]]]:
    """Yield ``(rows, Q_{u[rows]})`` chunk by chunk: only ``chunk_size`` matrices live at once.

    With ``mesh``, each chunk's directions are sharded over the mesh's devices.
    """
    factors = factors_of(factors)
    _check_directions(factors, u)
    d = factors.d_in
    per_device = -(-min(chunk_size, u.shape[0]) // (mesh.size if mesh is not None else 1))
    check_fits(array_bytes((per_device, d, d), _dtype(factors, u)),
               f"a chunk of {chunk_size} interaction matrices ({d}×{d})",
               suggestion="Use a smaller chunk_size, or top_eigenpairs_iterative, which never forms Q.")
    placed = replicate(factors, mesh)
    fn = _q_chunk if _is_traced(u) else _q_chunk_jit
    size = min(int(chunk_size), u.shape[0])
    for rows in _chunks(u.shape[0], size):
        chunk, n = place_rows(u[rows], mesh, size)
        yield rows, fn(placed, chunk)[:n]


def interaction_matrices(
    factors: BilinearFactors,
    u: Float[Array, "*k o"],
    *,
    chunk_size: int | None = None,
    mesh: Mesh | None = None,
) -> Float[Array, "*k d d"]:
    """``Q_u = sym(Wᵀ diag(Pᵀu) V)`` (+ ``uᵀb`` at ``[-1, -1]``) for each row of ``u``.

    Args:
      factors: :class:`BilinearFactors` (or anything :func:`factors_of` accepts).
      u: ``(k, d_out)`` output directions, or one ``(d_out,)``.
      chunk_size: directions computed at once (default: all).
      mesh: shard each chunk's directions over this mesh's devices.

    Returns ``(k, d, d)`` (``(d, d)`` for one direction). Refuses with ``MemoryError`` if the
    result would not fit; use :func:`iter_interaction_matrices` or the spectra functions then.
    """
    factors = factors_of(factors)
    single = u.ndim == 1
    u = u[None] if single else u
    _check_directions(factors, u)
    d = factors.d_in
    # Twice the result: the chunks and their concatenation are both alive for a moment.
    check_fits(2 * array_bytes((u.shape[0], d, d), _dtype(factors, u)),
               f"{u.shape[0]} interaction matrices ({d}×{d}, {np.dtype(_dtype(factors, u)).name}) and their chunks",
               suggestion="Stream them with iter_interaction_matrices, or use top_eigenpairs_iterative.")
    parts = [q for _, q in iter_interaction_matrices(factors, u, chunk_size=chunk_size or u.shape[0], mesh=mesh)]
    q = parts[0] if len(parts) == 1 else jnp.concatenate(parts)
    return q[0] if single else q


def output_interactions(layer, u: Float[Array, "*k o"], **kwargs) -> Float[Array, "*k d d"]:
    """:func:`interaction_matrices` of a layer (anything :func:`factors_of` accepts)."""
    return interaction_matrices(factors_of(layer), u, **kwargs)


def interaction_matvec(
    factors: BilinearFactors,
    u: Float[Array, " o"],
    x: Float[Array, "d *m"],
) -> Float[Array, "d *m"]:
    """``Q_u x = ½(Wᵀ(s ⊙ V x) + Vᵀ(s ⊙ W x))`` with ``s = Pᵀu``: ``O(d h)``, never forming ``Q_u``."""
    dtype = jnp.result_type(factors.w.dtype, u.dtype, x.dtype)
    w, v, x = factors.w.astype(dtype), factors.v.astype(dtype), x.astype(dtype)
    s = hidden_weights(factors, u.astype(dtype))
    s = s if x.ndim == 1 else s[:, None]
    out = 0.5 * (w.T @ (s * (v @ x)) + v.T @ (s * (w @ x)))
    if factors.out_bias is not None:
        out = out.at[-1].add((u.astype(dtype) @ factors.out_bias.astype(dtype)) * x[-1])
    return out


# -- Directions ----------------------------------------------------------------------------------

def _select(rows: jax.Array, indices) -> jax.Array:
    return rows if indices is None else rows[jnp.asarray(indices)]


def class_directions(model, classes: Sequence[int] | Int[Array, " k"] | None = None) -> Float[Array, "k d_model"]:
    """Rows ``head[:, c]`` of a classifier's head: ``logit_c = head[:, c] · h + b_c``."""
    return _select(model.head.kernel[...].T, classes)


def unembedding_directions(model, tokens: Sequence[int] | Int[Array, " k"] | None = None, *,
                           final_norm_scale: bool = True) -> Float[Array, "k d_model"]:
    """Columns of a transformer's ``W_U`` as rows, times the final norm's scale ``g`` when it has one.

    ``logit_t = (g ⊙ W_U[:, t]) · (r x)`` with the final inverse RMS ``r``: the direction in the
    residual stream that token ``t``'s logit reads.
    """
    rows = model.W_U.T
    norm = getattr(model, "final_norm", None)
    if final_norm_scale and norm is not None and norm.scale is not None:
        rows = rows * norm.scale[...]
    return _select(rows, tokens)


def residual_directions(d: int, indices: Sequence[int] | None = None, dtype=jnp.float32) -> Float[Array, "k d"]:
    """Basis directions ``e_i`` of a ``d``-dimensional residual stream (all of them by default)."""
    return _select(jnp.eye(d, dtype=dtype), indices)


def dictionary_directions(dictionary: Float[Array, "n d"], indices: Sequence[int] | None = None, *,
                          normalize: bool = False) -> Float[Array, "k d"]:
    """Feature directions from a dictionary (e.g. an SAE decoder), one feature per row."""
    chex.assert_rank(dictionary, 2)
    rows = _select(jnp.asarray(dictionary), indices)
    if normalize:
        rows = rows / jnp.linalg.norm(rows, axis=-1, keepdims=True)
    return rows


# -- Classifiers -----------------------------------------------------------------------------------

def _classifier_block(model, block: int):
    if model.n_layers != 1:
        raise ValueError(f"Exact class interaction matrices need a one-block classifier; this one has "
                         f"{model.n_layers} blocks (use hessian_tensor for the full polynomial).")
    layer = model.blocks[block]
    if getattr(layer, "kind", "bilinear") != "bilinear":
        raise ValueError(f"The classifier's blocks are {layer.kind!r} MLPs, not bilinear layers.")
    return layer


def classifier_is_augmented(model) -> bool:
    """Whether :func:`classifier_factors` works over ``ẽ = [e; 1]`` (any bias, or a residual)."""
    return bool(model.blocks[0].bias or model.head.bias is not None or model.residual)


def classifier_factors(model, *, dtype=None) -> BilinearFactors:
    """Factors from the residual ``e = embed(x)`` straight to the logits: ``logits_c = ẽᵀ B_c ẽ``.

    ``P̃ = Hᵀ P`` folds the head ``H = head.kernel`` into the projection; the output bias is
    ``Hᵀ b_p + b_head``; a residual connection ``Hᵀ e`` becomes ``d_model`` extra hidden units
    ``W_h = e_h``, ``V_h = e_{d+1}`` (the constant). The input is augmented (``ẽ = [e; 1]``)
    whenever the model has a bias or a residual connection (:func:`classifier_is_augmented`).
    """
    layer = _classifier_block(model, 0)
    w, v, p, b_p = layer.factors()
    head = model.head.kernel[...]
    d = layer.d_in
    augmented = classifier_is_augmented(model)
    if augmented and not layer.bias:
        w, v = algebra.augment_factors(w, v, None, None)
    p_eff = head.T @ p
    out_bias = jnp.zeros((head.shape[1],), head.dtype) if augmented else None
    if b_p is not None:
        out_bias = out_bias + head.T @ b_p
    if model.head.bias is not None:
        out_bias = out_bias + model.head.bias[...]
    if model.residual:
        eye = jnp.eye(d, d + 1, dtype=w.dtype)
        const = jnp.zeros((d, d + 1), w.dtype).at[:, -1].set(1)
        w, v = jnp.concatenate([w, eye]), jnp.concatenate([v, const])
        p_eff = jnp.concatenate([p_eff, head.T], axis=1)
    factors = BilinearFactors(w, v, p_eff, out_bias)
    return factors if dtype is None else factors.astype(dtype)


def embedding_matrix(model, *, augmented: bool | None = None) -> Float[Array, "n_in d"]:
    """The map from inputs to the residual basis as ``E: (n_in, d_model)`` with ``e = Eᵀ x``.

    A classifier's ``embed.kernel`` (pixels) or a transformer's ``W_E`` (tokens). With
    ``augmented`` (default: as :func:`classifier_factors`), ``Ẽ = diag(E, 1)``.
    """
    e = model.embed.kernel[...] if hasattr(model.embed, "kernel") else model.W_E
    if augmented is None:
        augmented = hasattr(model, "head") and classifier_is_augmented(model)
    if augmented:
        e = jnp.pad(e, ((0, 1), (0, 1))).at[-1, -1].set(1)
    return e


def to_input_space(q: Float[Array, "*k d d"], embedding: Float[Array, "n_in d"]) -> Float[Array, "*k n_in n_in"]:
    """``E Q Eᵀ``: the interaction matrix over inputs (pixels, tokens) for ``e = Eᵀ x``."""
    chex.assert_axis_dimension(embedding, 1, q.shape[-1])
    n_in = embedding.shape[0]
    check_fits(array_bytes(q.shape[:-2] + (n_in, n_in), q.dtype), f"input-space interaction matrices ({n_in}×{n_in})")
    e = embedding.astype(q.dtype)
    return jnp.einsum("ai,...ij,bj->...ab", e, q, e)


def class_interactions(
    model,
    classes: Sequence[int] | None = None,
    *,
    input_space: bool = False,
    dtype=None,
    chunk_size: int | None = None,
    mesh: Mesh | None = None,
) -> Float[Array, "k d d"]:
    """``Q_c`` with ``logits_c = ẽᵀ Q_c ẽ`` for a one-block classifier, for each class in ``classes``.

    ``Q_c = sym(Wᵀ diag(Pᵀ head[:, c]) V)`` (plus bias and residual terms over ``ẽ = [e; 1]``) in
    the residual basis, or ``Ẽ Q_c Ẽᵀ`` over (augmented) pixels with ``input_space=True``.
    """
    factors = classifier_factors(model, dtype=dtype)
    classes = np.arange(model.num_classes) if classes is None else np.asarray(classes)
    u = jnp.eye(model.num_classes, dtype=factors.dtype)[classes]
    q = interaction_matrices(factors, u, chunk_size=chunk_size, mesh=mesh)
    return to_input_space(q, embedding_matrix(model)) if input_space else q


def is_module(x) -> bool:
    return isinstance(x, nnx.Module)
