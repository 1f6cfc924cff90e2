"""A bilinear layer learns AND and XOR of pairs of sparse bits, and its weights say which pairs.

``AND(a, b) = ab`` and ``XOR(a, b) = a + b − 2ab`` are quadratic forms of ``x̃ = [x; 1]``, so
one bilinear layer with bias represents them exactly. After training, each output's
interaction matrix ``Q_o = sym(W̃ᵀ diag(Pᵀe_o) Ṽ)`` (read from the factors) has its largest
off-diagonal entry at the pair that output computes. A ReLU MLP of about equal parameters is
the baseline.
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np

from bilinear_jax.analysis import factors_of, interaction_matrices, load
from bilinear_jax.training.plan import plan_run
from bilinear_jax.training.trainer import train
from experiments.configs import toy_boolean


def parameter_count(config, workdir: Path) -> int:
    return int(sum(np.prod(s) for s in plan_run(config, workdir).meta["param_shapes"].values()))


def model_config(kind: str, quick: bool, workdir: Path):
    """The toy config with ``kind``; a ReLU model gets the width whose parameter count is closest."""
    config = toy_boolean.get_config()
    config.progress = False
    if quick:
        config.num_steps, config.log_every = 300, 50
        config.eval_every = config.checkpoint_every = 300
    if kind == "bilinear":
        return config
    target = parameter_count(config, workdir)
    config.model.kind = kind
    counts = {}
    for width in range(1, 4 * toy_boolean.get_config().model.d_hidden):
        config.model.d_hidden = width
        counts[width] = parameter_count(config, workdir)
    config.model.d_hidden = min(counts, key=lambda w: abs(counts[w] - target))
    return config


def recovered_pairs(model, n_inputs: int) -> list[tuple[int, int]]:
    """For each output, the input pair with the largest ``|Q_o[i, j]|``, ``i < j``, over the real inputs."""
    factors = factors_of(model)
    q = np.asarray(interaction_matrices(factors, jnp.eye(factors.d_out)))[:, :n_inputs, :n_inputs]
    pairs = []
    for q_o in q:
        upper = np.abs(np.triu(q_o, k=1))
        i, j = np.unravel_index(np.argmax(upper), upper.shape)
        pairs.append((int(i), int(j)))
    return pairs


def run(results_dir: Path, workdir_root: Path, quick: bool) -> dict:
    outcome = {}
    for kind in ("bilinear", "relu"):
        workdir = workdir_root / kind
        config = model_config(kind, quick, workdir)
        final = train(config, str(workdir))
        outcome[kind] = {
            "eval_accuracy": final["eval/accuracy"],
            "eval_mse": final["eval/loss"],
            "parameters": parameter_count(config, workdir),
            "d_hidden": config.model.d_hidden,
        }
    run_ = load(workdir_root / "bilinear")
    outputs = run_.info.metadata["outputs"]
    pairs = recovered_pairs(run_.model, run_.info.input_shape[-1])
    true_pairs = [tuple(sorted((i, j))) for _, i, j in outputs]
    outcome["outputs"] = [{"op": op, "true_pair": list(t), "recovered_pair": list(p)}
                          for (op, _, _), t, p in zip(outputs, true_pairs, pairs)]
    outcome["pairs_recovered"] = sum(t == p for t, p in zip(true_pairs, pairs))
    outcome["num_outputs"] = len(outputs)
    return outcome


def markdown(result: dict) -> str:
    r = result["results"]
    lines = ["| model | hidden | parameters | test exact-match accuracy | test MSE |", "| --- | --- | --- | --- | --- |"]
    for kind in ("bilinear", "relu"):
        m = r[kind]
        lines.append(f"| {kind} | {m['d_hidden']} | {m['parameters']:,} | {m['eval_accuracy']:.4f} | {m['eval_mse']:.2e} |")
    lines += ["", f"The bilinear model's interaction matrices name the right input pair for "
                  f"{r['pairs_recovered']} of {r['num_outputs']} outputs:", "",
              "| output | true pair | pair with the largest interaction |", "| --- | --- | --- |"]
    lines += [f"| {o['op']} | {tuple(o['true_pair'])} | {tuple(o['recovered_pair'])} |" for o in r["outputs"]]
    return "\n".join(lines)
