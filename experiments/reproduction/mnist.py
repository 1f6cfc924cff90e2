"""The digits experiment on TFDS ``mnist``: needs the network to download it once.

Offline this stops with the data layer's error naming the offline datasets; use ``digits``.
"""

from __future__ import annotations

from pathlib import Path

from experiments.configs import mnist
from experiments.reproduction.digits import markdown, run_classifier  # noqa: F401 (markdown: README table)


def run(results_dir: Path, workdir_root: Path, quick: bool) -> dict:
    config = mnist.get_config()
    config.progress = False
    if quick:
        config.num_steps = config.eval_every = config.checkpoint_every = 200
    return run_classifier(config, "mnist", results_dir, workdir_root)
