"""Datasets by name: MNIST-1D and hidden-manifold tasks (generated), Fashion-MNIST (local IDX
files), anything TFDS serves."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from jaxprune.data import dataset as _dataset
from jaxprune.data import idx, manifold, mnist1d, tfds_source
from jaxprune.data.dataset import Dataset

__all__ = ["load", "names"]

# Names with a loader here; "mnist", "cifar10", "cifar100" and any other name go to TFDS.
LOCAL = ("mnist1d", "fashion_mnist")
TFDS_KNOWN = ("mnist", "cifar10", "cifar100")


def names() -> list[str]:
    """The dataset names jaxprune knows; ``manifold_d<d>`` for any ``d`` and any other TFDS
    name are accepted by `load` too.

    Returns:
      Sorted names.

    Example:
      >>> from jaxprune import data
      >>> data.names()
      ['cifar10', 'cifar100', 'fashion_mnist', 'mnist', 'mnist1d']
    """
    return sorted(LOCAL + TFDS_KNOWN)


def load(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike | None = None,
    subset: int | None = None,
    label_noise: float = 0.0,
    seed: int = 0,
    keep: Sequence[int] | np.ndarray | None = None,
) -> Dataset:
    """Load a dataset split into memory, normalised, optionally subsampled and with label noise.

    Args:
      name: "mnist1d" (generated locally, cached), "fashion_mnist" (local IDX files),
        "manifold_d<d>" (a hidden-manifold task of intrinsic dimension d in 64 input
        dimensions, generated: :func:`jaxprune.data.hidden_manifold`), or a TFDS name ("mnist", "cifar10", "cifar100", ... through tfds.data_source).
      split: "train" or "test" (TFDS names accept any TFDS split, e.g. "train[:90%]").
      data_dir: where the files are: Fashion-MNIST's IDX directory (default
        $JAXPRUNE_DATA_DIR, else /usr/share/datasets/fashion-mnist), or TFDS's data_dir.
      subset: keep this many examples, drawn at random without replacement (from `seed`).
      label_noise: fraction of labels replaced by a different random class (from
        `seed`); exactly round(label_noise * N) are flipped, recorded in `Dataset.noisy`.
        Training splits only.
      seed: a non-negative int fixing the subset and the noise.
      keep: optional positions (in the split as loaded, after `subset` and label
        noise) of the only examples to return, in that order (`Dataset.take`): a
        pruned training set.

    Returns:
      A Dataset with x float32 normalised by the per-dataset mean / std and y int32.

    Raises:
      ValueError: unknown name (with the known ones), split, subset, label_noise or keep.
      FileNotFoundError: Fashion-MNIST files missing (says how to get them).
      RuntimeError: a TFDS dataset that is not prepared and cannot be downloaded.

    Example:
      >>> from jaxprune import data
      >>> train = data.load("mnist1d", "train")
      >>> train.x.shape, train.y.dtype, train.num_classes
      ((4000, 40), dtype('int32'), 10)
      >>> len(data.load("mnist1d", "train", keep=[0, 10, 20]))
      3
    """
    loaded = _load(name, split, data_dir, subset, label_noise, seed)
    return loaded if keep is None else loaded.take(keep)


def _load(
    name: str,
    split: str,
    data_dir: str | os.PathLike | None,
    subset: int | None,
    label_noise: float,
    seed: int,
) -> Dataset:
    if not isinstance(name, str) or not name:
        raise ValueError(
            f"name={name!r}: expected a dataset name, one of {names()} or a TFDS name."
        )
    if not isinstance(split, str):
        raise ValueError(
            f"split={split!r} for {name!r}: expected a string such as 'train' or 'test'."
        )
    _dataset.check_request(name, split, subset, label_noise, seed)
    options = {"subset": subset, "label_noise": label_noise, "seed": seed}
    if name == "mnist1d":
        x, y = mnist1d.arrays(split)
        # The generator already standardised the whole dataset; keep its values exactly.
        return _dataset.build(
            name, split, x, y, num_classes=mnist1d.NUM_CLASSES, mean=(0.0,), std=(1.0,), **options
        )
    if (d := manifold.parse_name(name)) is not None:
        if data_dir is not None:
            raise ValueError(f"data_dir={data_dir!r} for {name!r}: generated data has no files.")
        return manifold.hidden_manifold(split, intrinsic_dim=d, **options)
    if name == "fashion_mnist":
        x, y = idx.fashion_mnist(split, data_dir)
        mean, std = _dataset.KNOWN_STATS[name]
        return _dataset.build(name, split, x, y, num_classes=10, mean=mean, std=std, **options)
    tfds_source.check_name(name, known=names())
    found = tfds_source.arrays(name, split, data_dir)
    return _dataset.build(
        name,
        split,
        found["x"],
        found["y"],
        num_classes=found["num_classes"],
        mean=found["mean"],
        std=found["std"],
        **options,
    )
