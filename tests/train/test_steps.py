"""TrainState and the jitted train/eval steps."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxprune.data import batches
from jaxprune.train import (
    apply_model,
    create_train_state,
    cross_entropy,
    eval_step,
    evaluate,
    make_train_step,
    to_model,
    train_step,
)
from jaxprune.train.testing import ArrayDataset, TinyCNN, TinyMLP, synthetic_dataset

DS = synthetic_dataset(256, (16,), 4, seed=0)
ADAM = optax.adam(1e-2)  # One object, so the jitted steps compile once for all tests.


def mlp_state(seed=0, tx=None):
    model = TinyMLP(16, 32, 4, rngs=nnx.Rngs(seed))
    return create_train_state(model, tx or ADAM, seed=seed)


def cnn_state(seed=0):
    model = TinyCNN(1, 8, 4, rngs=nnx.Rngs(seed))
    return create_train_state(model, ADAM, seed=seed)


def first_batch(bs=32, shape=None):
    batch = next(batches(DS, bs, seed=0))
    if shape is not None:
        batch = {"x": batch["x"].reshape(shape), "y": batch["y"]}
    return batch


def test_state_holds_the_models_arrays_and_leaves_the_model_alone():
    model = TinyMLP(16, 32, 4, rngs=nnx.Rngs(0))
    kernel = np.array(model.hidden.kernel[...])
    state = create_train_state(model, optax.sgd(0.1), seed=0)
    np.testing.assert_array_equal(state.params["hidden"]["kernel"], kernel)
    assert int(state.step) == 0
    new, _ = train_step(state, first_batch())
    assert int(new.step) == 1
    np.testing.assert_array_equal(model.hidden.kernel[...], kernel)  # untouched
    assert not np.array_equal(new.params["hidden"]["kernel"], kernel)


def test_create_rejects_a_raw_uint32_key():
    with pytest.raises(TypeError, match="jax.random.key"):
        create_train_state(
            TinyMLP(16, 8, 4, rngs=nnx.Rngs(0)), optax.sgd(0.1), seed=jax.random.PRNGKey(0)
        )


def test_training_reduces_the_loss():
    state = mlp_state()
    losses = []
    for epoch in range(5):
        for batch in batches(DS, 32, seed=0, epoch=epoch):
            state, metrics = train_step(state, batch)
            losses.append(float(metrics["loss"]))
    assert np.mean(losses[-8:]) < 0.5 * np.mean(losses[:8])
    assert evaluate(state, DS)["accuracy"] > 0.8


def test_batch_norm_statistics_update_in_train_and_are_used_in_eval():
    state = cnn_state()
    batch = first_batch(32, (32, 16, 1))
    new, _ = train_step(state, batch)
    assert not np.allclose(new.model_state["bn"]["mean"], state.model_state["bn"]["mean"])
    # Eval mode: an example's logits do not depend on the rest of its batch.
    alone, _ = apply_model(new, batch["x"][:1])
    within, _ = apply_model(new, batch["x"])
    np.testing.assert_allclose(alone[0], within[0], rtol=1e-5, atol=1e-6)
    # Train mode: they do (batch statistics).
    alone_t, _ = apply_model(new, batch["x"][:2], train=True)
    within_t, _ = apply_model(new, batch["x"], train=True)
    assert not np.allclose(alone_t[0], within_t[0], atol=1e-4)
    assert to_model(new).bn.use_running_average


def noise(rng, x):
    return x + jax.random.normal(rng, x.shape)


def test_augmentation_draws_per_step_and_replays_exactly():
    step = make_train_step(augment=noise)
    state, batch = mlp_state(), first_batch()
    a, _ = step(state, batch)
    b, _ = step(state, batch)
    jax.tree.map(np.testing.assert_array_equal, a.params, b.params)  # replays
    c, _ = step(state.replace(step=jnp.int32(7)), batch)
    d, _ = step(state.replace(rng=jax.random.key(1)), batch)
    plain, _ = train_step(state, batch)
    kernel = lambda s: s.params["hidden"]["kernel"]  # noqa: E731
    for other in (c, d, plain):
        assert not np.array_equal(kernel(a), kernel(other))


def test_loss_fn_hook_gets_logits_batch_and_aux():
    def penalised(logits, batch, aux):
        return cross_entropy(logits, batch["y"]) + aux * jnp.mean(logits**2)

    step = make_train_step(loss_fn=penalised)
    state, batch = mlp_state(), first_batch()
    zero, m0 = step(state, batch, 0.0)
    plain, m1 = train_step(state, batch)
    jax.tree.map(np.testing.assert_array_equal, zero.params, plain.params)
    assert float(m0["loss"]) == float(m1["loss"])
    heavy, m2 = step(state, batch, 10.0)
    assert float(m2["loss"]) > float(m1["loss"])
    assert not np.array_equal(heavy.params["out"]["kernel"], plain.params["out"]["kernel"])


def test_loss_fn_can_distill_from_a_teacher_state_passed_as_aux():
    def distill(logits, batch, teacher):
        soft = jax.nn.softmax(apply_model(teacher, batch["x"])[0])
        return optax.softmax_cross_entropy(logits, soft).mean()

    teacher = mlp_state(seed=1)
    for batch in batches(DS, 32, seed=0):
        teacher, _ = train_step(teacher, batch)
    step = make_train_step(loss_fn=distill)
    student = mlp_state(seed=2)
    agreement = lambda s: np.mean(  # noqa: E731
        np.argmax(apply_model(s, DS.x)[0], -1) == np.argmax(apply_model(teacher, DS.x)[0], -1)
    )
    before = agreement(student)
    for epoch in range(3):
        for batch in batches(DS, 32, seed=1, epoch=epoch):
            student, _ = step(student, batch, teacher)
    assert agreement(student) > max(before, 0.8)


def test_vmap_over_seeds_equals_separate_runs():
    # States built with one optimizer object share a tree structure (tx is static).
    states = [mlp_state(seed) for seed in range(3)]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
    batch = first_batch()
    many, metrics = jax.vmap(train_step, in_axes=(0, None))(stacked, batch)
    for i, state in enumerate(states):
        one, m = train_step(state, batch)
        np.testing.assert_allclose(metrics["loss"][i], m["loss"], rtol=1e-6)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-6),
            many.params,
            one.params,
        )


def test_donating_step_matches_and_invalidates_the_old_state():
    """Donation is implemented on the CPU backend as on GPU and TPU: every buffer of the
    donated state is deleted (its memory reused for the new state); the plain step
    leaves its input alive."""
    state, batch = mlp_state(), first_batch()
    expected, _ = train_step(state, batch)
    assert not any(x.is_deleted() for x in jax.tree.leaves(state))
    copy = jax.tree.map(jnp.copy, state)
    got, _ = make_train_step(donate=True)(copy, batch)
    jax.tree.map(np.testing.assert_array_equal, got.params, expected.params)
    donated = jax.tree_util.tree_flatten_with_path(copy)[0]
    alive = [jax.tree_util.keystr(path) for path, x in donated if not x.is_deleted()]
    assert not alive, f"donated but not invalidated: {alive}"
    assert not any(x.is_deleted() for x in jax.tree.leaves(got))
    with pytest.raises(RuntimeError, match="deleted"):
        np.asarray(copy.params["hidden"]["kernel"])


def test_evaluate_counts_every_example_once():
    state = mlp_state()
    ds = synthetic_dataset(203, (16,), 4, seed=3)
    result = evaluate(state, ds, batch_size=50)
    logits, _ = apply_model(state, ds.x)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, ds.y)
    assert result["count"] == 203
    np.testing.assert_allclose(result["loss"], float(np.mean(losses)), rtol=1e-5)
    assert result["accuracy"] == np.mean(np.argmax(logits, -1) == ds.y)


def test_eval_step_weights_out_padding():
    state, batch = mlp_state(), first_batch()
    weight = np.r_[np.ones(16), np.zeros(16)].astype(np.float32)
    sums = eval_step(state, {**batch, "weight": weight})
    half = eval_step(state, {"x": batch["x"][:16], "y": batch["y"][:16]})
    assert float(sums["count"]) == 16
    np.testing.assert_allclose(sums["loss_sum"], half["loss_sum"], rtol=1e-6)


def test_evaluate_rejects_an_empty_split():
    empty = ArrayDataset(DS.x[:0], DS.y[:0], 4)
    with pytest.raises(ValueError, match="non-empty"):
        evaluate(mlp_state(), empty)
