"""Small convolutional nets: LeNet-5, Conv-2/4/6 (lottery tickets) and the MNIST-1D CNN."""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx

from jaxprune.models import _layers

__all__ = ["CNN1D", "ConvNet", "LeNet5"]


class LeNet5(nnx.Module):
    """LeNet-5 with ReLU and max pooling: two 5x5 convs, each pooled, then dense layers.

    The defaults are the classic 6-16 / 120-84 net (first conv SAME-padded so that
    28x28 input gives 5x5x16 features, 61,706 parameters). `lenet5_caffe` (SNIP's
    LeNet-5-Caffe, 431,080 parameters) is channels (20, 50), hidden (500,), both
    convs unpadded.

    Args:
      num_classes: number of logits.
      in_channels: image channels.
      image_size: height = width of the input images.
      channels: output channels of the two convs.
      hidden: widths of the dense layers before the output layer.
      pad_first: SAME padding for the first conv (else VALID, like the second).
      init: kernel initialiser ("glorot_normal" is the LeNet papers' Gaussian Glorot).
      rngs: the NNX random streams.

    Example:
      >>> from flax import nnx
      >>> import jax.numpy as jnp
      >>> LeNet5(rngs=nnx.Rngs(0))(jnp.zeros((2, 28, 28, 1))).shape
      (2, 10)
    """

    def __init__(
        self,
        num_classes: int = 10,
        *,
        in_channels: int = 1,
        image_size: int = 28,
        channels: Sequence[int] = (6, 16),
        hidden: Sequence[int] = (120, 84),
        pad_first: bool = True,
        init: str = "glorot_normal",
        rngs: nnx.Rngs,
    ):
        c1, c2 = channels
        self.in_channels, self.image_size = in_channels, image_size
        self.conv1 = _layers.conv(
            in_channels, c1, 5, padding="SAME" if pad_first else "VALID", init=init, rngs=rngs
        )
        self.conv2 = _layers.conv(c1, c2, 5, padding="VALID", init=init, rngs=rngs)
        size = image_size if pad_first else image_size - 4
        size = (size // 2 - 4) // 2
        if size < 1:
            raise ValueError(
                f"LeNet5 needs images of at least {12 if pad_first else 16}x"
                f"{12 if pad_first else 16} pixels (pad_first={pad_first}), got "
                f"image_size={image_size}."
            )
        widths = [size * size * c2, *hidden]
        self.hidden = _layers.dense_stack(widths, init=init, rngs=rngs)
        self.head = _layers.dense(widths[-1], num_classes, init=init, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        _layers.check_image(x, self.in_channels, "LeNet5", self.image_size)
        h = _layers.max_pool(_layers.relu(self.conv1(x), self.conv1))
        h = _layers.max_pool(_layers.relu(self.conv2(h), self.conv2))
        return self.head(_layers.relu_stack(self.hidden, _layers.flatten(h)))


class ConvNet(nnx.Module):
    """Conv-2/4/6 of Frankle & Carbin (2019): stages of two 3x3 convs and a 2x2 max pool, then dense layers.

    Conv-2 is stages (64,), Conv-4 (64, 128), Conv-6 (64, 128, 256); all have dense
    layers 256, 256 and the output layer, ReLU everywhere, SAME padding, Gaussian
    Glorot init. On CIFAR-10 they have 4,301,642 / 2,425,930 / 2,262,602 parameters.
    The paper's table gives 4.3M / 2.4M / 1.7M; its Conv-6 total cannot come from the
    architecture it describes (whose conv layers do match the table's 1.1M), so we
    follow the architecture.

    Args:
      stages: channels of each stage (two convs, then a pool).
      hidden: widths of the dense layers before the output layer.
      num_classes: number of logits.
      in_channels: image channels.
      image_size: height = width of the input images (32 for CIFAR-10).
      init: kernel initialiser.
      rngs: the NNX random streams.

    Example:
      >>> from flax import nnx
      >>> import jax.numpy as jnp
      >>> ConvNet((64,), rngs=nnx.Rngs(0))(jnp.zeros((2, 32, 32, 3))).shape
      (2, 10)
    """

    def __init__(
        self,
        stages: Sequence[int] = (64, 128),
        hidden: Sequence[int] = (256, 256),
        num_classes: int = 10,
        *,
        in_channels: int = 3,
        image_size: int = 32,
        init: str = "glorot_normal",
        rngs: nnx.Rngs,
    ):
        self.in_channels, self.image_size = in_channels, image_size
        convs = []
        width = in_channels
        for out in stages:
            convs += [
                _layers.conv(width, out, 3, init=init, rngs=rngs),
                _layers.conv(out, out, 3, init=init, rngs=rngs),
            ]
            width = out
        self.convs = nnx.List(convs)
        size = image_size // 2 ** len(stages)
        if size < 1:
            raise ValueError(
                f"ConvNet with {len(stages)} pooling stages needs image_size >= {2 ** len(stages)}, "
                f"got {image_size}."
            )
        widths = [size * size * width, *hidden]
        self.hidden = _layers.dense_stack(widths, init=init, rngs=rngs)
        self.head = _layers.dense(widths[-1], num_classes, init=init, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        _layers.check_image(x, self.in_channels, "ConvNet", self.image_size)
        h = x
        for i in range(0, len(self.convs), 2):
            h = _layers.relu(self.convs[i](h), self.convs[i])
            h = _layers.max_pool(_layers.relu(self.convs[i + 1](h), self.convs[i + 1]))
        return self.head(_layers.relu_stack(self.hidden, _layers.flatten(h)))


def _conv_out_length(length: int, kernel: int, stride: int, pad: int) -> int:
    return (length + 2 * pad - kernel) // stride + 1


class CNN1D(nnx.Module):
    """The MNIST-1D paper's CNN (Greydanus 2020, `ConvBase`): three strided 1-D convs and a linear layer.

    Conv kernel sizes 5, 3, 3 with stride 2 and padding 1, 25 channels, ReLU, then a
    linear classifier on the flattened 5 x 25 features: 5,210 parameters for length-40
    input. PyTorch's default initialisation, as in the paper's code.

    Args:
      num_classes: number of logits.
      length: input sequence length (40 for MNIST-1D).
      channels: channels of every conv.
      kernel_sizes: kernel size of each conv.
      init: kernel initialiser.
      rngs: the NNX random streams.

    Example:
      >>> from flax import nnx
      >>> import jax.numpy as jnp
      >>> CNN1D(rngs=nnx.Rngs(0))(jnp.zeros((2, 40))).shape
      (2, 10)
    """

    def __init__(
        self,
        num_classes: int = 10,
        *,
        length: int = 40,
        channels: int = 25,
        kernel_sizes: Sequence[int] = (5, 3, 3),
        init: str = "torch",
        rngs: nnx.Rngs,
    ):
        self.length = length
        convs = []
        width, out_len = 1, length
        for k in kernel_sizes:
            convs.append(
                _layers.conv(
                    width, channels, (k,), strides=2, padding=[(1, 1)], init=init, rngs=rngs
                )
            )
            width, out_len = channels, _conv_out_length(out_len, k, 2, 1)
        if out_len < 1:
            raise ValueError(
                f"CNN1D input length {length} is too short for kernel sizes {tuple(kernel_sizes)}."
            )
        self.convs = nnx.List(convs)
        self.head = _layers.dense(out_len * channels, num_classes, init=init, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim == 2:
            x = x[..., None]
        if x.ndim != 3 or x.shape[1:] != (self.length, 1):
            raise ValueError(
                f"CNN1D expects input of shape (batch, {self.length}) or (batch, {self.length}, 1), "
                f"got {tuple(x.shape)}; set length= to match your sequences."
            )
        h = x
        for layer in self.convs:
            h = _layers.relu(layer(h), layer)
        return self.head(_layers.flatten(h))
