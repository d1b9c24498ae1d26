"""The permutation spec: which (leaf, axis) pairs one permutation of hidden units moves."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune import _tree
from jaxprune.typing import PyTree

__all__ = ["AxisRef", "PermutationGroup", "PermutationSpec"]


class AxisRef(NamedTuple):
    """One axis (or a strided slot of it) that a permutation moves.

    The axis of the leaf at ``path`` is read as ``(outer, size, inner)`` and the
    permutation acts on the middle factor: ``outer = inner = 1`` for a plain axis; a
    Dense kernel after a flatten of ``(h, w, c)`` features has ``outer = h * w``,
    ``inner = 1`` for the channel permutation of the conv before it.
    """

    path: str
    axis: int
    outer: int = 1
    inner: int = 1

    def __str__(self) -> str:
        slot = "" if self.outer == self.inner == 1 else f" (outer {self.outer}, inner {self.inner})"
        return f"{self.path}[{self.axis}]{slot}"


class PermutationGroup(NamedTuple):
    """One hidden-unit permutation: its name, its size and the axes it moves."""

    name: str
    size: int
    axes: tuple[AxisRef, ...]


@dataclasses.dataclass(frozen=True)
class PermutationSpec:
    """The hidden-unit permutations of a function, from `permutation_spec`.

    Attributes:
      groups: permutation name -> `PermutationGroup`, in the order the function
        first meets them.
      shapes: leaf path -> shape, for every leaf the permutations move.
      left_out: readable notes on the hidden axes that could not be tied soundly (they
        are never permuted), e.g. ``"blocks/3/conv1/kernel[3]: pad"``.
    """

    groups: Mapping[str, PermutationGroup]
    shapes: Mapping[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)
    left_out: tuple[str, ...] = ()

    @property
    def names(self) -> list[str]:
        """The permutation names, in order."""
        return list(self.groups)

    @property
    def sizes(self) -> dict[str, int]:
        """Permutation name -> its size (the number of units it permutes)."""
        return {name: g.size for name, g in self.groups.items()}

    @functools.cached_property
    def _moves(self) -> dict[str, list[tuple[str, AxisRef]]]:
        by_path: dict[str, list[tuple[str, AxisRef]]] = {}
        for name, g in self.groups.items():
            for ref in g.axes:
                by_path.setdefault(ref.path, []).append((name, ref))
        return by_path

    def moves(self, path: str) -> list[tuple[str, AxisRef]]:
        """The (group name, `AxisRef`) pairs that move axes of the leaf at ``path``, in the
        order of the groups (empty for a leaf no permutation moves)."""
        return list(self._moves.get(path, ()))

    def axes_of(self, path: str) -> dict[int, tuple[str, AxisRef]]:
        """The permuted axes of the leaf at ``path``: axis -> (group name, its `AxisRef`)."""
        return {ref.axis: (name, ref) for name, ref in self.moves(path)}

    def group_of(self, path: str, axis: int = -1) -> str | None:
        """The name of the permutation moving ``axis`` of the leaf at ``path`` (or None).

        A negative ``axis`` counts from the end of the leaf's rank as traced.
        """
        for name, g in self.groups.items():
            for ref in g.axes:
                if ref.path == path and ref.axis == axis % len(self.shapes[path]):
                    return name
        return None

    def __str__(self) -> str:
        lines = [f"PermutationSpec: {len(self.groups)} permutations"]
        for name, g in self.groups.items():
            lines.append(f"  {name}: size {g.size}, moves {len(g.axes)} axes")
            lines.extend(f"    {ref}" for ref in g.axes)
        if self.left_out:
            lines.append(f"  left out ({len(self.left_out)}):")
            lines.extend(f"    {note}" for note in self.left_out)
        return "\n".join(lines)

    __repr__ = __str__


def unit_view(x: jax.Array, ref: AxisRef) -> jax.Array:
    """``x`` with the units ``ref`` moves first, everything else flattened: ``(size, -1)``."""
    shape = x.shape
    n = shape[ref.axis] // (ref.outer * ref.inner)
    y = x.reshape(shape[: ref.axis] + (ref.outer, n, ref.inner) + shape[ref.axis + 1 :])
    return jnp.moveaxis(y, ref.axis + 1, 0).reshape(n, -1)


def take(x: jax.Array, ref: AxisRef, perm: jax.Array) -> jax.Array:
    """``x`` with the units ``ref`` moves reordered: unit ``i`` of the result is ``perm[i]``
    (``perm`` may be shorter than the units: a selection, in every outer/inner slot)."""
    shape = tuple(x.shape)
    n = shape[ref.axis] // (ref.outer * ref.inner)
    y = jnp.asarray(x).reshape(
        shape[: ref.axis] + (ref.outer, n, ref.inner) + shape[ref.axis + 1 :]
    )
    size = ref.outer * len(perm) * ref.inner
    return jnp.take(y, perm, axis=ref.axis + 1).reshape(
        shape[: ref.axis] + (size,) + shape[ref.axis + 1 :]
    )


def leaf_index(tree: PyTree) -> tuple[dict[str, int], list[Any], Any]:
    """path -> position among the leaves, the leaves and the treedef of ``tree``."""
    paths, leaves, treedef = _tree.leaves_with_paths(tree)
    return {p: i for i, p in enumerate(paths)}, leaves, treedef


def check_perm(spec: PermutationSpec, perm: Mapping[str, Any]) -> dict[str, jax.Array]:
    """Validates a permutation dict against ``spec``; returns it as int arrays."""
    missing = [n for n in spec.groups if n not in perm]
    extra = [n for n in perm if n not in spec.groups]
    if missing or extra:
        raise ValueError(
            f"The permutation does not match the spec: missing {missing}, unknown {extra}. "
            f"Build it with identity_permutation(spec) or random_permutation(key, spec)."
        )
    out = {}
    for name, g in spec.groups.items():
        p = perm[name]
        if tuple(np.shape(p)) != (g.size,):
            raise ValueError(
                f"permutation {name!r} has shape {tuple(np.shape(p))}; expected ({g.size},)."
            )
        out[name] = jnp.asarray(p, jnp.int32)
    return out


def spec_leaf(path: str, leaf: object, spec: PermutationSpec) -> str | None:
    """The spec leaf that ``leaf`` (at ``path``) is, or None to leave it as it is."""
    shape = tuple(getattr(leaf, "shape", ()))
    if path in spec.shapes:
        if shape == spec.shapes[path]:
            return path
        if shape == ():  # a mask's stand-in, or a scalar in its place
            return None
        raise ValueError(
            f"the leaf at {path!r} has shape {shape}; the spec moves it as "
            f"{spec.shapes[path]}. Pass a tree built from the same model."
        )
    for key, spec_shape in spec.shapes.items():
        if path.endswith("/" + key) and shape == spec_shape:
            return key
    return None
