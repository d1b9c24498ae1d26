"""Data of a controlled intrinsic dimension: the hidden manifold model, generated locally.

A latent ``c ~ N(0, I_d)`` is embedded in ``D`` input dimensions by a fixed random
smooth map, ``x = tanh(c F / sqrt(d))`` with ``F`` a ``d x D`` Gaussian matrix (Goldt,
Mezard, Krzakala & Zdeborova, 2020, "Modelling the influence of data structure on
learning in neural networks: the hidden manifold model"). The inputs fill a
``d``-dimensional manifold of the ``D``-dimensional input space, whatever ``D``. The
labels come from a fixed random teacher acting on the latent,
``argmax(tanh(c W1 / sqrt(d)) W2 + b)``, with per-class offsets ``b`` chosen on a
reference sample so that the classes are about equally frequent (as far as the
teacher's regions allow: with ``d = 1`` some classes cannot be reached).

``task`` fixes the task (``F``, the teacher, the offsets) and the examples: the train and
test splits of one task share the embedding and the teacher and draw their latents from
independent streams. ``seed`` plays its part of :func:`jaxprune.data.load` (the subset
and the label noise), so ``load("manifold_d8", "train", seed=s)`` is task 0 for every
``s``. Inputs are left as generated (in ``(-1, 1)``, no normalisation).
"""

from __future__ import annotations

import numbers
import re

import numpy as np

from jaxprune.data import dataset as _dataset
from jaxprune.data.dataset import Dataset

__all__ = ["hidden_manifold", "parse_name"]

_TASK_STREAM = 0x3A1F0
_SPLIT_STREAMS = {"train": 0x7A1, "test": 0x7E5}
_REFERENCE = 20_000  # latents the class offsets are balanced on
_TEACHER_HIDDEN = 64
NAME = re.compile(r"manifold_d(\d+)$")
# What `load("manifold_d<d>", ...)` makes: the defaults of `hidden_manifold`.
DEFAULT_SIZES = {"train": 8_000, "test": 2_000}


def _positive(name: str, value: object) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"hidden_manifold: {name}={value!r}; expected a positive int.")
    return int(value)


def _balance(logits: np.ndarray, iters: int = 300) -> np.ndarray:
    """Per-class offsets that make ``argmax(logits + b)`` about equally frequent."""
    k = logits.shape[1]
    b = np.zeros(k)
    step = float(np.std(logits))
    for _ in range(iters):
        freq = np.bincount(np.argmax(logits + b, axis=1), minlength=k) / len(logits)
        b -= step * (freq - 1.0 / k)
    return b


def hidden_manifold(
    split: str,
    *,
    intrinsic_dim: int,
    ambient_dim: int = 64,
    num_classes: int = 10,
    size: int | None = None,
    task: int = 0,
    subset: int | None = None,
    label_noise: float = 0.0,
    seed: int = 0,
) -> Dataset:
    """A split of a hidden-manifold classification task of intrinsic dimension ``d``.

    Args:
      split: ``"train"`` or ``"test"``.
      intrinsic_dim: ``d``, the dimension of the latent and of the inputs' manifold.
      ambient_dim: ``D``, the size of each input (``D >= d``).
      num_classes: number of classes of the teacher.
      size: examples in the split (default 8,000 train, 2,000 test).
      task: a non-negative int fixing the embedding, the teacher and the examples.
      subset, label_noise, seed: as in :func:`jaxprune.data.load` (the noise for a
        training split only).

    Returns:
      A :class:`jaxprune.data.Dataset` named ``manifold_d<d>``: ``x`` float32 of shape
      ``(size, D)``, ``y`` int32.

    Example:
      >>> from jaxprune import data
      >>> ds = data.hidden_manifold("train", intrinsic_dim=4, size=1000)
      >>> ds.x.shape, ds.num_classes, ds.name
      ((1000, 64), 10, 'manifold_d4')
    """
    d = _positive("intrinsic_dim", intrinsic_dim)
    big_d = _positive("ambient_dim", ambient_dim)
    k = _positive("num_classes", num_classes)
    if big_d < d:
        raise ValueError(
            f"hidden_manifold: ambient_dim={big_d} < intrinsic_dim={d}; a d-dimensional "
            "manifold needs at least d input dimensions."
        )
    if k < 2:
        raise ValueError(f"hidden_manifold: num_classes={k}; expected at least 2.")
    if split not in _SPLIT_STREAMS:
        raise ValueError(
            f"hidden_manifold: split={split!r}; expected one of {sorted(_SPLIT_STREAMS)}."
        )
    n = DEFAULT_SIZES[split] if size is None else _positive("size", size)
    name = f"manifold_d{d}"
    _dataset.check_request(name, split, subset, label_noise, seed)
    if not isinstance(task, numbers.Integral) or isinstance(task, bool) or task < 0:
        raise ValueError(f"hidden_manifold: task={task!r}; expected a non-negative int.")
    rng = np.random.default_rng([int(task), _TASK_STREAM, d, big_d, k])
    embed = rng.standard_normal((d, big_d))
    w1 = rng.standard_normal((d, _TEACHER_HIDDEN))
    w2 = rng.standard_normal((_TEACHER_HIDDEN, k))

    def teacher(c: np.ndarray) -> np.ndarray:
        return np.tanh(c @ w1 / np.sqrt(d)) @ w2

    offsets = _balance(teacher(rng.standard_normal((_REFERENCE, d))))
    stream = [int(task), _TASK_STREAM, d, big_d, k, _SPLIT_STREAMS[split]]
    latent = np.random.default_rng(stream).standard_normal((n, d))
    x = np.tanh(latent @ embed / np.sqrt(d)).astype(np.float32)
    y = np.argmax(teacher(latent) + offsets, axis=1).astype(np.int32)
    return _dataset.build(
        name,
        split,
        x,
        y,
        num_classes=k,
        mean=(0.0,),
        std=(1.0,),
        subset=subset,
        label_noise=label_noise,
        seed=seed,
    )


def parse_name(name: str) -> int | None:
    """``d`` of a dataset name ``manifold_d<d>``, else None.

    Example:
      >>> parse_name("manifold_d8"), parse_name("mnist1d")
      (8, None)
    """
    found = NAME.match(name)
    return int(found.group(1)) if found else None
