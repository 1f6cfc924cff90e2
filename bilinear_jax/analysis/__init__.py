"""Reading trained bilinear layers: the algebra of the tensor ``B`` and its exact recovery.

``from bilinear_jax.analysis import hessian_tensor, quadratic_form`` recovers ``sym(B)`` (and the
linear and constant terms) of any quadratic function by ``jax.hessian``; the helpers in
:mod:`bilinear_jax.analysis.algebra` build, contract and symmetrize tensors from the factors.
"""

from bilinear_jax.analysis.algebra import (
    augment_factors,
    augment_input,
    bilinear_tensor,
    contract,
    fold_quadratic,
    interaction_matrix,
    symmetrize,
)
from bilinear_jax.analysis.quadratic import QuadraticForm, hessian_tensor, quadratic_form

__all__ = [
    "QuadraticForm",
    "augment_factors",
    "augment_input",
    "bilinear_tensor",
    "contract",
    "fold_quadratic",
    "hessian_tensor",
    "interaction_matrix",
    "quadratic_form",
    "symmetrize",
]
