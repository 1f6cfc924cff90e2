"""Section ``analysis``: the cost of reading a bilinear layer, fast path against explicit path.

Every comparison runs both variants on the same inputs, jitted and warmed up, in alternating
rounds (:func:`benchmarks.timing.interleaved`), and reports the medians and their ratio
``slow / fast`` (how many times faster the fast path is):

* ``interaction``: ``Q_u`` for ``k`` output directions from the factors
  (``algebra.interaction_matrix``, ``O(k·h·d²)``) against building ``B`` (``bilinear_tensor``,
  ``O(o·h·d²)``) and contracting it with ``einsum('ko,oij->kij')``.
* ``hessian``: exact recovery of ``sym(B)`` by ``hessian_tensor(layer, d)`` against the
  explicit ``sym(layer.tensor())``. Hessian recovery is the exact *check* that works for any
  quadratic function, not the fast path: it is expected to be slower. Two rows: the public call
  as a user makes it (cached compile, checks that the form is quadratic, syncs), and the jitted
  steady state (``check=False`` inside ``jax.jit``).
* ``eigen``: the iterative top-``k`` eigenpairs (``top_eigenpairs_iterative``: LOBPCG on the
  factor matvec, never forming ``Q``; it solves for the ``k`` most positive *and* the ``k``
  most negative) against ``jnp.linalg.eigh`` of the full ``Q`` (``Q`` given; forming it is not
  timed). ``max_rel_eig_err`` compares the top ``k`` eigenvalues with ``eigh``'s.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

from benchmarks.timing import interleaved, median, ratio
from bilinear_jax.analysis import algebra, hessian_tensor
from bilinear_jax.layers import Bilinear

__all__ = ["AnalysisSizes", "run_analysis", "top_k_solver"]


@dataclasses.dataclass(frozen=True)
class AnalysisSizes:
    """Problem sizes; ``(d, h, o)`` = input, hidden and output widths."""

    interaction: tuple[tuple[int, int, int], ...] = ((64, 256, 64), (128, 512, 128))
    directions: int = 8
    hessian: tuple[tuple[int, int, int], ...] = ((16, 64, 16), (32, 128, 32))
    eigen_d: tuple[int, ...] = (128, 256, 512)
    eigen_k: int = 8
    eigen_max_iters: int = 100
    repeats: int = 5


def _factors(key: jax.Array, d: int, h: int, o: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    kw, kv, kp = jax.random.split(key, 3)
    return (jax.random.normal(kw, (h, d)) / d**0.5, jax.random.normal(kv, (h, d)) / d**0.5,
            jax.random.normal(kp, (o, h)) / h**0.5)


def _compare(fast: Callable[[], Any], slow: Callable[[], Any], repeats: int, warmup: int = 1) -> dict[str, float]:
    times = interleaved({"fast": fast, "slow": slow}, repeats, warmup=warmup)
    fast_s, slow_s = median(times["fast"]), median(times["slow"])
    # The ratio of the fastest runs too: interference from other processes only adds time.
    return {"fast_ms": 1e3 * fast_s, "slow_ms": 1e3 * slow_s, "speedup": ratio(slow_s, fast_s),
            "speedup_of_best": ratio(min(times["slow"]), min(times["fast"]))}


def interaction_rows(sizes: AnalysisSizes, key: jax.Array) -> list[dict[str, Any]]:
    """``Q_u`` from the factors against from the explicit ``B``."""
    from_factors = jax.jit(lambda w, v, p, u: algebra.interaction_matrix(w, v, u, p))
    from_tensor = jax.jit(lambda w, v, p, u: algebra.symmetrize(
        jnp.einsum("ko,oij->kij", u, algebra.bilinear_tensor(w, v, p))))
    rows = []
    for d, h, o in sizes.interaction:
        key, k_f, k_u = jax.random.split(key, 3)
        w, v, p = _factors(k_f, d, h, o)
        u = jax.random.normal(k_u, (sizes.directions, o))
        error = float(jnp.max(jnp.abs(from_factors(w, v, p, u) - from_tensor(w, v, p, u))))
        result = _compare(lambda: from_factors(w, v, p, u), lambda: from_tensor(w, v, p, u), sizes.repeats)
        rows.append({"comparison": "Q_u: factors vs explicit B", "size": f"d={d} h={h} o={o} k={sizes.directions}",
                     "fast": "interaction_matrix", "slow": "bilinear_tensor+einsum", **result,
                     "max_abs_diff": error})
    return rows


def hessian_rows(sizes: AnalysisSizes, key: jax.Array) -> list[dict[str, Any]]:
    """``hessian_tensor`` against ``sym(layer.tensor())``: public call, and jitted steady state."""
    rows = []
    for d, h, o in sizes.hessian:
        key, k_layer = jax.random.split(key)
        layer = Bilinear(d, h, o, rngs=nnx.Rngs(params=k_layer))
        graphdef, state = nnx.split(layer)
        explicit = jax.jit(lambda s: algebra.symmetrize(nnx.merge(graphdef, s).tensor()))
        recovered = jax.jit(lambda s: hessian_tensor(nnx.merge(graphdef, s), d, check=False))
        error = float(jnp.max(jnp.abs(explicit(state) - recovered(state))))
        size = f"d={d} h={h} o={o}"
        common = {"comparison": "sym(B): explicit vs Hessian", "size": size, "max_abs_diff": error}
        steady = _compare(lambda: explicit(state), lambda: recovered(state), sizes.repeats)
        rows.append({**common, "fast": "jit sym(tensor())", "slow": "jit hessian_tensor(check=False)", **steady})
        # The public call compiles once per layer graph (then hits the cache) and syncs for its
        # quadratic-form checks, which evaluate two more Hessians and the reconstruction.
        api = _compare(lambda: algebra.symmetrize(layer.tensor()), lambda: hessian_tensor(layer, d), sizes.repeats)
        rows.append({**common, "fast": "sym(layer.tensor())", "slow": "hessian_tensor(layer, d)", **api})
    return rows


def top_k_solver() -> tuple[Callable, str]:
    """``(solve(w, v, p, u, k, max_iters) -> top eigenvalues, name)``: the library's iterative solver."""
    from bilinear_jax.analysis import BilinearFactors, top_eigenpairs_iterative

    def solve(w, v, p, u, k, max_iters):
        result = top_eigenpairs_iterative(BilinearFactors(w, v, p), u, k, max_iters=max_iters)
        return result.positive_values

    return solve, "top_eigenpairs_iterative (LOBPCG)"


def eigen_rows(sizes: AnalysisSizes, key: jax.Array) -> list[dict[str, Any]]:
    """Iterative top-``k`` from the factors against the full ``eigh`` of ``Q``."""
    solve, name = top_k_solver()
    dense = jax.jit(jnp.linalg.eigh)
    rows = []
    for d in sizes.eigen_d:
        key, k_f, k_u = jax.random.split(key, 3)
        h = 2 * d
        w, v, p = _factors(k_f, d, h, d)
        u = jax.random.normal(k_u, (d,))
        q = jax.jit(algebra.interaction_matrix)(w, v, u, p)
        k = min(sizes.eigen_k, max(1, (d - 1) // 5))
        top = solve(w, v, p, u, k, sizes.eigen_max_iters)
        reference = dense(q)[0][::-1][:k]
        error = float(jnp.max(jnp.abs(top - reference)) / jnp.max(jnp.abs(reference)))
        result = _compare(lambda: solve(w, v, p, u, k, sizes.eigen_max_iters), lambda: dense(q), sizes.repeats)
        rows.append({"comparison": f"top-{k}: iterative vs eigh", "size": f"d={d} h={h}",
                     "fast": name, "slow": "jnp.linalg.eigh(Q)", **result, "max_rel_eig_err": error,
                     "max_iters": sizes.eigen_max_iters})
    return rows


def run_analysis(sizes: AnalysisSizes, seed: int = 0) -> dict[str, Any]:
    """All three comparisons."""
    key = jax.random.key(seed)
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "sizes": dataclasses.asdict(sizes),
        "note": "speedup = slow_ms / fast_ms (medians of interleaved repeats; speedup_of_best: of the minimums). Hessian recovery is the exact "
                "check, expected slower than building the tensor from its factors.",
        "rows": interaction_rows(sizes, k1) + hessian_rows(sizes, k2) + eigen_rows(sizes, k3),
    }


TABLE_COLUMNS = ("comparison", "size", "fast", "slow", "fast_ms", "slow_ms", "speedup", "speedup_of_best")
