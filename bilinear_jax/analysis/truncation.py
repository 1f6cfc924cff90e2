"""Low-rank truncation: keep each output's top-``k`` eigenvectors and measure what is left.

Each output ``c`` (a class logit) is ``y_c = ẽᵀ Q_c ẽ = Σ_i λ_ci (v_ciᵀ ẽ)²``. Keeping the ``k``
eigenvectors of largest ``|λ|`` gives ``y_c^{(k)} = Σ_{i≤k} λ_ci (v_ciᵀ ẽ)²``; the truncation
curve (Pearce et al. 2024) is the accuracy and loss of ``y^{(k)}`` as a function of ``k``. At full
rank it equals the model exactly (up to float error).

:func:`truncation_curve` works on any spectrum and residual features; for a one-block
:class:`~bilinear_jax.models.BilinearClassifier`, :func:`classifier_truncation_curve` does it all
from the model and raw inputs, and :func:`run_truncation_curve` from a workdir.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jaxtyping import Array, Float, Int

from bilinear_jax.analysis.interactions import class_interactions, embedding_matrix
from bilinear_jax.analysis.spectra import Spectrum, TopEigenpairs, contributions, eigh

__all__ = [
    "TruncationCurve",
    "classifier_truncation_curve",
    "run_truncation_curve",
    "truncate",
    "truncated_outputs",
    "truncation_curve",
]


@dataclasses.dataclass(frozen=True)
class TruncationCurve:
    """Accuracy and mean cross-entropy of the rank-``k`` truncated outputs, for each ``k`` in ``ks``.

    ``model_accuracy``/``model_loss`` are the untruncated model's own (when known), for comparison.
    """

    ks: np.ndarray
    accuracy: np.ndarray
    loss: np.ndarray
    model_accuracy: float | None = None
    model_loss: float | None = None


def truncate(spectrum: Spectrum | TopEigenpairs, k: int) -> Spectrum:
    """The ``k`` eigenpairs of largest ``|λ|``: ``Q^{(k)} = Σ_{i≤k} λ_i v_i v_iᵀ`` (``.matrix()``)."""
    if isinstance(spectrum, TopEigenpairs):
        spectrum = spectrum.as_spectrum()
    return Spectrum(spectrum.values[..., :k], spectrum.vectors[..., :k])


def truncated_outputs(
    spectrum: Spectrum | TopEigenpairs,
    x: Float[Array, "B d"],
    ks: Int[Array, " K"] | Sequence[int],
) -> Float[Array, "K B c"]:
    """``y_c^{(k)}(x) = Σ_{i≤k} λ_ci (v_ciᵀ x)²`` for each ``k`` in ``ks`` (``0 ≤ k ≤ n``).

    ``spectrum``: per output, ``values (c, n)``, ``vectors (c, d, n)`` ordered by ``|λ|``; ``x``
    is augmented with the constant 1 if it is one coordinate short.
    """
    terms = contributions(spectrum, x)  # (B, c, n)
    chex.assert_rank(terms, 3)
    cumulative = jnp.concatenate([jnp.zeros_like(terms[..., :1]), jnp.cumsum(terms, axis=-1)], axis=-1)
    return jnp.moveaxis(cumulative[..., jnp.asarray(ks)], -1, 0)


@jax.jit
def _batch_sums(spectrum, x, labels, mask, ks):
    logits = truncated_outputs(spectrum, x, ks)  # (K, B, c)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels[None].astype(jnp.int32))
    correct = (jnp.argmax(logits, axis=-1) == labels[None]).astype(logits.dtype)
    return jnp.sum(correct * mask, axis=-1), jnp.sum(losses * mask, axis=-1)


def _batches(n: int, batch_size: int):
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def truncation_curve(
    spectrum: Spectrum | TopEigenpairs,
    features: Float[Array, "N d"],
    labels: Int[Array, " N"],
    ks: Sequence[int] | None = None,
    *,
    batch_size: int = 1024,
) -> TruncationCurve:
    """Accuracy and cross-entropy of ``y^{(k)}`` on ``(features, labels)`` for each ``k``.

    ``features`` are the (possibly un-augmented) residual vectors ``e``; ``ks`` defaults to
    ``1..n``. Batches are padded to ``batch_size`` so one compiled program serves them all.
    """
    if isinstance(spectrum, TopEigenpairs):
        spectrum = spectrum.as_spectrum()
    n = spectrum.values.shape[-1]
    ks = np.arange(1, n + 1) if ks is None else np.asarray(ks, dtype=np.int32)
    if ks.size == 0 or ks.min() < 0 or ks.max() > n:
        raise ValueError(f"ks must lie in [0, {n}], got {ks}.")
    features, labels = jnp.asarray(features), jnp.asarray(labels)
    chex.assert_rank(features, 2)
    chex.assert_equal_shape_prefix((features, labels), 1)
    num = features.shape[0]
    batch_size = min(batch_size, num)
    correct = np.zeros(ks.shape, np.float64)
    loss = np.zeros(ks.shape, np.float64)
    for rows in _batches(num, batch_size):
        x, y = features[rows], labels[rows]
        pad = batch_size - x.shape[0]
        mask = jnp.concatenate([jnp.ones(x.shape[0], x.dtype), jnp.zeros(pad, x.dtype)])
        x, y = jnp.pad(x, ((0, pad), (0, 0))), jnp.pad(y, (0, pad))
        c, l = _batch_sums(spectrum, x, y, mask, jnp.asarray(ks))
        correct += np.asarray(c, np.float64)
        loss += np.asarray(l, np.float64)
    return TruncationCurve(ks=ks, accuracy=correct / num, loss=loss / num)


def _model_metrics(model, inputs, labels, batch_size: int) -> tuple[float, float]:
    graphdef, state = nnx.split(model)

    @jax.jit
    def sums(state, x, y):
        logits = nnx.merge(graphdef, state)(x)
        logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, y.astype(jnp.int32))
        return jnp.sum(jnp.argmax(logits, -1) == y), jnp.sum(losses)

    correct = loss = 0.0
    for rows in _batches(len(labels), batch_size):
        c, l = sums(state, jnp.asarray(inputs[rows]), jnp.asarray(labels[rows]))
        correct, loss = correct + float(c), loss + float(l)
    return correct / len(labels), loss / len(labels)


def classifier_truncation_curve(
    model,
    inputs: Float[Array, "N *dims"],
    labels: Int[Array, " N"],
    ks: Sequence[int] | None = None,
    *,
    spectrum: Spectrum | TopEigenpairs | None = None,
    dtype=None,
    batch_size: int = 1024,
    compare_with_model: bool = True,
) -> TruncationCurve:
    """The truncation curve of a one-block classifier: ``logits_c ≈ Σ_{i≤k} λ_ci (v_ciᵀ ẽ)²``.

    ``ẽ = [embed(x); 1]`` (augmented if the model has biases or a residual); ``spectrum`` defaults
    to :func:`eigh` of :func:`~bilinear_jax.analysis.interactions.class_interactions` for every
    class. With ``compare_with_model`` the model's own accuracy and loss are reported too; at full
    rank the curve matches them up to float error.
    """
    if spectrum is None:
        spectrum = eigh(class_interactions(model, dtype=dtype))
    dtype = spectrum.values.dtype if dtype is None else dtype
    flat = jnp.asarray(inputs).reshape(len(inputs), -1).astype(dtype)
    features = flat @ embedding_matrix(model, augmented=False).astype(dtype)
    curve = truncation_curve(spectrum, features, labels, ks, batch_size=batch_size)
    if not compare_with_model:
        return curve
    accuracy, loss = _model_metrics(model, np.asarray(inputs), np.asarray(labels), batch_size)
    return dataclasses.replace(curve, model_accuracy=accuracy, model_loss=loss)


def run_truncation_curve(
    run_or_workdir,
    split: str = "test",
    ks: Sequence[int] | None = None,
    *,
    max_examples: int | None = None,
    **kwargs,
) -> TruncationCurve:
    """:func:`classifier_truncation_curve` of a trained run (a ``Loaded`` or its workdir) on a split."""
    from bilinear_jax.analysis.loading import load, load_split_arrays

    run = load(run_or_workdir) if isinstance(run_or_workdir, (str, os.PathLike)) else run_or_workdir
    inputs, labels = load_split_arrays(run, split, max_examples=max_examples)
    return classifier_truncation_curve(run.model, inputs, labels, ks, **kwargs)
