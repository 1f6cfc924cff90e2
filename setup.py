"""bilinear-jax: bilinear layers for mechanistic interpretability, in JAX/Flax NNX."""

from pathlib import Path

from setuptools import find_packages, setup

README = Path(__file__).with_name("README.md")

setup(
    name="bilinear-jax",
    version="0.1.0",
    description="Bilinear layers y = P((Wx) ⊙ (Vx)) as exact tensors: train in JAX, read the weights.",
    long_description=README.read_text(encoding="utf-8") if README.exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["bilinear_jax*", "experiments*", "launch*", "benchmarks*"]),
    install_requires=[
        "jax>=0.6.0",
        "flax>=0.12.0",
        "optax>=0.2.4",
        "orbax-checkpoint>=0.11.0",
        "tensorflow-datasets>=4.9.9",
        "importlib_resources>=6.0",  # TFDS's public dataset builders import it
        "array_record>=0.7.0",
        "grain>=0.2.12",
        "chex>=0.1.90",
        "jaxtyping>=0.2.36",
        "ml_collections>=1.0.0",
        "absl-py>=2.0",
        "etils[epath]>=1.7",
        "numpy>=1.26",
        "scikit-learn>=1.3",  # ships the offline `digits` data
        "sentencepiece>=0.2.0",
        "tensorboardX>=2.6",
        "tqdm>=4.66",
        "matplotlib>=3.8",
        "treescope>=0.1.9",
    ],
    extras_require={
        "test": ["pytest>=8.0", "pytest-xdist>=3.5", "hypothesis>=6.100", "nbclient>=0.10", "nbformat>=5.10", "ipykernel>=6.29"],
        "tpu": ["jax[tpu]>=0.6.0"],
        "cuda": ["jax[cuda13]>=0.6.0"],
        "notebook": ["jupyter>=1.0", "nbclient>=0.10", "nbformat>=5.10", "ipykernel>=6.29"],
    },
)
