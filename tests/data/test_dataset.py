"""Subset and label noise: deterministic from the seed, exact, recorded; argument checks."""

import numpy as np
import pytest

from jaxprune import data
from jaxprune.data import dataset as _dataset


def build(n=1000, num_classes=10, **options):
    x = np.arange(n * 3, dtype=np.uint8).reshape(n, 1, 3, 1)
    y = np.arange(n) % num_classes
    options = {"subset": None, "label_noise": 0.0, "seed": 0, **options}
    return _dataset.build(
        "toy", "train", x, y, num_classes=num_classes, mean=(0.5,), std=(0.25,), **options
    )


def test_normalisation_scales_integer_images_to_unit_range_first():
    ds = build(n=10)
    raw = np.arange(30, dtype=np.uint8).reshape(10, 1, 3, 1)
    np.testing.assert_allclose(ds.x, (raw / 255.0 - 0.5) / 0.25, rtol=1e-6)
    assert ds.x.dtype == np.float32 and ds.y.dtype == np.int32


def test_subset_is_deterministic_and_sorted():
    a, b, c = build(subset=100, seed=1), build(subset=100, seed=1), build(subset=100, seed=2)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert not np.array_equal(a.indices, c.indices)
    assert len(a) == 100 and len(np.unique(a.indices)) == 100 and np.all(np.diff(a.indices) > 0)
    np.testing.assert_array_equal(a.y, a.indices % 10)
    np.testing.assert_array_equal(a.x, build().x[a.indices])


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.333, 0.5, 1.0])
def test_label_noise_flips_an_exact_fraction_to_other_classes(fraction):
    ds = build(n=999, label_noise=fraction, seed=5)
    k = round(fraction * 999)
    assert int(ds.noisy.sum()) == k
    np.testing.assert_array_equal(ds.y != ds.y_clean, ds.noisy)
    assert ds.label_noise == pytest.approx(k / 999)
    assert ds.y.min() >= 0 and ds.y.max() < 10


def test_label_noise_is_uniform_over_the_other_classes():
    ds = build(n=20000, num_classes=4, label_noise=1.0, seed=0)
    shift = (ds.y - ds.y_clean) % 4
    counts = np.bincount(shift, minlength=4)
    assert counts[0] == 0
    assert np.all(np.abs(counts[1:] / 20000 - 1 / 3) < 0.02)


def test_label_noise_is_deterministic_and_independent_of_the_subset_draw():
    a, b = build(label_noise=0.2, seed=3), build(label_noise=0.2, seed=3)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.noisy, build(label_noise=0.2, seed=4).noisy)
    sub = build(subset=500, label_noise=0.2, seed=3)
    assert int(sub.noisy.sum()) == 100


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"subset": 0}, "subset=0 for 'mnist1d': expected a positive int"),
        ({"subset": 2.5}, "subset=2.5"),
        ({"label_noise": 1.5}, r"label_noise=1.5 for 'mnist1d': expected a fraction in \[0, 1\]"),
        ({"label_noise": -0.1}, "label_noise=-0.1"),
        ({"seed": -1}, "seed=-1: expected a non-negative int"),
    ],
)
def test_bad_arguments_are_named_before_loading(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.load("mnist1d", "train", **kwargs)


def test_numpy_scalars_are_accepted():
    ds = build(subset=np.int64(100), label_noise=np.float32(0.5), seed=np.uint8(1))
    assert len(ds) == 100 and int(ds.noisy.sum()) == 50
    _dataset.check_request("toy", "train", np.int64(5), np.float32(0.25), np.int32(0))


def test_label_noise_is_refused_on_evaluation_splits():
    with pytest.raises(ValueError, match="label_noise=0.1 on split 'test'.*training splits only"):
        data.load("mnist1d", "test", label_noise=0.1)


def test_subset_larger_than_the_split():
    with pytest.raises(
        ValueError, match="subset=1001 is larger than the split, which has 1000 examples"
    ):
        build(subset=1001)


def test_names():
    assert {"mnist1d", "fashion_mnist", "mnist", "cifar10", "cifar100"} <= set(data.names())


@pytest.mark.parametrize("fraction", [0.2, 0.4])
def test_label_noise_on_mnist1d_flips_exactly_to_other_labels_and_records_which(fraction):
    clean = data.load("mnist1d", "train")
    ds = data.load("mnist1d", "train", label_noise=fraction, seed=0)
    assert int(ds.noisy.sum()) == round(fraction * len(clean)) == round(fraction * 4000)
    np.testing.assert_array_equal(ds.y_clean, clean.y)
    # The recorded flips are exactly the examples whose label changed (the sparse double
    # descent study measures memorisation on them).
    np.testing.assert_array_equal(ds.noisy, ds.y != clean.y)
    np.testing.assert_array_equal(ds.x, clean.x)
