"""EL2N, GraNd and forgetting events against hand computations on a tiny model."""

import numpy as np
import optax
import pytest
from flax import nnx

from jaxprune import train
from jaxprune.train import testing

TX = optax.sgd(0.1)  # one object, so that states stack


def _linear_state(seed=0, n_in=5, n_out=3):
    return train.create_train_state(nnx.Linear(n_in, n_out, rngs=nnx.Rngs(seed)), TX)


def _data(n=23, n_in=5, n_out=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, n_in)).astype(np.float32)
    y = rng.integers(0, n_out, size=n).astype(np.int32)
    return testing.ArrayDataset(x=x, y=y, num_classes=n_out)


def _softmax_error(state, ds):
    """softmax(x W + b) - onehot(y), by hand in float64."""
    w = np.asarray(state.params["kernel"], np.float64)
    b = np.asarray(state.params["bias"], np.float64)
    z = ds.x.astype(np.float64) @ w + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return p - np.eye(w.shape[1])[ds.y]


def test_el2n_is_the_norm_of_the_softmax_error():
    state, ds = _linear_state(), _data()
    want = np.linalg.norm(_softmax_error(state, ds), axis=1)
    # batch 10 over 23 examples: a padded last batch must not leak into the scores
    np.testing.assert_allclose(train.el2n_scores(state, ds, batch_size=10), want, rtol=1e-5)


def test_grand_is_the_per_example_gradient_norm():
    # For a linear softmax layer, dL/dW = x (p - y)^T and dL/db = p - y, so
    # ||grad|| = ||p - y|| * sqrt(1 + ||x||^2).
    state, ds = _linear_state(), _data()
    err = _softmax_error(state, ds)
    want = np.linalg.norm(err, axis=1) * np.sqrt(1 + np.sum(ds.x.astype(np.float64) ** 2, axis=1))
    np.testing.assert_allclose(train.grand_scores(state, ds, batch_size=4), want, rtol=1e-5)


@pytest.mark.parametrize("scores", [train.el2n_scores, train.grand_scores])
def test_an_ensemble_scores_the_mean_over_its_members(scores):
    states = [_linear_state(seed) for seed in range(3)]
    ds = _data()
    want = np.mean([scores(s, ds) for s in states], axis=0)
    got = scores(train.stack_states(states), ds, ensemble=True)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_scores_name_an_empty_dataset():
    empty = testing.ArrayDataset(
        x=np.zeros((0, 5), np.float32), y=np.zeros(0, np.int32), num_classes=3
    )
    with pytest.raises(ValueError, match="el2n_scores: need a non-empty dataset"):
        train.el2n_scores(_linear_state(), empty)


def test_forgetting_counts_correct_to_incorrect_transitions():
    correct = np.array(
        [
            [1, 0, 0, 1, 0],
            [0, 1, 0, 1, 0],
            [1, 1, 0, 1, 1],
            [0, 0, 0, 1, 1],
        ],
        bool,
    )
    got = train.forgetting_events(correct)
    # 1 -> 0 twice; learnt then forgotten once; never learnt; never forgotten; learnt late
    assert got.tolist() == [2.0, 1.0, np.inf, 0.0, 0.0]


def test_forgetting_averages_members_and_never_learnt_by_one_is_infinite():
    a = np.array([[1, 1, 0], [0, 1, 0], [1, 1, 1]], bool)
    b = np.array([[1, 0, 0], [1, 0, 0], [0, 0, 1]], bool)
    got = train.forgetting_events(np.stack([a, b], axis=1))  # (T, members, N)
    assert got.tolist() == [1.0, np.inf, 0.0]


@pytest.mark.parametrize(
    "bad, match",
    [(np.zeros(4, bool), r"shape \(4,\)"), (np.full((2, 3), 2), r"booleans.*\[2\]")],
)
def test_forgetting_names_bad_records(bad, match):
    with pytest.raises(ValueError, match=match):
        train.forgetting_events(bad)


def test_train_for_scores_records_every_epoch_and_keeps_snapshots():
    ds = testing.synthetic_dataset(64, seed=0)
    tx = optax.adam(1e-2)
    states = [
        train.create_train_state(nnx.Linear(ds.x.shape[1], ds.num_classes, rngs=nnx.Rngs(s)), tx)
        for s in range(2)
    ]
    state = train.stack_states(states)
    run = train.train_for_scores(
        state, ds, epochs=3, batch_size=16, snapshots=(0, 2), ensemble=True
    )
    assert run.correct.shape == (4, 2, 64) and run.correct.dtype == bool
    assert sorted(run.snapshots) == [0, 2]
    assert int(run.snapshots[2].step) == 2 * 4 and int(run.state.step) == 3 * 4
    assert run.snapshots[0] is state
    np.testing.assert_array_equal(
        run.correct[2], train.correctness(run.snapshots[2], ds, ensemble=True)
    )
    np.testing.assert_array_equal(run.correct[0], train.correctness(state, ds, ensemble=True))


def test_train_for_scores_names_bad_epochs():
    ds, state = _data(), _linear_state()
    with pytest.raises(ValueError, match="epochs=0"):
        train.train_for_scores(state, ds, epochs=0, batch_size=4)
    with pytest.raises(ValueError, match=r"snapshots \[5\] are outside 0..2"):
        train.train_for_scores(state, ds, epochs=2, batch_size=4, snapshots=(5,))
