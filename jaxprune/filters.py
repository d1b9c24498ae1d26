"""Which parameter leaves are prunable: small composable filters over (path, leaf).

A filter is any callable ``(path: str, leaf) -> bool``. ``path`` is the leaf's
slash-separated path with Flax NNX ``Variable`` wrappers removed, so the same
filter works on Linen ``params`` dicts, NNX ``State`` (wrapped or pure) and plain
nested dicts or lists: ``"layers/0/kernel"``, ``"Dense_0/kernel"``, ``"0/w"``.

The default, :func:`kernels`, keeps leaves with two or more dimensions: the
kernels of Dense (``(in, out)``) and Conv (``(kh, kw, in, out)``) layers. Biases
(one dimension, or any leaf named ``bias``), normalisation parameters and scalars
stay dense.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from jaxprune.typing import Filter, FilterLike

__all__ = [
    "all_of",
    "any_of",
    "as_filter",
    "kernels",
    "not_",
    "path_matches",
]


def kernels(path: str, leaf: Any) -> bool:
    """The default filter: leaves with at least two dimensions (Dense/Conv kernels), except
    those named ``bias`` (Equinox's conv biases are ``(out, 1, 1)``).

    Example:
      >>> import numpy as np
      >>> kernels("dense/kernel", np.zeros((3, 4))), kernels("dense/bias", np.zeros(4))
      (True, False)
      >>> kernels("conv/bias", np.zeros((16, 1, 1)))
      False
    """
    return getattr(leaf, "ndim", 0) >= 2 and path.rsplit("/", 1)[-1] != "bias"


def path_matches(*patterns: str) -> Filter:
    """A filter keeping leaves whose path matches any regular expression (``re.search``).

    Example:
      >>> f = path_matches(r"kernel$", r"^embed")
      >>> f("layers/0/kernel", None), f("layers/0/bias", None)
      (True, False)
    """
    if not patterns:
        raise ValueError("path_matches needs at least one pattern.")
    compiled = [re.compile(p) for p in patterns]

    def match(path: str, leaf: Any) -> bool:
        del leaf
        return any(c.search(path) for c in compiled)

    return match


def all_of(*filters: FilterLike) -> Filter:
    """A filter keeping leaves that every given filter keeps.

    Example:
      >>> import numpy as np
      >>> f = all_of(kernels, not_("layers/0/"))
      >>> f("layers/0/kernel", np.zeros((2, 2))), f("layers/1/kernel", np.zeros((2, 2)))
      (False, True)
    """
    fs = [as_filter(f) for f in filters]
    return lambda path, leaf: all(f(path, leaf) for f in fs)


def any_of(*filters: FilterLike) -> Filter:
    """A filter keeping leaves that at least one given filter keeps.

    Example:
      >>> import numpy as np
      >>> f = any_of(kernels, "bias$")
      >>> f("dense/bias", np.zeros(3)), f("norm/scale", np.zeros(3))
      (True, False)
    """
    fs = [as_filter(f) for f in filters]
    return lambda path, leaf: any(f(path, leaf) for f in fs)


def not_(f: FilterLike) -> Filter:
    """A filter keeping exactly the leaves that ``f`` rejects.

    Example:
      >>> not_("bias$")("dense/bias", None)
      False
    """
    g = as_filter(f)
    return lambda path, leaf: not g(path, leaf)


def as_filter(spec: FilterLike) -> Filter:
    """Turns a filter specification into a filter.

    Args:
      spec: ``None`` (the default, :func:`kernels`), a regular expression or a
        sequence of them (leaves whose path matches any), or a callable
        ``(path, leaf) -> bool``.

    Returns:
      A callable ``(path, leaf) -> bool``.

    Example:
      >>> as_filter(None) is kernels
      True
    """
    if spec is None:
        return kernels
    if isinstance(spec, str):
        return path_matches(spec)
    if callable(spec):
        return spec
    if isinstance(spec, Sequence) and all(isinstance(s, str) for s in spec):
        return path_matches(*spec)
    raise TypeError(
        "prunable must be None (Dense/Conv kernels), a regular expression over "
        "parameter paths, a list of them, or a callable (path, leaf) -> bool; "
        f"got {spec!r}."
    )
