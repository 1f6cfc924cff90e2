"""The device mesh and the logical-axis rules that place parameters and batches on it.

The mesh has three axes: ``data`` (pure data parallelism), ``fsdp`` (data parallelism with
parameters and optimizer state sharded along ``embed``) and ``tensor`` (model parallelism over
``mlp``, ``heads`` and ``vocab``). Batches are split over ``data × fsdp``.

Parameters carry logical names (``embed``, ``mlp``, ...; see :mod:`bilinear_jax.layers`).
:data:`LOGICAL_AXIS_RULES` maps each name to a mesh axis, as in MaxText. A dimension that the
mesh axis does not divide, or a mesh axis already used by the same array, is replicated instead.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

MESH_AXES: tuple[str, ...] = ("data", "fsdp", "tensor")
BATCH_AXES: tuple[str, ...] = ("data", "fsdp")

LOGICAL_AXIS_RULES: tuple[tuple[str, str | None], ...] = (
    ("embed", "fsdp"),
    ("input", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("vocab", "tensor"),
    ("classes", None),
    ("kv", None),
    ("layers", None),
)


def mesh_shape(sizes: Mapping[str, int], num_devices: int) -> tuple[int, ...]:
    """Resolve ``{data, fsdp, tensor}`` sizes, one of which may be -1 (fill the rest).

    Raises ValueError with a suggestion when the sizes do not multiply to ``num_devices``.
    """
    unknown = set(sizes) - set(MESH_AXES)
    if unknown:
        raise ValueError(f"Unknown mesh axes {sorted(unknown)}; the mesh axes are {', '.join(MESH_AXES)}.")
    shape = [int(sizes.get(axis, 1)) for axis in MESH_AXES]
    if sum(s == -1 for s in shape) > 1:
        raise ValueError(f"At most one mesh axis may be -1, got mesh={dict(zip(MESH_AXES, shape))}.")
    if any(s == 0 or s < -1 for s in shape):
        raise ValueError(f"Mesh sizes must be positive or -1, got mesh={dict(zip(MESH_AXES, shape))}.")
    known = math.prod(s for s in shape if s != -1)
    if -1 in shape:
        if num_devices % known:
            raise ValueError(
                f"The mesh {dict(zip(MESH_AXES, shape))} cannot fill {num_devices} devices: {known} does "
                f"not divide {num_devices}. Choose sizes whose product divides the device count.")
        shape[shape.index(-1)] = num_devices // known
    if math.prod(shape) != num_devices:
        raise ValueError(
            f"The mesh data={shape[0]} × fsdp={shape[1]} × tensor={shape[2]} needs {math.prod(shape)} devices "
            f"but {num_devices} are available. Set the sizes to multiply to {num_devices}, or set one to -1.")
    return tuple(shape)


def make_mesh(sizes: Mapping[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
    """``jax.make_mesh`` over ``(data, fsdp, tensor)`` with auto axis types.

    ``sizes`` may also hold ``num_devices``: use only the first N devices (-1: all of them).
    """
    sizes = dict(sizes)
    devices = list(jax.devices() if devices is None else devices)
    num_devices = int(sizes.pop("num_devices", -1))
    if num_devices != -1:
        if not 1 <= num_devices <= len(devices):
            raise ValueError(f"num_devices={num_devices} but {len(devices)} devices are available.")
        if jax.process_count() > 1 and num_devices != len(devices):
            raise ValueError("num_devices must be -1 (all devices) in a multi-process run.")
        devices = devices[:num_devices]
    shape = mesh_shape(sizes, len(devices))
    return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES), devices=devices)


def data_parallel_size(mesh: Mesh) -> int:
    return math.prod(mesh.shape[axis] for axis in BATCH_AXES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) dimension over ``data × fsdp``; everything else replicated."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def logical_to_mesh_spec(
    logical: Sequence[str | None],
    shape: Sequence[int],
    mesh: Mesh,
    rules: Sequence[tuple[str, str | None]] = LOGICAL_AXIS_RULES,
) -> PartitionSpec:
    """Map logical names to mesh axes, replicating where the mesh axis does not divide the dim."""
    table = dict(rules)
    used: set[str] = set()
    spec = []
    for name, dim in zip(logical, shape):
        axis = table.get(name) if name is not None else None
        if axis is None or axis in used or mesh.shape[axis] == 1 or dim % mesh.shape[axis]:
            spec.append(None)
        else:
            spec.append(axis)
            used.add(axis)
    return PartitionSpec(*spec)


def state_shardings(abstract_state: nnx.State, mesh: Mesh) -> nnx.State:
    """A ``NamedSharding`` for every leaf of an (abstract) NNX state, from its logical names."""
    specs = nnx.get_partition_spec(abstract_state)

    def to_sharding(leaf, spec):
        logical = tuple(spec) if isinstance(spec, PartitionSpec) else (None,) * np.ndim(leaf)
        return NamedSharding(mesh, logical_to_mesh_spec(logical, np.shape(leaf), mesh))

    return jax.tree.map(to_sharding, abstract_state, specs,
                        is_leaf=lambda x: isinstance(x, (jax.ShapeDtypeStruct, jax.Array, np.ndarray)))
