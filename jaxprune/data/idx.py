"""IDX files (the MNIST family's format), plain or gzipped, and Fashion-MNIST from local files."""

from __future__ import annotations

import gzip
import os
import pathlib

import numpy as np

from jaxprune.data import dataset as _dataset

__all__ = ["read_idx"]

# IDX type codes -> big-endian numpy dtypes.
_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

FASHION_MNIST_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SPLITS = tuple(FASHION_MNIST_FILES)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzipped if its name ends in .gz) into a numpy array.

    Args:
      path: the file.

    Returns:
      The array, in native byte order, with the shape the header gives.

    Example:
      >>> images = read_idx("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")  # doctest: +SKIP
      >>> images.shape  # doctest: +SKIP
      (10000, 28, 28)
    """
    path = pathlib.Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise ValueError(f"{path} is not an IDX file: bad magic number {raw[:4].hex()!r}.")
    dtype, ndim = np.dtype(_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(
            f"{path}: header says shape {shape} ({expected} bytes), but the file has {len(raw)} bytes."
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _candidate_dirs(data_dir: str | os.PathLike | None) -> list[pathlib.Path]:
    root = data_dir or os.environ.get("JAXPRUNE_DATA_DIR")
    if root is None:
        return [FASHION_MNIST_DIR]
    root = pathlib.Path(root)
    return [root, root / "fashion-mnist", root / "fashion_mnist"]


def _find(dirs: list[pathlib.Path], stem: str) -> pathlib.Path | None:
    for d in dirs:
        for name in (stem + ".gz", stem):
            if (d / name).is_file():
                return d / name
    return None


def fashion_mnist(
    split: str, data_dir: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST images (N, 28, 28, 1) uint8 and labels from the four local IDX files.

    Looks in `data_dir`, else $JAXPRUNE_DATA_DIR, else /usr/share/datasets/fashion-mnist
    (where the Debian package dataset-fashion-mnist puts them); a data directory may
    also hold them in a fashion-mnist/ subfolder.
    """
    _dataset.check_split("fashion_mnist", split, SPLITS)
    dirs = _candidate_dirs(data_dir)
    images, labels = (_find(dirs, stem) for stem in FASHION_MNIST_FILES[split])
    if images is None or labels is None:
        stems = [s for pair in FASHION_MNIST_FILES.values() for s in pair]
        raise FileNotFoundError(
            f"Fashion-MNIST {split!r} split not found: looked for {FASHION_MNIST_FILES[split][0]}[.gz] and "
            f"{FASHION_MNIST_FILES[split][1]}[.gz] in {', '.join(str(d) for d in dirs)}. "
            "Install them with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu, into "
            f"{FASHION_MNIST_DIR}), or download the four IDX files ({', '.join(s + '.gz' for s in stems)}) "
            "from https://github.com/zalandoresearch/fashion-mnist into a directory DIR and pass "
            "data_dir=DIR or set JAXPRUNE_DATA_DIR=DIR."
        )
    x, y = read_idx(images), read_idx(labels)
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(
            f"{images} and {labels} do not hold (N, H, W) images and N labels: {x.shape}, {y.shape}."
        )
    return x[..., None], y
