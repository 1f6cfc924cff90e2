"""AdamW with warmup then cosine or linear decay, and global-norm clipping.

``lr(t) = peak · t / warmup`` for ``t < warmup``, then decays to ``peak · final_fraction`` at
``num_steps`` along a cosine or a straight line (or stays at ``peak`` for ``constant``). Weight
decay applies to matrices only (``ndim ≥ 2``), not to biases and norm scales. Gradient
accumulation happens in the train step, over micro-batches of one global batch.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import optax

SCHEDULES = ("cosine", "linear", "constant")


def learning_rate_schedule(optim: Mapping[str, Any], num_steps: int) -> optax.Schedule:
    peak, warmup = float(optim["learning_rate"]), int(optim["warmup_steps"])
    final = peak * float(optim.get("final_lr_fraction", 0.0))
    decay_steps = max(num_steps - warmup, 1)
    kind = optim.get("schedule", "cosine")
    if kind == "cosine":
        decay = optax.cosine_decay_schedule(peak, decay_steps, alpha=final / peak if peak else 0.0)
    elif kind == "linear":
        decay = optax.linear_schedule(peak, final, decay_steps)
    elif kind == "constant":
        decay = optax.constant_schedule(peak)
    else:
        raise ValueError(f"Unknown optim.schedule {kind!r}; choose one of {', '.join(SCHEDULES)}.")
    if warmup == 0:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), decay], [warmup])


def make_optimizer(optim: Mapping[str, Any], num_steps: int) -> optax.GradientTransformation:
    """``clip_by_global_norm`` then AdamW on the schedule above."""
    schedule = learning_rate_schedule(optim, num_steps)
    adamw = optax.adamw(
        schedule,
        b1=float(optim.get("b1", 0.9)),
        b2=float(optim.get("b2", 0.999)),
        eps=float(optim.get("eps", 1e-8)),
        weight_decay=float(optim.get("weight_decay", 0.0)),
        mask=lambda params: jax.tree.map(lambda p: p.ndim >= 2, params),
    )
    clip = float(optim.get("clip_norm", 0.0))
    return optax.chain(optax.clip_by_global_norm(clip), adamw) if clip > 0 else adamw
