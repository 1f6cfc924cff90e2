"""The training loop: one ``jax.jit`` train step with explicit shardings, run from top to bottom.

    plan     = plan_run(config, workdir)          # every check, before anything compiles
    state    = restore or initialize              # sharded by logical axis rules
    step_fn  = jit(train_step, in/out shardings, donated state)
    for step in range(start, num_steps):
        state, metrics = step_fn(state, next_global_batch())
        log / evaluate / checkpoint on their schedules; stop cleanly on SIGTERM

The batch at step ``k`` and the input noise are pure functions of ``(seed, k)``, so a run
resumed from a checkpoint continues bitwise identically on CPU. Metrics stay on the device
until a log step: there is no host sync in the hot loop.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.experimental import multihost_utils

from bilinear_jax import data
from bilinear_jax.training import checkpoint as checkpoint_lib
from bilinear_jax.training import metrics as metrics_lib
from bilinear_jax.training import sharding
from bilinear_jax.training.plan import Plan, plan_run
from bilinear_jax.training.tasks import Sums

log = logging.getLogger(__name__)

TrainState = dict[str, Any]  # {"params": nnx.State, "opt_state": optax state, "step": int32}


class TrainingDiverged(RuntimeError):
    """The loss or the gradient norm became NaN or Inf."""


# -- The step functions -----------------------------------------------------------------------

def make_train_step(plan: Plan) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
    """``(state, batch) -> (state, metrics)``: gradients summed over micro-batches, one update."""
    graphdef, info, objective, loss_kwargs = plan.graphdef, plan.info, plan.objective, plan.loss_kwargs
    accum = int(plan.config.get("grad_accum_steps", 1))
    base_key = jax.random.key(int(plan.config.seed))

    def sums_and_grads(params, batch, noise_key):
        def loss_sum(p):
            sums = objective(nnx.merge(graphdef, p), batch, info, noise_key=noise_key, **loss_kwargs)
            return sums.loss, sums

        (_, sums), grads = jax.value_and_grad(loss_sum, has_aux=True)(params)
        return sums, grads

    def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        step, params = state["step"], state["params"]
        noise_key = jax.random.fold_in(base_key, step)
        if accum == 1:
            sums, grads = sums_and_grads(params, batch, noise_key)
        else:
            # Micro-batch j holds rows j, j+accum, ...: each device keeps its own rows.
            micro = jax.tree.map(lambda x: x.reshape(x.shape[0] // accum, accum, *x.shape[1:]).swapaxes(0, 1), batch)

            def accumulate(carry, inputs):
                index, micro_batch = inputs
                result = sums_and_grads(params, micro_batch, jax.random.fold_in(noise_key, index))
                return jax.tree.map(jnp.add, carry, result), None

            zeros = (Sums(*(jnp.zeros((), jnp.float32),) * 3), jax.tree.map(jnp.zeros_like, params))
            (sums, grads), _ = jax.lax.scan(accumulate, zeros, (jnp.arange(accum), micro))
        grads = jax.tree.map(lambda g: g / sums.count, grads)
        updates, opt_state = plan.tx.update(grads, state["opt_state"], params)
        new_params = optax.apply_updates(params, updates)

        loss, grad_norm = sums.loss / sums.count, optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        keep_if_finite = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)  # noqa: E731
        new_state = {
            "params": keep_if_finite(new_params, params),
            "opt_state": keep_if_finite(opt_state, state["opt_state"]),
            "step": step + 1,
        }
        metrics = {
            "train/loss": loss,
            "train/accuracy": sums.correct / sums.count,
            "train/grad_norm": grad_norm,
            "train/learning_rate": plan.schedule(step),
            "finite": finite,
        }
        return new_state, metrics

    return train_step


def make_eval_step(plan: Plan) -> Callable[[nnx.State, dict], Sums]:
    def eval_step(params: nnx.State, batch: dict) -> Sums:
        return plan.objective(nnx.merge(plan.graphdef, params), batch, plan.info, **plan.loss_kwargs)

    return eval_step


# -- State: initialize, restore, shard -----------------------------------------------------

def state_shardings(plan: Plan) -> TrainState:
    abstract_opt_state = jax.eval_shape(plan.tx.init, plan.abstract_params)
    replicated = sharding.replicated(plan.mesh)
    opt_shardings = optax.tree_map_params(
        plan.tx, lambda _, s: s, abstract_opt_state, plan.param_shardings,
        transform_non_params=lambda _: replicated,
    )
    return {"params": plan.param_shardings, "opt_state": opt_shardings, "step": replicated}


def initialize_state(plan: Plan, shardings: TrainState) -> TrainState:
    """Parameters created directly in their shards: no full copy on any one device."""

    def init() -> TrainState:
        params = nnx.state(plan.build_model())
        return {"params": params, "opt_state": plan.tx.init(params), "step": jnp.zeros((), jnp.int32)}

    return jax.jit(init, out_shardings=shardings)()


def abstract_state(shardings: TrainState, plan: Plan) -> TrainState:
    shapes = jax.eval_shape(lambda: {
        "params": plan.abstract_params,
        "opt_state": plan.tx.init(plan.abstract_params),
        "step": jnp.zeros((), jnp.int32),
    })
    return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings)


# -- Input --------------------------------------------------------------------------------

def batch_keys(plan: Plan) -> tuple[str, ...]:
    return tuple(dict.fromkeys((plan.info.input_key, plan.info.target_key)))


def to_global(local_batch: dict[str, np.ndarray], keys: tuple[str, ...], batch_sharding) -> dict[str, jax.Array]:
    """Assemble each process's rows into one global array sharded over ``data × fsdp``."""
    rows = len(local_batch[keys[0]]) * jax.process_count()
    return {k: jax.make_array_from_process_local_data(batch_sharding, np.asarray(local_batch[k]),
                                                      (rows,) + np.shape(local_batch[k])[1:]) for k in keys}


def evaluate(plan: Plan, eval_step, params: nnx.State, source) -> dict[str, float]:
    """Loss and accuracy over every example of ``source`` (the test split), padding masked out."""
    config = plan.config
    keys = batch_keys(plan) + ("mask",)
    total = None
    for local in data.eval_batches(source, int(config.get("eval_batch_size", 0) or config.batch_size),
                                   jax.process_index(), jax.process_count(), preprocess=plan.preprocess):
        sums = eval_step(params, to_global(local, keys, plan.batch_sharding))
        total = sums if total is None else total + sums
    loss, correct, count = (float(x) for x in jax.device_get(total))
    return {"eval/loss": loss / count, "eval/accuracy": correct / count}


# -- Preemption -------------------------------------------------------------------------------

class StopRequest:
    """Set by SIGTERM (a TPU preemption); the loop saves a checkpoint and returns."""

    def __init__(self):
        self.requested = False
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not in the main thread (e.g. some notebook runners)
            self._previous = None

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def agreed(self) -> bool:
        """True when any process was asked to stop (a collective: call it at the same steps everywhere)."""
        if jax.process_count() == 1:
            return self.requested
        return bool(np.any(multihost_utils.process_allgather(np.asarray(self.requested))))

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


# -- The loop ---------------------------------------------------------------------------------

def _is_due(step: int, every: int, last: int) -> bool:
    return step % every == 0 or step == last


def train(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Train (or resume) the run in ``workdir``; returns the last logged metrics."""
    plan = plan_run(config, workdir)
    num_steps, is_main = int(config.num_steps), jax.process_index() == 0
    if is_main:
        plan.workdir.mkdir(parents=True, exist_ok=True)
        (plan.workdir / "config.json").write_text(config.to_json_best_effort(indent=2))

    # State: the newest readable checkpoint, else fresh parameters.
    shardings = state_shardings(plan)
    checkpoints = checkpoint_lib.Checkpointer(plan.checkpoint_dir, max_to_keep=int(config.get("keep_checkpoints", 3)))
    restored = checkpoints.restore_latest(abstract_state(shardings, plan))
    if restored is None:
        state, data_state, start_step = initialize_state(plan, shardings), None, 0
    else:
        state, data_state, start_step = restored.state, restored.data_state, restored.step
        log.info("Resumed from step %d in %s", start_step, plan.checkpoint_dir)
    eval_fn = jax.jit(make_eval_step(plan), in_shardings=(plan.param_shardings, plan.batch_sharding),
                      out_shardings=sharding.replicated(plan.mesh))
    final_path = plan.workdir / "final_metrics.json"
    if start_step >= num_steps:
        checkpoints.close()
        log.info("The run in %s is already complete (step %d); nothing to train.", plan.workdir, start_step)
        if final_path.exists():
            return json.loads(final_path.read_text())
        # It ended between its last checkpoint and its final write: evaluate what it saved.
        final = {**evaluate(plan, eval_fn, state["params"], plan.load_split("test")), "step": start_step}
        if is_main:
            final_path.write_text(json.dumps(final, indent=2))
        return final

    # Input: this process's rows of each global batch, from the restored position.
    train_source, eval_source = plan.load_split("train"), plan.load_split("test")
    batches = data.TrainIterator(train_source, int(config.batch_size), seed=int(config.seed),
                                 process_index=jax.process_index(), process_count=jax.process_count(),
                                 preprocess=plan.preprocess, prefetch=int(config.data.get("prefetch", 2)))
    if data_state is not None:
        batches.set_state(data_state)
    keys = batch_keys(plan)

    # Compile ahead of time, so compile time and FLOPs are known before the first step.
    step_fn = jax.jit(make_train_step(plan), in_shardings=(shardings, plan.batch_sharding),
                      out_shardings=(shardings, sharding.replicated(plan.mesh)), donate_argnums=0)
    first = to_global(next(batches), keys, plan.batch_sharding)
    compile_start = time.perf_counter()
    compiled_step = step_fn.lower(state, first).compile()
    compile_seconds = time.perf_counter() - compile_start
    flops_per_step = metrics_lib.train_flops_per_device(plan, compiled_step)
    peak_flops, peak_source = metrics_lib.peak_flops_per_device() if flops_per_step else (None, "")
    log.info("Compiled the train step in %.1f s (%s FLOPs/step/device; peak: %s)",
             compile_seconds, flops_per_step, peak_source)

    logger = metrics_lib.MetricsLogger(plan.workdir, num_steps=num_steps, start_step=start_step,
                                       enabled=is_main, progress=bool(config.get("progress", True)))
    stop = StopRequest()
    tokens_per_example = (plan.info.seq_len or 1) if plan.info.task == "sequence" else 1
    pending: list[tuple[int, dict]] = []
    last_metrics: dict[str, float] = {"compile_seconds": compile_seconds}
    window_start, window_steps = time.perf_counter(), 0

    try:
        batch, step = first, start_step
        while step < num_steps:
            state, step_metrics = compiled_step(state, batch)
            step += 1
            pending.append((step, step_metrics))
            window_steps += 1

            log_due, eval_due = _is_due(step, config.log_every, num_steps), _is_due(step, config.eval_every, num_steps)
            save_due = _is_due(step, config.checkpoint_every, num_steps)
            stopping = (log_due or save_due) and stop.agreed()
            if log_due or eval_due or save_due or stopping:
                # The only host sync: fetch this window's metrics and check they are finite.
                fetched = jax.device_get(pending)
                pending.clear()
                for s, m in fetched:
                    if not bool(m["finite"]):
                        bad = [name for name in ("train/loss", "train/grad_norm") if not np.isfinite(m[name])]
                        raise TrainingDiverged(
                            f"{' and '.join(bad) or 'train/loss'} became {m[bad[0] if bad else 'train/loss']} at "
                            f"step {s}; training stopped. The last good checkpoint is kept in {plan.checkpoint_dir}. "
                            "Lower optim.learning_rate or set optim.clip_norm.")
                seconds = time.perf_counter() - window_start
                examples_per_second = window_steps * int(config.batch_size) / seconds
                last_metrics = {name: float(np.mean([m[name] for _, m in fetched]))
                                for name in fetched[-1][1] if name != "finite"}
                last_metrics["perf/examples_per_second"] = examples_per_second
                if tokens_per_example > 1:
                    last_metrics["perf/tokens_per_second"] = examples_per_second * tokens_per_example
                if flops_per_step:
                    last_metrics["perf/mfu"] = flops_per_step * window_steps / seconds / peak_flops
                    last_metrics["perf/flops_per_step_per_device"] = flops_per_step
                if eval_due:
                    last_metrics.update(evaluate(plan, eval_fn, state["params"], eval_source))
                logger.write(step, last_metrics)
                window_start, window_steps = time.perf_counter(), 0
            if save_due or stopping:
                checkpoints.save(step, state, batches.get_state(), plan.meta)
            if stopping:
                log.warning("Stopping at step %d on SIGTERM; checkpoint saved. Rerun the same command to resume.", step)
                break
            if step < num_steps:
                batch = to_global(next(batches), keys, plan.batch_sharding)
    finally:
        checkpoints.close()
        batches.close()
        logger.close()
        stop.restore()
    last_metrics["step"] = step
    if is_main:
        final_path.write_text(json.dumps(last_metrics, indent=2))
    return last_metrics
