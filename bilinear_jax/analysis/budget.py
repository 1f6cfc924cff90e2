"""Memory guards: refuse, before allocating, anything that would not fit.

Every analysis function that materialises a large array (the full tensor ``B``, a stack of
interaction matrices, a feature-interaction tensor) first calls :func:`check_fits` with the
exact number of bytes it is about to allocate. If that exceeds the memory available on the
device (``device.memory_stats()`` on accelerators, ``psutil`` on the host) it raises
:class:`MemoryError` stating the size in GiB and what to do instead (a smaller ``chunk_size``,
the iterative top-k eigensolver, ...). Shapes are static, so the check also runs under
``jax.jit`` at trace time.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import psutil

__all__ = ["array_bytes", "available_bytes", "check_fits", "format_bytes"]

GiB = 1024**3


def format_bytes(num_bytes: float) -> str:
    """``num_bytes`` in GiB (or MiB below 1 GiB), e.g. ``'32.00 GiB'``."""
    if num_bytes >= GiB:
        return f"{num_bytes / GiB:.2f} GiB"
    return f"{num_bytes / 1024**2:.2f} MiB"


def array_bytes(shape: Sequence[int], dtype=jnp.float32) -> int:
    """Bytes of an array of ``shape`` and ``dtype`` (Python ints: no overflow)."""
    return math.prod(int(s) for s in shape) * np.dtype(dtype).itemsize


def available_bytes(device: jax.Device | None = None) -> int:
    """Memory free for new arrays on ``device`` (default: the first local device).

    Accelerators report ``bytes_limit - bytes_in_use`` through ``device.memory_stats()``; CPU
    devices (and any device without stats) share the host's available RAM.
    """
    device = jax.local_devices()[0] if device is None else device
    stats = None
    if device.platform != "cpu":
        try:
            stats = device.memory_stats()
        except Exception:  # noqa: BLE001 (some backends do not implement it)
            stats = None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    return int(psutil.virtual_memory().available)


def check_fits(
    num_bytes: float,
    what: str,
    *,
    device: jax.Device | None = None,
    fraction: float = 0.8,
    suggestion: str | None = None,
) -> None:
    """Raise :class:`MemoryError` if ``num_bytes`` exceeds ``fraction`` of the available memory.

    Args:
      num_bytes: size of the allocation about to happen.
      what: what it is, for the message (e.g. ``"the full tensor B (2048, 2048, 2048) float32"``).
      device: where it would live (default: the first local device).
      fraction: the share of the available memory one allocation may take.
      suggestion: what to do instead; a generic hint by default.
    """
    available = available_bytes(device)
    if num_bytes <= fraction * available:
        return
    hint = suggestion or ("Use a smaller chunk_size, fewer output directions, or the iterative top-k "
                          "eigensolver (top_eigenpairs_iterative), which never forms the matrices.")
    raise MemoryError(
        f"Refusing to allocate {what}: it needs {format_bytes(num_bytes)} but only "
        f"{format_bytes(available)} is available ({fraction:.0%} of it may be used at once). {hint}"
    )
