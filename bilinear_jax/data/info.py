"""The framework-facing description of a prepared dataset."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Literal, Mapping

Task = Literal["classification", "sequence", "multilabel"]

OFFLINE_DATASETS: tuple[str, ...] = (
        "digits",
        "modular_arithmetic",
        "sparse_boolean",
        "text_corpus",
)


def summarize(value: Any, max_items: int = 8, max_chars: int = 120) -> Any:
    """`value` with lists/tuples longer than `max_items` replaced by '<N items, sha256 H>'
    (a hash of their JSON) and strings longer than `max_chars` shortened in the middle."""
    if isinstance(value, Mapping):
        return {k: summarize(v, max_items, max_chars) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if len(value) > max_items:
            text = json.dumps(list(value), sort_keys=True, separators=(",", ":"), default=str)
            return f"<{len(value)} items, sha256 {hashlib.sha256(text.encode()).hexdigest()[:8]}>"
        return type(value)(summarize(v, max_items, max_chars) for v in value)
    if isinstance(value, str) and len(value) > max_chars:
        return value[: max_chars // 2] + "..." + value[-(max_chars // 2):]
    return value


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a training loop needs to know about a dataset.

    Attributes:
        name: Dataset name as passed to `dataset_info`.
        task: 'classification', 'sequence' (next-token) or 'multilabel'.
        input_shape: Shape of one example's input (without batch dim).
        num_classes: Number of classes (classification), else None.
        vocab_size: Token vocabulary size (sequence and modular), else None.
        seq_len: Model sequence length (sequence), else None. Records hold
            `seq_len + 1` tokens: inputs = tokens[:-1], targets = tokens[1:].
        num_outputs: Number of binary outputs (multilabel), else None.
        num_examples: Examples per split.
        input_key: Record key of the model input.
        target_key: Record key of the target.
        config_name: Name of the prepared TFDS config (encodes the options).
        options: The full, normalized builder options.
        metadata: Extra builder metadata (e.g. the sparse_boolean output pairs).
        input_range: (min, max) of raw input values for images, else None.
        tokenizer_path: Path of the sentencepiece model (text_corpus), else None.
    """

    name: str
    task: Task
    input_shape: tuple[int, ...]
    num_examples: Mapping[str, int]
    input_key: str
    target_key: str
    num_classes: int | None = None
    vocab_size: int | None = None
    seq_len: int | None = None
    num_outputs: int | None = None
    config_name: str | None = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    input_range: tuple[float, float] | None = None
    tokenizer_path: str | None = None

    def __repr__(self) -> str:
        """Field values, with long lists (e.g. hundreds of corpus files) summarized; the
        attributes themselves hold the full values."""
        fields = ", ".join(f"{f.name}={summarize(getattr(self, f.name))!r}" for f in dataclasses.fields(self))
        return f"DatasetInfo({fields})"

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.num_examples)
