"""Reading the post-activation features out of a zoo model, its parameters untouched."""

from __future__ import annotations

import jax
from flax import nnx

from jaxprune.models import _layers

__all__ = ["features"]


def features(model: nnx.Module, x: jax.Array) -> dict[str, jax.Array]:
    """The post-activation output of every hidden layer of a zoo model on a batch.

    Every ReLU of the model is read out, batch first and units (channels) last, keyed
    by the path of the layer it activates: the Dense or Conv layer (after its norm, if
    any), e.g. ``"hidden/0"``, ``"conv1"``, ``"stem"``, ``"blocks/3/conv1"``; the
    residual block (``"blocks/3"``) for the ReLU after a block's residual sum; the
    norm for a pre-activation ReLU (``"blocks/3/norm1"``, ``"final_norm"`` in
    WideResNet). Keys are sorted by path. It runs the model's own forward pass under
    ``nnx.capture``, so the parameters and the model's output are those of a normal
    call; it works under ``jax.jit`` and ``jax.vmap`` (on a model rebuilt with
    ``nnx.merge`` inside the transformed function). Batch norm behaves as the model's
    mode says: call ``model.eval()`` first to leave its running statistics alone.

    Args:
      model: a model of `jaxprune.models` (any NNX module whose ReLUs go through the
        zoo's shared layer helper).
      x: a batch of inputs, as the model takes them.

    Returns:
      A dict from layer path to its features, ``(batch, units)`` or
      ``(batch, ..., channels)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from jaxprune import models
      >>> model = models.create("lenet300_100", rngs=nnx.Rngs(0))
      >>> {k: v.shape for k, v in models.features(model, jnp.zeros((2, 784))).items()}
      {'hidden/0': (2, 300), 'hidden/1': (2, 100)}
    """
    try:
        _, captured = nnx.capture(model, nnx.Intermediate)(x)
    except BaseException:
        # nnx.capture leaves its per-module buffers behind when the call fails.
        for _, module in nnx.iter_modules(model):
            if hasattr(module, "__captures__"):
                delattr(module, "__captures__")
        raise
    out = {}
    for path, variable in nnx.to_flat_state(captured):
        *where, name = path
        if name != _layers.FEATURES:
            continue
        key = "/".join(map(str, where))
        values = variable.get_value()
        for i, value in enumerate(values):  # one per call of the layer
            out[key if len(values) == 1 else f"{key}/{i}"] = value
    return out
