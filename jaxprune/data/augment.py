"""CIFAR augmentation as a pure jax function: random crop after 4-pixel padding, horizontal flip."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune.data.dataset import KNOWN_STATS

__all__ = ["augment", "augmentation_for"]

Augmentation = Callable[[jax.Array, jax.Array], jax.Array]

# Datasets whose standard training recipe uses crop + flip (digits and MNIST-1D do not flip).
_CROP_FLIP = ("cifar10", "cifar100")


def augment(
    rng: jax.Array, x: jax.Array, *, pad: int = 4, pad_value: float | Sequence[float] = 0.0
) -> jax.Array:
    """Randomly crop each image from its `pad`-padded version and flip it horizontally half the time.

    Pure and jittable: the same rng gives the same batch, so it can live inside a
    jitted train step.

    Args:
      rng: a jax PRNG key.
      x: a batch of NHWC images.
      pad: pixels of padding on each side before cropping back to H x W.
      pad_value: value of the padding, a scalar or one per channel. To pad with
        black in raw pixel space on normalised images (what torchvision's
        RandomCrop(32, padding=4) before Normalize does) use -mean / std;
        `augmentation_for` does.

    Returns:
      The augmented batch, same shape and dtype as x.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> augment(jax.random.key(0), jnp.ones((8, 32, 32, 3))).shape
      (8, 32, 32, 3)
    """
    if x.ndim != 4:
        raise ValueError(f"augment expects a batch of NHWC images, got shape {tuple(x.shape)}.")
    n, h, w, c = x.shape
    fill = jnp.broadcast_to(jnp.asarray(pad_value, x.dtype), (c,))
    padded = jnp.broadcast_to(fill, (n, h + 2 * pad, w + 2 * pad, c))
    padded = padded.at[:, pad : pad + h, pad : pad + w, :].set(x)
    k_crop, k_flip = jax.random.split(rng)
    offsets = jax.random.randint(k_crop, (n, 2), 0, 2 * pad + 1)
    flips = jax.random.bernoulli(k_flip, 0.5, (n,))

    def one(image: jax.Array, offset: jax.Array, flip: jax.Array) -> jax.Array:
        crop = jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))
        return jnp.where(flip, crop[:, ::-1, :], crop)

    return jax.vmap(one)(padded, offsets, flips)


def augmentation_for(name: str) -> Augmentation | None:
    """The standard training augmentation of a dataset, or None if it has none.

    Args:
      name: a dataset name as given to `load`.

    Returns:
      `augment` with the padding set to black pixels of that dataset's
      normalisation for CIFAR-10/100; None otherwise (MNIST-1D, MNIST, Fashion-MNIST).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> aug = augmentation_for("cifar10")
      >>> aug(jax.random.key(0), jnp.zeros((2, 32, 32, 3))).shape
      (2, 32, 32, 3)
      >>> augmentation_for("mnist1d") is None
      True
    """
    if name not in _CROP_FLIP:
        return None
    mean, std = KNOWN_STATS[name]
    black = tuple(float(v) for v in -np.asarray(mean) / np.asarray(std))
    return functools.partial(augment, pad=4, pad_value=black)
