r"""The circuit framework, now with MLPs: exact path expansion of a modular-addition transformer.

Trains (or loads, if ``--workdir`` already holds a run) a one-layer bilinear transformer on
``a + b mod p`` without norms, then decomposes its logits on every pair ``(a, b)`` into named
terms: the direct path, each head, and one term per ordered pair of the MLP's input paths
(embedding × embedding, head × embedding, head × head, ...). The terms sum to the logits to float
precision, and the output shows which paths compute the answer.

    python -m experiments.examples.path_expansion [--workdir DIR] [--p 23] [--steps 1500]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Sequence

import numpy as np


ONE_DEVICE = {"data": 1, "fsdp": 1, "tensor": 1, "num_devices": 1}


def train_or_load(workdir: str, p: int, steps: int):
    """A trained modular-addition run in ``workdir`` (trained here unless one is already there)."""
    from etils import epath

    from bilinear_jax.training.restore import load_run

    if not (epath.Path(workdir) / "config.json").exists():
        from experiments.configs.modadd import get_config

        from bilinear_jax.training.trainer import train

        config = get_config()
        config.data.options.p = p
        config.data.options.train_fraction = 0.5
        config.num_steps = steps
        config.batch_size = 256
        config.model.d_model = 64
        config.model.d_hidden = 256
        config.optim.learning_rate = 3e-3
        config.log_every = config.eval_every = config.checkpoint_every = steps
        config.progress = False
        config.mesh.num_devices = 1  # a small model: one device, no collectives
        start = time.perf_counter()
        train(config, workdir)
        print(f"trained p={p} for {steps} steps in {time.perf_counter() - start:.1f}s")
    return load_run(workdir, mesh=ONE_DEVICE)


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default=None, help="run directory (a temporary one if omitted)")
    parser.add_argument("--p", type=int, default=23, help="modulus (when training)")
    parser.add_argument("--steps", type=int, default=1500, help="training steps (when training)")
    parser.add_argument("--top", type=int, default=12, help="how many terms to print")
    args = parser.parse_args(argv)

    import jax.numpy as jnp

    from bilinear_jax.analysis.paths import path_expansion
    from bilinear_jax.data.builders.modular_arithmetic import modular_table

    with tempfile.TemporaryDirectory() as scratch:
        run = train_or_load(args.workdir or scratch, args.p, args.steps)
    model, p = run.model, int(run.config.data.options.p)

    # Every pair (a, b): tokens [a, b, =] with '=' = p; the answer is read at the last position.
    a, b, answers = modular_table(p, "add")
    tokens = jnp.asarray(np.stack([a, b, np.full_like(a, p)], axis=1), jnp.int32)

    start = time.perf_counter()
    expansion = path_expansion(model, tokens)
    seconds = time.perf_counter() - start
    print(f"\n{expansion}  ({seconds:.1f}s)")
    print(f"sum of terms vs forward logits: max relative error {expansion.max_relative_error:.2e}")

    sizes = expansion.sizes(position=-1)
    print(f"\nlargest of the {len(sizes)} terms at the answer position (RMS over pairs and vocabulary):")
    for name, size in list(sizes.items())[: args.top]:
        print(f"  {size:9.3f}  {name}")

    def accuracy(logits) -> float:
        return float(np.mean(np.asarray(jnp.argmax(logits[:, -1, :p], axis=-1)) == answers))

    categories = expansion.by_kind()
    print("\nterms summed by kind: RMS at the answer position, and accuracy from that sum alone:")
    for category, names in categories.items():
        part = expansion.sum(names)
        rms = float(jnp.sqrt(jnp.mean(jnp.square(part[:, -1]))))
        print(f"  {rms:9.3f}  acc {accuracy(part):5.3f}  {category}  ({len(names)} terms)")

    mlp_only = expansion.sum(lambda name: "MLP" in name)
    example = "layer 0 MLP, head 0 × embedding"
    print(f"\naccuracy: full logits {accuracy(expansion.logits):.3f}, sum of terms {accuracy(expansion.total()):.3f}, "
          f"MLP terms alone {accuracy(mlp_only):.3f}")
    print(f"lookup {example!r} → {expansion.resolve(example)!r}, shape {tuple(expansion[example].shape)}")
    return {
        "expansion": expansion,
        "max_relative_error": expansion.max_relative_error,
        "accuracy": accuracy(expansion.logits),
        "top": list(sizes.items())[: args.top],
    }


if __name__ == "__main__":
    main()
