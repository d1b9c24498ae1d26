"""Small models and synthetic data for testing the engine and code built on it.

Nothing here is fetched: `synthetic_dataset` draws a learnable classification
problem from a seed, and `simple_batches` follows the `jaxprune.data.batches`
contract (deterministic order per `(seed, epoch)`, resumable at `start_step`).
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = ["ArrayDataset", "TinyMLP", "TinyCNN", "synthetic_dataset", "simple_batches"]


@dataclasses.dataclass(frozen=True)
class ArrayDataset:
    """A dataset held in memory: numpy `x` (float32), `y` (int32), `num_classes`."""

    x: np.ndarray
    y: np.ndarray
    num_classes: int

    def __len__(self) -> int:
        return len(self.y)


def synthetic_dataset(
    n: int,
    shape: tuple[int, ...] = (16,),
    num_classes: int = 4,
    *,
    seed: int = 0,
    task_seed: int = 0,
) -> ArrayDataset:
    """`n` examples whose class is a noisy linear function of the input.

    Splits of one problem share `task_seed` (the labelling function) and differ
    in `seed` (the examples).

    Example:
      >>> ds = synthetic_dataset(256, (16,), 4, seed=0)
      >>> ds.x.shape, ds.y.dtype
      ((256, 16), dtype('int32'))
    """
    w = np.random.default_rng(task_seed).normal(size=(int(np.prod(shape)), num_classes))
    rng = np.random.default_rng([task_seed, seed])
    x = rng.normal(size=(n, *shape)).astype(np.float32)
    logits = x.reshape(n, -1) @ w + 0.5 * rng.normal(size=(n, num_classes))
    return ArrayDataset(x, logits.argmax(-1).astype(np.int32), num_classes)


def simple_batches(
    ds: ArrayDataset,
    batch_size: int,
    *,
    seed: int,
    epoch: int = 0,
    start_step: int = 0,
    shuffle: bool = True,
    drop_remainder: bool = True,
) -> Iterator[dict[str, np.ndarray]]:
    """One epoch of `{"x", "y"}` batches in an order fixed by `(seed, epoch)`.

    Example:
      >>> first = next(simple_batches(synthetic_dataset(64), 16, seed=0))
      >>> first["x"].shape
      (16, 16)
    """
    n = len(ds.y)
    order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_remainder else n
    for start in range(start_step * batch_size, stop, batch_size):
        idx = order[start : start + batch_size]
        yield {"x": ds.x[idx], "y": ds.y[idx]}


class TinyMLP(nnx.Module):
    """Dense -> ReLU -> Dense on flattened inputs.

    Example:
      >>> TinyMLP(16, 32, 4, rngs=nnx.Rngs(0))(jnp.ones((2, 16))).shape
      (2, 4)
    """

    def __init__(self, din: int, hidden: int, dout: int, *, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(din, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, dout, rngs=rngs)

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return self.out(nnx.relu(self.hidden(x.reshape(x.shape[0], -1))))


class TinyCNN(nnx.Module):
    """Conv -> BatchNorm -> ReLU -> mean pool -> Dense on `(N, L, C)` inputs.

    Example:
      >>> TinyCNN(1, 8, 4, rngs=nnx.Rngs(0))(jnp.ones((2, 16, 1))).shape
      (2, 4)
    """

    def __init__(self, channels: int, features: int, dout: int, *, rngs: nnx.Rngs):
        # No conv bias: BatchNorm cancels it, so its gradient is pure rounding
        # noise that Adam would amplify into a random walk.
        self.conv = nnx.Conv(channels, features, kernel_size=(3,), use_bias=False, rngs=rngs)
        self.bn = nnx.BatchNorm(features, rngs=rngs)
        self.out = nnx.Linear(features, dout, rngs=rngs)

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return self.out(nnx.relu(self.bn(self.conv(x))).mean(axis=1))
