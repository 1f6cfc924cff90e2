"""Timing helpers: block on results, interleave variants, take medians.

The machines these benchmarks run on may be shared, so absolute times are noisy. Every
comparison here is made *side by side*: the variants run in alternating rounds (A B A B ...)
on the same inputs, after a warm-up call each, and the reported number is the median over
rounds. Ratios of such medians are far more stable than any single time.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Mapping

import jax

__all__ = ["block", "interleaved", "median", "ratio", "timed", "timed_compile"]


def block(value: Any) -> Any:
    """Wait until every array in ``value`` is computed; returns ``value``."""
    return jax.block_until_ready(value)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """``(seconds, result)`` of one call of ``fn``, waiting for its arrays."""
    start = time.perf_counter()
    result = block(fn())
    return time.perf_counter() - start, result


def median(values: list[float]) -> float:
    """The median of a non-empty list."""
    return float(statistics.median(values))


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, or ``inf`` when the denominator is not positive."""
    return numerator / denominator if denominator > 0 else float("inf")


def interleaved(
    variants: Mapping[str, Callable[[], Any]],
    repeats: int,
    *,
    warmup: int = 1,
) -> dict[str, list[float]]:
    """Seconds per call of each variant, measured in alternating rounds.

    Each variant is called ``warmup`` times first (compilation, caches). Then, ``repeats``
    times, every variant runs once in turn, the order reversed every other round (ABBA...) so
    neither variant always follows the other. Returns the list of times per variant.
    """
    names = list(variants)
    for name in names:
        for _ in range(warmup):
            block(variants[name]())
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        order = names if round_index % 2 == 0 else names[::-1]
        for name in order:
            seconds, _ = timed(variants[name])
            times[name].append(seconds)
    return times


def timed_compile(make_jitted: Callable[[], Any], *args: Any) -> tuple[float, Any]:
    """``(seconds, compiled)``: trace, lower and compile a fresh ``jax.jit`` object on ``args``.

    ``make_jitted`` must return a *new* jitted function each call, so that nothing is reused
    from an earlier compilation of the same function.
    """
    start = time.perf_counter()
    compiled = make_jitted().lower(*args).compile()
    return time.perf_counter() - start, compiled
