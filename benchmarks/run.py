"""Benchmark suite: training throughput and MFU, analysis costs, and performance ablations.

    python -m benchmarks.run --quick                 # a few minutes on a laptop CPU
    python -m benchmarks.run                         # full sizes (meant for a GPU or TPU)
    python -m benchmarks.run --quick --only analysis --out results/benchmarks.json

Sections (``--only`` picks some, comma-separated or repeated):

* ``train``     (:mod:`benchmarks.train_throughput`): tokens/s, step and compile time, MFU;
* ``analysis``  (:mod:`benchmarks.analysis_costs`): fast against explicit analysis paths;
* ``ablations`` (:mod:`benchmarks.ablations`): each performance choice, before and after.

Prints one table per section and writes every number, with the device, versions and
timestamp, to ``<out stem>-<platform>.json`` (``results/benchmarks-cpu.json`` by default), so
CPU and accelerator runs do not overwrite each other. Comparisons are ratios of medians of
interleaved repeats, measured side by side in the same run; absolute times on a shared
machine are only indicative.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from benchmarks import ablations, analysis_costs, report, train_throughput

__all__ = ["PRESETS", "SECTIONS", "Preset", "main", "run_benchmarks"]


@dataclasses.dataclass(frozen=True)
class Preset:
    """Sizes of every section for one mode."""

    train: train_throughput.TrainSizes
    analysis: analysis_costs.AnalysisSizes
    ablations: ablations.AblationSizes


PRESETS: dict[str, Preset] = {
    # Within 3 minutes on a 2-core CPU, including JAX start-up and data preparation.
    "quick": Preset(
        train=train_throughput.TrainSizes(d_models=(64, 128), n_layers=(1, 2), seq_len=64, batch_size=16,
                                          timed_steps=6, window_steps=4, windows=3),
        analysis=analysis_costs.AnalysisSizes(
            interaction=((64, 256, 64), (128, 512, 128)), directions=8, hessian=((16, 64, 16), (32, 128, 32)),
            eigen_d=(128, 256, 512), eigen_k=8, eigen_max_iters=100, repeats=3),
        ablations=ablations.AblationSizes(layer_tokens=2048, layer_d=128, layer_h=512, d_model=64, n_layers=2,
                                          seq_len=64, batch_size=16, scan_depths=(2, 8), window=4, repeats=3),
    ),
    # Accelerator sizes: no --quick limits.
    "full": Preset(
        train=train_throughput.TrainSizes(d_models=(128, 256, 512, 1024), n_layers=(2, 4, 8), seq_len=256,
                                          batch_size=32, timed_steps=20, window_steps=20, windows=5),
        analysis=analysis_costs.AnalysisSizes(
            interaction=((128, 512, 128), (256, 1024, 256), (512, 2048, 512)), directions=16,
            hessian=((32, 128, 32), (64, 256, 64), (128, 512, 128)),
            eigen_d=(512, 1024, 2048), eigen_k=16, eigen_max_iters=200, repeats=10),
        ablations=ablations.AblationSizes(layer_tokens=8192, layer_d=512, layer_h=2048, d_model=256, n_layers=4,
                                          seq_len=256, batch_size=32, scan_depths=(2, 8, 16),
                                          bf16_train_step=True, window=10, repeats=10),
    ),
    # For the tests: every code path, tiny sizes, one device (sharded compiles are slow on fake CPUs).
    "smoke": Preset(
        train=train_throughput.TrainSizes(d_models=(32,), n_layers=(1,), seq_len=16, batch_size=8,
                                          timed_steps=2, window_steps=2, windows=1, num_devices=1),
        analysis=analysis_costs.AnalysisSizes(interaction=((8, 16, 8),), directions=2, hessian=((4, 8, 4),),
                                              eigen_d=(16,), eigen_k=2, eigen_max_iters=20, repeats=1),
        ablations=ablations.AblationSizes(layer_tokens=32, layer_d=8, layer_h=16, d_model=32, n_layers=1,
                                          seq_len=16, batch_size=8, scan_depths=(1,), bf16_train_step=False,
                                          window=2, repeats=1, num_devices=1),
    ),
}

# name -> (run(data_dir, preset) -> results, table columns)
SECTIONS: dict[str, tuple[Callable[[Path, Preset], dict[str, Any]], Sequence[str]]] = {
    "train": (lambda data_dir, p: train_throughput.run_train(data_dir, p.train), train_throughput.TABLE_COLUMNS),
    "analysis": (lambda data_dir, p: analysis_costs.run_analysis(p.analysis), analysis_costs.TABLE_COLUMNS),
    "ablations": (lambda data_dir, p: ablations.run_ablations(data_dir, p.ablations), ablations.TABLE_COLUMNS),
}


def section_table(name: str, result: dict[str, Any]) -> str:
    """The printed table of one section, with only the columns that have values."""
    columns = [c for c in SECTIONS[name][1] if any(row.get(c) is not None for row in result["rows"])]
    title = f"[{name}] {result.get('note', '')}".rstrip()
    if name == "train":
        title += (f"\n  peak (measured in this run): {result['peak_flops_measured']:.3g} FLOP/s"
                  f"; published: {report.format_value(result['peak_flops_published'])}. {result['flops_note']}")
    return report.format_table(title, result["rows"], columns)


def run_benchmarks(mode: str, sections: Sequence[str], data_dir: Path | None = None,
                   echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run ``sections`` at the sizes of ``mode``; returns the JSON payload (tables go to ``echo``)."""
    preset = PRESETS[mode]
    start = time.perf_counter()
    temporary = data_dir is None
    data_dir = Path(tempfile.mkdtemp(prefix="bench-data-")) if temporary else Path(data_dir)
    payload: dict[str, Any] = {"environment": report.environment(), "mode": mode, "sections": {}}
    try:
        for name in sections:
            section_start = time.perf_counter()
            result = SECTIONS[name][0](data_dir, preset)
            result["seconds"] = time.perf_counter() - section_start
            payload["sections"][name] = result
            echo(section_table(name, result))
    finally:
        if temporary:
            shutil.rmtree(data_dir, ignore_errors=True)
    payload["total_seconds"] = time.perf_counter() - start
    return payload


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small sizes: within 3 minutes on a 2-core CPU")
    mode.add_argument("--smoke", action="store_true", help="tiny sizes, every code path (for tests)")
    parser.add_argument("--out", default="results/benchmarks.json",
                        help="JSON path; the platform is appended to the stem (default: %(default)s)")
    parser.add_argument("--only", action="append", default=None, metavar="SECTION",
                        help=f"run only these sections ({', '.join(SECTIONS)}); comma-separated or repeated")
    parser.add_argument("--data-dir", default=None, help="where to prepare the corpus (default: a temporary dir)")
    args = parser.parse_args(argv)
    chosen = [s.strip() for item in (args.only or list(SECTIONS)) for s in item.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    args.sections = list(dict.fromkeys(chosen))
    args.mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    return args


def main(argv: Sequence[str] | None = None) -> Path:
    """Entry point; returns the path of the JSON written."""
    args = _parse(argv)
    logging.getLogger("absl").setLevel(logging.ERROR)
    payload = run_benchmarks(args.mode, args.sections, args.data_dir)
    env = payload["environment"]
    path = report.write_json(report.output_path(args.out, env["platform"]), payload)
    print(f"{env['device_count']}× {env['device_kind']} ({env['platform']}), jax {env['jax_version']}, "
          f"mode {args.mode}: {payload['total_seconds']:.1f} s. Wrote {path}")
    return path


if __name__ == "__main__":
    main(sys.argv[1:])
