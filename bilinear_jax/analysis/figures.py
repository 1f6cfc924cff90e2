"""Matplotlib figures of the analysis report, each returned as PNG bytes.

Every function builds a ``matplotlib.figure.Figure`` directly (no pyplot, so no global backend
change and no open-figure registry: importing this module leaves a notebook's inline plots
alone) and renders it to PNG. Inputs are numpy arrays.
"""

from __future__ import annotations

import io
from typing import Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure

__all__ = [
    "bar_chart",
    "eigenvector_grid",
    "interaction_heatmaps",
    "spectra",
    "to_png",
    "truncation_curve",
]


def to_png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def _subplots(rows: int = 1, cols: int = 1, *, figsize, **kwargs):
    """``(figure, axes)`` like ``plt.subplots``, without pyplot."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(rows, cols, **kwargs)


def _as_image(vector: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """A flat input-space vector as a 2-D image: ``(H, W)``, ``(H, W, C)`` → channel mean, 1-D → a row."""
    shape = tuple(int(s) for s in shape)
    if len(shape) <= 1:
        return vector.reshape(1, -1)
    image = vector.reshape(shape)
    while image.ndim > 2:
        image = image.mean(axis=-1)
    return image


def eigenvector_grid(
    images: np.ndarray,
    values: np.ndarray,
    input_shape: Sequence[int],
    row_labels: Sequence[str],
    column_labels: Sequence[str],
) -> bytes:
    """A grid of eigenvectors shown as images: ``images (rows, cols, n_in)``, ``values (rows, cols)``.

    Each image has its own symmetric colour scale (red positive, blue negative); the title is λ.
    """
    rows, cols = images.shape[:2]
    fig, axes = _subplots(rows, cols, figsize=(1.3 * cols + 0.6, 1.35 * rows + 0.4), squeeze=False)
    for r in range(rows):
        for c in range(cols):
            ax = axes[r, c]
            image = _as_image(images[r, c], input_shape)
            scale = float(np.max(np.abs(image))) or 1.0
            ax.imshow(image, cmap="RdBu_r", vmin=-scale, vmax=scale, aspect="equal" if image.shape[0] > 1 else "auto")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{column_labels[c]}: λ={values[r, c]:+.3g}", fontsize=7)
            if c == 0:
                ax.set_ylabel(row_labels[r], fontsize=8)
    fig.tight_layout(pad=0.3)
    return to_png(fig)


def spectra(values: np.ndarray, explained: np.ndarray, labels: Sequence[str]) -> bytes:
    """Eigenvalues (ordered by ``|λ|``) and the explained fraction ``Σ_{i≤k} λ_i²/‖Q‖²`` per output."""
    fig, (left, right) = _subplots(1, 2, figsize=(10, 3.6))
    ks = np.arange(1, values.shape[-1] + 1)
    cmap = matplotlib.colormaps["tab10" if len(labels) <= 10 else "viridis"]
    for i, label in enumerate(labels):
        colour = cmap(i % 10) if len(labels) <= 10 else cmap(i / max(len(labels) - 1, 1))
        left.plot(ks, values[i], ".-", ms=3, lw=0.8, color=colour, label=label)
        right.plot(ks, explained[i], lw=1.0, color=colour, label=label)
    left.axhline(0, color="k", lw=0.5)
    left.set_xscale("log")
    left.set_xlabel("eigenvector (by |λ|)")
    left.set_ylabel("λ")
    left.set_title("Eigenvalue spectra")
    right.set_xscale("log")
    right.set_ylim(0, 1.02)
    right.set_xlabel("k")
    right.set_ylabel("Σ_{i≤k} λ_i² / ‖Q‖_F²")
    right.set_title("Explained fraction")
    if len(labels) <= 12:
        right.legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    return to_png(fig)


def truncation_curve(ks: np.ndarray, accuracy: np.ndarray, model_accuracy: float | None,
                     loss: np.ndarray | None = None, model_loss: float | None = None) -> bytes:
    """Accuracy (and loss) of the rank-``k`` truncated model, with the full model as reference lines."""
    fig, axes = _subplots(1, 2 if loss is not None else 1, figsize=(10 if loss is not None else 5, 3.6),
                             squeeze=False)
    ax = axes[0, 0]
    ax.plot(ks, accuracy, ".-", ms=3, label="top-k eigenvectors per class")
    if model_accuracy is not None:
        ax.axhline(model_accuracy, color="k", ls="--", lw=1, label=f"full model ({model_accuracy:.3f})")
    ax.set_xscale("log")
    ax.set_xlabel("k (eigenvectors kept per class)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title("Truncation curve")
    ax.legend(fontsize=8, loc="lower right")
    if loss is not None:
        ax = axes[0, 1]
        ax.plot(ks, loss, ".-", ms=3, color="C1", label="truncated")
        if model_loss is not None:
            ax.axhline(model_loss, color="k", ls="--", lw=1, label=f"full model ({model_loss:.3f})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("k")
        ax.set_ylabel("cross-entropy")
        ax.set_title("Truncated loss")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return to_png(fig)


def interaction_heatmaps(matrices: np.ndarray, titles: Sequence[str], tick_labels: Sequence[str] | None = None,
                         *, max_ticks: int = 40) -> bytes:
    """Symmetric interaction matrices side by side, each on its own symmetric colour scale."""
    n = len(matrices)
    cols = min(n, 4)
    rows = -(-n // cols)
    size = 3.2
    fig, axes = _subplots(rows, cols, figsize=(size * cols, size * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, matrix, title in zip(axes.flat, matrices, titles):
        scale = float(np.max(np.abs(matrix))) or 1.0
        image = ax.imshow(matrix, cmap="RdBu_r", vmin=-scale, vmax=scale)
        ax.set_title(title, fontsize=8)
        m = matrix.shape[0]
        if tick_labels is not None and m <= max_ticks:
            ax.set_xticks(range(m))
            ax.set_yticks(range(m))
            ax.set_xticklabels(tick_labels, fontsize=6, rotation=90)
            ax.set_yticklabels(tick_labels, fontsize=6)
        else:
            ax.set_xticks([])
            ax.set_yticks([])
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return to_png(fig)


def bar_chart(names: Sequence[str], values: Sequence[float], *, title: str, xlabel: str) -> bytes:
    """A horizontal bar chart, largest at the top."""
    height = 0.6 + 0.28 * len(names)
    fig, ax = _subplots(figsize=(8, height))
    y = np.arange(len(names))
    ax.barh(y, values, color="C0")
    ax.set_yticks(y)
    ax.set_yticklabels([n if len(n) <= 70 else n[:67] + "..." for n in names], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    fig.tight_layout()
    return to_png(fig)
