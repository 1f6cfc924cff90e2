"""Experiments that reproduce the bilinear-layer literature; run with ``python -m experiments.reproduce NAME``.

Each module has ``run(results_dir, workdir_root, quick) -> dict``: it trains what it needs under
``workdir_root``, writes its figures into ``results_dir`` and returns the numbers that go into
``results/NAME.json``.
"""
