"""Transformer LMs with bilinear, ReLU, GELU, SwiGLU, ReGLU and GEGLU MLPs at equal parameters.

Every variant has the parameters and FLOPs of a ReLU MLP of hidden width ``matched_hidden``
(gated kinds get 2/3 of the width), sees the same batches in the same order for a given seed,
and trains for the same number of tokens. The eval loss (nats/byte on held-out text) is
reported as mean ± std over seeds and compared, by rank, with Shazeer (2020), Table 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bilinear_jax.training.plan import plan_run
from bilinear_jax.training.trainer import train
from experiments.configs import lm

KINDS = ("relu", "gelu", "bilinear", "reglu", "swiglu", "geglu")
# Log-perplexity at 65k steps, Shazeer (2020) "GLU Variants Improve Transformer", Table 1.
SHAZEER_2020 = {"relu": 1.997, "gelu": 1.983, "bilinear": 1.960, "reglu": 1.953, "swiglu": 1.944, "geglu": 1.942}

# "cpu": finishes on 2 CPU cores within an hour (3 seeds); "gpu": for an accelerator.
SIZES: dict[str, dict[str, Any]] = {
    "cpu": {"model.d_model": 64, "model.n_layers": 2, "model.n_heads": 4, "model.matched_hidden": 256,
            "data.options.seq_len": 64, "batch_size": 32, "num_steps": 2000, "eval_batch_size": 256},
    "gpu": {"model.d_model": 512, "model.n_layers": 6, "model.n_heads": 8, "model.matched_hidden": 2048,
            "data.options.seq_len": 256, "batch_size": 64, "num_steps": 20000, "eval_batch_size": 256},
    "quick": {"model.d_model": 32, "model.n_layers": 1, "model.n_heads": 2, "model.matched_hidden": 64,
              "data.options.seq_len": 32, "batch_size": 16, "num_steps": 30, "eval_batch_size": 64,
              "data.options.max_bytes": 100000},
}


def variant_config(kind: str, seed: int, size: str):
    config = lm.get_config()
    config.mlp, config.seed, config.progress = kind, seed, False
    config.update_from_flattened_dict(SIZES[size])
    config.log_every = max(1, config.num_steps // 10)
    config.eval_every = config.checkpoint_every = config.num_steps
    return config


def ranks(values: dict[str, float]) -> dict[str, int]:
    """1 for the lowest loss."""
    return {kind: rank for rank, kind in enumerate(sorted(values, key=values.get), start=1)}


def spearman(a: dict[str, float], b: dict[str, float]) -> float:
    ra, rb = ranks(a), ranks(b)
    kinds = list(a)
    x, y = np.array([ra[k] for k in kinds], float), np.array([rb[k] for k in kinds], float)
    return float(np.corrcoef(x, y)[0, 1])


def run(results_dir: Path, workdir_root: Path, quick: bool, size: str | None = None,
        seeds: tuple[int, ...] | None = None, kinds: tuple[str, ...] = KINDS) -> dict:
    size = size or ("quick" if quick else "cpu")
    seeds = seeds or ((0,) if quick else (0, 1, 2))
    losses: dict[str, list[float]] = {kind: [] for kind in kinds}
    params: dict[str, int] = {}
    flops: dict[str, float] = {}
    for seed in seeds:
        for kind in kinds:
            config = variant_config(kind, seed, size)
            workdir = workdir_root / f"{kind}-seed{seed}"
            final = train(config, str(workdir))
            losses[kind].append(final["eval/loss"])
            params[kind] = int(sum(np.prod(s) for s in plan_run(config, workdir).meta["param_shapes"].values()))
            flops[kind] = final.get("perf/flops_per_step_per_device", float("nan"))
    mean = {k: float(np.mean(v)) for k, v in losses.items()}
    config = variant_config("bilinear", seeds[0], size)
    return {
        "size": size,
        "seeds": list(seeds),
        "tokens_per_run": int(config.num_steps * config.batch_size * config.data.options.seq_len),
        "eval_loss": {k: {"mean": mean[k], "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, "runs": v}
                      for k, v in losses.items()},
        "parameters": params,
        "flops_per_step_per_device": flops,
        "rank": ranks(mean),
        "shazeer_2020_log_perplexity": {k: SHAZEER_2020[k] for k in kinds},
        "shazeer_2020_rank": ranks({k: SHAZEER_2020[k] for k in kinds}),
        "spearman_vs_shazeer_2020": spearman(mean, {k: SHAZEER_2020[k] for k in kinds}),
        "bilinear_vs_relu": mean["bilinear"] - mean["relu"],
    }


def markdown(result: dict) -> str:
    """The README table for this experiment, from its JSON."""
    numbers = result["results"]
    losses, kinds = numbers["eval_loss"], sorted(numbers["eval_loss"], key=lambda k: numbers["eval_loss"][k]["mean"])
    lines = [
        f"Eval loss (nats per token) after {numbers['tokens_per_run']:,} training tokens, "
        f"{len(numbers['seeds'])} seeds, size `{numbers['size']}`:",
        "",
        "| MLP | eval loss, mean ± std | parameters | rank here | Shazeer 2020 log-ppl | rank there |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for kind in kinds:
        lines.append(
            f"| {kind} | {losses[kind]['mean']:.4f} ± {losses[kind]['std']:.4f} | {numbers['parameters'][kind]:,} | "
            f"{numbers['rank'][kind]} | {numbers['shazeer_2020_log_perplexity'][kind]:.3f} | "
            f"{numbers['shazeer_2020_rank'][kind]} |")
    lines += ["", f"Spearman rank correlation with Shazeer (2020): {numbers['spearman_vs_shazeer_2020']:+.2f}. "
                  f"Bilinear minus ReLU: {numbers['bilinear_vs_relu']:+.4f}."]
    return "\n".join(lines)
