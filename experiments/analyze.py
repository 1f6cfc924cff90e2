r"""Write the analysis report of a trained run.

    python -m experiments.analyze --workdir workdirs/digits [--out DIR] [--max-examples N] [--top-k K]

Writes ``DIR/report.html`` (self-contained: figures embedded as base64 PNGs), ``DIR/summary.json``
and ``DIR/figures/*.png``; ``DIR`` defaults to ``WORKDIR/analysis``. Bad input gets one ``error:``
line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m experiments.analyze", description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True, help="the --workdir of a training run")
    parser.add_argument("--out", default=None, help="output directory (default: WORKDIR/analysis)")
    parser.add_argument("--max-examples", type=int, default=None,
                        help="evaluate on at most N examples of the evaluation split")
    parser.add_argument("--top-k", type=int, default=4,
                        help="eigenvectors of each sign per class, pairs and tokens shown (default 4)")
    return parser


def _error(message: str) -> int:
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.max_examples is not None and args.max_examples < 1:
        return _error(f"--max-examples must be positive, got {args.max_examples}")
    if args.top_k < 1:
        return _error(f"--top-k must be positive, got {args.top_k}")
    if not os.path.isdir(args.workdir):
        return _error(f"workdir {args.workdir} does not exist")
    if not os.path.exists(os.path.join(args.workdir, "config.json")):
        return _error(f"{args.workdir} has no config.json; is it the --workdir of a training run?")

    from bilinear_jax.analysis.report import analyze_run
    from bilinear_jax.training.plan import ConfigError

    try:
        summary = analyze_run(args.workdir, out_dir=args.out, max_examples=args.max_examples, top_k=args.top_k)
    except (ConfigError, FileNotFoundError) as error:
        return _error(error)

    numbers = [f"{key}={summary[key]:.3g}" for key in
               ("accuracy", "hessian_max_rel_error", "path_expansion_max_rel_error")
               if isinstance(summary.get(key), (int, float))]
    curve = summary.get("truncation_curve")
    if curve:
        numbers.append(f"truncated accuracy at k=1: {curve['accuracy'][0]:.3g}, at k={curve['ks'][-1]}: "
                       f"{curve['accuracy'][-1]:.3g}")
    print(f"report: {summary['report']}")
    print(f"summary: {summary['summary']}")
    print(f"{summary.get('model_type')} at step {summary.get('step')} ({summary['seconds']:.1f}s): " + ", ".join(numbers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
