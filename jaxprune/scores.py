"""Scores: pytrees shaped like the parameters, higher = more worth keeping.

Magnitude, random, and the pruning-at-initialisation criteria SNIP (|g w|),
GraSP (w * Hg) and SynFlow (|w dR/dw| of the all-ones, all-|w| network).

Every function returns full float32 arrays on the prunable leaves and the 0-d
stand-in ``0.0`` on the others, so :func:`jaxprune.topk_mask` knows which leaves
take part. ``prunable`` chooses the leaves (default: ndim >= 2, i.e. Dense and
Conv kernels).

Example:
  >>> import jax, jaxprune
  >>> params = {"w": jax.numpy.array([[1.0, -3.0], [0.5, 2.0]]), "b": jax.numpy.ones(2)}
  >>> jaxprune.scores.magnitude(params)["w"].tolist()
  [[1.0, 3.0], [0.5, 2.0]]
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxprune import filters, masks

PyTree = Any


def _stand_in() -> jax.Array:
    return jnp.zeros((), jnp.float32)


def score_tree(
    fn: Callable[..., jax.Array], *trees: PyTree, prunable: filters.FilterLike = None
) -> PyTree:
    """Applies ``fn(leaf, *other_leaves)`` on the prunable leaves of ``trees[0]``.

    The building block of score functions; the result is float32, with 0-d
    stand-ins on the leaves that are not prunable.

    Example:
      >>> import numpy as np
      >>> t = {"w": np.ones((2, 2), np.float32), "b": np.ones(2, np.float32)}
      >>> score_tree(lambda w: 2 * w, t)["b"].shape
      ()
    """
    flags = masks.prunable_flags(trees[0], prunable)
    leaves, treedef = jax.tree_util.tree_flatten(trees[0])
    others = [treedef.flatten_up_to(t) for t in trees[1:]]
    out = [
        fn(x, *(o[i] for o in others)).astype(jnp.float32) if f else _stand_in()
        for i, (x, f) in enumerate(zip(leaves, flags))
    ]
    return treedef.unflatten(out)


def magnitude(params: PyTree, *, prunable: filters.FilterLike = None) -> PyTree:
    """|w|: magnitude pruning, the lottery-ticket criterion.

    Example:
      >>> import numpy as np
      >>> magnitude({"w": -np.ones((2, 2), np.float32)})["w"].tolist()
      [[1.0, 1.0], [1.0, 1.0]]
    """
    return score_tree(jnp.abs, params, prunable=prunable)


def check_key(key: Any, name: str = "key") -> None:
    """Raises a TypeError unless ``key`` is a JAX random key: a typed key
    (``jax.random.key(0)``) or a raw ``uint32`` one (``jax.random.PRNGKey(0)``).

    Example:
      >>> import jax
      >>> check_key(jax.random.key(0))
      >>> check_key(0)
      Traceback (most recent call last):
      ...
      TypeError: key must be a JAX random key such as jax.random.key(0), got 0.
    """
    dtype, shape = getattr(key, "dtype", None), getattr(key, "shape", None)
    typed = dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)
    if typed and shape == ():
        return
    if not typed and dtype == jnp.uint32 and shape is not None and len(shape) == 1:
        return
    got = f"an array of shape {shape} and dtype {dtype}" if shape is not None else repr(key)
    raise TypeError(f"{name} must be a JAX random key such as jax.random.key(0), got {got}.")


def random(key: jax.Array, params: PyTree, *, prunable: filters.FilterLike = None) -> PyTree:
    """Uniform random scores: random pruning (each leaf its own key, folded from ``key``).

    Example:
      >>> import jax, numpy as np
      >>> s = random(jax.random.key(0), {"w": np.ones((3, 3), np.float32)})
      >>> s["w"].shape
      (3, 3)
    """
    check_key(key)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = treedef.unflatten([jax.random.fold_in(key, i) for i in range(len(leaves))])
    return score_tree(lambda w, k: jax.random.uniform(k, w.shape), params, keys, prunable=prunable)


def snip(
    loss_fn: Callable[..., Any],
    params: PyTree,
    batch: Any,
    *,
    prunable: filters.FilterLike = None,
    normalize: bool = True,
    has_aux: bool = False,
) -> PyTree:
    """SNIP connection sensitivity |g * w| on one batch (Lee et al. 2019).

    Args:
      loss_fn: ``loss_fn(params, batch) -> loss`` (or ``(loss, aux)`` with
        ``has_aux``).
      params: the (initial) parameters to score.
      batch: one minibatch (the paper uses 100 examples on MNIST, 128 on CIFAR).
      prunable: which leaves are scored.
      normalize: divide by the sum over all prunable leaves, as the paper does
        (the ranking is the same either way).
      has_aux: whether ``loss_fn`` returns ``(loss, aux)``.

    Raises:
      FloatingPointError: a score is inf or NaN.
      ValueError: every score is 0 (nothing to rank: the top-k would keep the
        first entries). Both checked when the scores are concrete, not under ``jit``.

    Example:
      >>> import jax.numpy as jnp
      >>> params = {"w": jnp.array([[1.0, -2.0]])}
      >>> loss = lambda p, x: jnp.sum(x @ p["w"])
      >>> snip(loss, params, jnp.array([[3.0]]), normalize=False)["w"].tolist()
      [[3.0, 6.0]]
    """
    grads = jax.grad(loss_fn, has_aux=has_aux)(params, batch)
    if has_aux:
        grads = grads[0]
    s = score_tree(lambda w, g: jnp.abs(g * w), params, grads, prunable=prunable)
    check_scores(s, "snip", "the gradients times the weights")
    if not normalize:
        return s
    total = sum(jnp.sum(x) for x in jax.tree_util.tree_leaves(s))
    total = jnp.where(total > 0, total, 1)  # all 0 under jit: leave them 0, not NaN
    return jax.tree_util.tree_map(lambda x: x if x.ndim == 0 else x / total, s)


def _accepts_temperature(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` takes a ``temperature`` keyword (or ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins and some C callables: just try
        return True
    return any(
        p.kind is p.VAR_KEYWORD
        or (p.name == "temperature" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
        for p in params
    )


def grasp(
    loss_fn: Callable[..., Any],
    params: PyTree,
    batch: Any,
    *,
    prunable: filters.FilterLike = None,
    temperature: float | None = 200.0,
    has_aux: bool = False,
) -> PyTree:
    """GraSP score ``w * (H g)`` on one batch (Wang et al. 2020); higher = keep.

    GraSP removes the weights whose removal reduces the gradient flow
    ``g^T H g`` least, i.e. the *largest* ``-w * (H g)`` (the paper's score);
    this function returns its negation ``w * (H g)`` so that, as for every score
    here, :func:`jaxprune.topk_mask` keeps the highest. ``g`` is the gradient of
    the loss with a stop-gradient, ``H g`` a Hessian-vector product computed
    with one forward-over-reverse ``jax.jvp`` of ``jax.grad`` (no Hessian is
    formed). As in the paper's code, ``g`` and ``H`` are over the scored weights
    only (``prunable``: the Conv/Dense kernels by default): ``H_ww g_w``, the
    biases' and normalisation parameters' gradient left out. The public code's
    extras do not change the ranking: it sums ``g`` and ``H g`` over two halves of
    the batch (a positive factor) and divides the scores by ``|sum|`` (another one).

    Args:
      loss_fn: ``loss_fn(params, batch, temperature=T) -> loss`` (or
        ``(loss, aux)`` with ``has_aux``), which must divide the logits by ``T``
        before the softmax: the temperature is part of GraSP's loss. Giving the
        argument a default of 1 lets the same function serve :func:`snip`.
      params: the (initial) parameters to score.
      batch: one minibatch (GraSP's code samples a few examples of every class).
      prunable: which leaves are scored (default: Dense/Conv kernels).
      temperature: the softmax temperature (200 in the paper's code); ``None``
        calls ``loss_fn(params, batch)`` as it is.
      has_aux: whether ``loss_fn`` returns ``(loss, aux)``.

    Returns:
      float32 scores ``w * (H g)`` (may be negative) on the prunable leaves,
      0-d stand-ins elsewhere.

    Raises:
      ValueError: a temperature that is not positive, or a ``loss_fn`` that
        takes no ``temperature`` argument while one is given; every score 0.
      FloatingPointError: a score is inf or NaN. (Scores are checked when they
        are concrete, not under ``jit``.)

    Example:
      >>> import jax.numpy as jnp
      >>> # loss = (x w)^3 / 6 with x = 1: g = w^2 / 2, H = w, so w * H g = w^4 / 2.
      >>> loss = lambda p, x, temperature=1.0: jnp.sum((x @ p["w"]) ** 3) / 6
      >>> grasp(loss, {"w": jnp.array([[2.0, -1.0]])}, jnp.ones((1, 1)))["w"].tolist()
      [[8.0, 0.5]]
    """
    kwargs = {}
    if temperature is not None:
        number = isinstance(temperature, (int, float)) or (
            getattr(temperature, "dtype", None) is not None
            and jnp.ndim(temperature) == 0
            and jnp.issubdtype(temperature.dtype, jnp.floating)
        )
        traced = isinstance(temperature, jax.core.Tracer)
        if not traced and (
            isinstance(temperature, bool)
            or not number
            or not math.isfinite(float(temperature))
            or float(temperature) <= 0
        ):
            raise ValueError(
                f"grasp: temperature must be a positive number (200 in the paper) or None, "
                f"got {temperature!r}."
            )
        if not _accepts_temperature(loss_fn):
            raise ValueError(
                "grasp: loss_fn takes no 'temperature' argument. GraSP divides the logits "
                f"by a temperature (here {temperature}) before the softmax; write "
                "loss_fn(params, batch, temperature=1.0) so that it does, or pass "
                "temperature=None to use loss_fn as it is."
            )
        kwargs["temperature"] = temperature

    def loss(p):
        out = loss_fn(p, batch, **kwargs)
        return out[0] if has_aux else out

    grad = jax.grad(loss)
    g = jax.lax.stop_gradient(grad(params))
    # As GraSP's code, g and H over the scored weights only: H_ww g_w, not (H g)_w
    # (biases and normalisation parameters would add H_wb g_b).
    flags = masks.prunable_flags(params, prunable)
    g_leaves, treedef = jax.tree_util.tree_flatten(g)
    g = treedef.unflatten([x if f else jnp.zeros_like(x) for x, f in zip(g_leaves, flags)])
    _, hg = jax.jvp(grad, (params,), (g,))
    out = score_tree(lambda w, h: w * h, params, hg, prunable=prunable)
    check_scores(out, "grasp", "the Hessian-gradient products times the weights")
    return out


def check_input_shape(input_shape: Any) -> tuple[int, ...]:
    """The shape of SynFlow's all-ones input as a tuple; raises a ValueError if it is not one.

    Example:
      >>> check_input_shape([1, 40])
      (1, 40)
    """
    shape = tuple(input_shape) if isinstance(input_shape, Sequence) else None
    if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ValueError(
            f"synflow: input_shape must be the shape of one input batch, positive integers "
            f"with the batch dimension first, e.g. (1, 28, 28, 1); got {input_shape!r}."
        )
    return shape


def synflow_raw(
    apply_fn: Callable[[PyTree, jax.Array], Any],
    params: PyTree,
    input_shape: Sequence[int],
    flags: Sequence[bool],
    dtype: Any = None,
) -> list[jax.Array | None]:
    """``|w dR/dw|`` of the |w| network on ones, in ``dtype``; None on leaves not flagged.

    The building block of :func:`synflow` (and of iterative SynFlow, which jits
    it once); ``params`` are used as given (mask them first).
    """
    leaves, treedef = jax.tree_util.tree_flatten(params)
    cast = lambda x: x.astype(dtype) if dtype is not None else x
    absolute = [
        cast(jnp.abs(x)) if jnp.issubdtype(jnp.result_type(x), jnp.inexact) else x for x in leaves
    ]
    first = next(x for x, f in zip(absolute, flags) if f)
    ones = jnp.ones(tuple(input_shape), first.dtype)

    def flow(ls):
        return jnp.sum(apply_fn(treedef.unflatten(ls), ones))

    grads = jax.grad(flow)(absolute)
    return [jnp.abs(g * w) if f else None for w, g, f in zip(absolute, grads, flags)]


def synflow(
    apply_fn: Callable[[PyTree, jax.Array], Any],
    params: PyTree,
    input_shape: Sequence[int],
    *,
    prunable: filters.FilterLike = None,
    float64: bool = False,
) -> PyTree:
    """SynFlow score ``|w * dR/dw|`` (Tanaka et al. 2020): data-free synaptic flow.

    ``R`` is the sum of the outputs of the network run with every parameter
    replaced by its absolute value (biases and normalisation parameters too, as
    in the paper's code) on an all-ones input. For a network built from linear
    maps, ReLUs and pooling with zero biases (as at initialisation), ``R`` is the
    sum over all input-output paths of the product of their ``|w|``, a weight's
    score is the flow through the paths that use it, and the scores of every
    layer sum to ``R``. Scaling one layer's weights by ``c > 0`` then scales
    every score by ``c``: the ranking is unchanged. Apply it iteratively
    (:func:`jaxprune.init_pruning.synflow_mask`); one shot is what the paper
    warns against.

    Numerical range: ``R`` is a product over layers and can overflow float32
    (about 3e38) for deep networks; the paper's code has a double-precision
    option. Pass ``float64=True`` to compute in float64 (eagerly, under
    ``jax.enable_x64``); the scores are then scaled by ``2^-e`` so that the
    largest lies in [0.5, 1) -- an exact power of two, so the ranking is
    unchanged -- and rounded to float32 (which can only merge scores closer than
    float32 resolution, or more than 2^126 below the largest).

    Args:
      apply_fn: ``apply_fn(params, x) -> outputs`` (logits); for models with
        batch norm use eval mode (running statistics), as the paper does.
      params: the parameters (mask them first to score a subnetwork).
      input_shape: the shape of the input ``x``, batch dimension first, e.g.
        ``(1, 28, 28, 1)``; no data is needed.
      prunable: which leaves are scored (default: Dense/Conv kernels).
      float64: compute in double precision (outside ``jit`` only).

    Returns:
      float32 non-negative scores on the prunable leaves, 0-d stand-ins elsewhere.

    Raises:
      ValueError: a bad ``input_shape``.
      FloatingPointError: ``R`` or a score is not finite (float32 overflow), or
        the largest score is 0 or, in float32, below 2^-100 (underflow, or a
        disconnected network); use ``float64=True``. Checked when the values
        are concrete.

    Example:
      >>> import jax.numpy as jnp
      >>> params = {"w1": jnp.array([[1.0, -2.0]]), "w2": jnp.array([[3.0], [4.0]])}
      >>> f = lambda p, x: x @ p["w1"] @ p["w2"]  # paths: 1*3 and 2*4, R = 11
      >>> synflow(f, params, (1, 1))["w1"].tolist()
      [[3.0, 8.0]]
    """
    if not callable(apply_fn):
        raise TypeError(
            f"synflow: apply_fn must be callable (params, x) -> outputs, got {apply_fn!r}."
        )
    shape = check_input_shape(input_shape)
    flags = masks.prunable_flags(params, prunable)
    if float64:
        with jax.enable_x64(True):
            raw = synflow_raw(apply_fn, params, shape, flags, jnp.float64)
            out = scale_to_float32(raw)
    else:
        out = [
            None if s is None else s.astype(jnp.float32)
            for s in synflow_raw(apply_fn, params, shape, flags)
        ]
    check_finite(out, "synflow", float64)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    return treedef.unflatten([_stand_in() if s is None else s for s in out])


def scale_to_float32(raw: Sequence[jax.Array | None]) -> list[jax.Array | None]:
    """Scales non-negative scores by ``2^-e`` so the largest is in [0.5, 1), then to float32.

    An exact power of two keeps the order of all scores that stay normal numbers.
    """
    present = [s for s in raw if s is not None]
    top = jnp.max(jnp.stack([jnp.max(s) for s in present]))
    _, e = jnp.frexp(jnp.where(top > 0, top, 1))
    return [None if s is None else jnp.ldexp(s, -e).astype(jnp.float32) for s in raw]


def _finite_scores(scores: Sequence[jax.Array | None], nonfinite: str) -> list[jax.Array]:
    """The concrete, non-empty scores, after a FloatingPointError(``nonfinite``) if one
    holds inf or NaN; an empty list under jit (nothing can be checked there)."""
    present = [s for s in scores if s is not None and s.size]
    if any(isinstance(s, jax.core.Tracer) for s in present):
        return []
    if not all(bool(jnp.all(jnp.isfinite(s))) for s in present):
        raise FloatingPointError(nonfinite)
    return present


# The largest float32 SynFlow score below which smaller ones have flushed to 0.
_UNDERFLOW = 2.0**-100


def check_finite(scores: Sequence[jax.Array | None], where: str, float64: bool = False) -> None:
    """Raises FloatingPointError when concrete SynFlow scores hold inf or NaN, are all 0, or
    (in float32) are so small that the smaller ones underflowed (no-op under jit)."""
    present = _finite_scores(
        scores,
        f"{where}: the synaptic flow overflowed (a score or R is inf or NaN): the "
        "product of |w| over the layers exceeds the float range. Pass float64=True "
        "(double precision, as the paper's code can), or score a shallower network.",
    )
    if not present:
        return
    top = max(float(jnp.max(s)) for s in present)
    if top == 0.0 or (not float64 and top < _UNDERFLOW):
        raise FloatingPointError(
            f"{where}: the largest score is {top:.3g}: the synaptic flow underflowed float32 "
            "(the product of |w| over the layers is below its range) or the network "
            "is disconnected (no path from input to output keeps a weight). Pass "
            "float64=True (double precision, as the paper's code can)."
        )


def check_scores(scores: Any, where: str, what: str) -> None:
    """Raises when concrete gradient-based scores (SNIP, GraSP) are not finite or all 0,
    since top-k would then pick by position; ``what`` says where the scores come from.
    A no-op under jit."""
    present = _finite_scores(
        [s for s in jax.tree_util.tree_leaves(scores) if s.ndim],
        f"{where}: a score is inf or NaN ({what}): check the batch and the loss for "
        "inf/NaN (and the parameters).",
    )
    if present and all(not bool(jnp.any(s != 0)) for s in present):
        raise ValueError(
            f"{where}: every score is 0 ({what} vanish for every prunable weight on this "
            "batch: a constant loss, an all-zero batch, dead units?): there is nothing to "
            "rank. Score a batch of real examples."
        )
