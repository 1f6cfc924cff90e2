"""bilinear-jax: bilinear layers for mechanistic interpretability, in JAX/Flax NNX."""

__version__ = "0.1.0"
