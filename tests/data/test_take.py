"""Dataset.take and load(keep=): a subset of exactly the examples asked for."""

import numpy as np
import pytest

from jaxprune import data


@pytest.fixture(scope="module")
def noisy():
    return data.load("mnist1d", "train", subset=200, label_noise=0.2, seed=3)


def test_take_slices_every_per_example_field_in_order(noisy):
    keep = np.array([17, 3, 150, 0, 42])
    part = noisy.take(keep)
    assert len(part) == 5
    for field in ("x", "y", "indices", "y_clean", "noisy"):
        np.testing.assert_array_equal(getattr(part, field), getattr(noisy, field)[keep])
    assert (part.name, part.split, part.num_classes) == (noisy.name, noisy.split, 10)
    assert not part.x.flags.writeable


def test_load_keep_is_take_of_the_loaded_split(noisy):
    keep = [5, 9, 100, 199]
    got = data.load("mnist1d", "train", subset=200, label_noise=0.2, seed=3, keep=keep)
    want = noisy.take(keep)
    for field in ("x", "y", "indices", "y_clean", "noisy"):
        np.testing.assert_array_equal(getattr(got, field), getattr(want, field))


def test_a_subset_trains_on_exactly_those_examples(noisy):
    keep = np.flatnonzero(np.arange(len(noisy)) % 3 == 0)
    part = noisy.take(keep)
    seen = [
        b["x"] for b in data.batches(part, 16, seed=0, epoch=1, drop_remainder=False, prefetch=0)
    ]
    seen = np.concatenate(seen)
    assert len(seen) == len(keep)
    order = np.lexsort(seen.T[::-1])
    np.testing.assert_array_equal(seen[order], noisy.x[keep][np.lexsort(noisy.x[keep].T[::-1])])


@pytest.mark.parametrize(
    "keep, match",
    [
        ([0, 200], r"indices \[200\] are out of range; expected 0 <= i < 200"),
        ([-1, 4], r"indices \[-1\] are out of range"),
        ([3, 5, 3], r"indices \[3\] are repeated"),
        ([[1, 2]], r"1-d array of ints.*shape \(1, 2\)"),
        ([0.5, 1.0], r"1-d array of ints.*dtype float64"),
        ([True, False], r"1-d array of ints.*dtype bool"),
    ],
)
def test_take_names_bad_indices(noisy, keep, match):
    with pytest.raises(ValueError, match=r"Dataset.take on 'mnist1d' 'train' \(200 examples\)"):
        noisy.take(keep)
    with pytest.raises(ValueError, match=match):
        data.load("mnist1d", "train", subset=200, label_noise=0.2, seed=3, keep=keep)
