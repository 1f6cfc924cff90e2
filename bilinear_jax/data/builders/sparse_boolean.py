"""`sparse_boolean`: binary inputs, each output a boolean op of one pair of inputs.

Records: {'x': float32 [n_inputs] in {0, 1}, 'y': float32 [n_outputs] in {0, 1}}.
Each bit of x is 1 with probability `sparsity`. Outputs are ordered op-major:
output k = op(x[i], x[j]) for op in `ops`, for (i, j) in `pairs`. Pairs are
given explicitly or derived from `seed` (`num_pairs` distinct pairs, or all
i < j pairs when `num_pairs` is None). The list of (op, i, j) per output is in
`DatasetInfo.metadata['outputs']` (and the builder's metadata.json).
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import tensorflow_datasets as tfds

from bilinear_jax.data.builders.base import OfflineBuilder, seeded_rng
from bilinear_jax.data.info import DatasetInfo

BOOL_OPS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "and": np.logical_and,
    "or": np.logical_or,
    "xor": np.logical_xor,
    "nand": lambda a, b: ~np.logical_and(a, b),
    "nor": lambda a, b: ~np.logical_or(a, b),
    "xnor": lambda a, b: ~np.logical_xor(a, b),
}
_SPLIT_STREAM = {"train": 1, "test": 2}


def derive_pairs(n_inputs: int, num_pairs: int | None, seed: int) -> list[list[int]]:
    """All i < j pairs, or `num_pairs` of them chosen by `seed` (sorted)."""
    allp = list(itertools.combinations(range(n_inputs), 2))
    if num_pairs is None:
        return [list(p) for p in allp]
    chosen = seeded_rng(seed, 0).choice(len(allp), size=num_pairs, replace=False)
    return [list(allp[k]) for k in sorted(chosen)]


def output_spec(ops: list[str], pairs: list[list[int]]) -> list[list[Any]]:
    return [[op, i, j] for op in ops for i, j in pairs]


def sparse_boolean_arrays(options: Mapping[str, Any], split: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) for a whole split, as float32 arrays."""
    n = options[f"num_{split}"]
    rng = seeded_rng(options["seed"], _SPLIT_STREAM[split])
    x = rng.random((n, options["n_inputs"])) < options["sparsity"]
    cols = [BOOL_OPS[op](x[:, i], x[:, j]) for op, i, j in output_spec(options["ops"], options["pairs"])]
    return x.astype(np.float32), np.stack(cols, axis=1).astype(np.float32)


class SparseBoolean(OfflineBuilder, skip_registration=True):
    name = "sparse_boolean"
    DESCRIPTION = "Sparse binary inputs; outputs are boolean ops of input pairs."
    DEFAULTS = {"n_inputs": 8, "sparsity": 0.25, "ops": ("and",), "pairs": None,
                "num_pairs": None, "seed": 0, "num_train": 16384, "num_test": 2048}

    @classmethod
    def validate(cls, options: dict[str, Any]) -> dict[str, Any]:
        n, sparsity = int(options["n_inputs"]), float(options["sparsity"])
        if n < 2:
            raise ValueError(f"sparse_boolean: n_inputs must be >= 2, got {n}.")
        if not 0.0 < sparsity < 1.0:
            raise ValueError(f"sparse_boolean: sparsity (probability a bit is 1) must be in (0, 1), got {sparsity}.")
        ops = [options["ops"]] if isinstance(options["ops"], str) else list(options["ops"])
        bad = [op for op in ops if op not in BOOL_OPS]
        if bad or not ops:
            raise ValueError(f"sparse_boolean: unknown or empty ops {bad or ops}; choose from {sorted(BOOL_OPS)}.")
        if options["pairs"] is not None:
            pairs = [[int(i), int(j)] for i, j in options["pairs"]]
            if not pairs or any(not (0 <= i < n and 0 <= j < n and i != j) for i, j in pairs):
                raise ValueError(f"sparse_boolean: pairs must be non-empty [i, j] with i != j in [0, {n}), got {pairs}.")
            if options["num_pairs"] is not None and int(options["num_pairs"]) != len(pairs):
                raise ValueError("sparse_boolean: give either pairs or num_pairs, not both.")
        else:
            max_pairs = n * (n - 1) // 2
            num = options["num_pairs"]
            if num is not None and not 1 <= int(num) <= max_pairs:
                raise ValueError(f"sparse_boolean: num_pairs must be in [1, {max_pairs}] for n_inputs={n}, got {num}.")
            pairs = derive_pairs(n, None if num is None else int(num), int(options["seed"]))
        sizes = {k: int(options[k]) for k in ("num_train", "num_test")}
        if min(sizes.values()) < 1:
            raise ValueError(f"sparse_boolean: num_train and num_test must be >= 1, got {sizes}.")
        return {"n_inputs": n, "sparsity": sparsity, "ops": ops, "pairs": pairs,
                "num_pairs": len(pairs), "seed": int(options["seed"]), **sizes}

    @classmethod
    def short_name(cls, options: Mapping[str, Any]) -> str:
        return f"n{options['n_inputs']}-s{options['sparsity']:g}-{'_'.join(options['ops'])}"

    def features(self) -> tfds.features.FeaturesDict:
        n_out = len(self.options["ops"]) * len(self.options["pairs"])
        return tfds.features.FeaturesDict({
            "x": tfds.features.Tensor(shape=(self.options["n_inputs"],), dtype=np.float32),
            "y": tfds.features.Tensor(shape=(n_out,), dtype=np.float32),
        })

    def metadata(self) -> dict[str, Any]:
        return {"outputs": output_spec(self.options["ops"], self.options["pairs"])}

    def examples(self, split: str) -> Iterator[tuple[int, dict[str, Any]]]:
        x, y = sparse_boolean_arrays(self.options, split)
        for k in range(len(x)):
            yield k, {"x": x[k], "y": y[k]}

    def describe(self, num_examples: dict[str, int]) -> DatasetInfo:
        outputs = output_spec(self.options["ops"], self.options["pairs"])
        return DatasetInfo(
            name=self.name, task="multilabel", input_shape=(self.options["n_inputs"],),
            num_outputs=len(outputs), num_examples=num_examples, input_key="x", target_key="y",
            config_name=self.builder_config.name, options=dict(self.options),
            metadata={"outputs": outputs, "pairs": self.options["pairs"], "ops": self.options["ops"]},
        )
