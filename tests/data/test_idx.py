"""IDX parsing on tiny files written here, and Fashion-MNIST from a local directory."""

import gzip
import struct

import numpy as np
import pytest

from jaxprune import data
from jaxprune.data import idx

CODES = {
    np.uint8: 0x08,
    np.int8: 0x09,
    np.int16: 0x0B,
    np.int32: 0x0C,
    np.float32: 0x0D,
    np.float64: 0x0E,
}


def write_idx(path, array, *, gz=False):
    array = np.asarray(array)
    header = struct.pack(">BBBB", 0, 0, CODES[array.dtype.type], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    body = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(body)
    return path


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", list(CODES))
def test_read_idx_round_trips(tmp_path, dtype, gz):
    rng = np.random.default_rng(0)
    array = (rng.normal(size=(3, 4, 5)) * 50).astype(dtype)
    path = write_idx(tmp_path / ("a.idx" + (".gz" if gz else "")), array, gz=gz)
    out = data.read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, array)


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x01\x05")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(tmp_path / "bad")
    path = write_idx(tmp_path / "short", np.arange(10, dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(ValueError, match=r"shape \(10,\) \(18 bytes\), but the file has 15 bytes"):
        data.read_idx(path)


def write_fashion(directory, n_train=12, n_test=5, gz=True):
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, size=n, dtype=np.uint8)
        images, labels = idx.FASHION_MNIST_FILES[split]
        suffix = ".gz" if gz else ""
        write_idx(directory / (images + suffix), x, gz=gz)
        write_idx(directory / (labels + suffix), y, gz=gz)
        arrays[split] = (x, y)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_fashion_mnist_from_data_dir(tmp_path, gz):
    arrays = write_fashion(tmp_path, gz=gz)
    ds = data.load("fashion_mnist", "train", data_dir=tmp_path)
    x, y = arrays["train"]
    assert ds.x.shape == (12, 28, 28, 1) and ds.x.dtype == np.float32
    np.testing.assert_array_equal(ds.y, y.astype(np.int32))
    np.testing.assert_allclose(ds.x[..., 0], (x / 255.0 - 0.2860) / 0.3530, rtol=1e-5, atol=1e-5)
    assert data.load("fashion_mnist", "test", data_dir=tmp_path).x.shape == (5, 28, 28, 1)


def test_fashion_mnist_from_env_and_subfolder(tmp_path, monkeypatch):
    write_fashion(tmp_path / "fashion-mnist")
    monkeypatch.setenv("JAXPRUNE_DATA_DIR", str(tmp_path))
    assert len(data.load("fashion_mnist", "test")) == 5


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv("JAXPRUNE_DATA_DIR", raising=False)
    monkeypatch.setattr(idx, "FASHION_MNIST_DIR", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError) as err:
        data.load("fashion_mnist", "train")
    message = str(err.value)
    assert "sudo apt-get install dataset-fashion-mnist" in message
    assert "train-images-idx3-ubyte" in message and str(tmp_path / "nowhere") in message
    assert "data_dir=DIR" in message and "JAXPRUNE_DATA_DIR" in message


def test_fashion_mnist_bad_split(tmp_path):
    write_fashion(tmp_path)
    with pytest.raises(ValueError, match="Unknown split 'valid' for 'fashion_mnist'"):
        data.load("fashion_mnist", "valid", data_dir=tmp_path)
