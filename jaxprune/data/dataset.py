"""The in-memory Dataset, and the deterministic training subset and label noise applied to it."""

from __future__ import annotations

import dataclasses
import numbers
import os
import pathlib
from collections.abc import Sequence

import numpy as np

__all__ = ["Dataset"]

# Stream tags, so the subset and the label noise draw independent numbers from one seed.
_SUBSET_STREAM = 0x5B5E7
_NOISE_STREAM = 0x9015E

# Per-channel statistics of the training images scaled to [0, 1]: the values the
# literature normalises with (Fashion-MNIST's checked on the Debian package's files).
KNOWN_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A dataset split held in memory: normalised float32 inputs and int32 labels.

    Attributes:
      x: inputs, float32, normalised as (raw - mean) / std; (N, 40) for MNIST-1D, NHWC images.
      y: int32 labels in [0, num_classes), with label noise applied if any was asked for.
      num_classes: number of classes.
      name: the dataset name given to `load`.
      split: the split name given to `load`.
      mean: per-channel means subtracted (raw images scaled to [0, 1] first).
      std: per-channel standard deviations divided by.
      indices: int64 positions of these examples in the full split (all of them without `subset`).
      y_clean: the labels before label noise.
      noisy: bool, True where `y` was replaced by a different, random class.

    Example:
      >>> from jaxprune import data
      >>> ds = data.load("mnist1d", "train", subset=100, label_noise=0.1, seed=0)
      >>> len(ds), ds.input_shape, int(ds.noisy.sum())
      (100, (40,), 10)
    """

    x: np.ndarray
    y: np.ndarray
    num_classes: int
    name: str
    split: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    indices: np.ndarray
    y_clean: np.ndarray
    noisy: np.ndarray

    def __post_init__(self):
        for field in ("x", "y", "indices", "y_clean", "noisy"):
            getattr(self, field).setflags(write=False)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example."""
        return tuple(self.x.shape[1:])

    @property
    def label_noise(self) -> float:
        """Fraction of examples whose label was flipped."""
        return float(self.noisy.mean()) if len(self.noisy) else 0.0

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def take(self, indices: Sequence[int] | np.ndarray) -> Dataset:
        """The examples at `indices` (positions in this dataset), in that order.

        Every per-example field is sliced alike (`x`, `y`, `indices`, `y_clean`,
        `noisy`), so `indices` still locates each example in the full split and label
        noise stays on the examples it was drawn for.

        Args:
          indices: 1-d distinct non-negative ints below `len(self)`.

        Returns:
          A Dataset of exactly those examples.

        Raises:
          ValueError: `indices` not 1-d integers, out of range, or repeated.

        Example:
          >>> from jaxprune import data
          >>> ds = data.load("mnist1d", "train", subset=100, seed=0)
          >>> part = ds.take([5, 2, 7])
          >>> len(part), bool((part.x == ds.x[[5, 2, 7]]).all()), part.indices.tolist() == ds.indices[[5, 2, 7]].tolist()
          (3, True, True)
        """
        where = f"Dataset.take on {self.name!r} {self.split!r} ({len(self)} examples)"
        idx = np.asarray(indices)
        if idx.ndim != 1 or not (np.issubdtype(idx.dtype, np.integer) or idx.size == 0):
            raise ValueError(
                f"{where}: indices must be a 1-d array of ints (positions of examples), got "
                f"dtype {idx.dtype} and shape {idx.shape}; pass e.g. np.flatnonzero(mask)."
            )
        idx = idx.astype(np.int64)
        bad = idx[(idx < 0) | (idx >= len(self))]
        if bad.size:
            raise ValueError(
                f"{where}: indices {bad[:5].tolist()} are out of range; expected 0 <= i < {len(self)}."
            )
        uniq, counts = np.unique(idx, return_counts=True)
        if (counts > 1).any():
            raise ValueError(
                f"{where}: indices {uniq[counts > 1][:5].tolist()} are repeated; each example "
                "may be kept once (use np.unique)."
            )
        return dataclasses.replace(
            self,
            x=self.x[idx],
            y=self.y[idx],
            indices=self.indices[idx],
            y_clean=self.y_clean[idx],
            noisy=self.noisy[idx],
        )

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes}, "
            f"label_noise={self.label_noise:.3f})"
        )


def cache_dir() -> pathlib.Path:
    """Where generated data is cached: $JAXPRUNE_CACHE, else ~/.cache/jaxprune."""
    return pathlib.Path(
        os.environ.get("JAXPRUNE_CACHE") or pathlib.Path.home() / ".cache" / "jaxprune"
    )


def check_request(name: str, split: str, subset: int | None, label_noise: float, seed: int) -> None:
    """Validate the arguments of `load` that do not need the data; raise ValueError naming the bad one."""
    if subset is not None and (
        isinstance(subset, bool) or not isinstance(subset, numbers.Integral) or subset < 1
    ):
        raise ValueError(
            f"subset={subset!r} for {name!r}: expected a positive int (examples to keep) or None."
        )
    if (
        isinstance(label_noise, bool)
        or not isinstance(label_noise, numbers.Real)
        or not 0.0 <= label_noise <= 1.0
    ):
        raise ValueError(
            f"label_noise={label_noise!r} for {name!r}: expected a fraction in [0, 1]."
        )
    if label_noise and not split.startswith("train"):
        raise ValueError(
            f"label_noise={label_noise} on split {split!r} of {name!r}: label noise is for training splits only; "
            "load the evaluation split without it."
        )
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed={seed!r}: expected a non-negative int.")


def check_split(name: str, split: str, splits: Sequence[str]) -> None:
    """Raise a ValueError unless `split` is one of `splits`."""
    if split not in splits:
        raise ValueError(f"Unknown split {split!r} for {name!r}; expected one of {list(splits)}.")


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), stream])


def subset_indices(n: int, subset: int | None, seed: int) -> np.ndarray:
    """Sorted positions of a random `subset` of n examples (all n when subset is None)."""
    if subset is None:
        return np.arange(n, dtype=np.int64)
    if subset > n:
        raise ValueError(f"subset={subset} is larger than the split, which has {n} examples.")
    return np.sort(_rng(seed, _SUBSET_STREAM).choice(n, size=subset, replace=False)).astype(
        np.int64
    )


def flip_labels(
    y: np.ndarray, num_classes: int, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Replace exactly round(fraction * n) labels by a different class, uniformly at random.

    Returns:
      (noisy labels, bool mask of the flipped examples).
    """
    n = len(y)
    k = int(round(fraction * n))
    noisy = np.zeros(n, dtype=bool)
    if k == 0:
        return y.copy(), noisy
    if num_classes < 2:
        raise ValueError(f"label noise needs at least 2 classes, got num_classes={num_classes}.")
    rng = _rng(seed, _NOISE_STREAM)
    noisy[rng.choice(n, size=k, replace=False)] = True
    shift = rng.integers(
        1, num_classes, size=k
    )  # never 0 mod num_classes: always a different class
    out = y.copy()
    out[noisy] = (y[noisy] + shift) % num_classes
    return out, noisy


def build(
    name: str,
    split: str,
    x: np.ndarray,
    y: np.ndarray,
    *,
    num_classes: int,
    mean: Sequence[float],
    std: Sequence[float],
    subset: int | None,
    label_noise: float,
    seed: int,
) -> Dataset:
    """Normalise raw inputs, take the subset, add label noise, and wrap it all in a Dataset.

    Args:
      x: raw inputs of the whole split; integer images are scaled to [0, 1] first.
      y: integer labels of the whole split.
      mean, std: normalisation constants (one, or one per channel).
      subset, label_noise, seed: as in `load`.
    """
    indices = subset_indices(len(x), subset, seed)
    x = x[indices]
    scale = 1.0 / 255.0 if np.issubdtype(x.dtype, np.integer) else 1.0
    mean_a = np.asarray(mean, np.float32)
    std_a = np.asarray(std, np.float32)
    x = ((x.astype(np.float32) * np.float32(scale) - mean_a) / std_a).astype(np.float32)
    y_clean = np.asarray(y)[indices].astype(np.int32)
    y_noisy, noisy = flip_labels(y_clean, num_classes, label_noise, seed)
    return Dataset(
        x=x,
        y=y_noisy,
        num_classes=int(num_classes),
        name=name,
        split=split,
        mean=tuple(float(m) for m in np.atleast_1d(mean_a)),
        std=tuple(float(s) for s in np.atleast_1d(std_a)),
        indices=indices,
        y_clean=y_clean,
        noisy=noisy,
    )
