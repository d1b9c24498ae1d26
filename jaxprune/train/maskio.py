"""Mask files: one `.npz` per mask, one entry per parameter path.

A run trained under a mask writes `mask.npz` next to its results, so the next
experiment can train the same subnetwork (`experiments/train.py
--config.mask=runs/previous`). Entries are named by the parameter's path
(`hidden/kernel`); a leaf that is not pruned is stored as the 0-d stand-in.
The file is plain numpy: readable without jaxprune.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np

from jaxprune import masks
from jaxprune._tree import leaves_with_paths

__all__ = ["save_mask", "load_mask"]

MASK_FILE = "mask.npz"


def save_mask(path: str | os.PathLike, mask: Any) -> str:
    """Writes `mask` to `path` (a `.npz` file, or a directory to hold `mask.npz`).

    Returns:
      The file written.

    Example:
      >>> import tempfile, jax.numpy as jnp
      >>> mask = {"w": jnp.eye(2, dtype=bool), "b": jnp.array(True)}
      >>> file = save_mask(tempfile.mkdtemp(), mask)
      >>> load_mask(file, {"w": jnp.ones((2, 2)), "b": jnp.ones(2)})["w"].tolist()
      [[True, False], [False, True]]
    """
    path = _file(path)
    paths, leaves, _ = leaves_with_paths(mask)
    arrays = {p: np.asarray(jax.device_get(m), dtype=bool) for p, m in zip(paths, leaves)}
    tmp = path + ".tmp.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
    return path


def load_mask(path: str | os.PathLike, params: Any) -> Any:
    """Reads a mask written by `save_mask`, with the tree structure of `params`.

    Args:
      path: the `.npz` file, or a run directory holding `mask.npz`.
      params: the parameters the mask is for (arrays or ShapeDtypeStructs).

    Raises:
      FileNotFoundError: no such file.
      ValueError: the file's paths or shapes do not fit `params` (names the path).
    """
    path = _file(path)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"load_mask: no mask file {path}; give a .npz written by save_mask or a run "
            "directory that trained under a mask."
        )
    paths, leaves, treedef = leaves_with_paths(params)
    with np.load(path) as stored:
        missing = [p for p in paths if p not in stored.files]
        extra = sorted(set(stored.files) - set(paths))
        if missing or extra:
            raise ValueError(
                f"load_mask: the mask in {path} does not fit these parameters: missing "
                f"{missing[:5]}, unexpected {extra[:5]}. Was it saved for another model?"
            )
        out = [np.asarray(stored[p]) for p in paths]
    mask = treedef.unflatten(out)
    masks.check_mask(mask, params)
    return mask


def _file(path: str | os.PathLike) -> str:
    path = os.fspath(path)
    return os.path.join(path, MASK_FILE) if os.path.isdir(path) else path
