"""Reading and rescaling a traced function's hidden units: features and REPAIR.

The ReLUs of the traced program (``max(x, 0)``, as ``jax.nn.relu`` lowers) whose unit
axis (the last) is a hidden-unit permutation of the spec are the *sites*: their inputs
are the pre-activations REPAIR rescales, their outputs the features activation matching
compares. Nothing about the model is declared by hand.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune.rebasin._jaxpr import Program, evaluate
from jaxprune.rebasin._spec import PermutationSpec
from jaxprune.rebasin._trace import analyse
from jaxprune.typing import PyTree

__all__ = ["UnitStats", "apply_repaired", "repair", "unit_features", "unit_stats"]


class UnitStats(NamedTuple):
    """Per-unit statistics at every ReLU site: site name -> array of its units.

    A site's name is ``"<k>:<group>"``: the k-th ReLU of the function and the
    permutation its units belong to. `repair` returns one too (``mean`` the shift,
    ``std`` the scale of the correction).
    """

    mean: dict[str, jax.Array]
    std: dict[str, jax.Array]


class _Site(NamedTuple):
    eqn: int  # the ReLU's equation
    operand: int  # which input of it is the pre-activation
    name: str  # "<k>:<group>"
    group: str


def _sites(apply_fn: Callable[..., Any], variables: PyTree, args: tuple) -> tuple:
    spec, prog, names, root = analyse(apply_fn, variables, args)
    sites = []
    for k, eqn in enumerate(prog.eqns):
        if eqn.primitive.name != "max" or len(eqn.ins) != 2:
            continue
        for pos, other in ((0, 1), (1, 0)):
            zero = prog.values.get(eqn.ins[other])
            x = eqn.ins[pos]
            if zero is None or np.ndim(zero) or float(zero) != 0.0 or not prog.shapes[x]:
                continue
            r = root((x, len(prog.shapes[x]) - 1, 1, 1))
            if r in names:
                sites.append(_Site(k, pos, f"{len(sites)}:{names[r]}", names[r]))
            break
    return spec, prog, sites


def _leaves(variables: PyTree) -> list[Any]:
    return jax.tree_util.tree_leaves(variables)


def _args(batch: Any) -> tuple:
    return batch if isinstance(batch, tuple) else (batch,)


def _run(prog: Program, sites: list[_Site], variables: PyTree, args: tuple, at_site) -> Any:
    """Evaluates ``prog``; ``at_site(site, pre) -> pre`` sees (and may replace) every
    site's pre-activation."""
    by_eqn = {s.eqn: s for s in sites}

    def hook(k: int, vals: list) -> list:
        site = by_eqn.get(k)
        if site is None:
            return vals
        vals = list(vals)
        vals[site.operand] = at_site(site, vals[site.operand])
        return vals

    return evaluate(prog, _leaves(variables), args, hook)


def unit_features(
    spec: PermutationSpec, apply_fn: Callable[..., Any], variables: PyTree, *args: Any
) -> dict[str, jax.Array]:
    """The post-ReLU features of every hidden-unit permutation on one batch.

    A permutation met by several ReLUs (a residual stream) gets all of their features,
    stacked as more samples.

    Args:
      spec: the spec of ``apply_fn`` (`permutation_spec`); checked against the trace.
      apply_fn: ``apply_fn(variables, *args)``, as given to `permutation_spec`.
      variables: the network's variables.
      *args: the batch.

    Returns:
      group name -> ``(samples, units)`` features: every position of the batch (and of
      the image, for conv features) is a sample. Groups no ReLU reaches are absent.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxprune import rebasin
      >>> f = lambda v, x: jax.nn.relu(x @ v["w1"]) @ v["w2"]
      >>> v = {"w1": jnp.ones((3, 4)), "w2": jnp.ones((4, 2))}
      >>> spec = rebasin.permutation_spec(f, v, jnp.ones((1, 3)))
      >>> {k: z.shape for k, z in rebasin.unit_features(spec, f, v, jnp.ones((5, 3))).items()}
      {'w1': (5, 4)}
    """
    traced, prog, sites = _sites(apply_fn, variables, args)
    _check_same(spec, traced)
    out: dict[str, list] = {}

    def record(site: _Site, pre: jax.Array) -> jax.Array:
        out.setdefault(site.group, []).append(jax.nn.relu(pre).reshape(-1, pre.shape[-1]))
        return pre

    _run(prog, sites, variables, args, record)
    return {g: jnp.concatenate(zs) if len(zs) > 1 else zs[0] for g, zs in out.items()}


def unit_stats(
    apply_fn: Callable[..., Any], variables: PyTree, batches: Iterable[Any]
) -> UnitStats:
    """Mean and standard deviation of every site's pre-activations over the data.

    Args:
      apply_fn: ``apply_fn(variables, *args)``.
      variables: the network (for batch-norm models: in eval mode).
      batches: an iterable of batches (an array, or a tuple of ``apply_fn``'s args).

    Returns:
      `UnitStats` keyed by site name.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxprune import rebasin
      >>> f = lambda v, x: jax.nn.relu(x @ v["w1"]) @ v["w2"]
      >>> v = {"w1": jnp.ones((3, 4)), "w2": jnp.ones((4, 2))}
      >>> s = rebasin.unit_stats(f, v, [jnp.arange(6.0).reshape(2, 3)])
      >>> s.mean["0:w1"].tolist(), s.std["0:w1"].tolist()
      ([7.5, 7.5, 7.5, 7.5], [4.5, 4.5, 4.5, 4.5])
    """
    return _pooled(apply_fn, variables, batches, target=None)[0]


def repair(
    apply_fn: Callable[..., Any],
    variables: PyTree,
    target: UnitStats,
    batches: Iterable[Any],
) -> UnitStats:
    """REPAIR (Jordan et al.): the per-unit affine correction that gives every site's
    pre-activations the ``target`` mean and standard deviation.

    For an interpolated network, ``target`` is the interpolation of the endpoints'
    statistics (``analysis.interpolate(unit_stats(f, a, data), unit_stats(f, b, data),
    alpha)``). The sites are corrected together in one pass over ``batches``, each batch
    normalised with its own statistics as a batch norm in training mode would (the
    REPAIR authors' reset); with all the data in one batch the corrected network meets
    the targets exactly. Batch-norm networks are repaired by re-estimating their
    statistics instead (the paper's RESET).

    Args:
      apply_fn: ``apply_fn(variables, *args)``.
      variables: the (interpolated) network.
      target: the statistics to meet, keyed by site as `unit_stats` gives them.
      batches: training data, an iterable of batches.

    Returns:
      The correction as `UnitStats`: ``std`` the scale and ``mean`` the shift of each
      site; evaluate the repaired network with `apply_repaired`.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxprune import rebasin
      >>> f = lambda v, x: jax.nn.relu(x @ v["w1"]) @ v["w2"]
      >>> v = {"w1": jnp.ones((3, 4)), "w2": jnp.ones((4, 2))}
      >>> data = [jnp.arange(6.0).reshape(2, 3)]
      >>> goal = rebasin.UnitStats({"0:w1": jnp.zeros(4)}, {"0:w1": jnp.ones(4)})
      >>> fix = rebasin.repair(f, v, goal, data)
      >>> fixed = lambda vc, x: rebasin.apply_repaired(f, *vc, x)  # the correction moves too
      >>> [round(float(s), 3) for s in rebasin.unit_stats(fixed, (v, fix), data).std["0:0"]]
      [1.0, 1.0, 1.0, 1.0]
    """
    stats, names = _pooled(apply_fn, variables, batches, target=target)
    scale = {n: target.std[n] / (stats.std[n] + 1e-5) for n in names}
    shift = {n: target.mean[n] - stats.mean[n] * scale[n] for n in names}
    return UnitStats(shift, scale)


def apply_repaired(
    apply_fn: Callable[..., Any], variables: PyTree, correction: UnitStats, *args: Any
) -> Any:
    """``apply_fn(variables, *args)`` with every site's pre-activations rescaled by the
    `repair` correction: ``pre * correction.std + correction.mean``. It traces
    ``apply_fn`` on each call; use it under ``jax.jit`` / ``jax.vmap`` (a path: vmap over
    the interpolated variables and their corrections together). To trace the repaired
    network itself (`unit_stats`, `permutation_spec`), pass the correction as part of its
    variables, ``lambda vc, x: apply_repaired(f, *vc, x)``: closed over, its arrays are
    constants that no permutation may meet."""
    _, prog, sites = _sites(apply_fn, variables, args)
    unknown = [s.name for s in sites if s.name not in correction.std]
    if unknown:
        raise ValueError(
            f"apply_repaired: the correction has no entry for the sites {unknown}; it was "
            f"made by repair() for another function."
        )
    return _run(
        prog,
        sites,
        variables,
        args,
        lambda s, pre: pre * correction.std[s.name] + correction.mean[s.name],
    )


def _pooled(apply_fn, variables, batches, target: UnitStats | None) -> tuple[UnitStats, list[str]]:
    """Site statistics pooled over the batches (sum, sum of squares, count); with a
    ``target``, each batch is first normalised to it site by site (REPAIR's pass)."""
    sums: dict[str, Any] = {}
    names: list[str] = []
    for batch in batches:
        args = _args(batch)
        step, names = _stats_step(apply_fn, variables, args, target is not None)
        missing = [
            n for n in names if target is not None and not (n in target.mean and n in target.std)
        ]
        if missing:
            raise ValueError(
                f"repair: the target has no statistics for the sites {missing} (it has "
                f"{sorted(target.mean)}). Measure it with unit_stats on the same function."
            )
        moments = step(variables, args, target)
        for name, (s1, s2, n) in moments.items():  # per site: sites differ in positions
            a1, a2, c = sums.get(name, (0.0, 0.0, 0))
            sums[name] = (a1 + s1, a2 + s2, c + int(n))
    if not sums:
        raise ValueError(
            "unit_stats/repair: no batches, or no ReLU site on a hidden-unit permutation."
        )
    mean = {k: s1 / c for k, (s1, _, c) in sums.items()}
    std = {k: jnp.sqrt(jnp.maximum(s2 / c - mean[k] ** 2, 0.0)) for k, (_, s2, c) in sums.items()}
    return UnitStats(mean, std), names


# Compiled passes, per function (weakly: they go with it) and per shapes of their inputs,
# so the points of a path, or the batches of a pass, trace and compile once.
_STEPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _stats_step(apply_fn, variables, args, normalise: bool) -> tuple[Callable, list[str]]:
    """A jitted pass over one batch returning each site's (sum, sum of squares, count),
    and the site names."""
    shapes = jax.tree_util.tree_map(lambda x: (np.shape(x), jnp.result_type(x)), (variables, args))
    key = (
        jax.tree_util.tree_structure((variables, args)),
        str(jax.tree_util.tree_leaves(shapes)),
        normalise,
    )
    try:
        cache = _STEPS.setdefault(apply_fn, {})
    except TypeError:  # not weakly referenceable: no cache
        cache = {}
    if key in cache:
        return cache[key]
    _, prog, sites = _sites(apply_fn, variables, args)

    @jax.jit
    def step(variables, args, target):
        moments = {}

        def at_site(site: _Site, pre: jax.Array) -> jax.Array:
            z = pre.reshape(-1, pre.shape[-1])
            moments[site.name] = (z.sum(0), (z * z).sum(0), z.shape[0])
            if target is None:
                return pre
            mu, sd = z.mean(0), z.std(0)
            return (pre - mu) / (sd + 1e-5) * target.std[site.name] + target.mean[site.name]

        _run(prog, sites, variables, args, at_site)
        return moments

    cache[key] = (step, [s.name for s in sites])
    return cache[key]


def _check_same(spec: PermutationSpec, traced: PermutationSpec) -> None:
    if spec.sizes != traced.sizes:
        raise ValueError(
            f"The spec does not match the function as traced now: spec {spec.sizes}, "
            f"traced {traced.sizes}. Use the spec of this apply_fn and these variables."
        )
