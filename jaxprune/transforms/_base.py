"""What every jaxprune transform shares: masking updates, finding the mask, per-parameter state.

Pruned weights are exactly zero because the final update is
``where(mask, u, -params)`` (``x + (-x)`` is exactly ``+0.0``). Gradients are
masked before the inner optimizer so its statistics only see the subnetwork.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxprune import _checks, masks, placement
from jaxprune._tree import is_stand_in, path_str

# The name of the field that holds the mask in every jaxprune state (``state.mask``
# reads it): unique, so that mask_of and replace_mask find it by name with
# optax.tree_utils, as a NamedTuple field or as a mapping key (nnx.state, a state
# restored without a target), where a field called "mask" could be anything's.
MASK_FIELD = "jaxprune_mask"
MASK_PROPERTY = property(
    lambda state: getattr(state, MASK_FIELD),
    doc="The mask: the ``jaxprune_mask`` field (a unique name, which ``mask_of`` finds).",
)


def mask_leaves_like(tree: Any, mask: Any) -> tuple[list[Any], list[Any], Any]:
    """The leaves of ``tree`` and ``mask`` side by side, and ``tree``'s treedef.

    Mask and tree are paired leaf by leaf in flattening order (NNX Variable
    wrappers, which ``nnx.Optimizer`` adds or strips, do not change it).
    """
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    m_leaves = jax.tree_util.tree_leaves(mask)
    if len(m_leaves) != len(leaves):
        raise ValueError(
            f"The mask has {len(m_leaves)} leaves but the updates have {len(leaves)}: "
            "build the mask from the parameters this optimizer trains."
        )
    return leaves, m_leaves, treedef


def check_shapes(
    tree: Any, mask: Any, what: str = "the updates (gradients)"
) -> tuple[list[Any], list[Any], Any]:
    """:func:`mask_leaves_like`, and a ValueError naming the first leaf of ``tree``
    (``what``: updates, gradients, params) shaped unlike its mask leaf (stand-ins match
    any shape)."""
    leaves, m_leaves, treedef = mask_leaves_like(tree, mask)
    for i, (x, m) in enumerate(zip(leaves, m_leaves)):
        if not is_stand_in(m) and jnp.shape(x) != jnp.shape(m):
            path = path_str(jax.tree_util.tree_flatten_with_path(tree)[0][i][0])
            raise ValueError(
                f"Leaf {path!r} has shape {jnp.shape(x)} in {what}, but the mask there has "
                f"shape {jnp.shape(m)}: pass {what} of the parameters the optimizer was "
                "initialised with."
            )
    return leaves, m_leaves, treedef


def check_update_args(updates: Any, mask: Any, params: Any | None) -> None:
    """The checks at the top of every ``update``: updates and (when given) params shaped
    like the mask, with errors naming the leaf."""
    check_shapes(updates, mask)
    if params is not None:
        check_shapes(params, mask, "the params")


def where_mask(mask: Any, tree: Any, fill: Any = None) -> Any:
    """``where(mask, tree, fill)`` leaf by leaf (``fill`` a tree, or None for zeros).

    Stand-in (0-d) mask leaves pass the leaf through untouched.
    """
    leaves, m_leaves, treedef = check_shapes(tree, mask)
    fills = [None] * len(leaves) if fill is None else jax.tree_util.tree_leaves(fill)
    out = []
    for x, m, f in zip(leaves, m_leaves, fills):
        if is_stand_in(m):
            out.append(x)
        else:
            m = placement.match_sharding(m, x)
            out.append(jnp.where(m, x, jnp.zeros((), x.dtype) if f is None else f.astype(x.dtype)))
    return treedef.unflatten(out)


def masked_update(updates: Any, mask: Any, params: Any | None) -> Any:
    """The final update under a mask: ``where(mask, u, -params)`` (or 0 without params)."""
    if params is None:
        return where_mask(mask, updates)
    return where_mask(mask, updates, jax.tree_util.tree_map(jnp.negative, params))


def place_mask(mask: Any, params: Any) -> Any:
    """Checks ``mask`` against ``params`` and returns it in their structure and sharding."""
    masks.check_mask(mask, params)
    p_leaves, m_leaves, treedef = mask_leaves_like(params, mask)
    return treedef.unflatten(
        [
            m if is_stand_in(m) else placement.match_sharding(m, p)
            for m, p in zip(m_leaves, p_leaves)
        ]
    )


def check_target(sparsity: Any, mask: Any, distribution: Any) -> None:
    """The checks of a transform's target when it is built: a sparsity (checked, with its
    distribution) or an initial mask, exactly one of them.

    A mask and a sparsity together are refused, whatever the mask's sparsity: the
    mask would win and the sparsity be ignored (or mean something else).
    """
    if (sparsity is None) == (mask is None):
        given = "both" if mask is not None else "neither"
        raise ValueError(
            f"Give a sparsity (with a key for the random initial mask) or an initial mask=, "
            f"not {given} (sparsity={sparsity!r}): the mask sets the sparsity itself."
        )
    if sparsity is None:
        return
    _checks.check_sparsity(sparsity)
    _checks.check_distribution(distribution)


def own_copy(tree: Any) -> Any:
    """``tree`` with every array leaf copied into a buffer of its own.

    For what ``init`` puts in a state: a jitted step that donates the state (or
    the parameters and the state) must not delete the caller's arrays, nor donate
    one buffer twice.
    """
    return jax.tree_util.tree_map(jnp.copy, tree)


def resolve_mask(mask: Any, params: Any) -> Any:
    """A mask given as a tree, or as a function ``params -> mask``, placed like ``params``
    (in buffers of its own: see :func:`own_copy`)."""
    # A callable with array leaves is a mask tree whose type has __call__ (an Equinox
    # module), not a function.
    leaves = jax.tree_util.tree_leaves(mask)  # a plain function is its own only leaf
    function = callable(mask) and not any(hasattr(x, "shape") for x in leaves)
    return own_copy(place_mask(_owned(mask(params) if function else mask, params), params))


def _owned(mask: Any, params: Any) -> Any:
    """``mask`` cut to the leaves ``params`` holds: inside ``optax.masked``,
    ``multi_transform`` or ``partition`` the params have a ``MaskedNode`` where a leaf (or
    a sub-tree) is not this transform's, and a mask of all the parameters gets one there
    too. Any other mask is returned as it is (``place_mask`` checks it)."""
    nodes = jax.tree_util.tree_leaves(params, is_leaf=_is_masked_node)
    if not any(_is_masked_node(x) for x in nodes):
        return mask
    try:
        return jax.tree_util.tree_map(
            lambda p, m: p if _is_masked_node(p) else m, params, mask, is_leaf=_is_masked_node
        )
    except (ValueError, TypeError):  # not shaped like the parameters: place_mask explains
        return mask


def map_per_parameter(state: Any, like: Any, fn: Callable[..., jax.Array], *others: Any) -> Any:
    """Applies ``fn(leaf, index)`` to the per-parameter leaves of an optimizer state.

    A sub-tree of ``state`` whose leaves sit at the paths of ``like``'s (the
    parameters' or updates') is per-parameter state: momentum, Adam moments, Lion's
    momentum... optax's ``masked``, ``multi_transform`` and ``partition`` put a
    ``MaskedNode`` where a leaf, or a whole sub-tree (a prefix mask or labels), is
    not theirs: those parts are skipped. Within such a sub-tree, leaves shaped like
    their parameter get ``fn(leaf, i)`` with ``i`` the parameter's leaf index;
    others (Adafactor's factored row and column statistics, scalars) are left as
    they are. No list of optimizer state types is needed. ``others``: trees of
    ``state``'s structure (e.g. a fresh state) whose leaves at the same places are
    passed too, ``fn(leaf, i, *other_leaves)``.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> params = {"w": jnp.ones(3)}
      >>> state = optax.sgd(0.1, momentum=0.9).init(params)
      >>> state = map_per_parameter(state, params, lambda x, i: x + 1)
      >>> state[0].trace["w"].tolist()
      [1.0, 1.0, 1.0]
    """
    index = _per_parameter_index(state, like)
    leaves, treedef = jax.tree_util.tree_flatten(state)
    rest = [treedef.flatten_up_to(o) for o in others]
    return treedef.unflatten(
        [fn(x, index[j], *(r[j] for r in rest)) if j in index else x for j, x in enumerate(leaves)]
    )


class _Tag:
    """A stand-in for a state leaf while its place is matched: its flat index and shape."""

    __slots__ = ("index", "shape")

    def __init__(self, index: int, shape: tuple[int, ...] | None):
        self.index, self.shape = index, shape


def _per_parameter_index(state: Any, like: Any) -> dict[int, int]:
    """``{flat index of a per-parameter leaf of state: its parameter's leaf index}``."""
    leaves, treedef = jax.tree_util.tree_flatten(state)
    tagged = treedef.unflatten([_Tag(j, getattr(x, "shape", None)) for j, x in enumerate(leaves)])
    flat = jax.tree_util.tree_flatten_with_path(like)[0]
    where = {path: i for i, (path, _) in enumerate(flat)}
    # like's own MaskedNodes (a jaxprune transform inside multi_transform sees them)
    elsewhere = {
        path
        for path, x in jax.tree_util.tree_flatten_with_path(like, is_leaf=_is_masked_node)[0]
        if _is_masked_node(x)
    }
    shapes = [tuple(getattr(x, "shape", ())) for _, x in flat]
    found: dict[int, int] = {}

    def visit(node):
        if isinstance(node, _Tag) or _is_masked_node(node):
            return None
        covered, pairs = 0, []
        for path, x in jax.tree_util.tree_flatten_with_path(node, is_leaf=_is_masked_node)[0]:
            if _is_masked_node(x):  # a leaf or a whole sub-tree of like that is not its own
                n = sum(1 for p in where if p[: len(path)] == path)
                if not n and path not in elsewhere:
                    return None
                covered += n
            elif path in where:
                pairs.append((x, where[path]))
                covered += 1
            else:
                return None
        if covered != len(where) or not where:
            return None
        found.update({x.index: i for x, i in pairs if x.shape == shapes[i]})
        return node  # matched: not searched further

    _rebuild(tagged, visit)
    return found


_SCHEDULE_STATES = (
    optax.ScaleByScheduleState,
    optax.InjectHyperparamsState,
    optax.InjectStatefulHyperparamsState,
)


def map_schedule_counts(state: Any, fn: Callable[[jax.Array], jax.Array]) -> Any:
    """Applies ``fn`` to the step counts that drive optax's schedules in ``state``.

    The counts of ``scale_by_schedule`` (a schedule given as a learning rate) and of
    ``inject_hyperparams`` and its schedules; not Adam's bias-correction count. For
    schedules that must follow a step count other than the optimizer's updates, such
    as a lottery ticket rewound to step k with a fresh optimizer (fast-forward to k).

    Example:
      >>> import jax.numpy as jnp, optax
      >>> s = optax.sgd(optax.linear_schedule(1.0, 0.0, 10)).init({"w": jnp.ones(2)})
      >>> int(map_schedule_counts(s, lambda c: c + 5)[1].count)
      5
    """

    def visit(node):
        # optax's own schedule states, and a NamedTuple holding only a count (the state
        # of a schedule inside inject_hyperparams, whose class optax does not export).
        counter = isinstance(node, tuple) and getattr(node, "_fields", None) == ("count",)
        if not (counter or isinstance(node, _SCHEDULE_STATES)):
            return None
        return type(node)(
            *[fn(v) if f == "count" else _rebuild(v, visit) for f, v in zip(node._fields, node)]
        )

    return _rebuild(state, visit)


def _is_masked_node(x: Any) -> bool:
    return isinstance(x, optax.MaskedNode)


def _rebuild(node: Any, visit: Callable[[Any], Any]) -> Any:
    """Rebuilds an optimizer state (any pytree: NamedTuples, tuples, mappings, NNX
    states), replacing each node for which ``visit`` returns something other than None,
    outermost first. Subtrees with nothing replaced are returned as they are."""
    out = visit(node)
    if out is not None:
        return out
    children, treedef = jax.tree_util.tree_flatten(node, is_leaf=lambda x: x is not node)
    if jax.tree_util.treedef_is_leaf(treedef):
        return node
    new = [_rebuild(c, visit) for c in children]
    if all(n is c for n, c in zip(new, children)):
        return node
    return treedef.unflatten(new)


def zero_where(state: Any, like: Any, keep: Any) -> Any:
    """Zeroes per-parameter optimizer state where the mask ``keep`` is False.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> params = {"w": jnp.ones(2)}
      >>> s = optax.adam(0.1).init(params)
      >>> s = map_per_parameter(s, params, lambda x, i: x + 1)
      >>> zero_where(s, params, {"w": jnp.array([True, False])})[0].mu["w"].tolist()
      [1.0, 0.0]
    """
    return _keep_else(state, like, keep, lambda x: jnp.zeros((), x.dtype))


def reset_where(state: Any, fresh: Any, like: Any, keep: Any) -> Any:
    """Per-parameter optimizer state where ``keep`` is False taken from ``fresh`` (a state
    of the same optimizer as ``init`` makes it): 0 for moments, the initial step size of
    rprop, adagrad's initial accumulator.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> params, tx = {"w": jnp.ones(2)}, optax.adagrad(0.1)
      >>> s = map_per_parameter(tx.init(params), params, lambda x, i: x + 1)
      >>> reset_where(s, tx.init(params), params, {"w": jnp.array([True, False])})[0].sum_of_squares["w"].tolist()
      [1.100000023841858, 0.10000000149011612]
    """
    return _keep_else(state, like, keep, lambda x, f: f.astype(x.dtype), fresh)


def _keep_else(state: Any, like: Any, keep: Any, fill: Callable[..., Any], *others: Any) -> Any:
    """Per-parameter state where ``keep`` is True, else ``fill(leaf, *other_leaves)``."""
    k_leaves = jax.tree_util.tree_leaves(keep)

    def fn(x, i, *o):
        m = k_leaves[i]
        return x if is_stand_in(m) else jnp.where(m, x, fill(x, *o))

    return map_per_parameter(state, like, fn, *others)


def replace_mask(opt_state: Any, mask: Any) -> Any:
    """The optimizer state with the mask of its (outermost) jaxprune transform replaced.

    For a new round of iterative pruning, or to give ensemble members (which
    share one transform) their own masks. The new mask must have the old one's
    structure, shapes and dtype.

    Raises:
      ValueError: no jaxprune transform in the state, or a new mask shaped unlike the
        old one.

    Example:
      >>> import jax.numpy as jnp, optax, jaxprune
      >>> tx = jaxprune.masked(optax.sgd(0.1), jaxprune.dense_mask)
      >>> state = tx.init({"w": jnp.ones((2, 2))})
      >>> state = replace_mask(state, {"w": jnp.eye(2, dtype=bool)})
      >>> int(jaxprune.mask_of(state)["w"].sum())
      2
    """
    path, old = _outermost(opt_state)
    _, old_leaves, treedef = mask_leaves_like(old, mask)
    new_leaves = jax.tree_util.tree_leaves(mask)
    for o, n in zip(old_leaves, new_leaves):
        if jnp.shape(o) != jnp.shape(n) or jnp.result_type(o) != jnp.result_type(n):
            raise ValueError(
                f"replace_mask: a leaf of shape {jnp.shape(n)} ({jnp.result_type(n)}) would "
                f"replace one of shape {jnp.shape(o)} ({jnp.result_type(o)}); build the new "
                "mask from the same parameters."
            )
    new = own_copy(treedef.unflatten(new_leaves))
    # Only the outermost jaxprune state's mask, the one mask_of reads.
    return optax.tree_utils.tree_set(opt_state, lambda p, _: p == path, **{MASK_FIELD: new})


def mask_of(opt_state: Any) -> Any:
    """The mask held by a jaxprune transform inside an optimizer state, as plain arrays.

    Every jaxprune state holds its mask in a field named ``jaxprune_mask`` (read as
    ``state.mask``), found by name with ``optax.tree_utils``: in chains,
    ``inject_hyperparams``, ``multi_transform``, an ``nnx.Optimizer``, its
    ``nnx.state`` and states restored without a target (where the state is a mapping).
    The outermost jaxprune state wins. A transform of your own is found too if its
    NamedTuple state names its mask field ``jaxprune_mask``. NNX ``Variable`` wrappers
    (``nnx.Optimizer`` adds them) are removed: the result is a snapshot, which the
    optimizer's next steps do not change.

    Raises:
      ValueError: no jaxprune transform in the state.

    Example:
      >>> import jax.numpy as jnp, optax, jaxprune
      >>> mask = {"w": jnp.eye(2, dtype=bool)}
      >>> tx = optax.chain(optax.clip_by_global_norm(1.0), jaxprune.masked(optax.sgd(0.1), mask))
      >>> jaxprune.mask_of(tx.init({"w": jnp.ones((2, 2))}))["w"].tolist()
      [[True, False], [False, True]]
    """
    return _values(_outermost(opt_state)[1])


def _outermost(opt_state: Any) -> tuple[Any, Any]:
    """``(path, mask)`` of the outermost jaxprune mask in ``opt_state``, in the path
    style of ``optax.tree_utils`` (the first match: outer states come first)."""
    found = optax.tree_utils.tree_get_all_with_path(opt_state, MASK_FIELD)
    if not found:  # mappings that are not dicts (nnx.State): optax reads dicts' keys only
        found = optax.tree_utils.tree_get_all_with_path(_as_dicts(opt_state), MASK_FIELD)
    if not found:
        raise ValueError(
            "No jaxprune mask in this optimizer state: build the optimizer with "
            "jaxprune.masked(...) (or another jaxprune transform)."
        )
    return found[0]


def _as_dicts(tree: Any) -> Any:
    """``tree`` with every mapping that is not a ``dict`` (an ``nnx.State``) as a dict."""

    def other(x):
        return isinstance(x, Mapping) and not isinstance(x, dict)

    def convert(x):
        return {k: _as_dicts(v) for k, v in x.items()} if other(x) else x

    return jax.tree_util.tree_map(convert, tree, is_leaf=other)


def _values(tree: Any) -> Any:
    """``tree`` with each NNX ``Variable`` (a node whose only child is its ``.value``)
    replaced by its value: arrays the wrapper's later updates do not reach."""

    def value(x):
        while _is_wrapper(x):
            x = jax.tree_util.tree_leaves(x, is_leaf=lambda y: y is not x)[0]
        return x

    return jax.tree_util.tree_map(value, tree, is_leaf=_is_wrapper)


def _is_wrapper(x: Any) -> bool:
    if isinstance(x, (Mapping, tuple, list, jax.Array)):
        return False
    children = jax.tree_util.tree_flatten_with_path(x, is_leaf=lambda y: y is not x)[0]
    value = (jax.tree_util.GetAttrKey("value"),)
    return len(children) == 1 and children[0][0] == value
