"""A self-contained HTML report (and a JSON summary) of a trained run.

    from bilinear_jax.analysis.report import analyze_run
    summary = analyze_run("workdirs/digits")     # writes workdirs/digits/analysis/{report.html, summary.json}

or ``python -m experiments.analyze --workdir workdirs/digits``. What the report holds depends on
the model:

* **classifier** — test accuracy; for each bilinear block the Hessian check (``½∂²f/∂x²`` of the
  block against ``sym(B)`` from its factors); for a one-block bilinear classifier the class
  interaction matrices ``Q_c``: each class's top positive and negative eigenvectors projected to
  input space (shown as images over ``info.input_shape``), the eigenvalue spectra and explained
  fractions, and the truncation curve (accuracy of the top-``k`` eigenvectors per class, with the
  full model's accuracy as the reference).
* **toy** (sparse boolean) — accuracy, the Hessian check, each output's interaction matrix over
  ``x̃ = [x; 1]`` and its top input pairs, compared with the dataset's true pair per output.
* **transformer** — accuracy, the Hessian check of each bilinear MLP (as a function of its own
  input), the top token pairs of the most frequent target tokens (``W_E Q_u W_Eᵀ`` for the
  unembedding direction ``u``: the embedding × embedding interaction an MLP adds to the token's
  logit), and the exact path expansion of the logits on a batch of evaluation tokens: the size of
  each term and ``path_expansion_max_rel_error``.

Models whose MLPs are not bilinear (ReLU, SwiGLU, ...) are not quadratic forms: their report says
so and keeps what still applies (accuracy, configuration). Figures are matplotlib PNGs, embedded
as base64 data URIs and also saved under ``analysis/figures/``.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import math
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from flax import nnx

from bilinear_jax.analysis import figures
from bilinear_jax.analysis.algebra import fold_quadratic, symmetrize
from bilinear_jax.analysis.features import feature_interactions
from bilinear_jax.analysis.interactions import (
    class_interactions,
    classifier_is_augmented,
    embedding_matrix,
    factors_of,
    interaction_matrices,
    unembedding_directions,
)
from bilinear_jax.analysis.loading import Loaded, load, load_split_arrays
from bilinear_jax.analysis.quadratic import quadratic_form
from bilinear_jax.analysis.spectra import eigh, explained_fraction, project_to_input
from bilinear_jax.analysis.truncation import classifier_truncation_curve

__all__ = ["ONE_DEVICE", "analyze_run", "hessian_relative_error"]

#: Analysis runs on one device whatever the run was trained on.
ONE_DEVICE = {"data": 1, "fsdp": 1, "tensor": 1, "num_devices": 1}
NOT_QUADRATIC = "not a quadratic form"

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { border-bottom: 1px solid #bbb; padding-bottom: .15em; margin-top: 2em; }
table { border-collapse: collapse; margin: .6em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.num { text-align: right; font-family: ui-monospace, Menlo, Consolas, monospace; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: .4em .8em; margin: .8em 0; }
.ok { color: #1a7f37; font-weight: 600; } .bad { color: #b42318; font-weight: 600; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; }
code { background: #f5f5f5; padding: 0 .2em; }
"""


# -- The HTML document. ---------------------------------------------------------------------------


class _Report:
    """An HTML document built section by section; figures are embedded and saved as files."""

    def __init__(self, title: str, figure_dir: epath.Path):
        self.title = title
        self.figure_dir = figure_dir
        self.parts: list[str] = []
        self.figure_files: list[str] = []

    def heading(self, text: str, level: int = 2) -> None:
        self.parts.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def paragraph(self, text: str) -> None:
        self.parts.append(f"<p>{html.escape(text)}</p>")

    def note(self, text: str) -> None:
        self.parts.append(f'<div class="note">{html.escape(text)}</div>')

    def table(self, header: list[str], rows: list[list[Any]]) -> None:
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
        body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
        self.parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def figure(self, name: str, png: bytes, caption: str) -> None:
        self.figure_dir.mkdir(parents=True, exist_ok=True)
        (self.figure_dir / f"{name}.png").write_bytes(png)
        self.figure_files.append(f"{name}.png")
        data = base64.b64encode(png).decode("ascii")
        self.parts.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(name)}">'
                          f"<figcaption>{html.escape(caption)}</figcaption></figure>")

    def render(self) -> str:
        body = "\n".join(self.parts)
        return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
                f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head>"
                f"<body><h1>{html.escape(self.title)}</h1>\n{body}\n</body></html>\n")


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        cls = "ok" if value else "bad"
        return f'<td class="{cls}">{"yes" if value else "no"}</td>'
    if isinstance(value, (float, np.floating)):
        return f'<td class="num">{_format(float(value))}</td>'
    if isinstance(value, (int, np.integer)):
        return f'<td class="num">{int(value)}</td>'
    return f"<td>{html.escape('' if value is None else str(value))}</td>"


def _format(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if x == 0 or 1e-3 <= abs(x) < 1e4:
        return f"{x:.4g}"
    return f"{x:.3e}"


# -- Helpers. --------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """Plain JSON types: arrays to lists, NaN/inf to None, tuples to lists."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.ndarray, jax.Array)):
        return _jsonable(np.asarray(value).tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def _float32_copy(module: nnx.Module) -> nnx.Module:
    """A copy computing in its parameters' dtype (a bfloat16 ``dtype`` would blur the exact check)."""
    if getattr(module, "dtype", None) is None:
        return module
    module = nnx.clone(module)
    module.dtype = None
    return module


def hessian_relative_error(layer: nnx.Module, d_in: int, explicit: jax.Array, *, bias: bool) -> float:
    """``max |H − sym(B)| / max |sym(B)|`` with ``H`` the quadratic form recovered by ``jax.hessian``.

    ``layer`` is a function of ``x`` (``d_in``); ``explicit`` is ``B`` from the factors, over
    ``x̃ = [x; 1]`` when ``bias`` (the recovered ``(B, L, c)`` are then folded into one tensor).
    Raises ``ValueError`` if the layer is not quadratic.
    """
    form = quadratic_form(layer, d_in)
    recovered = fold_quadratic(*form) if bias else form.quadratic
    reference = symmetrize(jnp.asarray(explicit, recovered.dtype))
    if recovered.shape != reference.shape:
        raise ValueError(f"recovered tensor {recovered.shape} vs explicit {reference.shape}")
    scale = max(float(jnp.max(jnp.abs(reference))), 1e-30)
    return float(jnp.max(jnp.abs(recovered - reference))) / scale


def _eval_split(info) -> str:
    splits = list(getattr(info, "splits", ()) or ())
    for name in ("test", "validation", "valid", "eval"):
        if name in splits:
            return name
    return splits[-1] if splits else "test"


def _accuracy(model, inputs: np.ndarray, targets: np.ndarray, info, loss: str, batch_size: int = 512) -> float:
    """The training objective's accuracy on arrays (classification, multilabel or next-token)."""
    graphdef, state = nnx.split(model)

    @jax.jit
    def correct(state, x, y):
        m = nnx.merge(graphdef, state)
        if info.task == "sequence":
            tokens = x.astype(jnp.int32)
            logits = m(tokens[:, :-1])
            return jnp.sum(jnp.argmax(logits, -1) == tokens[:, 1:]), tokens[:, 1:].size
        out = m(x)
        if info.task == "multilabel":
            out = out.astype(jnp.float32)
            predictions = out > (0.5 if loss == "mse" else 0.0)
            return jnp.sum(jnp.all(predictions == (y > 0.5), axis=-1)), y.shape[0]
        if out.ndim == 3:
            out = out[:, -1]
        return jnp.sum(jnp.argmax(out, -1) == y), y.shape[0]

    hits = count = 0
    for start in range(0, len(inputs), batch_size):
        c, n = correct(state, jnp.asarray(inputs[start:start + batch_size]), jnp.asarray(targets[start:start + batch_size]))
        hits, count = hits + int(c), count + int(n)
    return hits / max(count, 1)


def _timed(timings: dict, name: str, fn: Callable, *args, **kwargs):
    start = time.perf_counter()
    try:
        return fn(*args, **kwargs)
    finally:
        timings[name] = round(time.perf_counter() - start, 3)


def _hessian_checks(report: _Report, summary: dict, layers: list[tuple[str, Callable[[], tuple]]]) -> None:
    """Run the Hessian check of each ``(name, thunk → (layer, d_in, B, bias))`` and report it."""
    report.heading("Exact recovery: Hessian against the explicit tensor")
    report.paragraph("For each bilinear layer, jax.hessian recovers sym(B) (and, with biases, the linear and "
                     "constant terms, folded into one tensor over x̃ = [x; 1]); it is compared with sym(B) built "
                     "from the factors, B_oij = Σ_h P_oh W_hi V_hj. The relative error is max|H − sym(B)| / "
                     "max|sym(B)|.")
    errors: dict[str, float | None] = {}
    rows = []
    for name, thunk in layers:
        try:
            layer, d_in, explicit, bias = thunk()
            err = hessian_relative_error(layer, d_in, explicit, bias=bias)
            errors[name] = err
            rows.append([name, tuple(int(s) for s in explicit.shape).__str__(), err, err < 1e-4])
        except ValueError as error:  # not quadratic (e.g. low-precision compute)
            errors[name] = None
            rows.append([name, "", None, False])
            report.note(f"{name}: {error}")
    summary["hessian_rel_error_per_layer"] = errors
    finite = [e for e in errors.values() if e is not None]
    summary["hessian_max_rel_error"] = max(finite) if finite and len(finite) == len(errors) else None
    if rows:
        report.table(["layer", "tensor shape", "relative error", "< 1e-4"], rows)
    else:
        report.note(f"No bilinear layers: the model's MLPs are {NOT_QUADRATIC}, so there is no tensor to recover.")


def _run_section(report: _Report, run: Loaded, summary: dict) -> None:
    config, info = run.config, run.info
    report.heading("Run")
    params = sum(int(np.prod(np.shape(x))) for x in jax.tree.leaves(run.params))
    rows = [["workdir", str(run.workdir)], ["checkpoint step", run.step], ["dataset", info.name],
            ["task", info.task], ["input shape", str(tuple(info.input_shape))],
            ["model", config.model.get("name")], ["parameters", params]]
    report.table(["", ""], rows)
    model_rows = [[k, json.dumps(_jsonable(v))] for k, v in sorted(config.model.to_dict().items())]
    data_rows = [[k, json.dumps(_jsonable(v))] for k, v in sorted(dict(config.data.get("options", {}) or {}).items())]
    report.heading("Configuration", 3)
    report.table(["model", "value"], model_rows)
    if data_rows:
        report.table(["data option", "value"], data_rows)
    summary.update(step=run.step, dataset=info.name, task=info.task, model=config.model.get("name"),
                   num_parameters=params)


# -- Classifier. -----------------------------------------------------------------------------------


def _analyze_classifier(report: _Report, run: Loaded, summary: dict, *, max_examples, top_k, timings) -> None:
    model, info = run.model, run.info
    split = _eval_split(info)
    x, y = _timed(timings, "load_data", load_split_arrays, run, split, max_examples=max_examples)
    summary["split"], summary["num_examples"] = split, int(len(y))
    kind = getattr(model, "kind", "bilinear")
    summary["mlp_kind"] = kind

    layers = []
    if kind == "bilinear":
        for i, block in enumerate(model.blocks):
            layers.append((f"block {i}", lambda block=block: (_float32_copy(block), block.d_in, block.tensor(),
                                                               bool(block.bias))))
    _timed(timings, "hessian", _hessian_checks, report, summary, layers)

    one_block = kind == "bilinear" and model.n_layers == 1
    if not one_block:
        accuracy = _accuracy(model, x, y, info, run.config.get("loss", "mse"))
        summary["accuracy"] = accuracy
        summary["truncation_curve"] = None
        report.heading("Accuracy")
        report.table(["split", "examples", "accuracy"], [[split, len(y), accuracy]])
        reason = (f"the blocks are {kind!r} MLPs: {NOT_QUADRATIC}" if kind != "bilinear" else
                  f"the classifier has {model.n_layers} blocks, so the logits are a polynomial of degree "
                  f"{2 ** model.n_layers}, not one quadratic form per class")
        report.note(f"Interaction matrices, eigenvectors and the truncation curve need a one-block bilinear "
                    f"classifier; skipped because {reason}.")
        return

    dtype = jnp.float32
    q = _timed(timings, "interactions", class_interactions, model, dtype=dtype)  # (C, d, d)
    spectrum = _timed(timings, "eigh", eigh, q)
    values = np.asarray(spectrum.values)  # (C, n), by |λ|
    vectors = np.asarray(spectrum.vectors)  # (C, d, n)
    num_classes, n = values.shape
    explained = np.asarray(explained_fraction(spectrum.values))
    augmented = classifier_is_augmented(model)

    # The truncation curve, with the model's own accuracy for reference.
    ks = np.arange(1, n + 1)
    curve = _timed(timings, "truncation", classifier_truncation_curve, model, x, y, ks, spectrum=spectrum)
    summary["accuracy"] = curve.model_accuracy
    summary["loss"] = curve.model_loss
    summary["truncation_curve"] = {"ks": curve.ks, "accuracy": curve.accuracy, "loss": curve.loss,
                                   "model_accuracy": curve.model_accuracy, "model_loss": curve.model_loss,
                                   "split": split}
    report.heading("Accuracy and the truncation curve")
    full_matches = abs(float(curve.accuracy[-1]) - float(curve.model_accuracy)) <= 1.0 / max(len(y), 1) + 1e-12
    summary["truncation_full_rank_matches_model"] = bool(full_matches)
    milestones = sorted({k for k in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, n) if k <= n})
    report.table(["split", "examples", "model accuracy", "model loss", "full-rank truncated accuracy",
                  "matches model"],
                 [[split, len(y), curve.model_accuracy, curve.model_loss, float(curve.accuracy[-1]), full_matches]])
    report.table(["k (eigenvectors per class)", "accuracy", "loss"],
                 [[int(k), float(curve.accuracy[k - 1]), float(curve.loss[k - 1])] for k in milestones])
    report.figure("truncation_curve",
                  figures.truncation_curve(curve.ks, curve.accuracy, curve.model_accuracy, curve.loss, curve.model_loss),
                  f"Accuracy and loss on the {split} split when each class logit keeps only its top-k eigenvectors "
                  "(by |λ|); dashed: the full model. At k = n the truncated model is the model.")

    # Spectra.
    labels = [f"class {c}" for c in range(num_classes)]
    report.heading("Interaction matrices: spectra")
    report.paragraph(f"logit_c = ẽᵀ Q_c ẽ over the residual ẽ (d = {vectors.shape[1]}"
                     f"{', augmented with the constant 1' if augmented else ''}); Q_c = Σ_i λ_i v_i v_iᵀ.")
    report.figure("spectra", figures.spectra(values, explained, labels),
                  "Left: each class's eigenvalues ordered by |λ|. Right: the share of ‖Q_c‖_F² in the top k.")
    fraction_ks = [k for k in (1, 2, 5, 10, 20) if k <= n]
    summary["explained_fraction"] = {f"top_{k}": explained[:, k - 1] for k in fraction_ks}
    summary["top_eigenvalues"] = {"positive": np.sort(values, axis=-1)[:, ::-1][:, :top_k],
                                  "negative": np.sort(values, axis=-1)[:, :top_k]}
    report.table(["class", "largest λ", "smallest λ", *[f"explained, top {k}" for k in fraction_ks]],
                 [[c, float(values[c].max()), float(values[c].min()), *[float(explained[c, k - 1]) for k in fraction_ks]]
                  for c in range(num_classes)])

    # Top positive and negative eigenvectors, projected to input space.
    k = min(top_k, n)
    order = np.argsort(-values, axis=-1, kind="stable")
    chosen = np.concatenate([order[:, :k], order[:, ::-1][:, :k]], axis=1)  # (C, 2k): most positive, most negative
    chosen_values = np.take_along_axis(values, chosen, axis=1)
    chosen_vectors = np.take_along_axis(vectors, chosen[:, None, :], axis=2)  # (C, d, 2k)
    projected = np.asarray(project_to_input(jnp.asarray(chosen_vectors), embedding_matrix(model)))  # (C, n_in(+1), 2k)
    if augmented:
        projected = projected[:, :-1]
    projected = np.moveaxis(projected, 1, 2)  # (C, 2k, n_in)
    signs = np.sign(np.take_along_axis(projected, np.argmax(np.abs(projected), -1)[..., None], -1))
    projected = projected * np.where(signs == 0, 1, signs)  # eigenvectors have no sign: show the peak positive
    columns = [f"+{i + 1}" for i in range(k)] + [f"−{i + 1}" for i in range(k)]
    report.heading("Top eigenvectors in input space")
    report.paragraph(f"For each class, its {k} most positive (+) and {k} most negative (−) eigenvectors, mapped "
                     f"to input space through the embedding (E v), shown over the input shape "
                     f"{tuple(info.input_shape)}. A positive eigenvector raises the class logit by λ (vᵀx)², a "
                     "negative one lowers it. Red: positive weight, blue: negative (each image on its own scale).")
    report.figure("eigenvectors", figures.eigenvector_grid(projected, chosen_values, info.input_shape, labels, columns),
                  "Top positive and negative eigenvectors of each class's interaction matrix, in input space.")


# -- Toy model. ------------------------------------------------------------------------------------


def _analyze_toy(report: _Report, run: Loaded, summary: dict, *, max_examples, top_k, timings) -> None:
    model, info = run.model, run.info
    split = _eval_split(info)
    x, y = _timed(timings, "load_data", load_split_arrays, run, split, max_examples=max_examples)
    summary["split"], summary["num_examples"] = split, int(len(y))
    accuracy = _accuracy(model, x, y, info, run.config.get("loss", "mse"))
    summary["accuracy"] = accuracy
    summary["mlp_kind"] = model.kind
    report.heading("Accuracy")
    report.table(["split", "examples", "accuracy (every output right)"], [[split, len(y), accuracy]])

    layers = []
    if model.kind == "bilinear":
        layers.append(("layer", lambda: (_float32_copy(model), model.n_inputs, model.tensor(), bool(model.bias))))
    _timed(timings, "hessian", _hessian_checks, report, summary, layers)
    if model.kind != "bilinear":
        report.note(f"The layer is a {model.kind!r} MLP, {NOT_QUADRATIC}: no interaction matrices or pairs.")
        return

    factors = factors_of(model)
    n_in, n_out = model.n_inputs, model.n_outputs
    augmented = factors.d_in == n_in + 1
    outputs = [list(o) for o in (info.metadata.get("outputs") or [])]
    names = [f"{o[0]}(x{o[1]}, x{o[2]})" for o in outputs] if len(outputs) == n_out else [f"y{o}" for o in range(n_out)]
    eye = jnp.eye(n_out, dtype=factors.dtype)
    q = np.asarray(interaction_matrices(factors, eye))  # (n_out, d(+1), d(+1))
    ticks = [f"x{i}" for i in range(n_in)] + (["1"] if augmented else [])
    report.heading("Interaction matrices")
    report.paragraph("y_o = x̃ᵀ Q_o x̃ over x̃ = [x; 1]: off-diagonal entries are pair interactions, the last row "
                     "and column (\"1\") the linear terms, the corner the constant.")
    report.figure("interactions", figures.interaction_heatmaps(q, names, ticks),
                  "Each output's interaction matrix Q_o (symmetric).")

    found = feature_interactions(factors, jnp.eye(n_in, dtype=factors.dtype), eye, top=max(top_k, 3),
                                 include_constant=False)
    tensor = np.asarray(found.tensor)
    pair_values = tensor + np.swapaxes(tensor, -1, -2)
    rows, per_output = [], []
    for o in range(n_out):
        off = np.abs(pair_values[o]).copy()
        np.fill_diagonal(off, -np.inf)
        i, j = np.unravel_index(int(np.argmax(off)), off.shape)
        top_pair = sorted((int(i), int(j)))
        true_pair = sorted(int(v) for v in outputs[o][1:3]) if len(outputs) == n_out else None
        match = None if true_pair is None else top_pair == true_pair
        ranked = [[int(a), int(b)] for a, b in np.asarray(found.pairs[o])]
        ranked_values = [float(v) for v in np.asarray(found.pair_values[o])]
        per_output.append({"output": names[o], "true_pair": true_pair, "top_pair": top_pair,
                           "top_pair_value": float(pair_values[o][i, j]), "matches": match,
                           "top_pairs": ranked, "top_pair_values": ranked_values})
        shown = ", ".join(f"(x{a}, x{b}) {v:+.3g}" for (a, b), v in zip(ranked, ranked_values))
        rows.append([names[o], f"(x{top_pair[0]}, x{top_pair[1]})", float(pair_values[o][i, j]),
                     "" if true_pair is None else f"(x{true_pair[0]}, x{true_pair[1]})",
                     "n/a" if match is None else bool(match), shown])
    summary["pairs"] = per_output
    known = [p["matches"] for p in per_output if p["matches"] is not None]
    summary["pairs_matched"] = (sum(known), len(known))
    report.heading("Top input pairs")
    report.paragraph("Interactions between the inputs (identity features): I_ij + I_ji for a pair, I_ii for a "
                     "single input (on bits x_i² = x_i, so the diagonal acts as a linear term). The strongest "
                     "off-diagonal pair of each output is compared with the pair the dataset defines.")
    report.table(["output", "strongest pair", "value", "true pair", "match", f"top {len(ranked)} (incl. diagonal)"],
                 rows)


# -- Transformer. ----------------------------------------------------------------------------------


def _token_labels(info, vocab: int) -> list[str]:
    if info.name == "modular_arithmetic":
        return [str(t) for t in range(vocab - 1)] + ["="]
    if vocab == 256 and info.task == "sequence":
        return [repr(chr(t))[1:-1] if 32 <= t < 127 else f"0x{t:02x}" for t in range(256)]
    return [f"#{t}" for t in range(vocab)]


def _estimate_terms(model) -> int:
    stream, terms = 1, 1
    for layer in range(model.n_layers):
        block = model.block(layer)
        heads = model.n_heads
        terms, stream = terms + heads, stream + heads
        if block.mlp is not None:
            n = stream + int(block.mlp.up_bias is not None)
            terms, stream = terms + n * n, stream + 1
    return terms


def _analyze_transformer(report: _Report, run: Loaded, summary: dict, *, max_examples, top_k, timings,
                         max_tokens: int = 64, path_budget_bytes: float = 3e8) -> None:
    model, info = run.model, run.info
    split = _eval_split(info)
    eval_examples = max_examples if max_examples is not None else 1024
    x, y = _timed(timings, "load_data", load_split_arrays, run, split, max_examples=eval_examples)
    summary["split"], summary["num_examples"] = split, int(len(x))
    accuracy = _accuracy(model, x, y, info, run.config.get("loss", "mse"), batch_size=64)
    summary["accuracy"] = accuracy
    kind = model.mlp_kind
    summary["mlp_kind"] = kind
    report.heading("Accuracy")
    what = "next-token accuracy" if info.task == "sequence" else "accuracy (at the last position)"
    report.table(["split", "examples", what], [[split, len(x), accuracy]])

    bilinear = kind == "bilinear"
    layers = []
    if bilinear:
        for i in range(model.n_layers):
            def thunk(i=i):
                mlp = model.block(i).mlp
                return _float32_copy(mlp), mlp.d_in, mlp.tensor(), bool(mlp.bias)
            layers.append((f"layer {i} MLP", thunk))
    _timed(timings, "hessian", _hessian_checks, report, summary, layers)
    if kind is not None and not bilinear:
        report.note(f"The MLPs are {kind!r}, {NOT_QUADRATIC}: no token interactions and no exact path expansion.")
        summary["path_expansion_max_rel_error"] = None
        return

    # Which tokens: the most frequent targets in the evaluation data.
    vocab = model.vocab_size
    labels = _token_labels(info, vocab)
    targets = np.asarray(x[:, 1:] if info.task == "sequence" else y).reshape(-1).astype(np.int64)
    counts = np.bincount(targets, minlength=vocab)
    top_tokens = [int(t) for t in np.argsort(-counts, kind="stable")[:max(1, min(top_k, vocab))]]
    if bilinear:
        _timed(timings, "token_pairs", _token_pairs, report, summary, model, labels, counts, top_tokens, top_k,
               max_tokens)

    # Path expansion on a batch of evaluation tokens.
    from bilinear_jax.analysis.paths import path_expansion

    tokens = np.asarray(x[:, :-1] if info.task == "sequence" else x).astype(np.int32)
    tokens = tokens[:, :model.max_len]
    seq = tokens.shape[1]
    per_example = _estimate_terms(model) * seq * vocab * 4
    batch = int(max(1, min(len(tokens), path_budget_bytes // max(per_example, 1))))
    tokens = tokens[:batch]
    position = -1 if info.task != "sequence" else None
    expansion = _timed(timings, "path_expansion", path_expansion, model, jnp.asarray(tokens))
    sizes = expansion.sizes(position=position)
    error = float(expansion.max_relative_error)
    summary["path_expansion_max_rel_error"] = error
    summary["path_expansion"] = {"num_terms": len(expansion), "batch": int(batch), "seq_len": int(seq),
                                 "position": position, "top_terms": list(sizes.items())[:20]}
    report.heading("Path expansion")
    report.paragraph(f"The logits on {batch} evaluation sequences decomposed exactly into {len(expansion)} named "
                     "terms (attention patterns and norm scales frozen at the forward pass): the direct path, each "
                     "head, and one term per ordered pair of the paths each bilinear MLP reads. Their sum "
                     f"reproduces the logits to a relative {error:.2e}.")
    where = "at the last position" if position == -1 else "over all positions"
    top = list(sizes.items())[:20]
    report.table(["term", f"RMS {where}"], [[name, value] for name, value in top])
    report.figure("path_terms", figures.bar_chart([n for n, _ in top], [v for _, v in top],
                                                  title=f"The {len(top)} largest path-expansion terms",
                                                  xlabel=f"RMS of the term's logits ({where})"),
                  "Sizes of the path-expansion terms (RMS over batch, positions and vocabulary).")


def _token_pairs(report: _Report, summary: dict, model, labels, counts, top_tokens, top_k, max_tokens) -> None:
    """``W_E Q_u W_Eᵀ`` over tokens for the unembedding directions of ``top_tokens``, per MLP layer."""
    vocab = model.vocab_size
    candidates = np.arange(vocab) if vocab <= max_tokens else np.sort(np.argsort(-counts, kind="stable")[:max_tokens])
    u = unembedding_directions(model, jnp.asarray(top_tokens))
    report.heading("Top token pairs")
    report.paragraph(
        "For the unembedding direction u_t of each of the most frequent target tokens, the interaction matrix "
        "of an MLP layer restricted to token embeddings, I_ab = u_tᵀ B(e_a, e_b) with e_a the (normalised) "
        "embedding of token a: how much the MLP's embedding × embedding term adds to token t's logit when "
        "tokens a and b are both in its input. Attention mixing and later layers are not included."
        + ("" if vocab <= max_tokens else f" Restricted to the {max_tokens} most frequent tokens."))
    per_layer = {}
    heatmaps, titles = [], []
    for layer in range(model.n_layers):
        block = model.block(layer)
        if block.mlp is None:
            continue
        factors = factors_of(block.mlp)
        embeddings = model.W_E[jnp.asarray(candidates)]
        if block.norm2 is not None:
            embeddings = block.norm2(embeddings)  # each token as if alone in the stream
        found = feature_interactions(factors, embeddings.T, u, top=top_k)
        tensor = np.asarray(found.tensor)
        rows, entries = [], []
        for r, token in enumerate(top_tokens):
            pairs = [(int(candidates[a]), int(candidates[b])) for a, b in np.asarray(found.pairs[r])]
            values = [float(v) for v in np.asarray(found.pair_values[r])]
            entries.append({"token": token, "label": labels[token], "pairs": pairs, "values": values})
            rows.append([f"{labels[token]} (#{token})", "; ".join(
                f"({labels[a]}, {labels[b]}) {v:+.3g}" for (a, b), v in zip(pairs, values))])
            if layer == 0 and len(heatmaps) < 4:
                heatmaps.append(0.5 * (tensor[r] + tensor[r].T))
                titles.append(f"layer {layer} MLP → logit of {labels[token]}")
        per_layer[f"layer {layer} MLP"] = entries
        report.heading(f"Layer {layer} MLP", 3)
        report.table(["token t", f"top {top_k} pairs (a, b): I_ab + I_ba"], rows)
    summary["top_token_pairs"] = per_layer
    if heatmaps:
        ticks = [labels[int(t)] for t in candidates]
        report.figure("token_interactions", figures.interaction_heatmaps(np.stack(heatmaps), titles, ticks),
                      "Symmetrised token × token interaction matrices of layer 0's MLP for the top tokens' "
                      "unembedding directions.")


# -- Entry point. ----------------------------------------------------------------------------------


def analyze_run(
    workdir: str | epath.Path | Loaded,
    *,
    out_dir: str | epath.Path | None = None,
    max_examples: int | None = None,
    top_k: int = 4,
) -> dict[str, Any]:
    """Analyse a trained run; write ``report.html``, ``summary.json`` and ``figures/`` under ``out_dir``.

    Args:
      workdir: the run's ``--workdir`` (or a :class:`Loaded` run).
      out_dir: where to write (default ``workdir/analysis``).
      max_examples: evaluate on at most this many examples of the evaluation split (default: all
        of it; at most 1024 sequences for transformers).
      top_k: eigenvectors of each sign per class, pairs per output, tokens and pairs per token.

    Returns:
      The summary (as written to ``summary.json``), with ``report`` and ``summary`` paths added.
    """
    start = time.perf_counter()
    timings: dict[str, float] = {}
    run = workdir if isinstance(workdir, Loaded) else _timed(timings, "load", load, workdir, mesh=ONE_DEVICE)
    out = epath.Path(out_dir) if out_dir is not None else epath.Path(run.workdir) / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    from bilinear_jax.models import BilinearClassifier, ToyModel, Transformer

    model = run.model
    kind = {BilinearClassifier: "classifier", ToyModel: "toy", Transformer: "transformer"}.get(type(model))
    report = _Report(f"Analysis of {epath.Path(run.workdir).name} ({kind or type(model).__name__})", out / "figures")
    summary: dict[str, Any] = {"workdir": str(run.workdir), "model_type": kind,
                               "created": datetime.datetime.now().isoformat(timespec="seconds")}
    _run_section(report, run, summary)
    options = dict(max_examples=max_examples, top_k=max(1, int(top_k)), timings=timings)
    if kind == "classifier":
        _analyze_classifier(report, run, summary, **options)
    elif kind == "toy":
        _analyze_toy(report, run, summary, **options)
    elif kind == "transformer":
        _analyze_transformer(report, run, summary, **options)
    else:
        report.note(f"No analysis for a {type(model).__name__}.")
        summary.setdefault("hessian_max_rel_error", None)
    summary["seconds"] = round(time.perf_counter() - start, 2)
    summary["timings"] = timings
    summary["figures"] = list(report.figure_files)
    report.heading("Summary numbers")
    report.table(["key", "value"], [[k, v if isinstance(v, (int, float)) and not isinstance(v, bool) else json.dumps(
        _jsonable(v))[:200]] for k, v in summary.items() if k not in ("timings", "figures")])
    summary = _jsonable(summary)
    report_path, summary_path = out / "report.html", out / "summary.json"
    report_path.write_text(report.render())
    summary_path.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return {**summary, "report": str(report_path), "summary": str(summary_path)}
