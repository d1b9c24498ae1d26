"""Layer factories shared by the zoo: initialisers from the papers, norms, counting."""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

# Kernel initialisers by the name the papers use.
#   glorot_normal: Gaussian Glorot as in TF1's glorot_normal_initializer (truncated
#     normal, fan_avg), which Frankle & Carbin's LeNet / Conv-2/4/6 code used.
#   he_normal: Kaiming normal, fan_in, untruncated, as torch.nn.init.kaiming_normal_
#     does in the common CIFAR ResNet / VGG code (open_lth, akamaster).
#   torch: PyTorch's default for nn.Linear / nn.Conv (uniform, bound 1/sqrt(fan_in)
#     for kernel and bias), used by the MNIST-1D paper's models.
INITS = ("glorot_normal", "he_normal", "torch")
NORMS = ("batch", "layer")

# PyTorch's BatchNorm momentum 0.1 is Flax's 0.9 (Flax weights the old average).
BN_MOMENTUM = 0.9
NORM_EPSILON = 1e-5


def check_choice(what: str, value: object, choices: Sequence[object]) -> None:
    """Raise a ValueError naming `what`, the bad value and the valid choices."""
    if value not in choices:
        raise ValueError(f"{what}={value!r} is not supported; expected one of {list(choices)}.")


def _kernel_init(init: str) -> nnx.Initializer:
    check_choice("init", init, INITS)
    if init == "glorot_normal":
        return nnx.initializers.glorot_normal()
    if init == "he_normal":
        return nnx.initializers.variance_scaling(2.0, "fan_in", "normal")
    return nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def _bias_init(init: str, fan_in: int) -> nnx.Initializer:
    if init != "torch":
        return nnx.initializers.zeros_init()
    bound = 1.0 / math.sqrt(fan_in)

    def uniform_bias(
        key: jax.Array, shape: Sequence[int], dtype: jnp.dtype = jnp.float32
    ) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return uniform_bias


def dense(
    in_features: int, out_features: int, *, init: str, rngs: nnx.Rngs, use_bias: bool = True
) -> nnx.Linear:
    """An nnx.Linear (kernel (in, out)) initialised as the named paper does."""
    return nnx.Linear(
        in_features,
        out_features,
        use_bias=use_bias,
        kernel_init=_kernel_init(init),
        bias_init=_bias_init(init, in_features),
        rngs=rngs,
    )


def dense_stack(widths: Sequence[int], *, init: str, rngs: nnx.Rngs) -> nnx.List:
    """Dense layers widths[0] -> widths[1] -> ... (no output layer)."""
    return nnx.List([dense(a, b, init=init, rngs=rngs) for a, b in zip(widths[:-1], widths[1:])])


# The name under which `relu` sows a module's post-activation features.
FEATURES = "relu"


def relu(x: jax.Array, module: nnx.Module) -> jax.Array:
    """``jax.nn.relu(x)``, the post-activation output of ``module``: the zoo's one ReLU.

    Inside ``nnx.capture(model, nnx.Intermediate)`` (`jaxprune.models.features`) it is
    also sown into ``module``'s ``nnx.Intermediate`` collection.
    """
    h = jax.nn.relu(x)
    # Module.sow outside nnx.capture is deprecated: it warns and adds a Variable to the
    # model. nnx.capture marks every module it captures with __captures__ (flax 0.12).
    if hasattr(module, "__captures__"):
        module.sow(nnx.Intermediate, FEATURES, h)
    return h


def relu_stack(layers: nnx.List, h: jax.Array) -> jax.Array:
    """Apply each layer followed by a ReLU."""
    for layer in layers:
        h = relu(layer(h), layer)
    return h


def conv(
    in_features: int,
    out_features: int,
    kernel_size: int | Sequence[int],
    *,
    init: str,
    rngs: nnx.Rngs,
    strides: int = 1,
    padding: str | Sequence[tuple[int, int]] = "SAME",
    use_bias: bool = True,
) -> nnx.Conv:
    """An nnx.Conv (kernel (*window, in, out)) initialised as the named paper does."""
    window = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
    return nnx.Conv(
        in_features,
        out_features,
        window,
        strides=strides,
        padding=padding,
        use_bias=use_bias,
        kernel_init=_kernel_init(init),
        bias_init=_bias_init(init, in_features * int(np.prod(window))),
        rngs=rngs,
    )


def norm(kind: str, num_features: int, *, rngs: nnx.Rngs) -> nnx.BatchNorm | nnx.LayerNorm:
    """BatchNorm (PyTorch momentum) or LayerNorm over the channel axis (as Git Re-Basin)."""
    check_choice("norm", kind, NORMS)
    if kind == "batch":
        return nnx.BatchNorm(num_features, momentum=BN_MOMENTUM, epsilon=NORM_EPSILON, rngs=rngs)
    return nnx.LayerNorm(num_features, epsilon=NORM_EPSILON, rngs=rngs)


def flatten(x: jax.Array) -> jax.Array:
    """Collapse every axis but the batch axis."""
    return x.reshape(x.shape[0], -1)


def max_pool(x: jax.Array) -> jax.Array:
    """2x2 max pooling with stride 2 on NHWC input."""
    return nnx.max_pool(x, (2, 2), strides=(2, 2))


def global_avg_pool(x: jax.Array) -> jax.Array:
    """Mean over the spatial axes of NHWC input."""
    return x.mean(axis=(1, 2))


def check_image(x: jax.Array, in_channels: int, model: str, image_size: int | None = None) -> None:
    """Raise a ValueError unless x is an NHWC batch with `in_channels` channels (and, for a
    model whose dense layers fix it, `image_size` x `image_size` pixels)."""
    if x.ndim != 4 or x.shape[-1] != in_channels:
        raise ValueError(
            f"{model} expects NHWC images with {in_channels} channels, got shape {tuple(x.shape)}; "
            "add a channel axis (x[..., None]) or create the model with the right in_channels."
        )
    if image_size is not None and tuple(x.shape[1:3]) != (image_size, image_size):
        raise ValueError(
            f"{model} was built for {image_size}x{image_size} images, got shape "
            f"{tuple(x.shape)}; create it with image_size={x.shape[1]} (square images)."
        )


def count_params(model: nnx.Module) -> int:
    """Number of scalar entries in the model's nnx.Param leaves (batch statistics excluded).

    Works on concrete models and on abstract ones from `nnx.eval_shape`.

    Args:
      model: an NNX module.

    Returns:
      The parameter count.

    Example:
      >>> from flax import nnx
      >>> from jaxprune import models
      >>> models.count_params(models.create("lenet300_100", rngs=nnx.Rngs(0)))
      266610
    """
    leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
    return int(sum(int(np.prod(leaf.shape)) for leaf in leaves))
