"""Losses and metrics for each task, as sums over a (masked) batch.

Each objective returns ``Sums(loss, correct, count)``: summing them over micro-batches,
devices and eval batches and dividing at the end gives exact means, padding excluded.

* ``classification``: cross-entropy of ``model(x)`` against ``label``. A sequence model's
  logits ``(B, T, V)`` are read at the last position (modular arithmetic: ``a b = → c``).
* ``sequence``: next-token cross-entropy, ``inputs = tokens[:, :-1]``, ``targets = tokens[:, 1:]``.
* ``multilabel``: ``mse`` on the raw outputs or ``bce`` on logits; an example is correct when
  every output rounds to its target.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from bilinear_jax.data import DatasetInfo

TASKS = ("classification", "sequence", "multilabel")
MULTILABEL_LOSSES = ("mse", "bce")


class Sums(NamedTuple):
    loss: jax.Array
    correct: jax.Array
    count: jax.Array

    def __add__(self, other: "Sums") -> "Sums":  # type: ignore[override]
        return Sums(*(a + b for a, b in zip(self, other)))


def _mask(batch: dict, shape: tuple[int, ...]) -> jax.Array:
    mask = batch.get("mask")
    return jnp.ones(shape, jnp.float32) if mask is None else mask.astype(jnp.float32)


def _call(model, inputs: jax.Array, noise_key: jax.Array | None) -> jax.Array:
    if noise_key is not None and getattr(model, "input_noise_std", 0.0) > 0:
        return model(inputs, noise_key=noise_key)
    return model(inputs)


def classification(model, batch: dict, info: DatasetInfo, noise_key=None, **_) -> Sums:
    logits = _call(model, batch[info.input_key], noise_key)
    if logits.ndim == 3:  # a sequence model classifies at its last position
        logits = logits[:, -1, :]
    labels = batch[info.target_key].astype(jnp.int32)
    mask = _mask(batch, labels.shape)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
    correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    return Sums(jnp.sum(losses * mask), jnp.sum(correct * mask), jnp.sum(mask))


def sequence(model, batch: dict, info: DatasetInfo, **_) -> Sums:
    tokens = batch[info.input_key].astype(jnp.int32)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    logits = model(inputs).astype(jnp.float32)
    mask = _mask(batch, targets.shape[:1])[:, None] * jnp.ones(targets.shape, jnp.float32)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
    return Sums(jnp.sum(losses * mask), jnp.sum(correct * mask), jnp.sum(mask))


def multilabel(model, batch: dict, info: DatasetInfo, noise_key=None, loss: str = "mse", **_) -> Sums:
    outputs = _call(model, batch[info.input_key].astype(jnp.float32), noise_key).astype(jnp.float32)
    targets = batch[info.target_key].astype(jnp.float32)
    mask = _mask(batch, targets.shape[:1])
    if loss == "mse":
        per_example = jnp.mean(jnp.square(outputs - targets), axis=-1)
        predictions = outputs > 0.5
    else:
        per_example = jnp.mean(optax.sigmoid_binary_cross_entropy(outputs, targets), axis=-1)
        predictions = outputs > 0.0
    correct = jnp.all(predictions == (targets > 0.5), axis=-1).astype(jnp.float32)
    return Sums(jnp.sum(per_example * mask), jnp.sum(correct * mask), jnp.sum(mask))


OBJECTIVES: dict[str, Callable[..., Sums]] = {
    "classification": classification,
    "sequence": sequence,
    "multilabel": multilabel,
}


def objective(info: DatasetInfo) -> Callable[..., Sums]:
    if info.task not in OBJECTIVES:
        raise ValueError(f"No objective for task {info.task!r}; the tasks are {', '.join(TASKS)}.")
    return OBJECTIVES[info.task]


def model_dimensions(info: DatasetInfo, model_name: str) -> dict[str, Any]:
    """The constructor arguments of ``model_name`` that the dataset determines."""
    if model_name == "transformer":
        if info.vocab_size is None:
            raise ValueError(f"Dataset {info.name!r} has no token vocabulary; a transformer needs token inputs.")
        max_len = info.seq_len if info.seq_len is not None else int(info.input_shape[-1])
        return {"vocab_size": int(info.vocab_size), "max_len": int(max_len)}
    if model_name == "classifier":
        if info.task != "classification" or info.num_classes is None:
            raise ValueError(f"Dataset {info.name!r} is not a classification dataset; the classifier needs labels.")
        d_input = 1
        for size in info.input_shape:
            d_input *= int(size)
        return {"d_input": d_input, "num_classes": int(info.num_classes)}
    if model_name == "toy":
        if info.task != "multilabel":
            raise ValueError(f"Dataset {info.name!r} is not a multilabel dataset; the toy model needs binary targets.")
        return {"n_inputs": int(info.input_shape[-1]), "n_outputs": int(info.num_outputs)}
    return {}
