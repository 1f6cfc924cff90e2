"""Small configs and readers shared by the training tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import ml_collections

from experiments.configs import digits


# A digits run that trains in a second or two: log every step, checkpoint every 10. The same
# settings drive the in-process tests (small_digits_config) and the CLI tests (as --config flags).
SMALL_DIGITS_FLAGS = {
    "num_steps": 40, "batch_size": 64, "log_every": 1, "eval_every": 20, "checkpoint_every": 10,
    "keep_checkpoints": 10, "progress": False, "model.d_model": 16, "model.d_hidden": 16, "mesh.num_devices": 1,
    "optim.warmup_steps": 5, "optim.learning_rate": 2e-2,
}


def small_digits_config(**overrides) -> ml_collections.ConfigDict:
    """``experiments/configs/digits.py`` with :data:`SMALL_DIGITS_FLAGS` and then ``overrides``."""
    return with_overrides(digits.get_config(), {**SMALL_DIGITS_FLAGS, **overrides})


def with_overrides(config: ml_collections.ConfigDict, overrides: dict) -> ml_collections.ConfigDict:
    """Set dotted keys (``"model.d_hidden"``), as ``--config.model.d_hidden=...`` would; new keys too."""
    with config.unlocked():
        config.update_from_flattened_dict(overrides)
    return config


def cli_overrides(config_overrides: dict) -> list[str]:
    return [f"--config.{k}={v}" for k, v in config_overrides.items()]


def losses(workdir: Path) -> dict[int, float]:
    """``{step: train/loss}`` from a run's metrics.jsonl."""
    lines = (Path(workdir) / "metrics.jsonl").read_text().splitlines()
    return {json.loads(line)["step"]: json.loads(line)["train/loss"] for line in lines if line.strip()}


def copy_run_until(source: Path, destination: Path, step: int) -> None:
    """A workdir holding ``source``'s config and its checkpoint at ``step`` only: a run stopped there."""
    destination.mkdir(parents=True, exist_ok=True)
    shutil.copy(source / "config.json", destination / "config.json")
    (destination / "checkpoints").mkdir()
    shutil.copytree(source / "checkpoints" / str(step), destination / "checkpoints" / str(step))


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``directory`` with its size and modification time."""
    return {str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(Path(directory).rglob("*")) if p.is_file()}
