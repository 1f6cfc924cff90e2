"""Smoke test of the benchmark suite: every section at tiny sizes, and the JSON it writes.

No timing assertions: speed goals live in the benchmarks, not in tests.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks import report, run

ENVIRONMENT_KEYS = {"timestamp", "platform", "device_kind", "device_count", "jax_version"}
SECTION_RATIOS = {"train": ("mfu_measured_peak",), "analysis": ("speedup",), "ablations": ("speedup",)}


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("bench") / "results" / "benchmarks.json"
    path = run.main(["--smoke", "--out", str(out)])
    return path, json.loads(path.read_text())


def _positive_finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_writes_one_file_per_platform(written):
    path, payload = written
    assert path.name == f"benchmarks-{payload['environment']['platform']}.json"
    assert ENVIRONMENT_KEYS <= set(payload["environment"])
    assert payload["mode"] == "smoke"
    assert set(payload["sections"]) == set(run.SECTIONS)
    assert _positive_finite(payload["total_seconds"])


@pytest.mark.parametrize("section", sorted(SECTION_RATIOS))
def test_section_rows_have_finite_positive_ratios(written, section):
    result = written[1]["sections"][section]
    assert result["rows"], section
    for row in result["rows"]:
        for name in SECTION_RATIOS[section]:
            assert _positive_finite(row[name]), (section, name, row)
        for name, value in row.items():
            if name.endswith(("_ms", "_s")) and value is not None:
                assert _positive_finite(value), (section, name, row)


def test_train_section_schema(written):
    result = written[1]["sections"]["train"]
    assert _positive_finite(result["peak_flops_measured"])
    for row in result["rows"]:
        for name in ("compile_s", "step_ms", "tokens_per_s", "model_flops_per_step", "achieved_flops_per_s"):
            assert _positive_finite(row[name]), (name, row)
        assert math.isfinite(row["loss"])


def test_analysis_paths_agree(written):
    rows = written[1]["sections"]["analysis"]["rows"]
    comparisons = {row["comparison"].split(":")[0] for row in rows}
    assert {"Q_u", "sym(B)"} <= comparisons and any(c.startswith("top-") for c in comparisons)
    for row in rows:
        if "max_abs_diff" in row:
            assert row["max_abs_diff"] < 1e-4, row
        if "max_rel_eig_err" in row:
            assert row["max_rel_eig_err"] < 1e-2, row


def test_ablations_cover_every_change(written):
    names = " ".join(row["ablation"] for row in written[1]["sections"]["ablations"]["rows"])
    for change in ("fused", "donated", "host sync", "bf16", "prefetch", "scanned"):
        assert change in names, change


def test_only_flag_and_unknown_section(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run.main(["--smoke", "--only", "nonsense", "--out", str(tmp_path / "b.json")])
    assert "unknown section" in capsys.readouterr().err


def test_format_table_aligns_columns():
    table = report.format_table("t", [{"a": "x", "b": 1.5}, {"a": "longer", "b": None}])
    lines = table.splitlines()
    assert lines[0] == "t" and len({len(line) for line in lines[1:]}) == 1
    assert report.output_path("results/benchmarks.json", "gpu").name == "benchmarks-gpu.json"
