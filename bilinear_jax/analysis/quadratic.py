"""Exact recovery of a quadratic form from any function by automatic differentiation.

For ``f(x) = xᵀ B x + L x + c`` (one such form per output ``o``) the Hessian is
``∂²f_o/∂x² = B_o + B_oᵀ`` at *every* ``x``, so::

    sym(B) = ½ jax.hessian(f)(x),   L = jax.jacfwd(f)(0),   c = f(0).

This works for a bilinear layer, a layer with an embedding folded in, or any black-box function
that JAX can differentiate. Before returning, both entry points verify that the function is
quadratic: the Hessians at two random points must agree, and ``xᵀBx + Lx + c`` must reproduce
``f`` at random inputs. A SwiGLU or ReLU layer fails these checks and raises ``ValueError`` with
the measured residual, instead of returning a wrong tensor.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Literal, NamedTuple

import chex
import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from bilinear_jax.analysis.algebra import contract

__all__ = ["QuadraticForm", "hessian_tensor", "quadratic_form"]

HessianMethod = Literal["hessian", "jacfwd_jacrev"]


class QuadraticForm(NamedTuple):
    """``f(x)_o = xᵀ quadratic_o x + linear_o · x + constant_o``, with ``quadratic`` symmetric."""

    quadratic: Float[Array, "o d d"]
    linear: Float[Array, "o d"]
    constant: Float[Array, " o"]

    def __call__(self, x: Float[Array, "*batch d"]) -> Float[Array, "*batch o"]:
        return contract(self.quadratic, x) + x @ self.linear.T + self.constant


def _default_tolerance(dtype: jnp.dtype) -> float:
    return 1e-9 if jnp.finfo(dtype).bits >= 64 else 1e-4


@dataclasses.dataclass(frozen=True)
class _ModuleFunction:
    """``(state, x) ↦ module(x)`` for a module's graph: hashable, so compiled once per graph."""

    graphdef: nnx.GraphDef

    def __call__(self, state, x):
        return nnx.merge(self.graphdef, state)(x)


@dataclasses.dataclass(frozen=True)
class _PlainFunction:
    """``(_, x) ↦ fn(x)``: hashable by the function's identity."""

    fn: Callable

    def __call__(self, _, x):
        return self.fn(x)


def _as_pure_function(fn: Callable) -> tuple[Callable, object]:
    """``(pure_fn, state)`` with ``pure_fn(state, x) == fn(x)``; ``pure_fn`` is a static jit argument.

    An NNX module's weights travel as a jit argument rather than as constants baked into the
    compiled program, so a layer is compiled once however often (and with whatever weights)
    it is analysed.
    """
    if isinstance(fn, nnx.Module):
        graphdef, state = nnx.split(fn)
        return _ModuleFunction(graphdef), state
    return _PlainFunction(fn), None


def _hessian(fn: Callable, method: HessianMethod) -> Callable:
    if method == "hessian":
        return jax.hessian(fn)
    if method == "jacfwd_jacrev":
        return jax.jacfwd(jax.jacrev(fn))
    raise ValueError(f"method must be 'hessian' or 'jacfwd_jacrev', got {method!r}.")


def _relative_residual(actual: jax.Array, reference: jax.Array) -> jax.Array:
    scale = jnp.maximum(jnp.max(jnp.abs(reference)), jnp.finfo(reference.dtype).tiny)
    return jnp.max(jnp.abs(actual - reference)) / scale


def _differentiate(pure_fn, method, state, points, d_in, dtype):
    """The form at the origin and, given check points, the two residuals of the quadratic test."""
    flat = lambda x: jnp.reshape(pure_fn(state, x), (-1,)).astype(dtype)  # noqa: E731
    hessian = _hessian(flat, method)
    origin = jnp.zeros((d_in,), dtype)
    form = QuadraticForm(quadratic=0.5 * hessian(origin), linear=jax.jacfwd(flat)(origin), constant=flat(origin))
    if points is None:
        return form, None
    hessian_residual = _relative_residual(hessian(points[0]), hessian(points[-1]))
    reconstruction_residual = _relative_residual(form(points), jax.vmap(flat)(points))
    return form, (hessian_residual, reconstruction_residual)


_differentiate_jit = jax.jit(_differentiate, static_argnums=(0, 1, 4, 5))


def quadratic_form(
    fn: Callable[[Float[Array, " d"]], Array],
    d_in: int,
    *,
    method: HessianMethod = "hessian",
    dtype: jnp.dtype | None = None,
    check: bool = True,
    rtol: float | None = None,
    num_checks: int = 4,
    key: jax.Array | None = None,
) -> QuadraticForm:
    """Recover ``(sym(B), L, c)`` with ``fn(x) = xᵀ B x + L x + c`` exactly.

    Args:
      fn: maps one input of shape ``(d_in,)`` to outputs of any shape; outputs are flattened to
        ``d_out`` entries.
      d_in: the input dimension.
      method: ``"hessian"`` (``jax.hessian``, forward-over-reverse) or ``"jacfwd_jacrev"``.
      dtype: the dtype to differentiate in; defaults to float64 when x64 is enabled, else float32.
      check: verify that ``fn`` is quadratic (set False inside ``jax.jit``).
      rtol: relative tolerance of the checks; 1e-9 in float64 and 1e-4 in float32 by default.
      num_checks: how many random inputs the reconstruction is compared at.
      key: PRNG key for the check points.

    Returns:
      A :class:`QuadraticForm` with ``quadratic: (d_out, d_in, d_in)`` (symmetric),
      ``linear: (d_out, d_in)`` and ``constant: (d_out,)``.

    Raises:
      ValueError: if ``fn`` is not a quadratic form of its input, with the measured residual.
    """
    chex.assert_scalar_positive(d_in)
    dtype = jnp.dtype(dtype or jnp.result_type(float))
    _hessian(lambda x: x, method)  # validates ``method`` before any tracing
    pure_fn, state = _as_pure_function(fn)
    out = jax.eval_shape(lambda s, x: pure_fn(s, x), state, jax.ShapeDtypeStruct((d_in,), dtype))
    if out.size == 0:
        raise ValueError(f"fn must return a non-empty array for an input of shape ({d_in},); got shape {out.shape}.")
    points = _check_points(d_in, dtype, num_checks, key) if check else None
    form, residuals = _differentiate_jit(pure_fn, method, state, points, d_in, dtype)
    if check:
        _raise_unless_quadratic(*(float(r) for r in residuals), _default_tolerance(dtype) if rtol is None else rtol)
    return form


def hessian_tensor(
    fn: Callable[[Float[Array, " d"]], Array],
    d_in: int,
    **kwargs,
) -> Float[Array, "o d d"]:
    """``sym(B) = ½ ∂²fn/∂x²``, shape ``(d_out, d_in, d_in)``, checked to be exact.

    Accepts the keyword arguments of :func:`quadratic_form`. Linear and constant terms may be
    present; they do not enter the Hessian. Raises ``ValueError`` if ``fn`` is not quadratic.
    """
    return quadratic_form(fn, d_in, **kwargs).quadratic


def _check_points(d_in: int, dtype, num_checks: int, key: jax.Array | None) -> jax.Array:
    # Points of unit and larger scale: a piecewise-linear or saturating function shows its
    # curvature there even if it looks quadratic near the origin.
    key = jax.random.key(0) if key is None else key
    scales = jnp.geomspace(1.0, 10.0, max(num_checks, 2), dtype=dtype)[:, None]
    return scales * jax.random.normal(key, (max(num_checks, 2), d_in), dtype)


def _raise_unless_quadratic(hessian_residual: float, reconstruction_residual: float, rtol: float) -> None:
    if hessian_residual <= rtol and reconstruction_residual <= rtol:  # False for NaN, too
        return
    raise ValueError(
        "fn is not a quadratic form of its input: its Hessian differs between two random points "
        f"by a relative {hessian_residual:.3g}, and xᵀBx + Lx + c reproduces fn at random inputs to "
        f"a relative {reconstruction_residual:.3g} (tolerance {rtol:.1g}). Exact recovery needs a "
        "function that is quadratic in x, such as a bilinear layer; gated activations (SwiGLU, "
        "ReGLU, GEGLU) and ReLU/GELU MLPs are not."
    )
