"""TFDS names through tfds.data_source, offline with tfds.testing.mock_data."""

import sys

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from jaxprune import data  # noqa: E402
from jaxprune.data import tfds_source  # noqa: E402


@pytest.fixture
def mock():
    with tfds.testing.mock_data(num_examples=40):
        yield


def test_cifar10_through_data_source(mock):
    ds = data.load("cifar10", "train")
    assert ds.x.shape == (40, 32, 32, 3) and ds.x.dtype == np.float32
    assert ds.y.dtype == np.int32 and ds.num_classes == 10
    assert ds.y.min() >= 0 and ds.y.max() < 10
    assert ds.mean == pytest.approx((0.4914, 0.4822, 0.4465))
    raw = np.stack([ex["image"] for ex in tfds.data_source("cifar10", split="train")])
    np.testing.assert_allclose(
        ds.x, (raw / 255.0 - np.array(ds.mean)) / np.array(ds.std), rtol=1e-5, atol=1e-5
    )


def test_grey_images_get_a_channel_axis_and_labels_follow_the_features(mock):
    mnist = data.load("mnist", "test")
    assert mnist.x.shape == (40, 28, 28, 1) and mnist.num_classes == 10
    assert data.load("cifar100", "train").num_classes == 100


def test_other_tfds_names_get_statistics_from_their_training_split(mock):
    ds = data.load("svhn_cropped", "test")
    raw = np.stack([ex["image"] for ex in tfds.data_source("svhn_cropped", split="train")]) / 255.0
    np.testing.assert_allclose(ds.mean, raw.mean(axis=(0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(ds.std, raw.std(axis=(0, 1, 2)), rtol=1e-5)


def test_subset_and_noise_work_on_tfds_data(mock):
    ds = data.load("cifar10", "train", subset=20, label_noise=0.25, seed=2)
    assert len(ds) == 20 and int(ds.noisy.sum()) == 5
    assert np.all(ds.y[ds.noisy] != ds.y_clean[ds.noisy])


def test_does_not_need_tensorflow(mock):
    data.load("mnist", "train")
    assert "tensorflow" not in sys.modules


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(
        ValueError, match="Unknown dataset 'cifar_10'. Did you mean 'cifar10'"
    ) as err:
        data.load("cifar_10", "train")
    for name in data.names():
        assert name in str(err.value)


def test_unavailable_dataset_explains_what_to_do(monkeypatch):
    # Stand in for "not downloaded and no network" without touching the network.
    def offline(*args, **kwargs):
        raise ConnectionError("Failed to resolve 'storage.googleapis.com'")

    monkeypatch.setattr(tfds, "data_source", offline)
    monkeypatch.setattr(tfds_source, "_online", lambda: True)  # the download itself fails
    with pytest.raises(RuntimeError) as err:
        data.load("cifar10", "test", data_dir="/data/tfds")
    message = str(err.value)
    assert "'cifar10', split 'test', from /data/tfds" in message
    assert "ConnectionError: Failed to resolve" in message
    assert "tfds.data_source('cifar10')" in message and "network" in message
    assert isinstance(err.value.__cause__, ConnectionError)


def test_offline_a_dataset_not_prepared_fails_at_once(monkeypatch, tmp_path):
    """No download attempt (TFDS retries for minutes) when its host cannot be reached."""

    def source(*args, download, **kwargs):
        assert not download, "no download offline"
        raise FileNotFoundError("not prepared there")

    monkeypatch.setattr(tfds, "data_source", source)
    monkeypatch.setattr(tfds_source, "_online", lambda: False)
    with pytest.raises(RuntimeError) as err:
        data.load("cifar10", "train", data_dir=str(tmp_path))
    message = str(err.value)
    assert "not prepared there; and storage.googleapis.com cannot be reached" in message
    assert "tfds.data_source('cifar10')" in message  # and how to get it
    assert not any(tmp_path.iterdir())  # nothing half-downloaded left behind


def test_missing_download_dependency_is_named():
    err = ModuleNotFoundError("No module named 'importlib_resources'", name="importlib_resources")
    message = str(tfds_source._not_available("mnist", "train", None, err))
    assert "pip install importlib_resources" in message
