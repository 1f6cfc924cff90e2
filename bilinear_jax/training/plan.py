"""Turn a config into a checked plan, before anything compiles or touches the workdir.

:func:`plan_run` resolves the mesh, the dataset, the model's shapes and shardings, and
compares them with any checkpoint already in the workdir. Every user error found here is a
:class:`ConfigError` with one sentence saying what is wrong and how to fix it; the entry point
prints it as one line and exits non-zero, leaving the workdir as it was.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import optax
from etils import epath
from flax import nnx
from jax.sharding import Mesh, NamedSharding

from bilinear_jax import data
from bilinear_jax.layers import matched_hidden_width
from bilinear_jax.models import build_model
from bilinear_jax.training import checkpoint, optimizer, sharding, tasks

COMPUTE_DTYPES = {"float32": None, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
CHECKPOINT_SUBDIR = "checkpoints"


class ConfigError(ValueError):
    """A problem with the config, the data or the workdir, found before training starts."""


@dataclasses.dataclass
class Plan:
    """Everything a run needs, resolved and checked."""

    config: ml_collections.ConfigDict
    workdir: epath.Path
    mesh: Mesh
    info: data.DatasetInfo
    model_name: str
    model_kwargs: dict[str, Any]
    graphdef: nnx.GraphDef
    abstract_params: nnx.State
    param_shardings: nnx.State
    batch_sharding: NamedSharding
    tx: optax.GradientTransformation
    schedule: optax.Schedule
    objective: Callable[..., tasks.Sums]
    loss_kwargs: dict[str, Any]
    preprocess: Callable | None
    meta: dict[str, Any]

    @property
    def checkpoint_dir(self) -> epath.Path:
        return self.workdir / CHECKPOINT_SUBDIR

    def build_model(self) -> nnx.Module:
        return build_model(self.model_name, rngs=nnx.Rngs(int(self.config.seed)), **self.model_kwargs)

    def load_split(self, split: str):
        return load_config_split(self.config, split)


def load_config_split(config: ml_collections.ConfigDict, split: str):
    """The random-access source of ``split`` of the dataset that ``config.data`` names."""
    return data.load_split(config.data.name, split, data_dir=config.data.get("data_dir"),
                           **dict(config.data.get("options", {}) or {}))


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _check_schedule(config: ml_collections.ConfigDict) -> None:
    for key in ("num_steps", "batch_size", "log_every", "eval_every", "checkpoint_every"):
        value = config[key]
        _require(isinstance(value, int) and value > 0, f"config.{key} must be a positive integer, got {value!r}.")
    accum = int(config.get("grad_accum_steps", 1))
    _require(accum >= 1, f"config.grad_accum_steps must be >= 1, got {accum}.")
    keep = int(config.get("keep_checkpoints", 3))
    _require(keep >= 1, f"config.keep_checkpoints must be >= 1 (the newest checkpoint is what a rerun resumes), got {keep}.")
    prefetch = int(config.data.get("prefetch", 2))
    _require(prefetch >= 0, f"config.data.prefetch must be >= 0, got {prefetch}.")


def _check_batch(config: ml_collections.ConfigDict, mesh: Mesh) -> None:
    dp = sharding.data_parallel_size(mesh)
    batch, accum = int(config.batch_size), int(config.get("grad_accum_steps", 1))
    _require(batch % dp == 0,
             f"config.batch_size={batch} is not divisible by the data-parallel size {dp} "
             f"(mesh data={mesh.shape['data']} × fsdp={mesh.shape['fsdp']}); use a multiple of {dp}.")
    _require(batch % (dp * accum) == 0,
             f"config.batch_size={batch} does not split into grad_accum_steps={accum} micro-batches of a "
             f"multiple of the data-parallel size {dp}; use a multiple of {dp * accum}.")
    processes = jax.process_count()
    _require(batch % processes == 0, f"config.batch_size={batch} is not divisible by the {processes} processes.")
    _require(dp % processes == 0,
             f"The batch is split over data × fsdp = {dp} device groups, fewer than (or not a multiple of) the "
             f"{processes} processes, so processes would feed different copies of one batch shard. Set "
             f"config.mesh.data or config.mesh.fsdp so that data × fsdp is a multiple of {processes}.")
    eval_batch = int(config.get("eval_batch_size", 0) or batch)
    _require(eval_batch > 0 and eval_batch % dp == 0 and eval_batch % processes == 0,
             f"config.eval_batch_size={eval_batch} must be a positive multiple of the data-parallel size {dp}.")


def _dataset(config: ml_collections.ConfigDict) -> data.DatasetInfo:
    options = dict(config.data.get("options", {}) or {})
    try:
        return data.dataset_info(config.data.name, data_dir=config.data.get("data_dir"), **options)
    except (ValueError, FileNotFoundError, data.DatasetDownloadError) as error:
        raise ConfigError(str(error)) from error


def _model_kwargs(config: ml_collections.ConfigDict, info: data.DatasetInfo) -> tuple[str, dict[str, Any]]:
    model_config = config.model.to_dict()
    name = model_config.pop("name")
    if "matched_hidden" in model_config:
        # The hidden width of a plain MLP; gated kinds get 2/3 of it, for equal parameters.
        kind = model_config.get("mlp", model_config.get("kind", "bilinear")) or "relu"
        model_config["d_hidden"] = matched_hidden_width(kind, int(model_config.pop("matched_hidden")))
    dtype_name = config.get("compute_dtype", "float32")
    _require(dtype_name in COMPUTE_DTYPES,
             f"config.compute_dtype={dtype_name!r} is not one of {', '.join(COMPUTE_DTYPES)}.")
    try:
        dims = tasks.model_dimensions(info, name)
    except ValueError as error:
        raise ConfigError(str(error)) from error
    clash = sorted(set(dims) & set(model_config))
    _require(not clash, f"config.model sets {clash}, which the dataset determines; remove them from the config.")
    kwargs = {**model_config, **dims}
    if COMPUTE_DTYPES[dtype_name] is not None:
        kwargs["dtype"] = COMPUTE_DTYPES[dtype_name]
    return name, kwargs


def _preprocess(config: ml_collections.ConfigDict, info: data.DatasetInfo) -> Callable | None:
    if info.input_range is None or not config.data.get("normalize", True):
        return None
    return data.image_preprocess(max_value=float(info.input_range[1]), key=info.input_key)


def _check_workdir(workdir: epath.Path, meta: Mapping[str, Any]) -> None:
    _require(not workdir.exists() or workdir.is_dir(), f"--workdir {workdir} is a file; give a directory.")
    saved = checkpoint.read_latest_meta(workdir / CHECKPOINT_SUBDIR)
    if saved is None:
        return
    problem = checkpoint.incompatibility(saved["param_shapes"], meta["param_shapes"])
    _require(problem is None,
             f"{workdir} holds a checkpoint of an incompatible model: {problem}. Use a new --workdir, or the "
             f"config the checkpoint was trained with (saved in {workdir / 'config.json'}).")
    problem = checkpoint.incompatibility(saved.get("opt_state_shapes", meta["opt_state_shapes"]), meta["opt_state_shapes"])
    _require(problem is None,
             f"{workdir} holds a checkpoint whose optimizer state has another structure ({problem}): a change "
             "such as turning optim.clip_norm on or off cannot resume it. Use a new --workdir, or the original "
             f"optim settings (saved in {workdir / 'config.json'}).")
    for key in ("seed", "batch_size", "dataset"):
        _require(saved.get(key) == meta[key],
                 f"{workdir} holds a run with {key}={saved.get(key)!r} but this config has {key}={meta[key]!r}; "
                 "resuming needs the same data order. Use a new --workdir or the original value.")


def absolute_workdir(workdir: str | epath.Path) -> epath.Path:
    """``workdir`` as an absolute path (Orbax needs one); ``gs://`` and other URLs are kept as they are."""
    text = os.fspath(workdir)
    return epath.Path(text if "://" in text else os.path.abspath(text))


def plan_run(config: ml_collections.ConfigDict, workdir: str | epath.Path) -> Plan:
    """Check the config against the devices, data and workdir; raises :class:`ConfigError`."""
    workdir = absolute_workdir(workdir)
    _check_schedule(config)
    try:
        mesh = sharding.make_mesh(config.mesh.to_dict())
    except ValueError as error:
        raise ConfigError(f"config.mesh: {error}") from error
    _check_batch(config, mesh)
    info = _dataset(config)
    model_name, model_kwargs = _model_kwargs(config, info)
    seed = int(config.seed)
    try:
        abstract_model = nnx.eval_shape(lambda: build_model(model_name, rngs=nnx.Rngs(seed), **model_kwargs))
    except (TypeError, ValueError) as error:
        raise ConfigError(f"config.model: {error}") from error
    graphdef, abstract_params = nnx.split(abstract_model)
    loss = config.get("loss", "mse")
    _require(loss in tasks.MULTILABEL_LOSSES, f"config.loss={loss!r} is not one of {', '.join(tasks.MULTILABEL_LOSSES)}.")
    try:
        tx = optimizer.make_optimizer(config.optim, int(config.num_steps))
        schedule = optimizer.learning_rate_schedule(config.optim, int(config.num_steps))
    except (KeyError, ValueError) as error:
        raise ConfigError(f"config.optim: {error}") from error
    meta = {
        "param_shapes": checkpoint.param_shapes(abstract_params),
        "opt_state_shapes": checkpoint.param_shapes(jax.eval_shape(tx.init, abstract_params)),
        "seed": seed,
        "batch_size": int(config.batch_size),
        "dataset": info.config_name or info.name,
        "model": {"name": model_name, **{k: v for k, v in model_kwargs.items() if k != "dtype"}},
    }
    _check_workdir(workdir, meta)
    return Plan(
        config=config, workdir=workdir, mesh=mesh, info=info, model_name=model_name, model_kwargs=model_kwargs,
        graphdef=graphdef, abstract_params=abstract_params,
        param_shardings=sharding.state_shardings(abstract_params, mesh),
        batch_sharding=sharding.batch_sharding(mesh), tx=tx, schedule=schedule,
        objective=tasks.objective(info), loss_kwargs={"loss": loss} if info.task == "multilabel" else {},
        preprocess=_preprocess(config, info), meta=meta,
    )
