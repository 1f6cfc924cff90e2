"""Offline TFDS builders, prepared as ArrayRecord without TensorFlow."""

from bilinear_jax.data.builders.base import OfflineBuilder, prepare
from bilinear_jax.data.builders.digits import Digits
from bilinear_jax.data.builders.modular_arithmetic import ModularArithmetic
from bilinear_jax.data.builders.sparse_boolean import SparseBoolean
from bilinear_jax.data.builders.text_corpus import TextCorpus

__all__ = ["OfflineBuilder", "prepare", "Digits", "ModularArithmetic", "SparseBoolean", "TextCorpus"]
