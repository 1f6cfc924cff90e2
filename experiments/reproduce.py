r"""Reproduce a result of the bilinear-layer literature and write ``results/NAME.json``.

    python -m experiments.reproduce NAME [--quick] [--set KEY=VALUE ...] [--results-dir results] [--workdir-root DIR]

NAME is one of the modules in ``experiments/reproduction``. ``--quick`` runs a tiny version (for
tests); the JSON records the command, the git commit, the device and the wall time, so every
number in the README can be traced to the run that printed it. ``python -m
experiments.readme_results`` then regenerates the README's results section from these files.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import pkgutil
import shlex
import subprocess
import sys
import time
from pathlib import Path

import jax

import experiments.reproduction as reproduction
from bilinear_jax.training.plan import ConfigError

EXPERIMENTS = tuple(sorted(m.name for m in pkgutil.iter_modules(reproduction.__path__)))


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def reproduce(name: str, *, results_dir: Path, workdir_root: Path, quick: bool, command: str,
              options: dict[str, str] | None = None) -> dict:
    if name not in EXPERIMENTS:
        raise ValueError(f"Unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}.")
    module = importlib.import_module(f"experiments.reproduction.{name}")
    results_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    numbers = module.run(results_dir, workdir_root / name, quick, **(options or {}))
    result = {
        "experiment": name,
        "quick": quick,
        "results": numbers,
        "meta": {
            "command": command,
            "git_commit": git_commit(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "jax_version": jax.__version__,
            "device": jax.devices()[0].device_kind,
            "device_count": jax.device_count(),
            "wall_seconds": round(time.perf_counter() - start, 1),
        },
    }
    (results_dir / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m experiments.reproduce", description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=EXPERIMENTS)
    parser.add_argument("--quick", action="store_true", help="a tiny version, for tests")
    parser.add_argument("--results-dir", type=Path, default=Path("results"))
    parser.add_argument("--workdir-root", type=Path, default=Path("workdirs/reproduce"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an option of the experiment's run(), e.g. --set size=gpu for mlp_variants")
    args = parser.parse_args(argv)
    if any("=" not in item for item in args.set):
        parser.error("--set takes KEY=VALUE")
    options = dict(item.split("=", 1) for item in args.set)
    command = shlex.join(["python", "-m", "experiments.reproduce", *argv])
    try:
        result = reproduce(args.name, results_dir=args.results_dir, workdir_root=args.workdir_root,
                           quick=args.quick, command=command, options=options)
    except ConfigError as error:  # e.g. mnist without a network: nothing is written to results/
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result["results"], indent=2)[:4000])
    print(f"wrote {args.results_dir / (args.name + '.json')} in {result['meta']['wall_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
