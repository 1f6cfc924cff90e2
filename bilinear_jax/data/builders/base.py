"""Shared machinery for the offline builders: options -> config name -> prepare under lock.

Every offline builder is a TFDS `GeneratorBasedBuilder` whose `BuilderConfig` is
created on the fly from the user's options. The config name is a readable prefix
plus a hash of the normalized options (and anything else that determines the
content, such as corpus file sizes), so a changed option always maps to a new
prepared dataset. Preparation writes ArrayRecord files and is serialized across
processes on one machine by an `fcntl` lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, ClassVar, Iterator, Mapping

import numpy as np
import tensorflow_datasets as tfds

from bilinear_jax.data.info import DatasetInfo, summarize

FILE_FORMAT = "array_record"


@dataclasses.dataclass(eq=False)
class OptionsConfig(tfds.core.BuilderConfig):
    """A BuilderConfig that carries the normalized builder options.

    The options are left out of the repr (they may hold hundreds of file paths);
    the full options are saved in the prepared dataset's metadata.json instead.
    """

    options: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)


class _QuietCustomConfig(logging.Filter):
    """Drops TFDS's 'Using custom data configuration' warning for our `OptionsConfig`s only.

    Every offline builder is created with an on-the-fly config, so TFDS would log it
    on every `dataset_info`/`load_split`; other builders' warnings pass through.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith("Using custom data configuration"):
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            return not any(isinstance(a, OptionsConfig) for a in args)
        return True


_CUSTOM_CONFIG_FILTER = _QuietCustomConfig()
if not any(isinstance(f, _QuietCustomConfig) for f in logging.getLogger("absl").filters):
    logging.getLogger("absl").addFilter(_CUSTOM_CONFIG_FILTER)


def fingerprint(payload: Any, length: int = 12) -> str:
    """Short stable hash of a JSON-serializable payload."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive inter-process lock on `path` (created if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


class OfflineBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base class: subclasses define DEFAULTS, validate(), features() and examples()."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "Initial release."}
    DEFAULTS: ClassVar[Mapping[str, Any]] = {}
    # Options that do not change the prepared content (excluded from the hash).
    NOT_HASHED: ClassVar[tuple[str, ...]] = ()
    SPLITS: ClassVar[tuple[str, ...]] = ("train", "test")
    DESCRIPTION: ClassVar[str] = ""

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> None:
        """No checksums file: offline builders download nothing (and this avoids importlib_resources)."""
        return None

    # ---- hooks for subclasses -------------------------------------------------
    @classmethod
    def validate(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Checks and canonicalizes options (JSON-serializable values only)."""
        return options

    @classmethod
    def content_key(cls, options: Mapping[str, Any]) -> Any:
        """Extra data that determines the content besides the options."""
        return None

    @classmethod
    def short_name(cls, options: Mapping[str, Any]) -> str:
        """Readable prefix of the config name."""
        return "cfg"

    @classmethod
    def before_prepare(cls, options: Mapping[str, Any], data_dir: Path, config_name: str) -> None:
        """Runs under the prepare lock before TFDS generation (e.g. tokenizer training)."""

    def on_ready(self) -> None:
        """Runs after every `prepare` (prepared or reused), e.g. to export files."""

    def features(self) -> tfds.features.FeaturesDict:
        raise NotImplementedError

    def metadata(self) -> dict[str, Any]:
        """Extra JSON metadata saved with the dataset."""
        return {}

    def examples(self, split: str) -> Iterator[tuple[Any, dict[str, Any]]]:
        raise NotImplementedError

    def describe(self, num_examples: dict[str, int]) -> DatasetInfo:
        raise NotImplementedError

    # ---- option handling ------------------------------------------------------
    @classmethod
    def normalize_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(options) - set(cls.DEFAULTS))
        if unknown:
            raise ValueError(
                f"Unknown option(s) {unknown} for dataset '{cls.name}'; "
                f"valid options are {sorted(cls.DEFAULTS)}."
            )
        merged = {**cls.DEFAULTS, **options}
        return cls.validate(merged)

    @classmethod
    def make_config(cls, options: Mapping[str, Any]) -> OptionsConfig:
        opts = cls.normalize_options(options)
        hashed = {k: v for k, v in opts.items() if k not in cls.NOT_HASHED}
        digest = fingerprint({"options": hashed, "content": cls.content_key(opts),
                              "version": str(cls.VERSION)})
        name = f"{cls.short_name(opts)}-{digest}"
        return OptionsConfig(name=name, version=cls.VERSION, options=opts,
                             description=f"{cls.name} with options "
                                         f"{json.dumps(summarize(opts), sort_keys=True)}")

    @property
    def options(self) -> dict[str, Any]:
        return self.builder_config.options

    # ---- TFDS plumbing --------------------------------------------------------
    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.DESCRIPTION,
            features=self.features(),
            metadata=tfds.core.MetadataDict(options=self.options, **self.metadata()),
            disable_shuffling=True,  # records are stored in generation order
        )

    def _split_generators(self, dl_manager):  # noqa: ARG002 - TFDS signature
        return {split: self._generate_examples(split=split) for split in self.SPLITS}

    def _generate_examples(self, split: str):
        yield from self.examples(split)


def prepare(builder_cls: type[OfflineBuilder], data_dir: str | os.PathLike,
            options: Mapping[str, Any]) -> OfflineBuilder:
    """Returns a prepared builder for these options, preparing it under a file lock."""
    data_dir = Path(data_dir)
    config = builder_cls.make_config(options)
    builder = builder_cls(data_dir=data_dir, config=config)
    if not builder.is_prepared():
        lock = data_dir / ".locks" / f"{builder_cls.name}-{config.name}.lock"
        with file_lock(lock):
            builder = builder_cls(data_dir=data_dir, config=config)
            if not builder.is_prepared():
                tfds.disable_progress_bar()
                builder_cls.before_prepare(config.options, data_dir, config.name)
                builder.download_and_prepare(file_format=FILE_FORMAT)
        builder = builder_cls(data_dir=data_dir, config=config)
    builder.on_ready()
    return builder


def split_sizes(builder: tfds.core.DatasetBuilder) -> dict[str, int]:
    return {name: int(split.num_examples) for name, split in builder.info.splits.items()}


def seeded_rng(*seed: int) -> np.random.Generator:
    """A numpy Generator seeded by a tuple of ints (stable across platforms)."""
    return np.random.default_rng(list(seed))
