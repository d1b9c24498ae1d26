"""Slow, obviously correct numpy references the tests compare jaxprune against."""

import numpy as np


def topk_reference(score_leaves, groups, candidates=None):
    """Keeps, per group, the k largest scores; ties -> earlier leaf, earlier flat index.

    Args:
      score_leaves: list of float arrays.
      groups: list of (leaf indices, k).
      candidates: optional list of bool arrays; non-candidates are never kept.
    Returns:
      list of bool arrays.
    """
    out = [np.zeros(np.shape(s), bool) for s in score_leaves]
    for idx, k in groups:
        vals, where = [], []
        for i in idx:
            s = np.asarray(score_leaves[i], np.float32).astype(np.float64).ravel()
            s = np.where(np.isnan(s), -np.inf, s)
            c = np.ones(s.shape, bool) if candidates is None else np.asarray(candidates[i]).ravel()
            for j in np.flatnonzero(c):
                vals.append(s[j])
                where.append((i, j))
        # NaN ranks below -inf: give it an extra flag.
        nan = [np.isnan(np.asarray(score_leaves[i], np.float32).ravel()[j]) for i, j in where]
        order = sorted(range(len(vals)), key=lambda t: (nan[t], -vals[t], t))
        for t in order[:k]:
            i, j = where[t]
            out[i].reshape(-1)[j] = True
    return out


def keep_count_reference(n, s):
    """round((1 - s) * n) in float32, half to even."""
    return int(np.rint((np.float32(1) - np.float32(s)) * np.float32(n)))
