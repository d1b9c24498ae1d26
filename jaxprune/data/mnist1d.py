"""MNIST-1D (Greydanus 2020), generated locally by the `mnist1d` package and cached as .npz."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import random
import tempfile

import numpy as np

from jaxprune.data import dataset as _dataset

SPLITS = ("train", "test")
NUM_CLASSES = 10


def _default_args() -> dict:
    from mnist1d.data import get_dataset_args

    args = get_dataset_args(as_dict=True)
    args.pop("url", None)  # where the published pickle lives; not part of the data
    return args


def _cache_path(args: dict) -> pathlib.Path:
    from importlib.metadata import version

    key = json.dumps({"args": args, "mnist1d": version("mnist1d")}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return _dataset.cache_dir() / f"mnist1d-{digest}.npz"


def _generate(args: dict) -> dict[str, np.ndarray]:
    """Run the package's generator with its default arguments: the published dataset."""
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    # make_dataset reseeds numpy's and Python's global generators; leave the caller's alone.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(ObjectView(dict(args)))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {
        "x_train": data["x"].astype(np.float32),
        "y_train": data["y"].astype(np.int32),
        "x_test": data["x_test"].astype(np.float32),
        "y_test": data["y_test"].astype(np.int32),
    }


def _write_atomically(path: pathlib.Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The (x, y) arrays of an MNIST-1D split: float32 (N, 40) and int32 (N,).

    Generated on first use (about a second) and cached under `cache_dir()`; the
    generator's defaults (seed 42, 5000 examples, 80/20 split) reproduce the
    published 4000 / 1000 dataset, already standardised to mean 0, std 1.
    """
    _dataset.check_split("mnist1d", split, SPLITS)
    args = _default_args()
    path = _cache_path(args)
    if path.exists():
        with np.load(path) as f:
            return f[f"x_{split}"], f[f"y_{split}"]
    data = _generate(args)
    try:
        _write_atomically(path, data)
    except OSError:
        pass  # a read-only cache only costs regeneration next time
    return data[f"x_{split}"], data[f"y_{split}"]
