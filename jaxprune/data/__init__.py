"""Datasets by name (MNIST-1D, hidden-manifold tasks, Fashion-MNIST IDX files, any TFDS name),
batching and augmentation.

grain, tensorflow_datasets and mnist1d are imported only when a function needs them.
"""

from jaxprune.data.augment import augment, augmentation_for
from jaxprune.data.batching import batches, epoch_order, steps_per_epoch
from jaxprune.data.dataset import Dataset
from jaxprune.data.idx import read_idx
from jaxprune.data.manifold import hidden_manifold
from jaxprune.data.registry import load, names

__all__ = [
    "Dataset",
    "augment",
    "augmentation_for",
    "batches",
    "epoch_order",
    "hidden_manifold",
    "load",
    "names",
    "read_idx",
    "steps_per_epoch",
]
