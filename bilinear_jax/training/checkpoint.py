"""Orbax checkpoints of the train state, the data-iterator position and the run's metadata.

Each step directory holds three items: ``state`` (parameters, optimizer state, step; sharded
arrays restored onto whatever mesh the reader has), ``data`` (the input iterator's JSON state)
and ``meta`` (parameter shapes and the config, used to refuse an incompatible model before
anything compiles). Saves are asynchronous; Orbax writes each step to a temporary directory
and renames it when complete, so an interrupted save never becomes the latest checkpoint. A
latest checkpoint that cannot be read (truncated files) is skipped with a warning in favour of
the previous one.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Mapping, NamedTuple

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

log = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """Checkpoints exist but none can be restored."""


class Restored(NamedTuple):
    step: int
    state: Any
    data_state: dict
    meta: dict


def param_shapes(abstract_params: Any) -> dict[str, list[int]]:
    """``{'path/to/param': shape}``: the fingerprint that decides whether a checkpoint fits a model."""
    flat = jax.tree_util.tree_flatten_with_path(abstract_params)[0]
    return {_path_name(path): list(np.shape(leaf)) for path, leaf in flat}


def _path_name(path) -> str:
    names = [str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path]
    return "/".join(n for n in names if n not in (".value", "value"))


def incompatibility(saved: Mapping[str, list[int]], current: Mapping[str, list[int]]) -> str | None:
    """A sentence describing how two parameter fingerprints differ, or None if they match."""
    missing, extra = sorted(set(saved) - set(current)), sorted(set(current) - set(saved))
    if missing or extra:
        return (f"the checkpoint has parameters {missing[:3]} that this model lacks and lacks {extra[:3]}"
                if missing else f"this model has parameters {extra[:3]} that the checkpoint lacks")
    for name in sorted(saved):
        if list(saved[name]) != list(current[name]):
            return f"parameter {name!r} has shape {tuple(saved[name])} in the checkpoint but {tuple(current[name])} here"
    return None


class Checkpointer:
    """``CheckpointManager`` over ``directory`` keeping the newest ``max_to_keep`` steps."""

    def __init__(self, directory: str | epath.Path, *, max_to_keep: int = 3):
        self.directory = epath.Path(directory)
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True, enable_async_checkpointing=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, step: int, state: Any, data_state: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        """Start an asynchronous save of ``step``; :meth:`wait` blocks until it is on disk."""
        if step in self.manager.all_steps():
            return
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave(dict(data_state)),
            meta=ocp.args.JsonSave(dict(meta)),
        ), force=True)

    def wait(self) -> None:
        self.manager.wait_until_finished()


    def restore_latest(self, abstract_state: Any) -> Restored | None:
        """Restore the newest readable checkpoint onto the shardings of ``abstract_state``.

        Unreadable newer steps are deleted once an older one restores, so the run saves those
        steps again instead of stumbling over them on every rerun. None when there are no
        checkpoints; :class:`CheckpointError` when there are some and none can be restored.
        """
        unreadable = []
        for step in reversed(self.steps()):
            try:
                restored = self.manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state),
                    data=ocp.args.JsonRestore(),
                    meta=ocp.args.JsonRestore(),
                ))
            except Exception as error:  # noqa: BLE001 - fall back to an older checkpoint
                log.warning("Checkpoint %d could not be restored (%s: %s); falling back to the previous one.",
                            step, type(error).__name__, str(error)[:300])
                unreadable.append(step)
                continue
            for bad in unreadable:
                self.manager.delete(bad)
            return Restored(step, restored["state"], dict(restored["data"]), dict(restored["meta"]))
        if unreadable:
            raise CheckpointError(
                f"None of the checkpoints {sorted(unreadable)} in {self.directory} could be restored (see the "
                "warnings above); nothing was overwritten. Move them away to start afresh.")
        return None

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()



def read_latest_meta(directory: str | epath.Path) -> dict | None:
    """Metadata of the newest complete checkpoint under ``directory``, read as plain JSON.

    Used to check a workdir before training, without creating or locking anything in it.
    Orbax renames a step directory into place only when it is complete, so a name that is a
    plain integer is a finished save.
    """
    directory = epath.Path(directory)
    if not directory.exists():
        return None
    steps = sorted((int(p.name) for p in directory.iterdir() if p.name.isdigit()), reverse=True)
    for step in steps:
        try:
            return json.loads((directory / str(step) / "meta" / "metadata").read_text())
        except (OSError, ValueError) as error:
            log.warning("Checkpoint %d has unreadable metadata (%s); trying the previous one.", step, error)
    return None
