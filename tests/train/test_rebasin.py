"""train.rebasin: a state's spec, aligned states and the path of an aligned pair."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxprune import rebasin
from jaxprune.train import (
    align_state,
    create_train_state,
    evaluate_aligned_path,
    evaluate_path,
    state_apply,
    state_spec,
    testing,
)


def _mlp(seed):
    return create_train_state(testing.TinyMLP(16, 8, 4, rngs=nnx.Rngs(seed)), optax.sgd(0.1))


def test_a_permuted_copy_aligned_back_has_a_flat_path_with_and_without_repair():
    a = _mlp(0)
    data = testing.synthetic_dataset(100)
    spec = state_spec(a, data.x[:1])
    perm = rebasin.random_permutation(jax.random.key(3), spec)
    b = align_state(spec, perm, a)  # the same function, units shuffled
    undo = align_state(spec, rebasin.invert_permutation(perm), b)
    for repair in (False, True):
        path = evaluate_aligned_path(
            a, undo, data, alphas=5, repair=repair, repair_data=data, repair_batch_size=100
        )
        np.testing.assert_allclose(path.loss, path.loss[0], atol=1e-4)
    plain = evaluate_aligned_path(a, b, data, alphas=5)
    assert plain.loss[2] != pytest.approx(plain.loss[0], abs=1e-4)  # unaligned: a real path


def test_the_plain_path_is_evaluate_paths_and_splits_share_one_call():
    a, b = _mlp(0), _mlp(1)
    data, other = testing.synthetic_dataset(100), testing.synthetic_dataset(50, seed=1)
    out = evaluate_aligned_path(a, b, {"x": data, "y": other}, alphas=5)
    np.testing.assert_allclose(out["x"].loss, evaluate_path(a, b, data, alphas=5).loss)
    repaired = evaluate_aligned_path(
        a, b, {"x": data}, alphas=5, repair=True, repair_data=data, repair_batch_size=100
    )["x"]
    # one repair batch holding all the data: the endpoints are corrected to themselves
    np.testing.assert_allclose(repaired.loss[[0, -1]], out["x"].loss[[0, -1]], rtol=1e-3)
    assert not repaired.bn_reestimated
    with pytest.raises(ValueError, match="repair_data"):
        evaluate_aligned_path(a, b, data, alphas=5, repair=True)


def test_batch_norm_models_are_reset_when_repaired_and_interpolated_otherwise():
    tx = optax.sgd(0.1)
    a, b = (create_train_state(testing.TinyCNN(1, 4, 3, rngs=nnx.Rngs(i)), tx) for i in (0, 1))
    data = testing.synthetic_dataset(64, (16, 1), 3)
    spec = state_spec(a, data.x[:1])
    assert any(ref.path.startswith("1/") for g in spec.groups.values() for ref in g.axes)
    reset = evaluate_aligned_path(
        a, b, data, alphas=3, repair=True, repair_data=data, repair_batch_size=32
    )
    plain = evaluate_aligned_path(a, b, data, alphas=3)
    assert reset.bn_reestimated and not plain.bn_reestimated
    x = jnp.asarray(data.x)
    logits = state_apply(a)((a.params, a.model_state), x)
    assert logits.shape == (64, 3)
