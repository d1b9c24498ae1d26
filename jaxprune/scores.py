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

from jaxprune import _deprecation, _scoring, filters
from jaxprune._checks import check_key  # also for transforms/, until they import _checks
from jaxprune._scoring import score_tree
from jaxprune._tree import prunable_flags
from jaxprune.typing import Params, PRNGKey, Scores

__all__ = ["grasp", "magnitude", "random", "snip", "synflow"]


def magnitude(params: Params, *, prunable: filters.FilterLike = None) -> Scores:
    """|w|: magnitude pruning, the lottery-ticket criterion.

    Example:
      >>> import numpy as np
      >>> magnitude({"w": -np.ones((2, 2), np.float32)})["w"].tolist()
      [[1.0, 1.0], [1.0, 1.0]]
    """
    return score_tree(jnp.abs, params, prunable=prunable)


def random(key: PRNGKey, params: Params, *, prunable: filters.FilterLike = None) -> Scores:
    """Uniform random scores (not a mask; each leaf its own key, folded from ``key``).

    For a random mask use :func:`jaxprune.random_mask` (at a target sparsity) or
    :func:`jaxprune.random_like` (the per-layer counts of a given mask).

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
    params: Params,
    batch: Any,
    *,
    prunable: filters.FilterLike = None,
    normalize: bool = True,
    has_aux: bool = False,
) -> Scores:
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
    _scoring.check_scores(s, "snip", "the gradients times the weights")
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
    params: Params,
    batch: Any,
    *,
    prunable: filters.FilterLike = None,
    temperature: float | None = 200.0,
    has_aux: bool = False,
) -> Scores:
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
    flags = prunable_flags(params, prunable)
    g_leaves, treedef = jax.tree_util.tree_flatten(g)
    g = treedef.unflatten([x if f else jnp.zeros_like(x) for x, f in zip(g_leaves, flags)])
    _, hg = jax.jvp(grad, (params,), (g,))
    out = score_tree(lambda w, h: w * h, params, hg, prunable=prunable)
    _scoring.check_scores(out, "grasp", "the Hessian-gradient products times the weights")
    return out


def synflow(
    apply_fn: Callable[[Params, jax.Array], Any],
    params: Params,
    input_shape: Sequence[int],
    *,
    prunable: filters.FilterLike = None,
    float64: bool = False,
) -> Scores:
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
    shape = _scoring.check_input_shape(input_shape)
    flags = prunable_flags(params, prunable)
    if float64:
        with jax.enable_x64(True):
            raw = _scoring.synflow_raw(apply_fn, params, shape, flags, jnp.float64)
            out = _scoring.scale_to_float32(raw)
    else:
        out = [
            None if s is None else s.astype(jnp.float32)
            for s in _scoring.synflow_raw(apply_fn, params, shape, flags)
        ]
    _scoring.check_finite(out, "synflow", float64)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    return treedef.unflatten([_scoring.stand_in() if s is None else s for s in out])


__getattr__ = _deprecation.module_getattr(
    __name__,
    _deprecation.internal(
        _scoring, "check_finite", "check_input_shape", "check_scores", "scale_to_float32"
    )
    | {"synflow_raw": ("use synflow", lambda: _scoring.synflow_raw)},
)
