"""A one-layer bilinear transformer learns modular addition, and its logits decompose exactly.

1. Train ``experiments/configs/modadd.py`` (``a + b mod p`` on half of the pairs) and report the
   test accuracy on the other half.
2. Path expansion of the trained model on every pair: the direct path, each head, and each
   ordered pair of paths into the bilinear MLP; their sum against the forward logits, and how
   much of the answer each kind of term carries on its own.
3. Frequency structure: the 2D Fourier power of the answer logits over ``(a, b)`` and of the
   token embedding over ``a``. Circuits that add angles (``cos(ω(a + b − c))``) put the power on
   a few frequencies ``ω = 2πk/p`` with equal ``k`` for ``a`` and ``b``.
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np

from bilinear_jax.analysis import load, path_expansion
from bilinear_jax.data.builders.modular_arithmetic import modular_table
from bilinear_jax.training.trainer import train
from experiments.configs import modadd


def folded(power: np.ndarray) -> np.ndarray:
    """Power per frequency ``k = 1 .. (p−1)/2``, adding ``k`` and ``p − k`` (real signals)."""
    p = len(power)
    return np.array([power[k] + power[p - k] for k in range(1, (p + 1) // 2)])


def fourier_structure(logits: np.ndarray, embedding: np.ndarray, top: int = 5) -> dict:
    """``logits``: (p, p, p) answer logits over (a, b, c); ``embedding``: (p, d) token embeddings."""
    p = logits.shape[0]
    centred = logits - logits.mean(axis=(0, 1), keepdims=True)
    power = np.sum(np.abs(np.fft.fft2(centred, axes=(0, 1))) ** 2, axis=-1)  # (f_a, f_b)
    nonconstant = power.sum() - power[0, 0]
    diagonal = folded(np.diag(power))
    key = np.argsort(diagonal)[::-1][:top]
    embed_power = folded(np.sum(np.abs(np.fft.fft(embedding - embedding.mean(0), axis=0)) ** 2, axis=1))
    embed_key = np.argsort(embed_power)[::-1][:top]
    return {
        "logit_power_on_equal_frequencies": float(diagonal.sum() / nonconstant),
        "logit_key_frequencies": [int(k + 1) for k in key],
        "logit_power_in_key_frequencies": float(diagonal[key].sum() / nonconstant),
        "embedding_key_frequencies": [int(k + 1) for k in embed_key],
        "embedding_power_in_key_frequencies": float(embed_power[embed_key].sum() / embed_power.sum()),
        "num_frequencies": int((p - 1) // 2),
    }


def run(results_dir: Path, workdir_root: Path, quick: bool) -> dict:
    config = modadd.get_config()
    config.progress = False
    if quick:
        config.num_steps, config.data.options.p = 300, 23
        config.model.d_model, config.model.d_hidden = 32, 64
        config.log_every = 50
        config.eval_every = config.checkpoint_every = 300
    final = train(config, str(workdir_root))
    run_ = load(workdir_root, mesh={"data": 1, "fsdp": 1, "tensor": 1, "num_devices": 1})
    model, p = run_.model, int(run_.config.data.options.p)

    a, b, answers = modular_table(p, "add")
    tokens = jnp.asarray(np.stack([a, b, np.full_like(a, p)], axis=1), jnp.int32)
    expansion = path_expansion(model, tokens)

    def accuracy(logits) -> float:
        return float(np.mean(np.asarray(jnp.argmax(logits[:, -1, :p], axis=-1)) == answers))

    kinds = {}
    for kind, names in expansion.by_kind().items():
        part = expansion.sum(names)
        kinds[kind] = {"terms": len(names), "rms": float(jnp.sqrt(jnp.mean(jnp.square(part[:, -1])))),
                       "accuracy_alone": accuracy(part)}
    answer_logits = np.asarray(expansion.logits[:, -1, :p]).reshape(p, p, p)
    return {
        "p": p,
        "train_fraction": float(config.data.options.train_fraction),
        "num_steps": int(config.num_steps),
        "test_accuracy": final["eval/accuracy"],
        "accuracy_all_pairs": accuracy(expansion.logits),
        "path_expansion": {
            "num_terms": len(expansion.names),
            "max_relative_error": float(expansion.max_relative_error),
            "accuracy_of_sum": accuracy(expansion.total()),
            "largest_terms": [[name, size] for name, size in expansion.top(8, position=-1)],
            "by_kind": kinds,
        },
        "fourier": fourier_structure(answer_logits, np.asarray(model.W_E)[:p]),
    }


def markdown(result: dict) -> str:
    r = result["results"]
    pe, fourier = r["path_expansion"], r["fourier"]
    lines = [
        f"Test accuracy on the held-out {1 - r['train_fraction']:.0%} of pairs (p = {r['p']}, {r['num_steps']} steps): "
        f"**{r['test_accuracy']:.4f}**.",
        "",
        f"Path expansion over all {r['p'] ** 2} pairs: {pe['num_terms']} terms whose sum matches the forward logits "
        f"to a max relative error of {pe['max_relative_error']:.1e}. Each kind of term on its own:",
        "",
        "| kind of term | terms | RMS at the answer | accuracy from these terms alone |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {k} | {v['terms']} | {v['rms']:.3f} | {v['accuracy_alone']:.3f} |" for k, v in pe["by_kind"].items()]
    lines += ["", f"Frequency structure: {fourier['logit_power_on_equal_frequencies']:.1%} of the answer logits' "
                  f"non-constant Fourier power over (a, b) lies on equal frequencies for a and b; the top five "
                  f"(k = {', '.join(map(str, fourier['logit_key_frequencies']))} of {fourier['num_frequencies']}) hold "
                  f"{fourier['logit_power_in_key_frequencies']:.1%}. The token embedding puts "
                  f"{fourier['embedding_power_in_key_frequencies']:.1%} of its power on its top five frequencies "
                  f"(k = {', '.join(map(str, fourier['embedding_key_frequencies']))})."]
    return "\n".join(lines)
