"""A single-layer bilinear image classifier, read through its eigenvectors (Pearce et al. 2024).

Train ``experiments/configs/digits.py`` (input noise, weight decay), then analyse it with
:func:`bilinear_jax.analysis.report.analyze_run`: test accuracy, the Hessian check of the
tensor, the top positive and negative eigenvectors of each class's interaction matrix as
images, and the truncation curve (accuracy keeping the top-k eigenvectors per class).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from bilinear_jax.analysis.report import analyze_run
from bilinear_jax.training.trainer import train
from experiments.configs import digits

FIGURES = ("eigenvectors.png", "truncation_curve.png")


def run_classifier(config, name: str, results_dir: Path, workdir_root: Path) -> dict:
    """Train ``config``, analyse it, and copy the key figures to ``results_dir/name/``."""
    final = train(config, str(workdir_root))
    summary = analyze_run(workdir_root, out_dir=workdir_root / "analysis")
    figures_dir = results_dir / name
    figures_dir.mkdir(parents=True, exist_ok=True)
    for figure in FIGURES:
        shutil.copy(workdir_root / "analysis" / "figures" / figure, figures_dir / figure)
    curve = summary["truncation_curve"]
    return {
        "test_accuracy": final["eval/accuracy"],
        "num_steps": int(config.num_steps),
        "input_noise_std": float(config.model.input_noise_std),
        "weight_decay": float(config.optim.weight_decay),
        "num_parameters": summary["num_parameters"],
        "hessian_max_rel_error": summary["hessian_max_rel_error"],
        "truncation_curve": {"ks": curve["ks"], "accuracy": curve["accuracy"],
                             "model_accuracy": curve["model_accuracy"]},
        "truncation_full_rank_matches_model": summary["truncation_full_rank_matches_model"],
        "explained_fraction": summary["explained_fraction"],
        "figures": [str(Path(name) / f) for f in FIGURES],
    }


def run(results_dir: Path, workdir_root: Path, quick: bool) -> dict:
    config = digits.get_config()
    config.progress = False
    if quick:
        config.num_steps, config.log_every = 100, 50
        config.eval_every = config.checkpoint_every = 100
    return run_classifier(config, "digits", results_dir, workdir_root)


def markdown(result: dict) -> str:
    r = result["results"]
    curve = r["truncation_curve"]
    shown = [k for k in (1, 2, 3, 5, 10, 20) if k in curve["ks"]]
    accuracy = dict(zip(curve["ks"], curve["accuracy"]))
    lines = [
        f"Test accuracy **{r['test_accuracy']:.4f}** ({r['num_parameters']:,} parameters, {r['num_steps']} steps, "
        f"input noise σ = {r['input_noise_std']}, weight decay {r['weight_decay']}). The tensor recovered by "
        f"`jax.hessian` matches the explicit one to a relative {r['hessian_max_rel_error']:.1e}.",
        "",
        "Truncation: each class's interaction matrix replaced by its top-k eigenvectors (by |λ|):",
        "",
        "| k | " + " | ".join(str(k) for k in shown) + f" | all ({max(curve['ks'])}) |",
        "| --- | " + " | ".join("---" for _ in shown) + " | --- |",
        "| test accuracy | " + " | ".join(f"{accuracy[k]:.3f}" for k in shown) + f" | {curve['model_accuracy']:.3f} |",
        "",
        f"![top eigenvectors per class](results/{r['figures'][0]})",
    ]
    return "\n".join(lines)
