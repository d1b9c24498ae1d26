"""Fully connected networks: the configurable MLP behind LeNet-300-100 and the MNIST-1D MLP."""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx

from jaxprune.models import _layers

__all__ = ["MLP"]


class MLP(nnx.Module):
    """A ReLU MLP on flattened input; `lenet300_100` and `mnist1d_mlp` are instances.

    Args:
      in_features: size of the flattened input (784 for 28x28 images, 40 for MNIST-1D).
      hidden: widths of the hidden layers.
      num_classes: number of logits.
      residual: add each hidden layer's output to its input where the widths agree
        (h = h + relu(W h + b)), as the MNIST-1D paper's MLP does.
      init: kernel initialiser, one of "glorot_normal", "he_normal", "torch".
      rngs: the NNX random streams.

    Example:
      >>> from flax import nnx
      >>> import jax.numpy as jnp
      >>> model = MLP(784, (300, 100), 10, rngs=nnx.Rngs(0))
      >>> model(jnp.zeros((2, 28, 28, 1))).shape
      (2, 10)
    """

    def __init__(
        self,
        in_features: int = 784,
        hidden: Sequence[int] = (300, 100),
        num_classes: int = 10,
        *,
        residual: bool = False,
        init: str = "glorot_normal",
        rngs: nnx.Rngs,
    ):
        widths = [in_features, *hidden]
        self.in_features = in_features
        self.hidden = _layers.dense_stack(widths, init=init, rngs=rngs)
        self.skip = tuple(residual and a == b for a, b in zip(widths[:-1], widths[1:]))
        self.head = _layers.dense(widths[-1], num_classes, init=init, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = _layers.flatten(x)
        if h.shape[-1] != self.in_features:
            raise ValueError(
                f"MLP expects {self.in_features} input features per example, got input shape "
                f"{tuple(x.shape)} ({h.shape[-1]} after flattening); set in_features."
            )
        for layer, skip in zip(self.hidden, self.skip):
            out = _layers.relu(layer(h), layer)
            h = h + out if skip else out
        return self.head(h)
