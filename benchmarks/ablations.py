"""Section ``ablations``: each performance choice, measured before and after in the same run.

Every pair runs side by side (alternating rounds, medians; see :mod:`benchmarks.timing`):

* ``fused``: the MLP's fused ``(d, 2, h)`` up-projection (one matmul for ``W`` and ``V``)
  against two separate einsums, forward + backward of the layer; both as a 3-D einsum and as
  the one flat ``(d, 2h)`` matmul that the layer uses.
* ``donation``: the train step with the state donated (``donate_argnums=0``) against without;
  step time, and the compiled step's memory footprint from XLA's ``memory_analysis``
  (arguments + outputs + temporaries − aliased). ``device.memory_stats()`` peaks are added
  where the backend has them (not on CPU).
* ``host_sync``: ``float(loss)`` after every step against fetching the metrics once per window.
* ``scan``: layers run by ``nnx.scan`` (the model) against an unrolled Python loop over
  ``model.block(i)``; compile time of forward + backward at several depths, and run time.
* ``bf16``: bfloat16 against float32 compute (parameters stay float32), for the MLP layer and,
  with ``bf16_train_step``, for the whole train step (``compute_dtype="bfloat16"``). bf16 is for
  accelerators' matrix units; CPUs usually run it slower, which is reported as measured.
* ``prefetch``: the training input pipeline with ``prefetch=2`` against ``prefetch=0``, feeding
  the real train step: time per step including waiting for the batch.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from benchmarks import lm_setup
from benchmarks.timing import block, interleaved, median, ratio, timed_compile
from bilinear_jax.layers import MLP

__all__ = ["AblationSizes", "run_ablations"]


@dataclasses.dataclass(frozen=True)
class AblationSizes:
    """Sizes of the layer and the LM the ablations run on."""

    layer_tokens: int = 2048
    layer_d: int = 128
    layer_h: int = 512
    d_model: int = 64
    n_layers: int = 2
    seq_len: int = 64
    batch_size: int = 16
    scan_depths: tuple[int, ...] = (2, 8)
    bf16_train_step: bool = False  # also time the whole train step in bf16 (one more compile)
    window: int = 4
    repeats: int = 5
    num_devices: int = -1  # -1: every device, data parallel


def _row(name: str, before: str, after: str, before_s: float, after_s: float, unit: str = "ms",
         **extra: Any) -> dict[str, Any]:
    """``speedup = before / after``: above 1 means the change (``after``) helps."""
    scale = 1e3 if unit == "ms" else 1.0
    return {"ablation": name, "before": before, "after": after, f"before_{unit}": scale * before_s,
            f"after_{unit}": scale * after_s, "speedup": ratio(before_s, after_s), **extra}


def _pair(variants: dict[str, Callable[[], Any]], repeats: int) -> tuple[float, float]:
    times = interleaved(variants, repeats)
    first, second = variants
    return median(times[first]), median(times[second])


# -- Fused projection and bf16 on one layer -----------------------------------------------------

def _layer_inputs(sizes: AblationSizes, key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    n, d, h = sizes.layer_tokens, sizes.layer_d, sizes.layer_h
    k_x, k_up, k_down = jax.random.split(key, 3)
    return (jax.random.normal(k_x, (n, d)), jax.random.normal(k_up, (d, 2, h)) / d**0.5,
            jax.random.normal(k_down, (h, d)) / h**0.5)


def _bilinear_loss(hidden: jax.Array, down: jax.Array) -> jax.Array:
    return jnp.sum(jnp.einsum("nh,ho->no", hidden, down) ** 2)


def fused_rows(sizes: AblationSizes, key: jax.Array) -> list[dict[str, Any]]:
    """Forward + backward of a bilinear MLP: the up-projection fused or as two einsums.

    Two fused forms: the 3-D einsum ``'ni,ibh->nbh'`` (the layer's first version, ~3× slower
    backward on CPU) and the flat ``(d, 2h)`` matmul on the same kernel reshaped (a free
    reshape) that :class:`bilinear_jax.layers.MLP` uses now.
    """
    x, up, down = _layer_inputs(sizes, key)
    d, h = up.shape[0], up.shape[2]

    def einsum_3d(params, x):
        up, down = params
        pre = jnp.einsum("ni,ibh->nbh", x, up)
        return _bilinear_loss(pre[:, 0] * pre[:, 1], down)

    def flat_matmul(params, x):
        up, down = params
        pre = (x @ up.reshape(d, 2 * h)).reshape(x.shape[0], 2, h)
        return _bilinear_loss(pre[:, 0] * pre[:, 1], down)

    def separate(params, x):
        w, v, down = params
        return _bilinear_loss(jnp.einsum("ni,ih->nh", x, w) * jnp.einsum("ni,ih->nh", x, v), down)

    fns = {name: jax.jit(jax.value_and_grad(f)) for name, f in
           (("separate", separate), ("einsum_3d", einsum_3d), ("flat", flat_matmul))}
    params = {"separate": (up[:, 0], up[:, 1], down), "einsum_3d": (up, down), "flat": (up, down)}
    reference = fns["separate"](params["separate"], x)[0]
    differences = {name: float(jnp.abs(fns[name](params[name], x)[0] - reference) / jnp.abs(reference))
                   for name in ("einsum_3d", "flat")}
    times = interleaved({name: (lambda name=name: fns[name](params[name], x)) for name in fns}, sizes.repeats)
    size = f"n={x.shape[0]} d={d} h={h}"
    return [
        _row("fused W,V projection (fwd+bwd)", "two einsums", "fused 3-D einsum 'ni,ibh' (before)",
             median(times["separate"]), median(times["einsum_3d"]), size=size, rel_diff=differences["einsum_3d"],
             detail=size),
        _row("fused W,V projection (fwd+bwd)", "two einsums", "fused flat (d,2h) matmul (layers.MLP)",
             median(times["separate"]), median(times["flat"]), size=size, rel_diff=differences["flat"],
             detail=size),
    ]


def bf16_layer_row(sizes: AblationSizes, key: jax.Array) -> dict[str, Any]:
    """Forward + backward of :class:`~bilinear_jax.layers.MLP` in bfloat16 against float32 compute."""
    x, _, _ = _layer_inputs(sizes, key)
    d, h = sizes.layer_d, sizes.layer_h
    layers = {name: MLP(d, h, "bilinear", dtype=dtype, rngs=nnx.Rngs(0))
              for name, dtype in (("float32", None), ("bfloat16", jnp.bfloat16))}

    def make(layer: MLP) -> Callable[[], Any]:
        graphdef, state = nnx.split(layer)
        loss = lambda s, x: jnp.sum(nnx.merge(graphdef, s)(x).astype(jnp.float32) ** 2)  # noqa: E731
        fn = jax.jit(jax.value_and_grad(loss))
        return lambda: fn(state, x)

    before, after = _pair({name: make(layer) for name, layer in layers.items()}, sizes.repeats)
    return _row("bf16 compute, MLP layer (fwd+bwd)", "float32", "bfloat16", before, after,
                size=f"n={x.shape[0]} d={d} h={h}", note=_bf16_note(),
                detail=f"n={x.shape[0]} d={d} h={h}; {_bf16_note()}".rstrip("; "))


def _bf16_note() -> str:
    on_cpu = jax.devices()[0].platform == "cpu"
    return "bf16 targets accelerators' matrix units; CPU numbers are indicative only" if on_cpu else ""


# -- The train step: donation, host sync, bf16, prefetch -----------------------------------------

class _Stepper:
    """A compiled train step and the state it advances, for timing one step at a time."""

    def __init__(self, setup: lm_setup.TrainSetup, donate: bool):
        self.setup = setup
        self.state = setup.fresh_state()
        self.compile_s, self.compiled = lm_setup.cached_step(setup, self.state, donate=donate)
        self.step_index = 0

    def step(self, batch: dict | None = None) -> dict:
        batch = self.setup.batch(self.step_index) if batch is None else batch
        self.state, metrics = self.compiled(self.state, batch)
        self.step_index += 1
        return metrics

    def one_step(self) -> Any:
        self.step()
        return self.state


def _memory(compiled: Any) -> dict[str, int | None]:
    """XLA's static memory analysis of a compiled step, with the footprint
    arguments + outputs + temporaries − buffers aliased (reused) through donation."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend implements it
        m = None
    if m is None:
        return {"footprint_bytes": None, "alias_bytes": None, "temp_bytes": None}
    return {"footprint_bytes": int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
                                   - m.alias_size_in_bytes),
            "alias_bytes": int(m.alias_size_in_bytes), "temp_bytes": int(m.temp_size_in_bytes)}


def _device_peak_bytes() -> int | None:
    stats = jax.devices()[0].memory_stats()
    return None if not stats else stats.get("peak_bytes_in_use")


def donation_row(donated: _Stepper, plain: _Stepper, repeats: int) -> dict[str, Any]:
    """Donated against non-donated state: step time and memory footprint."""
    before, after = _pair({"no donation": plain.one_step, "donated": donated.one_step}, repeats)
    memory = {f"{when}_{name}": value for when, stepper in (("before", plain), ("after", donated))
              for name, value in _memory(stepper.compiled).items()}
    state_bytes = sum(x.nbytes for x in jax.tree.leaves(donated.state))
    mb = lambda b: "n/a" if b is None else f"{b / 2**20:.2f} MB"  # noqa: E731
    detail = (f"footprint {mb(memory['before_footprint_bytes'])} -> {mb(memory['after_footprint_bytes'])} "
              f"(state {mb(state_bytes)}); device peak {mb(_device_peak_bytes())}")
    return _row("donated train state", "no donation", "donate_argnums=0", before, after, detail=detail,
                state_bytes=int(state_bytes), **memory, device_peak_bytes_process=_device_peak_bytes(),
                memory_note="footprint = arguments + outputs + temporaries - aliased (XLA memory_analysis); "
                            "device_peak_bytes_process: memory_stats() peak over the whole process, n/a on CPU")


def host_sync_row(stepper: _Stepper, window: int, repeats: int) -> dict[str, Any]:
    """``float(loss)`` every step against one ``device_get`` of the window's metrics."""

    def sync_every_step() -> Any:
        for _ in range(window):
            float(stepper.step()["train/loss"])
        return stepper.state

    def sync_per_window() -> Any:
        pending = [stepper.step() for _ in range(window)]
        jax.device_get(pending)
        return stepper.state

    before, after = _pair({"every step": sync_every_step, "per window": sync_per_window}, repeats)
    return _row("no host sync in the hot loop", "float(loss) each step", f"fetch every {window} steps",
                before / window, after / window)


def bf16_row(f32: _Stepper, bf16: _Stepper, repeats: int) -> dict[str, Any]:
    """bfloat16 against float32 compute, same model and batches."""
    before, after = _pair({"float32": f32.one_step, "bfloat16": bf16.one_step}, repeats)
    return _row("bf16 compute, train step", "float32", "bfloat16", before, after,
                before_compile_s=f32.compile_s, after_compile_s=bf16.compile_s, note=_bf16_note(),
                detail=f"compile {f32.compile_s:.1f} -> {bf16.compile_s:.1f} s; {_bf16_note()}".rstrip("; "))


def prefetch_row(stepper: _Stepper, window: int, repeats: int) -> dict[str, Any]:
    """Input pipeline feeding the train step, ``prefetch=0`` against ``prefetch=2``."""
    iterators = {0: stepper.setup.iterator(prefetch=0), 2: stepper.setup.iterator(prefetch=2)}
    waits: dict[int, list[float]] = {0: [], 2: []}

    def run(prefetch: int) -> Callable[[], Any]:
        def steps() -> Any:
            for _ in range(window):
                start = time.perf_counter()
                batch = stepper.setup.to_global(next(iterators[prefetch]))
                waits[prefetch].append(time.perf_counter() - start)
                stepper.step(batch)
            return stepper.state
        return steps

    try:
        before, after = _pair({"prefetch=0": run(0), "prefetch=2": run(2)}, repeats)
    finally:
        for iterator in iterators.values():
            iterator.close()
    wait_before, wait_after = 1e3 * median(waits[0]), 1e3 * median(waits[2])
    return _row("prefetch input", "prefetch=0", "prefetch=2", before / window, after / window,
                before_wait_ms=wait_before, after_wait_ms=wait_after,
                detail=f"wait for batch {wait_before:.3f} -> {wait_after:.3f} ms/step")


# -- Scanned against unrolled layers ---------------------------------------------------------------

def _lm_loss(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Next-token cross-entropy: ``logits`` of ``tokens[:, :-1]`` against ``targets = tokens[:, 1:]``."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()


def _scanned_loss(graphdef: nnx.GraphDef) -> Callable:
    def loss(state, tokens):
        return _lm_loss(nnx.merge(graphdef, state)(tokens[:, :-1]), tokens[:, 1:])
    return loss


def _unrolled_loss(graphdef: nnx.GraphDef) -> Callable:
    def loss(state, tokens):
        model = nnx.merge(graphdef, state)
        x = model.embed_tokens(tokens[:, :-1])
        for i in range(model.n_layers):
            x = model.block(i)(x)
        return _lm_loss(model.unembed_resid(x), tokens[:, 1:])
    return loss


def scan_rows(data_dir: Path, sizes: AblationSizes) -> list[dict[str, Any]]:
    """Compile and run time of forward + backward, scanned against unrolled, per depth."""
    rows = []
    for depth in sizes.scan_depths:
        plan = lm_setup.lm_plan(data_dir, d_model=sizes.d_model, n_layers=depth, seq_len=sizes.seq_len,
                                batch_size=sizes.batch_size, num_devices=sizes.num_devices)
        graphdef, state = nnx.split(plan.build_model())
        tokens = lm_setup.make_setup(plan, num_batches=1).batch(0)["tokens"]
        grad = {name: lambda f=f: jax.jit(jax.value_and_grad(f(graphdef)))
                for name, f in (("unrolled", _unrolled_loss), ("scanned", _scanned_loss))}
        compile_times: dict[str, float] = {}
        compiled: dict[str, Any] = {}
        for name in ("unrolled", "scanned"):
            compile_times[name], compiled[name] = timed_compile(grad[name], state, tokens)
        difference = float(jnp.abs(compiled["unrolled"](state, tokens)[0] - compiled["scanned"](state, tokens)[0]))
        run_before, run_after = _pair({"unrolled": lambda: compiled["unrolled"](state, tokens),
                                       "scanned": lambda: compiled["scanned"](state, tokens)}, sizes.repeats)
        rows.append(_row(f"scanned layers, compile (L={depth})", "unrolled loop", "nnx.scan",
                         compile_times["unrolled"], compile_times["scanned"], unit="s", loss_abs_diff=difference,
                         detail=f"d_model={sizes.d_model}; loss diff {difference:.1e}"))
        rows.append(_row(f"scanned layers, fwd+bwd (L={depth})", "unrolled loop", "nnx.scan", run_before, run_after))
    return rows


def run_ablations(data_dir: Path, sizes: AblationSizes, seed: int = 0) -> dict[str, Any]:
    """All ablations on one small LM (and one MLP layer)."""
    lm_sizes = dict(d_model=sizes.d_model, n_layers=sizes.n_layers, seq_len=sizes.seq_len,
                    batch_size=sizes.batch_size, num_devices=sizes.num_devices)
    setup = lm_setup.shared_setup(data_dir, **lm_sizes)
    donated, plain = _Stepper(setup, donate=True), _Stepper(setup, donate=False)
    key_fused, key_bf16 = jax.random.split(jax.random.key(seed))
    rows = [
        *fused_rows(sizes, key_fused),
        donation_row(donated, plain, sizes.repeats),
        host_sync_row(donated, sizes.window, sizes.repeats),
        bf16_layer_row(sizes, key_bf16),
    ]
    if sizes.bf16_train_step:
        bf16_setup = lm_setup.shared_setup(data_dir, compute_dtype="bfloat16", **lm_sizes)
        rows.append(bf16_row(donated, _Stepper(bf16_setup, donate=True), sizes.repeats))
    rows += [prefetch_row(donated, sizes.window, sizes.repeats), *scan_rows(data_dir, sizes)]
    block(donated.state)
    return {
        "sizes": dataclasses.asdict(sizes),
        "note": "speedup = before / after (medians of interleaved repeats); above 1 means the change helps.",
        "rows": rows,
    }


TABLE_COLUMNS = ("ablation", "before", "after", "before_ms", "after_ms", "before_s", "after_s", "speedup", "detail")
