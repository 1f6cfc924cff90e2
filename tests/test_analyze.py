"""The analysis report: ``python -m experiments.analyze --workdir DIR`` on tiny trained runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bilinear_jax.training.trainer import train
from experiments import analyze
from experiments.configs import modadd, toy_boolean
from tests.training_helpers import small_digits_config, with_overrides

EMBEDDED_PNG = '<img src="data:image/png;base64,'


def _train(tmp_path_factory, name: str, config) -> Path:
    workdir = tmp_path_factory.mktemp(name)
    train(config, str(workdir))
    return workdir


def _quiet(config, steps: int):
    config.progress, config.mesh.num_devices = False, 1
    config.num_steps = steps
    config.log_every = config.eval_every = config.checkpoint_every = steps
    return config


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    return _train(tmp_path_factory, "digits", small_digits_config())


@pytest.fixture(scope="module")
def modadd_run(tmp_path_factory) -> Path:
    config = with_overrides(_quiet(modadd.get_config(), 30), {
        "data.options.p": 11, "data.options.train_fraction": 0.5, "model.d_model": 16, "model.d_hidden": 32,
        "model.n_heads": 2, "batch_size": 32})
    return _train(tmp_path_factory, "modadd", config)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> Path:
    return _train(tmp_path_factory, "toy", _quiet(toy_boolean.get_config(), 40))


def _analyze(workdir: Path, capsys, *extra: str) -> tuple[dict, str]:
    assert analyze.main(["--workdir", str(workdir), *extra]) == 0
    out = capsys.readouterr().out
    assert "report: " in out and "hessian_max_rel_error=" in out
    analysis = workdir / "analysis"
    html = (analysis / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and EMBEDDED_PNG in html
    summary = json.loads((analysis / "summary.json").read_text())
    for name in summary["figures"]:
        assert (analysis / "figures" / name).stat().st_size > 0
    assert html.count(EMBEDDED_PNG) == len(summary["figures"])
    return summary, html


def test_digits_report(digits_run, capsys):
    summary, html = _analyze(digits_run, capsys)
    assert summary["model_type"] == "classifier"
    assert summary["hessian_max_rel_error"] < 1e-4
    assert set(summary["hessian_rel_error_per_layer"]) == {"block 0"}
    assert {"eigenvectors.png", "spectra.png", "truncation_curve.png"} <= set(summary["figures"])
    curve = summary["truncation_curve"]
    n = 16  # d_model of the small config (no biases, no residual: not augmented)
    assert curve["ks"] == list(range(1, n + 1)) and len(curve["accuracy"]) == n
    # At full rank the truncated model is the model (float32: allow one example to flip on a tie).
    assert abs(curve["accuracy"][-1] - summary["accuracy"]) <= 1.0 / summary["num_examples"]
    assert curve["model_accuracy"] == summary["accuracy"] > 0.5
    assert summary["truncation_full_rank_matches_model"] is True
    assert len(summary["explained_fraction"]["top_1"]) == 10
    assert "Top eigenvectors in input space" in html and "truncation curve" in html


def test_transformer_report(modadd_run, capsys, tmp_path):
    out_dir = tmp_path / "elsewhere"
    assert analyze.main(["--workdir", str(modadd_run), "--out", str(out_dir), "--max-examples", "16"]) == 0
    capsys.readouterr()
    summary = json.loads((out_dir / "summary.json").read_text())
    html = (out_dir / "report.html").read_text()
    assert EMBEDDED_PNG in html and (out_dir / "figures" / "path_terms.png").exists()
    assert summary["model_type"] == "transformer" and summary["num_examples"] == 16
    assert summary["hessian_max_rel_error"] < 1e-4
    assert summary["path_expansion_max_rel_error"] < 1e-4
    assert summary["path_expansion"]["num_terms"] == 1 + 2 + 3 * 3  # direct, 2 heads, 3×3 MLP pairs
    top_pairs = summary["top_token_pairs"]["layer 0 MLP"]
    assert len(top_pairs) == 4 and all(len(entry["pairs"]) == 4 for entry in top_pairs)
    assert "Path expansion" in html and "Top token pairs" in html


def test_toy_report(toy_run, capsys):
    summary, html = _analyze(toy_run, capsys, "--top-k", "3")
    assert summary["model_type"] == "toy" and summary["hessian_max_rel_error"] < 1e-4
    pairs = summary["pairs"]
    assert [p["true_pair"] for p in pairs] == [sorted(o[1:]) for o in _outputs(toy_run)]
    assert all(isinstance(p["matches"], bool) and len(p["top_pairs"]) == 3 for p in pairs)
    assert "interactions.png" in summary["figures"] and "Top input pairs" in html


def _outputs(workdir: Path) -> list[list]:
    from bilinear_jax.analysis import load

    return [list(o) for o in load(workdir).info.metadata["outputs"]]


def test_non_bilinear_model_is_reported_not_crashed(tmp_path, capsys):
    config = with_overrides(_quiet(toy_boolean.get_config(), 5), {"model.kind": "relu"})
    train(config, str(tmp_path))
    assert analyze.main(["--workdir", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "analysis" / "summary.json").read_text())
    assert summary["hessian_max_rel_error"] is None and summary["mlp_kind"] == "relu"
    assert "not a quadratic form" in (tmp_path / "analysis" / "report.html").read_text()


@pytest.mark.parametrize("make_args", [
    lambda tmp: ["--workdir", str(tmp / "missing")],
    lambda tmp: ["--workdir", str(tmp)],  # exists, but is no training run
])
def test_bad_workdir_is_one_error_line(tmp_path, capsys, make_args):
    assert analyze.main(make_args(tmp_path)) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert not (tmp_path / "analysis").exists()


def test_importing_the_analysis_package_leaves_the_matplotlib_backend_alone():
    """Notebooks keep their inline backend: figures are drawn on Figure objects, not via pyplot."""
    import subprocess
    import sys

    code = "import bilinear_jax.analysis, matplotlib; print(matplotlib.get_backend())"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**__import__("os").environ, "MPLBACKEND": "svg"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "svg"
