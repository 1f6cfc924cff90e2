"""`modular_arithmetic`: c = (a op b) mod p over all pairs, split by a seeded partition.

Records: {'tokens': int32 [a, b, p] (the '=' token is p, vocabulary p + 1),
'label': int32 c}. Operations: add, sub, mul, div (div needs a prime p and
excludes b = 0; c = a * b^(p-2) mod p). The pairs are permuted with `seed` and
the first `round(train_fraction * num_pairs)` form the train split.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

import numpy as np
import tensorflow_datasets as tfds

from bilinear_jax.data.builders.base import OfflineBuilder, seeded_rng
from bilinear_jax.data.info import DatasetInfo

OPS = ("add", "sub", "mul", "div")


def _is_prime(p: int) -> bool:
    return p >= 2 and all(p % d for d in range(2, int(p**0.5) + 1))


def modular_table(p: int, op: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All valid (a, b, c) triples in row-major (a, b) order."""
    a, b = (x.ravel() for x in np.meshgrid(np.arange(p), np.arange(p), indexing="ij"))
    if op == "div":
        keep = b != 0
        a, b = a[keep], b[keep]
        inv = np.array([pow(int(x), p - 2, p) for x in b], dtype=np.int64)
        c = (a * inv) % p
    else:
        c = {"add": a + b, "sub": a - b, "mul": a * b}[op] % p
    return a, b, c


def modular_split_indices(num_pairs: int, seed: int, train_fraction: float) -> dict[str, np.ndarray]:
    perm = seeded_rng(seed).permutation(num_pairs)
    n_train = int(round(train_fraction * num_pairs))
    return {"train": np.sort(perm[:n_train]), "test": np.sort(perm[n_train:])}


class ModularArithmetic(OfflineBuilder, skip_registration=True):
    name = "modular_arithmetic"
    DESCRIPTION = "All pairs (a, b) mod p with label (a op b) mod p."
    DEFAULTS = {"p": 113, "op": "add", "train_fraction": 0.3, "seed": 0}

    @classmethod
    def validate(cls, options: dict[str, Any]) -> dict[str, Any]:
        p, op, frac = int(options["p"]), str(options["op"]), float(options["train_fraction"])
        if p < 2:
            raise ValueError(f"modular_arithmetic: p must be >= 2, got {p}.")
        if op not in OPS:
            raise ValueError(f"modular_arithmetic: unknown op '{op}'; choose one of {list(OPS)}.")
        if op == "div" and not _is_prime(p):
            raise ValueError(f"modular_arithmetic: op='div' needs a prime p, got {p}.")
        if not 0.0 < frac < 1.0:
            raise ValueError(f"modular_arithmetic: train_fraction must be in (0, 1), got {frac}.")
        n_pairs = p * (p - 1) if op == "div" else p * p
        n_train = int(round(frac * n_pairs))
        if n_train == 0 or n_train == n_pairs:
            raise ValueError(
                f"modular_arithmetic: train_fraction={frac} leaves an empty split for "
                f"{n_pairs} pairs; use a fraction further from 0 and 1 or a larger p.")
        return {"p": p, "op": op, "train_fraction": frac, "seed": int(options["seed"])}

    @classmethod
    def short_name(cls, options: Mapping[str, Any]) -> str:
        return f"p{options['p']}-{options['op']}-train{options['train_fraction']:g}"

    def features(self) -> tfds.features.FeaturesDict:
        return tfds.features.FeaturesDict({
            "tokens": tfds.features.Tensor(shape=(3,), dtype=np.int32),
            "label": tfds.features.Tensor(shape=(), dtype=np.int32),
        })

    def examples(self, split: str) -> Iterator[tuple[int, dict[str, Any]]]:
        p, op = self.options["p"], self.options["op"]
        a, b, c = modular_table(p, op)
        idx = modular_split_indices(len(a), self.options["seed"], self.options["train_fraction"])[split]
        for i in idx:
            yield int(i), {"tokens": np.array([a[i], b[i], p], np.int32), "label": np.int32(c[i])}

    def describe(self, num_examples: dict[str, int]) -> DatasetInfo:
        p = self.options["p"]
        return DatasetInfo(
            name=self.name, task="classification", input_shape=(3,), num_classes=p,
            vocab_size=p + 1, num_examples=num_examples, input_key="tokens", target_key="label",
            config_name=self.builder_config.name, options=dict(self.options),
        )
