"""Small models and synthetic data for testing the engine and code built on it.

Nothing here is fetched: `synthetic_dataset` draws a learnable classification
problem from a seed, as an `ArrayDataset` that `jaxprune.data.batches` and
`fit` accept like a loaded `jaxprune.data.Dataset`.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = ["ArrayDataset", "TinyMLP", "TinyCNN", "synthetic_dataset"]


@dataclasses.dataclass(frozen=True)
class ArrayDataset:
    """A dataset held in memory: numpy `x` (float32), `y` (int32), `num_classes`.

    It has the fields of `jaxprune.data.Dataset` that `jaxprune.data.batches`,
    `evaluate` and `fit` read.
    """

    x: np.ndarray
    y: np.ndarray
    num_classes: int
    name: str = "synthetic"
    split: str = "train"

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
