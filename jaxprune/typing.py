"""Type aliases for annotating code that uses jaxprune.

Example:
  >>> from jaxprune.typing import Mask, Params
  >>> def prune(params: Params, mask: Mask) -> Params: ...
"""

from jaxprune._types import (
    Distribution,
    Filter,
    FilterLike,
    Mask,
    Override,
    Params,
    PRNGKey,
    PyTree,
    Schedule,
    Scores,
)

__all__ = [
    "Distribution",
    "Filter",
    "FilterLike",
    "Mask",
    "Override",
    "PRNGKey",
    "Params",
    "PyTree",
    "Schedule",
    "Scores",
]
