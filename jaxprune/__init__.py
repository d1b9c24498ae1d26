"""jaxprune: neural-network sparsity research in JAX.

Masks are pytrees shaped like the parameters; scores, distributions and exact
top-k selection build them; optax transforms train under them.

Example:
  >>> import jax, optax, jaxprune
  >>> params = {"w": jax.random.normal(jax.random.key(0), (784, 300)), "b": jax.numpy.zeros(300)}
  >>> mask = jaxprune.topk_mask(jaxprune.scores.magnitude(params), 0.9)
  >>> tx = jaxprune.masked(optax.sgd(0.1, momentum=0.9), mask)
  >>> params = jaxprune.apply_mask(params, mask)
  >>> round(float(jaxprune.sparsity(mask)), 3)
  0.9
"""

from jaxprune import (
    analysis,
    distributions,
    export,
    filters,
    init_pruning,
    lottery,
    schedules,
    scores,
    select,
    structured,
    tickets,
    transforms,
    typing,
)
from jaxprune.distributions import keep_count, layer_sparsities
from jaxprune.export import cost_report
from jaxprune.init_pruning import grasp_mask, magnitude_mask, random_mask, snip_mask, synflow_mask
from jaxprune.masks import (
    LeafSparsity,
    SparsityReport,
    apply_mask,
    check_mask,
    dense_mask,
    pack_mask,
    sparsity,
    sparsity_report,
    unpack_mask,
)
from jaxprune.select import nm_mask, random_like, topk_mask
from jaxprune.structured import (
    BnL1State,
    bn_l1,
    bn_scale_scores,
    filter_scores,
    slim,
    unit_mask,
    unit_scores,
)
from jaxprune.transforms import (
    DSTState,
    DSTTransformation,
    GradualState,
    MaskedState,
    STEState,
    gradual_magnitude,
    gradual_prune,
    mask_of,
    masked,
    rigl,
    set_training,
    static_sparse,
    straight_through,
)

__version__ = "0.1.0"

__all__ = [
    "BnL1State",
    "DSTState",
    "DSTTransformation",
    "GradualState",
    "LeafSparsity",
    "MaskedState",
    "STEState",
    "SparsityReport",
    "analysis",
    "apply_mask",
    "bn_l1",
    "bn_scale_scores",
    "check_mask",
    "cost_report",
    "dense_mask",
    "distributions",
    "export",
    "filter_scores",
    "filters",
    "gradual_magnitude",
    "gradual_prune",
    "grasp_mask",
    "init_pruning",
    "keep_count",
    "layer_sparsities",
    "lottery",
    "magnitude_mask",
    "mask_of",
    "masked",
    "nm_mask",
    "pack_mask",
    "random_like",
    "random_mask",
    "rigl",
    "schedules",
    "scores",
    "select",
    "set_training",
    "slim",
    "snip_mask",
    "sparsity",
    "sparsity_report",
    "static_sparse",
    "straight_through",
    "structured",
    "synflow_mask",
    "tickets",
    "topk_mask",
    "transforms",
    "typing",
    "unit_mask",
    "unit_scores",
    "unpack_mask",
]
