"""CIFAR residual networks: ResNet-20/32/56 (He et al. 2016) and Wide ResNets (Zagoruyko & Komodakis 2016)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from jaxprune.models import _layers

__all__ = ["BasicBlock", "CifarResNet", "PreActBlock", "WideResNet"]

SHORTCUTS = ("projection", "pad")


def _stages(
    channels: int, width: int, n: int, make_block: Callable[[int, int, int], nnx.Module]
) -> tuple[nnx.List, int]:
    """Three stages of n blocks with 16, 32, 64 x width channels; stages 2 and 3 start with stride 2.

    Returns:
      (the blocks, the channels of the last one).
    """
    blocks = []
    for stage, out in enumerate((16 * width, 32 * width, 64 * width)):
        for i in range(n):
            blocks.append(make_block(channels, out, 2 if stage > 0 and i == 0 else 1))
            channels = out
    return nnx.List(blocks), channels


class BasicBlock(nnx.Module):
    """Post-activation residual block: conv-norm-relu-conv-norm, add the shortcut, relu."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        *,
        norm: str,
        shortcut: str,
        init: str,
        rngs: nnx.Rngs,
    ):
        self.conv1 = _layers.conv(
            in_channels, out_channels, 3, strides=stride, use_bias=False, init=init, rngs=rngs
        )
        self.norm1 = _layers.norm(norm, out_channels, rngs=rngs)
        self.conv2 = _layers.conv(
            out_channels, out_channels, 3, use_bias=False, init=init, rngs=rngs
        )
        self.norm2 = _layers.norm(norm, out_channels, rngs=rngs)
        self.stride = stride
        self.pad_channels = 0
        # nnx.data: the attributes hold modules in some blocks and None in others.
        self.project: nnx.Conv | None = nnx.data(None)
        self.project_norm: nnx.Module | None = nnx.data(None)
        if stride != 1 or in_channels != out_channels:
            if shortcut == "projection":
                self.project = _layers.conv(
                    in_channels,
                    out_channels,
                    1,
                    strides=stride,
                    use_bias=False,
                    init=init,
                    rngs=rngs,
                )
                self.project_norm = _layers.norm(norm, out_channels, rngs=rngs)
            else:
                self.pad_channels = out_channels - in_channels

    def _shortcut(self, x: jax.Array) -> jax.Array:
        if self.project is not None:
            return self.project_norm(self.project(x))
        if self.stride != 1 or self.pad_channels:
            # He et al.'s option A: subsample, then zero-pad the new channels evenly.
            x = x[:, :: self.stride, :: self.stride, :]
            half = self.pad_channels // 2
            x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (half, self.pad_channels - half)))
        return x

    def __call__(self, x: jax.Array) -> jax.Array:
        h = _layers.relu(self.norm1(self.conv1(x)), self.conv1)
        h = self.norm2(self.conv2(h))
        return _layers.relu(h + self._shortcut(x), self)


class CifarResNet(nnx.Module):
    """ResNet-(6n+2) for CIFAR: a 3x3 stem, three stages of n basic blocks (16/32/64 x width channels).

    ResNet-20 has n = 3. With projection shortcuts (1x1 conv + norm when the shape
    changes, as in open_lth) ResNet-20 has 272,474 parameters; with He et al.'s
    parameter-free option A ("pad") 269,722. Convs have no bias; He normal (fan_in)
    init as the common PyTorch CIFAR code (torch.nn.init.kaiming_normal_).

    Args:
      depth: 20, 32, 44, 56, 110, ... (6n + 2).
      num_classes: number of logits.
      width: channel multiplier (16 * width, 32 * width, 64 * width).
      norm: "batch" or "layer" (LayerNorm over channels, as in Git Re-Basin).
      shortcut: "projection" or "pad".
      in_channels: image channels.
      init: kernel initialiser.
      rngs: the NNX random streams.

    Example:
      >>> from flax import nnx
      >>> import jax.numpy as jnp
      >>> CifarResNet(20, rngs=nnx.Rngs(0))(jnp.zeros((2, 32, 32, 3))).shape
      (2, 10)
    """

    def __init__(
        self,
        depth: int = 20,
        num_classes: int = 10,
        *,
        width: int = 1,
        norm: str = "batch",
        shortcut: str = "projection",
        in_channels: int = 3,
        init: str = "he_normal",
        rngs: nnx.Rngs,
    ):
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CifarResNet depth must be 6n + 2 (20, 32, 56, ...), got {depth}.")
        _layers.check_choice("norm", norm, _layers.NORMS)
        _layers.check_choice("shortcut", shortcut, SHORTCUTS)
        n = (depth - 2) // 6
        self.in_channels = in_channels
        self.stem = _layers.conv(in_channels, 16 * width, 3, use_bias=False, init=init, rngs=rngs)
        self.stem_norm = _layers.norm(norm, 16 * width, rngs=rngs)
        self.blocks, channels = _stages(
            16 * width,
            width,
            n,
            lambda cin, cout, stride: BasicBlock(
                cin, cout, stride, norm=norm, shortcut=shortcut, init=init, rngs=rngs
            ),
        )
        self.head = _layers.dense(channels, num_classes, init=init, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        _layers.check_image(x, self.in_channels, "CifarResNet")
        h = _layers.relu(self.stem_norm(self.stem(x)), self.stem)
        for block in self.blocks:
            h = block(h)
        return self.head(_layers.global_avg_pool(h))


class PreActBlock(nnx.Module):
    """Wide ResNet block: norm-relu-conv-norm-relu-conv; 1x1 conv shortcut on the activated input."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        *,
        norm: str,
        init: str,
        rngs: nnx.Rngs,
    ):
        self.norm1 = _layers.norm(norm, in_channels, rngs=rngs)
        self.conv1 = _layers.conv(
            in_channels, out_channels, 3, strides=stride, use_bias=False, init=init, rngs=rngs
        )
        self.norm2 = _layers.norm(norm, out_channels, rngs=rngs)
        self.conv2 = _layers.conv(
            out_channels, out_channels, 3, use_bias=False, init=init, rngs=rngs
        )
        self.project: nnx.Conv | None = nnx.data(None)
        if stride != 1 or in_channels != out_channels:
            self.project = _layers.conv(
                in_channels, out_channels, 1, strides=stride, use_bias=False, init=init, rngs=rngs
            )

    def __call__(self, x: jax.Array) -> jax.Array:
        o = _layers.relu(self.norm1(x), self.norm1)
        h = self.conv1(o)
        h = self.conv2(_layers.relu(self.norm2(h), self.conv1))
        return h + (self.project(o) if self.project is not None else x)


class WideResNet(nnx.Module):
    """WRN-depth-k for CIFAR: a 16-channel stem, three stages of (depth - 4) / 6 pre-activation blocks.

    Stage channels are 16k, 32k, 64k; final norm-relu, global average pool, dense
    output layer. No dropout (the RigL setup). WRN-22-2 (RigL's CIFAR-10 net) has
    1,079,642 parameters; WRN-28-10 36.5M, WRN-16-8 11.0M, WRN-40-4 8.9M as in the paper.

    Args:
      depth: 16, 22, 28, 40, ... (6n + 4).
      width: the widening factor k.
      num_classes: number of logits.
      norm: "batch" or "layer".
      in_channels: image channels.
      init: kernel initialiser.
      rngs: the NNX random streams.

    Example:
      >>> from flax import nnx
      >>> import jax.numpy as jnp
      >>> WideResNet(16, 1, rngs=nnx.Rngs(0))(jnp.zeros((2, 32, 32, 3))).shape
      (2, 10)
    """

    def __init__(
        self,
        depth: int = 22,
        width: int = 2,
        num_classes: int = 10,
        *,
        norm: str = "batch",
        in_channels: int = 3,
        init: str = "he_normal",
        rngs: nnx.Rngs,
    ):
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n + 4 (16, 22, 28, ...), got {depth}.")
        _layers.check_choice("norm", norm, _layers.NORMS)
        n = (depth - 4) // 6
        self.in_channels = in_channels
        self.stem = _layers.conv(in_channels, 16, 3, use_bias=False, init=init, rngs=rngs)
        self.blocks, channels = _stages(
            16,
            width,
            n,
            lambda cin, cout, stride: PreActBlock(
                cin, cout, stride, norm=norm, init=init, rngs=rngs
            ),
        )
        self.final_norm = _layers.norm(norm, channels, rngs=rngs)
        self.head = _layers.dense(channels, num_classes, init=init, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        _layers.check_image(x, self.in_channels, "WideResNet")
        h = self.stem(x)
        for block in self.blocks:
            h = block(h)
        h = _layers.relu(self.final_norm(h), self.final_norm)
        return self.head(_layers.global_avg_pool(h))
