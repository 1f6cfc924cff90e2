"""Models: a bilinear image classifier, a transformer with bilinear MLPs, and a toy model.

``build_model(name, rngs=..., **kwargs)`` builds one by name from :data:`MODELS`.
"""

from __future__ import annotations

import inspect
from typing import Any

from flax import nnx

from bilinear_jax.models.attention import CausalSelfAttention, apply_rope
from bilinear_jax.models.classifier import BilinearClassifier
from bilinear_jax.models.common import Linear
from bilinear_jax.models.toy import ToyModel
from bilinear_jax.models.transformer import Block, Transformer

__all__ = [
    "MODELS",
    "BilinearClassifier",
    "Block",
    "CausalSelfAttention",
    "Linear",
    "ToyModel",
    "Transformer",
    "apply_rope",
    "build_model",
    "model_arguments",
]

MODELS: dict[str, type[nnx.Module]] = {
    "classifier": BilinearClassifier,
    "transformer": Transformer,
    "toy": ToyModel,
}


def model_arguments(name: str) -> tuple[str, ...]:
    """The constructor arguments of model ``name`` (``rngs`` excluded)."""
    if name not in MODELS:
        raise ValueError(f"Unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}.")
    params = inspect.signature(MODELS[name].__init__).parameters
    return tuple(p for p in params if p not in ("self", "rngs"))


def build_model(name: str, *, rngs: nnx.Rngs, **kwargs: Any) -> nnx.Module:
    """``MODELS[name](**kwargs, rngs=rngs)``, checking the name and the keywords first."""
    allowed = model_arguments(name)
    for key in kwargs:
        if key not in allowed:
            raise ValueError(f"Unknown argument {key!r} for model {name!r}; valid arguments: {', '.join(allowed)}.")
    cls = MODELS[name]
    required = [
        p.name for p in inspect.signature(cls.__init__).parameters.values()
        if p.name not in ("self", "rngs") and p.default is inspect.Parameter.empty and p.name not in kwargs
    ]
    if required:
        raise ValueError(f"Model {name!r} needs argument(s) {', '.join(required)}.")
    return cls(**kwargs, rngs=rngs)
