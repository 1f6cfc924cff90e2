"""Reading trained bilinear layers: the algebra of the tensor ``B``, its exact recovery, and analysis.

``load(workdir)`` restores a run; ``interaction_matrices`` / ``class_interactions`` give
``Q_u = sym(Wᵀ diag(Pᵀu) V)`` from the factors; ``eigh``, ``top_eigenpairs(_iterative)``,
``contributions`` and ``explained_fraction`` read their spectra; ``truncation_curve`` measures
low-rank truncation; ``hosvd``, ``cp_decomposition`` and ``feature_interactions`` decompose ``B``
without forming it; ``path_expansion`` splits a bilinear transformer's logits exactly into named
paths (direct, heads, MLP pairs of paths); ``check_fits`` refuses what would not fit in memory.

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
from bilinear_jax.analysis.budget import array_bytes, available_bytes, check_fits, format_bytes
from bilinear_jax.analysis.decompositions import CP, HOSVD, cp_decomposition, hosvd, output_gram
from bilinear_jax.analysis.features import FeatureInteractions, feature_interactions, top_pairs
from bilinear_jax.analysis.interactions import (
    BilinearFactors,
    class_directions,
    class_interactions,
    classifier_factors,
    dictionary_directions,
    embedding_matrix,
    factors_of,
    fold_out_bias,
    hidden_weights,
    interaction_matrices,
    interaction_matvec,
    iter_interaction_matrices,
    output_interactions,
    residual_directions,
    to_input_space,
    unembedding_directions,
)
from bilinear_jax.analysis.loading import Loaded, load, load_split_arrays
from bilinear_jax.analysis.paths import PathExpansion, TermNotFoundError, normalize_term_name, path_expansion, term_kind
from bilinear_jax.analysis.report import analyze_run
from bilinear_jax.analysis.quadratic import QuadraticForm, hessian_tensor, quadratic_form
from bilinear_jax.analysis.spectra import (
    Spectrum,
    TopEigenpairs,
    contributions,
    eigh,
    explained_fraction,
    interaction_spectra,
    project_to_input,
    top_eigenpairs,
    top_eigenpairs_iterative,
)
from bilinear_jax.analysis.truncation import (
    TruncationCurve,
    classifier_truncation_curve,
    run_truncation_curve,
    truncate,
    truncated_outputs,
    truncation_curve,
)

__all__ = [
    "PathExpansion",
    "TermNotFoundError",
    "normalize_term_name",
    "path_expansion",
    "analyze_run",
    "term_kind",
    # algebra and exact recovery
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
    # loading
    "Loaded",
    "load",
    "load_split_arrays",
    # memory budget
    "array_bytes",
    "available_bytes",
    "check_fits",
    "format_bytes",
    # interaction matrices and directions
    "BilinearFactors",
    "class_directions",
    "class_interactions",
    "classifier_factors",
    "dictionary_directions",
    "embedding_matrix",
    "factors_of",
    "fold_out_bias",
    "hidden_weights",
    "interaction_matrices",
    "interaction_matvec",
    "iter_interaction_matrices",
    "output_interactions",
    "residual_directions",
    "to_input_space",
    "unembedding_directions",
    # spectra
    "Spectrum",
    "TopEigenpairs",
    "contributions",
    "eigh",
    "explained_fraction",
    "interaction_spectra",
    "project_to_input",
    "top_eigenpairs",
    "top_eigenpairs_iterative",
    # truncation
    "TruncationCurve",
    "classifier_truncation_curve",
    "run_truncation_curve",
    "truncate",
    "truncated_outputs",
    "truncation_curve",
    # decompositions and feature interactions
    "CP",
    "HOSVD",
    "FeatureInteractions",
    "cp_decomposition",
    "feature_interactions",
    "hosvd",
    "output_gram",
    "top_pairs",
]
