r"""Regenerate the README's results section from ``results/*.json``; no number is typed by hand.

    python -m experiments.readme_results [--check]

Each experiment module in ``experiments/reproduction`` renders its own table (``markdown``);
this script puts them between the ``<!-- results:begin -->`` and ``<!-- results:end -->``
markers with the command and commit that produced them. ``--check`` exits 1 if the README is
out of date.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


BENCHMARK_COLUMNS = {
    "train": ("d_model", "n_layers", "params", "compile_s", "step_ms", "tokens_per_s", "mfu_measured_peak"),
    "analysis": ("comparison", "size", "fast", "slow", "fast_ms", "slow_ms", "speedup"),
    "ablations": ("ablation", "before", "after", "before_ms", "after_ms", "before_s", "after_s", "speedup"),
}


def markdown_table(rows: list[dict], columns: tuple[str, ...]) -> str:
    from benchmarks.report import format_value

    columns = tuple(c for c in columns if any(row.get(c) is not None for row in rows))
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(format_value(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def benchmarks_section(path: Path) -> str:
    """Tables of one ``benchmarks.run`` JSON file; ratios were measured side by side in one run."""
    result = json.loads(path.read_text())
    env = result["environment"]
    parts = [f"### Benchmarks on {env['device_kind']} ({env['platform']}, {env['device_count']} device(s), "
             f"mode `{result['mode']}`)"]
    for name, columns in BENCHMARK_COLUMNS.items():
        section = result["sections"].get(name)
        if section:
            note = section.get("flops_note") or section.get("note") or ""
            parts.append(f"**{name}**{': ' + note if note else ''}\n\n{markdown_table(section['rows'], columns)}")
    parts.append(f"<sub>From [`{path.relative_to(ROOT)}`]({path.relative_to(ROOT)}), written by "
                 f"`python -m benchmarks.run --{result['mode']}` at {env['timestamp']} "
                 f"(jax {env['jax_version']}, {result['total_seconds']:.0f} s).</sub>")
    return "\n\n".join(parts)


def results_section(results_dir: Path) -> str:
    parts = []
    for path in sorted(results_dir.glob("*.json")):
        if path.name.startswith("benchmarks-"):
            continue
        result = json.loads(path.read_text())
        if result.get("quick") or "experiment" not in result:
            continue
        module = importlib.import_module(f"experiments.reproduction.{result['experiment']}")
        meta = result["meta"]
        parts.append(
            f"### {result['experiment']}\n\n{module.markdown(result)}\n\n"
            f"<sub>From [`{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}`]"
            f"({path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}), written by "
            f"`{meta['command']}` on {meta['device']} ({meta['wall_seconds']:.0f} s, commit "
            f"{(meta.get('git_commit') or 'unknown')[:10]}).</sub>")
    parts += [benchmarks_section(path) for path in sorted(results_dir.glob("benchmarks-*.json"))
              if path.is_relative_to(ROOT)]
    if not parts:
        return "No results yet: run `python -m experiments.reproduce NAME`, then this script."
    return "\n\n".join(parts)


def updated_readme(readme: str, section: str) -> str:
    if BEGIN not in readme or END not in readme:
        raise ValueError(f"README.md has no {BEGIN} ... {END} markers.")
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{section}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.readme_results", description=__doc__.split("\n\n")[0])
    parser.add_argument("--results-dir", type=Path, default=ROOT / "results")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--check", action="store_true", help="exit 1 if the README is out of date")
    args = parser.parse_args(argv)
    readme = args.readme.read_text()
    new = updated_readme(readme, results_section(args.results_dir))
    if args.check:
        return 0 if new == readme else 1
    args.readme.write_text(new)
    print(f"updated {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
