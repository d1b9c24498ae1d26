"""Any TFDS image-classification dataset through `tfds.data_source` (array_record; no TensorFlow)."""

from __future__ import annotations

import difflib
import os
import re
import socket
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxprune.data.dataset import KNOWN_STATS

# The loader behind jaxprune.data.load; nothing here is public API.
__all__ = []


def _missing_module_hint(err: Exception) -> str:
    # tensorflow-datasets 4.9.10 needs importlib_resources to download but declares it only for Python < 3.9.
    if isinstance(err, ModuleNotFoundError) and err.name:
        return f" Downloading needs the {err.name} package: pip install {err.name}."
    return ""


def _not_available(name: str, split: str, data_dir: Any, err: Exception) -> RuntimeError:
    where = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    return RuntimeError(
        f"Could not load TFDS dataset {name!r}, split {split!r}, from {where}: {type(err).__name__}: {err}\n"
        "TFDS datasets need a network on first use. On a machine with one, prepare it in array_record "
        f'format: python -c "import tensorflow_datasets as tfds; tfds.data_source({name!r})" '
        "(with data_dir=... if you use one), then copy that data directory here and pass data_dir= "
        "(or set TFDS_DATA_DIR). A dataset prepared earlier as TFRecord by tfds.load must be prepared "
        "again as array_record." + _missing_module_hint(err)
    )


def check_name(name: str, known: Sequence[str]) -> None:
    """Raise a ValueError unless `name` (possibly "name/config:version") is a TFDS dataset."""
    import tensorflow_datasets as tfds

    builders = tfds.list_builders(with_community_datasets=False)
    if re.split(r"[/:]", name)[0] in builders:
        return
    close = difflib.get_close_matches(name, list(dict.fromkeys([*known, *builders])), n=3)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(
        f"Unknown dataset {name!r}.{hint} Known: {', '.join(known)}; any TFDS name also works "
        "(tfds.list_builders())."
    )


# Where TFDS downloads from; probed before a download so that, offline, a dataset that is
# not prepared fails at once instead of after minutes of retries.
_DOWNLOAD_HOST = ("storage.googleapis.com", 443)


def _online(timeout: float = 3.0) -> bool:
    """Whether TFDS's download host answers within `timeout` seconds."""
    try:
        socket.create_connection(_DOWNLOAD_HOST, timeout=timeout).close()
    except OSError:
        return False
    return True


def _source(name: str, split: str, data_dir: Any) -> Any:
    import tensorflow_datasets as tfds

    try:  # prepared already: no network needed
        return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as err:
        if not _online():
            reason = f"{type(err).__name__}: {err}; and {_DOWNLOAD_HOST[0]} cannot be reached"
            raise _not_available(name, split, data_dir, ConnectionError(reason)) from err
    try:
        return tfds.data_source(name, split=split, data_dir=data_dir, download=True)
    except Exception as err:  # network, missing files, wrong format, bad split: all reported alike
        raise _not_available(name, split, data_dir, err) from err


def _read(source: Any, image_key: str, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    # One record at a time: tfds.testing.mock_data's batched __getitems__ is broken in tfds 4.9.10.
    examples = [source[i] for i in range(len(source))]
    x = np.stack([np.asarray(ex[image_key]) for ex in examples])
    y = np.asarray([ex[label_key] for ex in examples], dtype=np.int64)
    return (x[..., None] if x.ndim == 3 else x), y


def _keys(source: Any, name: str) -> tuple[str, str, int]:
    info = source.dataset_info
    keys = info.supervised_keys
    if not keys or not all(isinstance(k, str) for k in keys):
        raise ValueError(
            f"TFDS dataset {name!r} has no (image, label) supervised keys ({keys!r}); "
            "jaxprune.data loads classification datasets only."
        )
    num_classes = getattr(info.features[keys[1]], "num_classes", None)
    if not num_classes:
        raise ValueError(f"TFDS dataset {name!r}: feature {keys[1]!r} is not a class label.")
    return keys[0], keys[1], int(num_classes)


def _channel_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    scaled = x.reshape(-1, x.shape[-1]).astype(np.float64) / (255.0 if x.dtype == np.uint8 else 1.0)
    return tuple(scaled.mean(axis=0).tolist()), tuple(np.maximum(scaled.std(axis=0), 1e-8).tolist())


def arrays(name: str, split: str, data_dir: Any = None) -> dict[str, Any]:
    """Load a TFDS split into numpy: images, labels, number of classes and normalisation stats.

    Args:
      name: a TFDS name ("mnist", "cifar10", "cifar100", "svhn_cropped", ...).
      split: a TFDS split ("train", "test", "train[:90%]", ...).
      data_dir: TFDS data directory (default: $TFDS_DATA_DIR or ~/tensorflow_datasets).

    Returns:
      dict with x (N, H, W, C) raw, y int64, num_classes, mean and std per channel.
    """
    source = _source(name, split, data_dir)
    image_key, label_key, num_classes = _keys(source, name)
    x, y = _read(source, image_key, label_key)
    if name in KNOWN_STATS:
        mean, std = KNOWN_STATS[name]
    elif split == "train":
        mean, std = _channel_stats(x)
    else:
        mean, std = _channel_stats(_read(_source(name, "train", data_dir), image_key, label_key)[0])
    return {"x": x, "y": y, "num_classes": num_classes, "mean": mean, "std": std}
