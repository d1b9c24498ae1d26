"""Deterministic, resumable minibatches, gathered ahead in a background thread by grain."""

from __future__ import annotations

import numbers
from collections.abc import Iterator

import numpy as np

from jaxprune.data.dataset import Dataset

__all__ = ["batches", "epoch_order", "steps_per_epoch"]


def _positive_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}={value!r}: expected an int >= {minimum}.")
    return int(value)


def steps_per_epoch(ds: Dataset | int, batch_size: int, *, drop_remainder: bool = True) -> int:
    """Number of batches `batches` yields for one epoch.

    Args:
      ds: a Dataset, or a number of examples.
      batch_size: examples per batch.
      drop_remainder: whether the last, smaller batch is dropped.

    Returns:
      The number of steps in an epoch.

    Example:
      >>> steps_per_epoch(4000, 128), steps_per_epoch(4000, 128, drop_remainder=False)
      (31, 32)
    """
    n = ds if isinstance(ds, (int, np.integer)) else len(ds)
    batch_size = _positive_int("batch_size", batch_size, 1)
    return n // batch_size if drop_remainder else -(-n // batch_size)


def epoch_order(n: int, *, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The order in which epoch `epoch` visits n examples: a permutation fixed by (seed, epoch).

    Args:
      n: number of examples.
      seed: non-negative int.
      epoch: non-negative int.
      shuffle: False gives the identity order.

    Returns:
      int64 indices; `batches` yields order[k * batch_size : (k + 1) * batch_size] at step k.

    Example:
      >>> epoch_order(5, seed=0, epoch=0, shuffle=False).tolist()
      [0, 1, 2, 3, 4]
    """
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, epoch]).permutation(n)


def batches(
    ds: Dataset,
    batch_size: int,
    *,
    seed: int,
    epoch: int = 0,
    start_step: int = 0,
    shuffle: bool = True,
    drop_remainder: bool = True,
    prefetch: int = 4,
) -> Iterator[dict[str, np.ndarray]]:
    """Iterate over one epoch of minibatches {"x": ..., "y": ...}, starting at any step.

    The order depends only on (seed, epoch), so starting at `start_step` yields
    exactly what skipping the first `start_step` batches would, without touching
    them: the training engine uses it to resume or to rewind a lottery ticket to
    step k. A grain background thread gathers `prefetch` batches ahead.

    Args:
      ds: the Dataset.
      batch_size: examples per batch.
      seed: non-negative int; with `epoch`, fixes the order.
      epoch: which epoch (each has a different order).
      start_step: the first batch to yield, 0 <= start_step <= steps_per_epoch.
      shuffle: False visits the examples in dataset order.
      drop_remainder: drop the last batch if it has fewer than batch_size examples.
      prefetch: batches prepared ahead (0 disables the background thread).

    Returns:
      An iterator of dicts of numpy arrays: x (batch_size, *input_shape) float32, y int32.

    Example:
      >>> from jaxprune import data
      >>> ds = data.load("mnist1d", "train")
      >>> batch = next(iter(data.batches(ds, 128, seed=0, epoch=3, start_step=5)))
      >>> batch["x"].shape, batch["y"].shape
      ((128, 40), (128,))
    """
    import grain

    batch_size = _positive_int("batch_size", batch_size, 1)
    seed = _positive_int("seed", seed, 0)
    epoch = _positive_int("epoch", epoch, 0)
    start_step = _positive_int("start_step", start_step, 0)
    prefetch = _positive_int("prefetch", prefetch, 0)
    steps = steps_per_epoch(ds, batch_size, drop_remainder=drop_remainder)
    if steps == 0:
        raise ValueError(
            f"batch_size={batch_size} exceeds the {len(ds)} examples of {ds.name!r} {ds.split!r} with "
            "drop_remainder=True, so an epoch would have no batches; use a smaller batch or drop_remainder=False."
        )
    if start_step > steps:
        raise ValueError(
            f"start_step={start_step} is past the end of the epoch, which has {steps} steps."
        )
    order = epoch_order(len(ds), seed=seed, epoch=epoch, shuffle=shuffle)
    x, y = ds.x, ds.y

    def gather(step: int) -> dict[str, np.ndarray]:
        take = order[step * batch_size : (step + 1) * batch_size]
        return {"x": x[take], "y": y[take]}

    steps_ds = grain.MapDataset.range(start_step, steps).map(gather)
    # One reader thread: gathering from memory is cheap and more threads only contend for the GIL.
    options = grain.ReadOptions(num_threads=1 if prefetch else 0, prefetch_buffer_size=prefetch)
    return iter(steps_ds.to_iter_dataset(options))
