"""The intrinsic dimension of a point cloud, from the ratio of each point's two nearest
neighbour distances (TwoNN: Facco, d'Errico, Rodriguez & Laio, 2017, "Estimating the
intrinsic dimension of datasets by a minimal neighborhood information")."""

from __future__ import annotations

import numbers

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["intrinsic_dimension"]


def intrinsic_dimension(x: np.ndarray, *, discard: float = 0.1) -> float:
    """The TwoNN estimate of the intrinsic dimension of the rows of ``x``.

    For every point, ``mu = r2 / r1`` (its second and first nearest-neighbour
    distances) follows a Pareto law with exponent ``d`` on a ``d``-dimensional manifold
    of locally uniform density; ``d`` is fitted by least squares through the origin of
    ``-log(1 - F(mu))`` against ``log(mu)`` (``F`` the empirical distribution), without
    the largest ``discard`` fraction of ``mu`` (the paper discards 10%, the points most
    affected by curvature and density changes). Duplicate points are dropped first.
    The estimate falls short of large dimensions (above about 10) unless the sample is
    very large.

    Args:
      x: ``(n, ...)`` points (flattened to rows), ``n >= 10``.
      discard: fraction of the largest ratios left out of the fit, in [0, 1).

    Returns:
      The estimated dimension.

    Example:
      >>> import numpy as np
      >>> from jaxprune import analysis
      >>> plane = np.random.default_rng(1).normal(size=(2000, 2)) @ np.eye(2, 5)
      >>> round(analysis.intrinsic_dimension(plane))
      2
    """
    pts = np.unique(np.asarray(x, np.float64).reshape(len(x), -1), axis=0)
    if len(pts) < 10:
        raise ValueError(
            f"intrinsic_dimension: {len(pts)} distinct points; at least 10 are needed."
        )
    if not isinstance(discard, numbers.Real) or not 0.0 <= discard < 1.0:
        raise ValueError(
            f"intrinsic_dimension: discard={discard!r}; expected a fraction in [0, 1)."
        )
    dist, _ = cKDTree(pts).query(pts, k=3)
    mu = np.sort(dist[:, 2] / dist[:, 1])
    n = len(mu)
    keep = max(int(np.floor(n * (1.0 - discard))), 2)
    log_mu = np.log(mu[:keep])
    tail = -np.log(1.0 - np.arange(keep) / n)
    return float(np.dot(log_mu, tail) / np.dot(log_mu, log_mu))
