"""The hidden-manifold data: shapes, one task per split pair, balanced classes, and the
intrinsic dimension it claims (local PCA spectrum and the TwoNN estimate)."""

import numpy as np
import pytest
from scipy.spatial import cKDTree

from jaxprune import analysis, data


def test_load_by_name_gives_the_generator_s_task_with_subset_and_noise():
    ds = data.load("manifold_d4", "train", subset=500, label_noise=0.2, seed=3)
    full = data.hidden_manifold("train", intrinsic_dim=4)
    assert ds.x.shape == (500, 64) and ds.x.dtype == np.float32 and ds.y.dtype == np.int32
    assert ds.name == "manifold_d4" and ds.num_classes == 10
    np.testing.assert_array_equal(ds.x, full.x[ds.indices])
    np.testing.assert_array_equal(ds.y_clean, full.y[ds.indices])
    assert int(ds.noisy.sum()) == 100 and np.all(ds.y[ds.noisy] != ds.y_clean[ds.noisy])
    # The data seed picks the subset and the noise, never another task.
    other = data.load("manifold_d4", "train", seed=7)
    np.testing.assert_array_equal(other.x, full.x)
    assert len(data.load("manifold_d4", "test")) == 2000


def test_train_and_test_share_one_task_and_another_task_differs():
    train = data.hidden_manifold("train", intrinsic_dim=2, size=4000)
    test = data.hidden_manifold("test", intrinsic_dim=2, size=500)
    assert not np.array_equal(train.x[:500], test.x)
    # A nearest neighbour of the training set labels the test set: the same teacher.
    _, nearest = cKDTree(train.x).query(test.x)
    assert np.mean(train.y[nearest] == test.y) > 0.8
    shifted = data.hidden_manifold("test", intrinsic_dim=2, size=500, task=1)
    assert np.mean(train.y[cKDTree(train.x).query(shifted.x)[1]] == shifted.y) < 0.5


@pytest.mark.parametrize("d", [2, 8, 32])
def test_classes_are_about_equally_frequent(d):
    y = data.hidden_manifold("train", intrinsic_dim=d).y
    freq = np.bincount(y, minlength=10) / len(y)
    assert freq.min() > 0.07 and freq.max() < 0.13, freq


@pytest.mark.parametrize("d", [2, 3, 5])
def test_the_local_pca_spectrum_drops_after_d_directions(d):
    x = data.hidden_manifold("train", intrinsic_dim=d, size=30_000).x.astype(np.float64)
    tree = cKDTree(x)
    for anchor in range(4):
        _, near = tree.query(x[anchor], k=40)
        patch = x[near] - x[near].mean(axis=0)
        ev = np.linalg.svd(patch, compute_uv=False) ** 2
        gaps = ev[: 2 * d] / ev[1 : 2 * d + 1]
        assert int(np.argmax(gaps)) == d - 1, (anchor, np.round(gaps, 1))
        assert gaps[d - 1] > 10


@pytest.mark.parametrize("d", [2, 4, 6])
def test_twonn_estimates_the_claimed_dimension(d):
    x = data.hidden_manifold("train", intrinsic_dim=d, size=4000).x
    assert analysis.intrinsic_dimension(x) == pytest.approx(d, rel=0.12)


def test_twonn_on_flat_pieces_and_bad_input():
    rng = np.random.default_rng(0)
    cube = rng.uniform(size=(3000, 3)) @ rng.normal(size=(3, 10))  # a 3-d box in 10-d
    assert analysis.intrinsic_dimension(cube) == pytest.approx(3, rel=0.1)
    with pytest.raises(ValueError, match="at least 10"):
        analysis.intrinsic_dimension(np.zeros((50, 3)))
    with pytest.raises(ValueError, match="discard"):
        analysis.intrinsic_dimension(cube, discard=1.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"intrinsic_dim": 0}, "intrinsic_dim=0"),
        ({"intrinsic_dim": 80}, "ambient_dim=64 < intrinsic_dim=80"),
        ({"intrinsic_dim": 2, "num_classes": 1}, "num_classes=1"),
        ({"intrinsic_dim": 2, "task": -1}, "task=-1"),
        ({"intrinsic_dim": 2.5}, "intrinsic_dim=2.5"),
    ],
)
def test_bad_arguments_say_which(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.hidden_manifold("train", **kwargs)


def test_bad_split_and_data_dir():
    with pytest.raises(ValueError, match="split='val'"):
        data.hidden_manifold("val", intrinsic_dim=2)
    with pytest.raises(ValueError, match="generated data has no files"):
        data.load("manifold_d2", "train", data_dir="/nowhere")
