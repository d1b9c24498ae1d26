"""Deprecation aliases: old public names that keep working, with a warning, for a release."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any


def module_getattr(module: str, moved: Mapping[str, tuple[str, Callable[[], Any]]]) -> Any:
    """A module ``__getattr__`` resolving the old names in ``moved`` with a DeprecationWarning.

    Args:
      module: the module's ``__name__``.
      moved: old name -> (what to do instead, e.g. ``"use m.new"``, and a function
        returning the object the old name still gives).

    Returns:
      A function ``__getattr__(name)`` for the module.

    Example:
      >>> getattr_ = module_getattr("m", {"old": ("use m.new", lambda: 1)})
      >>> import warnings
      >>> with warnings.catch_warnings(record=True) as w:
      ...     warnings.simplefilter("always")
      ...     getattr_("old"), str(w[0].message)
      (1, 'm.old is deprecated and will be removed; use m.new.')
    """

    def __getattr__(name: str) -> Any:
        if name not in moved:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        instead, new = moved[name]
        warnings.warn(
            f"{module}.{name} is deprecated and will be removed; {instead}.",
            DeprecationWarning,
            stacklevel=2,
        )
        return new()

    return __getattr__


def internal(target: ModuleType, *names: str) -> dict[str, tuple[str, Callable[[], Any]]]:
    """Entries for :func:`module_getattr`: ``names`` now internal, living in ``target``.

    Example:
      >>> import math
      >>> internal(math, "floor")["floor"][1]() is math.floor
      True
    """
    return {n: ("it is internal", lambda n=n: getattr(target, n)) for n in names}
