"""Evaluating a linear path between two train states: vmapped over alpha, as if point by point."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxprune
from jaxprune.train import (
    create_train_state,
    evaluate,
    evaluate_path,
    make_train_step,
    reestimate_batch_stats,
    stack_states,
    to_model,
)
from jaxprune.train.paths import _path_states
from jaxprune.train.testing import ArrayDataset, TinyCNN, TinyMLP, synthetic_dataset

DATA = synthetic_dataset(100, (16,), 4, seed=1)
TX = optax.sgd(0.1)


def _shifted(ds: ArrayDataset) -> ArrayDataset:
    # Far from mean 0 / variance 1, so stale batch statistics are visibly wrong.
    return ArrayDataset(3.0 * ds.x + 1.0, ds.y, ds.num_classes)


BN_TRAIN = _shifted(synthetic_dataset(96, (16, 1), 4, seed=0))
BN_TEST = _shifted(synthetic_dataset(50, (16, 1), 4, seed=1))


def mlp_states():
    return [create_train_state(TinyMLP(16, 8, 4, rngs=nnx.Rngs(i)), TX, seed=i) for i in (0, 1)]


def bn_states():
    """Two TinyCNNs (batch norm) trained a few steps from different seeds."""
    step = make_train_step()
    out = []
    for seed in (0, 1):
        state = create_train_state(TinyCNN(1, 4, 4, rngs=nnx.Rngs(seed)), TX, seed=seed)
        for i in range(3):
            batch = {"x": BN_TRAIN.x[32 * i : 32 * (i + 1)], "y": BN_TRAIN.y[32 * i : 32 * (i + 1)]}
            state, _ = step(state, jax.tree.map(jnp.asarray, batch))
        out.append(state)
    return out


def by_hand(a, b, alpha):
    """The state at `alpha`, interpolated in numpy (statistics too)."""

    def lerp(x, y):
        x, y = np.asarray(x), np.asarray(y)
        return (np.float32(1 - alpha) * x + np.float32(alpha) * y).astype(x.dtype)

    return a.replace(
        params=jax.tree.map(lerp, a.params, b.params),
        model_state=jax.tree.map(lerp, a.model_state, b.model_state),
    )


def hand_statistics(state, x, batches, batch_size):
    """The mean over batches of each batch's conv-output mean and (biased) variance."""
    conv = to_model(state).conv
    outs = [conv(jnp.asarray(x[i * batch_size : (i + 1) * batch_size])) for i in range(batches)]
    mean = np.mean([np.mean(o, axis=(0, 1)) for o in outs], axis=0)
    var = np.mean([np.var(o, axis=(0, 1)) for o in outs], axis=0)
    return mean, var


def with_statistics(state, mean, var):
    treedef = jax.tree.structure(state.model_state)  # leaves: bn/mean, bn/var
    return state.replace(model_state=jax.tree.unflatten(treedef, [mean, var]))


def test_path_equals_point_by_point():
    a, b = mlp_states()
    path = evaluate_path(a, b, DATA, alphas=7, batch_size=40)  # 100 examples: padding
    assert path.alphas.tolist() == np.linspace(0, 1, 7).tolist()
    assert path.count == 100 and not path.bn_reestimated
    for i, alpha in enumerate(path.alphas):
        alone = evaluate(by_hand(a, b, alpha), DATA, batch_size=40)
        np.testing.assert_allclose(path.loss[i], alone["loss"], rtol=1e-5)
        np.testing.assert_allclose(path.accuracy[i], alone["accuracy"], atol=1e-9)
    np.testing.assert_array_equal(path.error, 1.0 - path.accuracy)
    assert len(set(np.round(path.loss, 4))) > 1  # the points are different models


def test_endpoints_are_the_states_themselves():
    a, b = mlp_states()
    ends = _path_states(a, b, np.array([0.0, 1.0]))
    for end, i in ((a, 0), (b, 1)):
        for x, y in zip(jax.tree.leaves(ends.params), jax.tree.leaves(end.params)):
            np.testing.assert_array_equal(x[i], y)
    path = evaluate_path(a, b, DATA, alphas=np.array([0.0, 1.0]), batch_size=50)
    for end, i in ((a, 0), (b, 1)):
        own = evaluate(end, DATA, batch_size=50)
        np.testing.assert_allclose(path.loss[i], own["loss"], rtol=1e-6)
        assert path.accuracy[i] == pytest.approx(own["accuracy"], abs=1e-12)


def test_chunked_equals_unchunked():
    a, b = mlp_states()
    whole = evaluate_path(a, b, DATA, alphas=7, chunk=7)
    for chunk in (1, 3, None):  # 3: the last chunk is padded
        part = evaluate_path(a, b, DATA, alphas=7, chunk=chunk)
        np.testing.assert_allclose(part.loss, whole.loss, rtol=1e-6)
        np.testing.assert_array_equal(part.accuracy, whole.accuracy)


def test_pruned_weights_stay_exactly_zero_along_the_path():
    params = create_train_state(TinyMLP(16, 8, 4, rngs=nnx.Rngs(0)), TX).params
    mask = jaxprune.topk_mask(jaxprune.scores.random(jax.random.key(0), params), 0.7)
    a, b = (create_train_state(TinyMLP(16, 8, 4, rngs=nnx.Rngs(i)), TX, mask=mask) for i in (0, 1))
    points = _path_states(a, b, np.linspace(-0.5, 1.5, 9))
    pruned = 0
    for p, m in zip(jax.tree.leaves(points.params), jax.tree.leaves(mask)):
        off = ~np.broadcast_to(np.asarray(m), p.shape[1:])
        assert np.all(np.asarray(p)[:, off] == 0.0)
        pruned += off.sum()
    assert pruned > 0


def test_custom_loss():
    a, b = mlp_states()
    plain = evaluate_path(a, b, DATA, alphas=3)
    path = evaluate_path(a, b, DATA, alphas=3, loss_fn=lambda logits, y: jnp.abs(logits).sum(-1))
    for i, alpha in enumerate(path.alphas):
        logits = to_model(by_hand(a, b, alpha))(jnp.asarray(DATA.x))
        np.testing.assert_allclose(path.loss[i], np.abs(logits).sum(-1).mean(), rtol=1e-5)
    np.testing.assert_array_equal(path.accuracy, plain.accuracy)


def test_reestimated_statistics_are_the_batch_means():
    a, _ = bn_states()
    new = reestimate_batch_stats(a, BN_TRAIN, batches=3, batch_size=32)
    mean, var = hand_statistics(a, BN_TRAIN.x, 3, 32)
    np.testing.assert_allclose(new.model_state["bn"]["mean"], mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new.model_state["bn"]["var"], var, rtol=1e-5, atol=1e-6)
    assert not np.allclose(a.model_state["bn"]["var"], var, rtol=0.1)  # it did change
    for x, y in zip(jax.tree.leaves(new.params), jax.tree.leaves(a.params)):
        np.testing.assert_array_equal(x, y)


def test_reestimating_an_ensemble_is_member_by_member():
    a, b = bn_states()
    together = reestimate_batch_stats(
        stack_states([a, b]), BN_TRAIN, batches=2, batch_size=32, ensemble=True
    )
    for i, s in enumerate((a, b)):
        alone = reestimate_batch_stats(s, BN_TRAIN, batches=2, batch_size=32)
        for x, y in zip(jax.tree.leaves(together.model_state), jax.tree.leaves(alone.model_state)):
            np.testing.assert_allclose(x[i], y, rtol=1e-6)


def test_batch_norm_path_is_reestimated_at_every_point():
    a, b = bn_states()
    path = evaluate_path(
        a, b, BN_TEST, alphas=3, batch_size=25, bn_data=BN_TRAIN, bn_batches=3, bn_batch_size=32
    )
    assert path.bn_reestimated
    for i, alpha in enumerate(path.alphas):
        point = by_hand(a, b, alpha)
        repaired = with_statistics(point, *hand_statistics(point, BN_TRAIN.x, 3, 32))
        alone = evaluate(repaired, BN_TEST, batch_size=25)
        np.testing.assert_allclose(path.loss[i], alone["loss"], rtol=1e-5)
        np.testing.assert_allclose(path.accuracy[i], alone["accuracy"], atol=1e-9)
    # Without the reset (the interpolated statistics) the midpoint is another network.
    stale = evaluate(by_hand(a, b, 0.5), BN_TEST, batch_size=25)
    assert abs(stale["loss"] - path.loss[1]) > 0.05


def test_batch_norm_needs_bn_data():
    a, b = bn_states()
    with pytest.raises(ValueError, match="bn_data must be given"):
        evaluate_path(a, b, BN_TEST, alphas=3)
    with pytest.raises(ValueError, match="at least one batch of 500"):
        evaluate_path(a, b, BN_TEST, alphas=3, bn_data=BN_TRAIN)


def test_bn_data_is_ignored_without_batch_norm():
    a, b = mlp_states()
    path = evaluate_path(a, b, DATA, alphas=3, bn_data=DATA)
    assert not path.bn_reestimated
    np.testing.assert_array_equal(path.loss, evaluate_path(a, b, DATA, alphas=3).loss)


def test_refuses_bad_arguments():
    a, b = mlp_states()
    other = create_train_state(TinyMLP(16, 6, 4, rngs=nnx.Rngs(0)), TX)
    with pytest.raises(ValueError, match="same model"):
        evaluate_path(a, other, DATA)
    with pytest.raises(TypeError, match="b must be a TrainState"):
        evaluate_path(a, b.params, DATA)
    with pytest.raises(ValueError, match="alphas must be"):
        evaluate_path(a, b, DATA, alphas=0)
    with pytest.raises(ValueError, match="alphas must be"):
        evaluate_path(a, b, DATA, alphas=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="chunk must be a positive integer"):
        evaluate_path(a, b, DATA, chunk=0)
    with pytest.raises(TypeError, match="batch_size must be an integer"):
        evaluate_path(a, b, DATA, batch_size=10.0)
    with pytest.raises(ValueError, match="without any"):
        reestimate_batch_stats(a, DATA)


def test_default_chunk_fits_the_memory_budget(monkeypatch):
    from jaxprune.train import paths

    a, b = mlp_states()
    monkeypatch.setattr(paths.jax, "default_backend", lambda: "gpu")  # CPU: always 1
    example = jax.ShapeDtypeStruct((1, 16), np.float32)
    activations = paths._activation_bytes(a, example, train=False)
    assert activations >= 4 * (8 + 8 + 4)  # hidden, its ReLU, logits
    one_point = sum(x.nbytes for x in jax.tree.leaves(a.params)) + 50 * activations
    for budget, chunk in ((1, 1), (3 * one_point, 3), (3 * one_point - 1, 2), (1 << 40, 7)):
        monkeypatch.setattr(paths, "MEMORY_BUDGET", budget)
        assert paths._auto_chunk(a, DATA, 50, 0, 7) == chunk
    monkeypatch.setattr(paths, "MEMORY_BUDGET", 3 * one_point)
    path = evaluate_path(a, b, DATA, alphas=7, batch_size=50)  # chunks of 3, the last padded
    one_by_one = evaluate_path(a, b, DATA, alphas=7, batch_size=50, chunk=1)
    np.testing.assert_allclose(path.loss, one_by_one.loss, rtol=1e-6)
