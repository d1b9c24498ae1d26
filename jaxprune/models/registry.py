"""Models by name: `create("resnet20", rngs=nnx.Rngs(0), width=4)`."""

from __future__ import annotations

import difflib
import inspect
from typing import Any, NamedTuple

import numpy as np
from flax import nnx

from jaxprune.models.convnets import CNN1D, ConvNet, LeNet5
from jaxprune.models.mlp import MLP
from jaxprune.models.resnet import CifarResNet, WideResNet
from jaxprune.models.vgg import VGG

__all__ = ["create", "names"]


class _Entry(NamedTuple):
    """A registered model: its class, the arguments its name fixes, and overridable defaults."""

    cls: type[nnx.Module]
    fixed: dict[str, Any]
    defaults: dict[str, Any]


_REGISTRY: dict[str, _Entry] = {
    "mlp": _Entry(MLP, {}, {}),
    "lenet300_100": _Entry(MLP, {"hidden": (300, 100)}, {"in_features": 784}),
    "lenet5": _Entry(LeNet5, {}, {}),
    "lenet5_caffe": _Entry(
        LeNet5, {"channels": (20, 50), "hidden": (500,), "pad_first": False}, {}
    ),
    "conv2": _Entry(ConvNet, {"stages": (64,)}, {}),
    "conv4": _Entry(ConvNet, {"stages": (64, 128)}, {}),
    "conv6": _Entry(ConvNet, {"stages": (64, 128, 256)}, {}),
    "resnet20": _Entry(CifarResNet, {"depth": 20}, {}),
    "resnet32": _Entry(CifarResNet, {"depth": 32}, {}),
    "resnet56": _Entry(CifarResNet, {"depth": 56}, {}),
    "wrn22": _Entry(WideResNet, {"depth": 22}, {"width": 2}),
    "wrn22_2": _Entry(WideResNet, {"depth": 22, "width": 2}, {}),
    "vgg11": _Entry(VGG, {"depth": 11}, {}),
    "vgg16": _Entry(VGG, {"depth": 16}, {}),
    "vgg19": _Entry(VGG, {"depth": 19}, {}),
    "cnn1d": _Entry(CNN1D, {}, {}),
    "mnist1d_mlp": _Entry(
        MLP, {}, {"in_features": 40, "hidden": (100, 100), "residual": True, "init": "torch"}
    ),
}


def names() -> list[str]:
    """The names `create` accepts, sorted.

    Returns:
      A list of model names.

    Example:
      >>> from jaxprune import models
      >>> "resnet20" in models.names()
      True
    """
    return sorted(_REGISTRY)


def _overridable(entry: _Entry) -> list[str]:
    params = inspect.signature(entry.cls.__init__).parameters
    return [p for p in params if p not in ("self", "rngs") and p not in entry.fixed]


def create(name: str, *, rngs: nnx.Rngs, **overrides: Any) -> nnx.Module:
    """Build a zoo model by name, with optional overrides of its constructor arguments.

    Args:
      name: one of `names()`, e.g. "lenet300_100", "conv4", "resnet20", "wrn22_2", "cnn1d".
      rngs: the NNX random streams that initialise the parameters.
      **overrides: constructor arguments to change, e.g. num_classes=100, width=4,
        norm="layer", in_channels=1, hidden=(512, 512). Arguments that the name itself
        fixes (the depth of "resnet20") cannot be overridden.

    Returns:
      The initialised NNX module; `model(x)` returns logits.

    Raises:
      ValueError: for an unknown name (with the closest valid names) or an override
        the model does not take (with the ones it does).

    Example:
      >>> from flax import nnx
      >>> from jaxprune import models
      >>> model = models.create("resnet20", rngs=nnx.Rngs(0), num_classes=100)
      >>> model.head.kernel.shape
      (64, 100)
    """
    entry = _REGISTRY.get(name)
    if entry is None:
        close = difflib.get_close_matches(str(name), _REGISTRY, n=3)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"Unknown model {name!r}.{hint} Valid names: {', '.join(names())}.")
    valid = _overridable(entry)
    bad = sorted(set(overrides) - set(valid))
    if bad:
        fixed = [b for b in bad if b in entry.fixed]
        why = f" ({', '.join(fixed)} fixed by the name {name!r})" if fixed else ""
        raise ValueError(
            f"create({name!r}) got unknown override(s) {', '.join(bad)}{why}; valid overrides: {', '.join(valid)}."
        )
    _check_sizes(name, entry, overrides)
    return entry.cls(**{**entry.defaults, **overrides, **entry.fixed}, rngs=rngs)


# Size arguments: positive, and integers where the model's default is one.
_SIZES = ("num_classes", "in_channels", "in_features", "image_size", "length", "width")


def _check_sizes(name: str, entry: _Entry, overrides: dict[str, Any]) -> None:
    params = inspect.signature(entry.cls.__init__).parameters
    for key in _SIZES:
        if key not in overrides:
            continue
        value, default = overrides[key], entry.defaults.get(key, params[key].default)
        integral = isinstance(default, int) and not isinstance(default, bool)
        kinds = (int, np.integer) if integral else (int, float, np.integer, np.floating)
        if isinstance(value, bool) or not isinstance(value, kinds) or not value > 0:
            kind = "integer" if integral else "number"
            raise ValueError(f"create({name!r}): {key} must be a positive {kind}, got {value!r}.")
