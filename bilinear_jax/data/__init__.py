"""Data layer: offline TFDS builders (ArrayRecord), public TFDS datasets, and grain pipelines.

Offline datasets: digits, modular_arithmetic, sparse_boolean, text_corpus (see
`bilinear_jax.data.builders`). Any other name is looked up in TFDS (mnist,
fashion_mnist, tiny_shakespeare, lm1b, huggingface:...).

    info = data.dataset_info("digits", data_dir=None)
    source = data.load_split("digits", "train")
    it = data.TrainIterator(source, global_batch_size=128, seed=0)
    batch = next(it); state = it.get_state(); it.set_state(state)
    for batch in data.eval_batches(data.load_split("digits", "test"), global_batch_size=128): ...

The default data_dir is $BILINEAR_JAX_DATA_DIR, else TFDS's default (~/tensorflow_datasets).
"""

from bilinear_jax.data.info import OFFLINE_DATASETS, DatasetInfo
from bilinear_jax.data.pipeline import (
    TrainIterator,
    epoch_permutation,
    eval_batches,
    global_batch_indices,
    num_eval_batches,
)
from bilinear_jax.data.preprocess import dataset_stats, gaussian_noise, image_preprocess, normalize
from bilinear_jax.data.public import DatasetDownloadError
from bilinear_jax.data.registry import DATA_DIR_ENV, dataset_info, default_data_dir, load_split
from bilinear_jax.data.tokenizers import ByteTokenizer, SentencePieceTokenizer, train_sentencepiece

__all__ = [
    "OFFLINE_DATASETS", "DATA_DIR_ENV", "DatasetInfo", "DatasetDownloadError",
    "dataset_info", "load_split", "default_data_dir",
    "TrainIterator", "eval_batches", "num_eval_batches", "epoch_permutation", "global_batch_indices",
    "normalize", "dataset_stats", "gaussian_noise", "image_preprocess",
    "ByteTokenizer", "SentencePieceTokenizer", "train_sentencepiece",
]
