"""Exact per-leaf kept counts: ``keep_count``, ER/ERK shares, overrides, groups to rank."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxprune._checks import check_distribution, check_sparsity, concrete
from jaxprune.typing import Distribution, Override


def keep_count(n: Any, sparsity: Any) -> Any:
    """How many of ``n`` entries survive at ``sparsity``: ``round((1 - s) * n)`` in float32.

    Returns a Python int when both arguments are concrete, else an int32 array;
    both paths compute the same float32 product, so the count is the same.

    Example:
      >>> keep_count(266200, 0.9), keep_count(10, 0.25)
      (26620, 8)
    """
    nv, sv = concrete(n), concrete(sparsity)
    if nv is not None and sv is not None:
        q = np.float32(1.0) - np.float32(sv)
        return int(np.rint(q * np.float32(nv)))
    q = jnp.float32(1.0) - jnp.asarray(sparsity, jnp.float32)
    return jnp.round(q * jnp.asarray(n, jnp.float32)).astype(jnp.int32)


def _fixed_rates(
    paths: Sequence[str],
    sparsity: Any,
    distribution: Distribution,
    overrides: Mapping[str, Override] | None,
) -> list[Any]:
    """Per-leaf fixed sparsity from overrides, then an explicit mapping; None = free."""
    tables = []
    for name, table in (
        ("overrides", overrides or {}),
        ("distribution", distribution if isinstance(distribution, Mapping) else {}),
    ):
        tables.append([(name, pat, _compile(name, pat), v) for pat, v in table.items()])
    used: dict[tuple[str, str], str] = {}  # (table, pattern) -> the first path it took
    winner: dict[str, tuple[str, str]] = {}  # path -> (table, pattern) that set its rate
    rates = []
    for path in paths:
        rate = None
        for table in tables:
            hit = next((t for t in table if t[2].search(path)), None)
            if hit is not None:
                name, pat, _, value = hit
                used.setdefault((name, pat), path)
                winner[path] = (name, pat)
                if callable(value):
                    if sparsity is None:
                        raise ValueError(
                            f"Override {pat!r} is a function of the base sparsity, but no "
                            "sparsity was given."
                        )
                    value = value(sparsity)
                check_sparsity(
                    value, f"The sparsity for {path!r} (from {name} {pat!r})", upper_inclusive=True
                )
                rate = value
                break
        rates.append(rate)
    for table in tables:
        for name, pat, regex, _ in table:
            if (name, pat) in used:
                continue
            shadowed = [p for p in paths if regex.search(p)]
            if shadowed:
                by = winner[shadowed[0]]
                raise ValueError(
                    f"The {name} pattern {pat!r} sets no leaf's sparsity: the leaves it "
                    f"matches ({', '.join(map(repr, shadowed))}) take the {by[0]} pattern "
                    f"{by[1]!r} first (the first matching pattern wins, overrides before "
                    "distribution): put the more specific pattern first, or drop one."
                )
            raise ValueError(
                f"The {name} pattern {pat!r} matches no prunable leaf. Prunable "
                f"leaves: {', '.join(map(repr, paths))}."
            )
    return rates


def _compile(name: str, pattern: Any) -> re.Pattern:
    """A path regex of ``overrides`` or an explicit distribution, or an error naming it."""
    try:
        return re.compile(pattern)
    except (re.error, TypeError) as e:
        raise ValueError(
            f"The {name} pattern {pattern!r} is not a valid regular expression ({e}); "
            "keys are regexes searched in paths such as 'layers/0/kernel'."
        ) from None


def _unmeetable(msg: str) -> ValueError:
    return ValueError(f"Unmeetable sparsity distribution: {msg}")


def _raw_density(shape: Sequence[int], kind: str) -> float:
    dims = tuple(shape) if kind == "erk" or len(shape) < 2 else tuple(shape[-2:])
    return sum(dims) / math.prod(dims) if math.prod(dims) else 0.0  # an empty leaf keeps 0


def erk_counts(
    shapes: Sequence[Sequence[int]],
    budget: int,
    kind: str = "erk",
    caps: Sequence[int] | None = None,
) -> list[int]:
    """Kept counts per leaf for ER/ERK, summing exactly to ``budget``.

    Density of leaf l is ``eps * raw_l`` with ``raw_l = sum(shape) / prod(shape)``
    (ERK) or over the last two dimensions only (ER); a leaf whose count would
    exceed its cap (its size: density 1) keeps its cap and ``eps`` is solved
    again. Fractional counts are rounded down and the remainder goes to the
    largest fractions (leaf order breaks ties).

    Args:
      shapes: the leaves' shapes.
      budget: the total to keep.
      kind: ``"erk"`` or ``"er"``.
      caps: the most each leaf may keep (default: its size). A current mask's
        counts when pruning within it: the ERK shares of the full shapes, and no
        leaf asked for more than it has left.

    Example:
      >>> erk_counts([(100, 10), (10, 10)], 300)
      [254, 46]
      >>> erk_counts([(100, 10), (10, 10)], 300, caps=[1000, 20])
      [280, 20]
    """
    sizes = [math.prod(s) for s in shapes]
    caps = sizes if caps is None else [int(c) for c in caps]
    if not 0 <= budget <= sum(caps):
        raise _unmeetable(f"{budget} kept entries asked of leaves holding {sum(caps)}.")
    raw = [_raw_density(s, kind) for s in shapes]
    # How soon a leaf reaches its cap as eps grows: at eps * ratio = 1.
    ratio = (
        raw
        if caps is sizes
        else [raw[i] * sizes[i] / caps[i] if caps[i] else math.inf for i in range(len(sizes))]
    )
    capped: set[int] = set()
    eps = 0.0
    while True:
        free = [i for i in range(len(sizes)) if i not in capped]
        divisor = sum(raw[i] * sizes[i] for i in free)
        if not free or divisor == 0:
            break
        eps = (budget - sum(caps[i] for i in capped)) / divisor
        top = max(ratio[i] for i in free)
        if eps * top <= 1.0:
            break
        capped.update(i for i in free if ratio[i] == top)
    exact = [
        caps[i] if i in capped else min(caps[i], eps * raw[i] * sizes[i]) for i in range(len(sizes))
    ]
    counts = [min(caps[i], math.floor(x)) for i, x in enumerate(exact)]
    order = sorted(range(len(sizes)), key=lambda i: (-(exact[i] - math.floor(exact[i])), i))
    rest = budget - sum(counts)
    while rest > 0:
        for i in order:
            if rest > 0 and counts[i] < caps[i]:
                counts[i] += 1
                rest -= 1
    return counts


def plan(
    paths: Sequence[str],
    shapes: Sequence[Sequence[int]],
    counts: Sequence[Any],
    sparsity: Any,
    distribution: Distribution = "uniform",
    overrides: Mapping[str, Override] | None = None,
) -> list[tuple[tuple[int, ...], Any]]:
    """Groups of candidate leaves and how many entries each group keeps.

    Args:
      paths, shapes: of the prunable leaves.
      counts: candidate entries per leaf (the leaf size, or the entries a current
        mask keeps; may be traced).
      sparsity: the overall target (fraction of the candidates to prune).
      distribution: ``"uniform"``, ``"global"``, ``"er"``, ``"erk"`` or a mapping
        from path regex to sparsity.
      overrides: path regex -> sparsity, or a function of ``sparsity``.

    Returns:
      A list of ``(leaf indices, k)``: the top ``k`` scores over the group's
      candidates are kept. Uniform, explicit and ER/ERK give one group per leaf;
      global gives one group for all free leaves.
    """
    check_distribution(distribution)
    if sparsity is not None:
        check_sparsity(sparsity)
    elif not isinstance(distribution, Mapping):
        raise ValueError(f"distribution {distribution!r} needs a sparsity.")
    rates = _fixed_rates(paths, sparsity, distribution, overrides)
    if isinstance(distribution, Mapping) or distribution == "uniform":
        missing = [p for p, r in zip(paths, rates) if r is None and sparsity is None]
        if missing:
            raise ValueError(
                "The explicit distribution gives no sparsity for "
                f"{', '.join(map(repr, missing))}; add patterns for them or pass sparsity=."
            )
        return [
            ((i,), keep_count(c, sparsity if r is None else r))
            for i, (c, r) in enumerate(zip(counts, rates))
        ]

    fixed = [i for i, r in enumerate(rates) if r is not None]
    free = [i for i, r in enumerate(rates) if r is None]
    groups = [((i,), keep_count(counts[i], rates[i])) for i in fixed]
    total = counts[0]
    for c in counts[1:]:
        total = total + c
    budget = keep_count(total, sparsity)
    for _, k in groups:
        budget = budget - k
    if distribution == "global":
        if free:
            capacity = sum(counts[i] for i in free) if free else 0
            b, cap = concrete(budget), concrete(capacity)
            if b is not None and cap is not None and not 0 <= b <= cap:
                raise _unmeetable(
                    f"after the overrides, the other leaves would keep {int(b)} of their "
                    f"{int(cap)} entries."
                )
            if b is None:
                budget = jnp.clip(budget, 0, capacity)
            groups.append((tuple(free), budget))
        elif concrete(budget) != 0:
            raise _unmeetable("every leaf is overridden, so the overall sparsity cannot be met.")
        return sorted(groups)

    # ER / ERK: densities follow from static shapes.
    if concrete(sparsity) is None or any(concrete(c) is None for c in counts):
        raise ValueError(
            f"distribution {distribution!r} needs a concrete sparsity (a Python float) "
            "and concrete candidate counts (no within= mask under jit); build the mask "
            "outside jit, or use 'uniform' / 'global' there."
        )
    b = int(concrete(budget))
    if not free:
        if b != 0:
            raise _unmeetable("every leaf is overridden, so the overall sparsity cannot be met.")
        return sorted(groups)
    if b < 0:
        raise _unmeetable(f"the overrides keep {-b} entries more than the whole target.")
    free_counts = [int(concrete(counts[i])) for i in free]
    whole = all(c == math.prod(shapes[i]) for c, i in zip(free_counts, free))
    ks = erk_counts([shapes[i] for i in free], b, distribution, None if whole else free_counts)
    groups += [((i,), k) for i, k in zip(free, ks)]
    return sorted(groups)
