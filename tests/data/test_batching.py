"""batches(): deterministic order from (seed, epoch), resumable at any step, complete epochs."""

import itertools

import numpy as np
import pytest

from jaxprune import data
from jaxprune.data import dataset as _dataset


@pytest.fixture(scope="module")
def ds():
    n = 103
    x = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    return _dataset.build(
        "toy",
        "train",
        x,
        np.arange(n) % 7,
        num_classes=7,
        mean=(0.0,),
        std=(1.0,),
        subset=None,
        label_noise=0.0,
        seed=0,
    )


def ids(batches):
    """The example index of every row (x[:, 0] / 2 is the index by construction)."""
    return [(b["x"][:, 0] / 2).astype(int).tolist() for b in batches]


def test_order_is_a_function_of_seed_and_epoch(ds):
    a = ids(data.batches(ds, 10, seed=1, epoch=2))
    assert a == ids(data.batches(ds, 10, seed=1, epoch=2))
    assert a != ids(data.batches(ds, 10, seed=1, epoch=3))
    assert a != ids(data.batches(ds, 10, seed=2, epoch=2))


@pytest.mark.parametrize("start_step", [0, 1, 4, 9, 10])
def test_start_step_equals_skipping(ds, start_step):
    full = ids(data.batches(ds, 10, seed=0, epoch=5))
    assert ids(data.batches(ds, 10, seed=0, epoch=5, start_step=start_step)) == full[start_step:]


def test_batch_contents_and_dtypes(ds):
    batch = next(iter(data.batches(ds, 8, seed=0)))
    assert set(batch) == {"x", "y"}
    assert batch["x"].shape == (8, 2) and batch["x"].dtype == np.float32
    assert batch["y"].dtype == np.int32
    np.testing.assert_array_equal(batch["y"], (batch["x"][:, 0] / 2).astype(int) % 7)


def test_epoch_visits_every_example_once(ds):
    kept = list(itertools.chain(*ids(data.batches(ds, 10, seed=0, drop_remainder=False))))
    assert sorted(kept) == list(range(103))
    dropped = ids(data.batches(ds, 10, seed=0))
    assert len(dropped) == 10 and all(len(b) == 10 for b in dropped)
    assert (
        data.steps_per_epoch(ds, 10) == 10
        and data.steps_per_epoch(ds, 10, drop_remainder=False) == 11
    )


def test_without_shuffle_the_order_is_the_dataset_order(ds):
    assert ids(data.batches(ds, 25, seed=0, shuffle=False))[1] == list(range(25, 50))


def test_prefetch_does_not_change_the_batches(ds):
    assert ids(data.batches(ds, 10, seed=3, prefetch=0)) == ids(
        data.batches(ds, 10, seed=3, prefetch=8)
    )


def test_abandoned_iterators_are_harmless(ds):
    for _ in range(3):
        it = data.batches(ds, 1, seed=0)
        next(it)
        del it
    assert len(ids(data.batches(ds, 50, seed=0))) == 2


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"batch_size": 0}, "batch_size=0: expected an int >= 1"),
        ({"batch_size": 200}, "batch_size=200 exceeds the 103 examples"),
        ({"start_step": 11}, "start_step=11 is past the end of the epoch, which has 10 steps"),
        ({"epoch": -1}, "epoch=-1"),
    ],
)
def test_bad_arguments(ds, kwargs, match):
    kwargs = {"batch_size": 10, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=match):
        data.batches(ds, **kwargs)
