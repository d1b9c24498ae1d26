"""VGG-11/16/19 for CIFAR (the common CIFAR variant: 3x3 conv-BN-ReLU stages, one dense layer)."""

from __future__ import annotations

import jax
from flax import nnx

from jaxprune.models import _layers

__all__ = ["VGG"]

# Channels of the convs; "M" is a 2x2 max pool (Simonyan & Zisserman configurations A, D, E).
PLANS: dict[int, tuple[int | str, ...]] = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        256,
        "M",
        512,
        512,
        512,
        512,
        "M",
        512,
        512,
        512,
        512,
        "M",
    ),
}


class VGG(nnx.Module):
    """VGG for CIFAR: conv(3x3, no bias)-norm-ReLU layers with max pools, global average pool, one dense layer.

    On 32x32 input the five pools leave 1x1x512, so the global average pool is the
    usual flatten; the single 512 -> classes output layer follows the common CIFAR
    code (kuangliu/pytorch-cifar, open_lth). VGG-19 has 20,035,018 parameters with
    batch norm (Frankle & Carbin report 20.0M). He normal (fan_in) init.

    Args:
      depth: 11, 13, 16 or 19.
      num_classes: number of logits.
      width: channel multiplier (float; channels are rounded to integers).
      norm: "batch" or "layer".
      in_channels: image channels.
      init: kernel initialiser.
      rngs: the NNX random streams.

    Example:
      >>> from flax import nnx
      >>> import jax.numpy as jnp
      >>> VGG(11, width=0.25, rngs=nnx.Rngs(0))(jnp.zeros((2, 32, 32, 3))).shape
      (2, 10)
    """

    def __init__(
        self,
        depth: int = 19,
        num_classes: int = 10,
        *,
        width: float = 1.0,
        norm: str = "batch",
        in_channels: int = 3,
        init: str = "he_normal",
        rngs: nnx.Rngs,
    ):
        _layers.check_choice("VGG depth", depth, list(PLANS))
        _layers.check_choice("norm", norm, _layers.NORMS)
        self.in_channels = in_channels
        self.plan = tuple(
            item if item == "M" else max(1, round(item * width)) for item in PLANS[depth]
        )
        convs, norms = [], []
        channels = in_channels
        for item in self.plan:
            if item == "M":
                continue
            convs.append(_layers.conv(channels, item, 3, use_bias=False, init=init, rngs=rngs))
            norms.append(_layers.norm(norm, item, rngs=rngs))
            channels = item
        self.convs = nnx.List(convs)
        self.norms = nnx.List(norms)
        self.head = _layers.dense(channels, num_classes, init=init, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        _layers.check_image(x, self.in_channels, "VGG")
        h, i = x, 0
        for item in self.plan:
            if item == "M":
                h = _layers.max_pool(h)
            else:
                h = _layers.relu(self.norms[i](self.convs[i](h)), self.convs[i])
                i += 1
        return self.head(_layers.global_avg_pool(h))
