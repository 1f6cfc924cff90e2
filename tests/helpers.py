"""Small shared utilities for the tests."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


def relative_error(actual, reference) -> float:
    actual, reference = np.asarray(actual), np.asarray(reference)
    return float(np.max(np.abs(actual - reference)) / max(np.max(np.abs(reference)), 1e-30))


def randomize_biases(module: nnx.Module, seed: int = 1) -> None:
    """Give every bias parameter random values, so tests see them (they initialise to zero)."""
    key = jax.random.key(seed)
    for path, variable in nnx.iter_graph(module):
        if isinstance(variable, nnx.Param) and path and "bias" in str(path[-1]):
            key, sub = jax.random.split(key)
            variable[...] = jax.random.normal(sub, variable.shape, variable.dtype)


def explicit_tensor(w, v, p=None, out_bias=None, w_bias=None, v_bias=None) -> np.ndarray:
    """``B`` built with numpy loops over the augmented factors: an independent reference."""
    w, v = np.asarray(w, np.float64), np.asarray(v, np.float64)
    if w_bias is not None:
        w = np.concatenate([w, np.asarray(w_bias, np.float64)[:, None]], axis=1)
        v = np.concatenate([v, np.asarray(v_bias, np.float64)[:, None]], axis=1)
    hidden, d = w.shape
    p = np.eye(hidden) if p is None else np.asarray(p, np.float64)
    tensor = np.zeros((p.shape[0], d, d))
    for h in range(hidden):
        tensor += p[:, h, None, None] * np.outer(w[h], v[h])[None]
    if out_bias is not None:
        tensor[:, -1, -1] += np.asarray(out_bias, np.float64)
    return tensor


def x64_dtype():
    return jnp.float64

def fast_model(cls, *args, seed=0, **kwargs):
    """``cls(*args, **kwargs)`` built abstractly and filled with random numpy values (biases too):
    no eager initialisation ops to compile."""
    graphdef, state = nnx.split(nnx.eval_shape(lambda: cls(*args, rngs=nnx.Rngs(0), **kwargs)))
    rng = np.random.default_rng(seed)
    scale = lambda s: 1 / np.sqrt(s.shape[0]) if s.ndim > 1 else 1.0  # noqa: E731
    state = jax.tree.map(lambda s: jnp.asarray(scale(s) * rng.normal(size=s.shape), s.dtype), state)
    return nnx.merge(graphdef, state)
