r"""The main job: train a bilinear classifier on the offline digits data, then read its weights.

    python -m experiments.quickstart [--workdir workdirs/quickstart] [--steps 1500]

1. Trains ``experiments/configs/digits.py`` (embed → one bilinear layer → head; about a minute
   on a laptop CPU). Rerunning resumes, or does nothing if the run is complete.
2. Recovers the model's tensor over pixels, ``logit_c(x) = xᵀ B_c x``, with ``jax.hessian`` and
   checks it against the explicit tensor built from the factors.
3. For each class, eigendecomposes the interaction matrix ``Q_c = E sym(Wᵀ diag(Pᵀh_c) V) Eᵀ``
   and prints the top eigenvalues and how much of ``Q_c`` the top 3 explain.
4. Writes the full report (eigenvector images, spectra, truncation curve) to
   ``WORKDIR/analysis/report.html``.
"""

from __future__ import annotations

import argparse
import sys

import jax.numpy as jnp
import numpy as np

from bilinear_jax.analysis import analyze_run, hessian_tensor, load, symmetrize
from bilinear_jax.training.plan import ConfigError
from bilinear_jax.training.trainer import train
from experiments.configs import digits


def class_tensor_over_pixels(model) -> jnp.ndarray:
    """``B_c = E sym(B) ... `` composed explicitly: ``Σ_o H_oc E B_o Eᵀ`` (classes, pixels, pixels)."""
    layer, embed, head = model.blocks[0], model.embed.kernel[...], model.head.kernel[...]
    return jnp.einsum("oc,ia,oab,jb->cij", head, embed, symmetrize(layer.tensor()), embed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.quickstart", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="workdirs/quickstart")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the config's)")
    args = parser.parse_args(argv)

    config = digits.get_config()
    if args.steps is not None:
        config.num_steps = args.steps
    try:
        final = train(config, args.workdir)
        run = load(args.workdir)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    model = run.model
    print(f"\nTrained {run.config.model.name} on {run.info.name} for {run.step} steps: "
          f"test accuracy {final.get('eval/accuracy', float('nan')):.4f}")

    pixels = int(np.prod(run.info.input_shape))
    recovered = hessian_tensor(lambda x: model(x[None])[0], pixels)
    explicit = class_tensor_over_pixels(model)
    error = float(jnp.max(jnp.abs(recovered - explicit)) / jnp.max(jnp.abs(explicit)))
    print(f"Hessian-recovered tensor over pixels {tuple(recovered.shape)} vs explicit: max relative error {error:.2e}")

    print("\nclass  top eigenvalues (+)         top eigenvalues (-)          top-3 |λ| share")
    for c in range(explicit.shape[0]):
        eigenvalues = np.linalg.eigvalsh(np.asarray(explicit[c], np.float64))
        by_size = np.sort(np.abs(eigenvalues))[::-1]
        share = by_size[:3].sum() / by_size.sum()
        positive, negative = eigenvalues[::-1][:3], eigenvalues[:3]
        print(f"{c:>5}  {' '.join(f'{v:+7.3f}' for v in positive)}    {' '.join(f'{v:+7.3f}' for v in negative)}"
              f"    {share:6.1%}")
    summary = analyze_run(run, out_dir=run.workdir / "analysis")
    curve = summary["truncation_curve"]
    print(f"\nTruncation: accuracy {curve['accuracy'][0]:.3f} keeping 1 eigenvector per class, "
          f"{curve['accuracy'][2]:.3f} keeping 3, {curve['model_accuracy']:.3f} for the full model.")
    print(f"Report: {run.workdir / 'analysis' / 'report.html'}")
    print(f"Workdir: {args.workdir} (metrics.jsonl, TensorBoard logs, checkpoints)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
