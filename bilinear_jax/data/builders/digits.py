"""`digits`: scikit-learn's 1,797 8x8 handwritten digits, with a seeded train/test split.

Records: {'image': float32 (8, 8, 1) raw pixel values in [0, 16], 'label': int32}.
The split is a permutation of all examples drawn from `seed`; the first
`round(test_fraction * 1797)` permuted indices form the test split.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

import numpy as np
import tensorflow_datasets as tfds

from bilinear_jax.data.builders.base import OfflineBuilder, seeded_rng
from bilinear_jax.data.info import DatasetInfo


def digits_split_indices(n: int, seed: int, test_fraction: float) -> dict[str, np.ndarray]:
    """Indices into sklearn's digits for each split (sorted within a split)."""
    perm = seeded_rng(seed).permutation(n)
    n_test = int(round(test_fraction * n))
    return {"train": np.sort(perm[n_test:]), "test": np.sort(perm[:n_test])}


class Digits(OfflineBuilder, skip_registration=True):
    name = "digits"
    DESCRIPTION = "scikit-learn's 8x8 handwritten digits (UCI optdigits test set)."
    DEFAULTS = {"seed": 0, "test_fraction": 0.2}

    @classmethod
    def validate(cls, options: dict[str, Any]) -> dict[str, Any]:
        frac = float(options["test_fraction"])
        if not 0.0 < frac < 1.0:
            raise ValueError(f"digits: test_fraction must be in (0, 1), got {frac}.")
        return {"seed": int(options["seed"]), "test_fraction": frac}

    @classmethod
    def short_name(cls, options: Mapping[str, Any]) -> str:
        return f"seed{options['seed']}-test{options['test_fraction']:g}"

    def features(self) -> tfds.features.FeaturesDict:
        return tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.float32),
            "label": tfds.features.Tensor(shape=(), dtype=np.int32),
        })

    def examples(self, split: str) -> Iterator[tuple[int, dict[str, Any]]]:
        from sklearn.datasets import load_digits

        raw = load_digits()
        idx = digits_split_indices(len(raw.target), self.options["seed"],
                                   self.options["test_fraction"])[split]
        for i in idx:
            yield int(i), {"image": raw.images[i].astype(np.float32)[..., None],
                           "label": np.int32(raw.target[i])}

    def describe(self, num_examples: dict[str, int]) -> DatasetInfo:
        return DatasetInfo(
            name=self.name, task="classification", input_shape=(8, 8, 1),
            num_classes=10, num_examples=num_examples, input_key="image", target_key="label",
            config_name=self.builder_config.name, options=dict(self.options),
            input_range=(0.0, 16.0),
        )
