"""masked() and static_sparse(): pruned weights stay exactly 0 with every optimizer, in chains and nnx.Optimizer."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from loops import kernel_counts, run
from trees import OPTIMIZERS, mlp_apply, mlp_dict, nnx_model

import jaxprune


def data(n=64):
    x = jax.random.normal(jax.random.key(1), (n, 20))
    y = jnp.argmax(x[:, :4], axis=1)
    return x, y


def loss_fn(params, x, y):
    logits = mlp_apply(params, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def train(tx, params, steps, x, y):
    state = tx.init(params)

    def step(carry, _):
        params, state = carry
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, state = tx.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), loss

    (params, state), losses = jax.lax.scan(step, (params, state), None, length=steps)
    return params, state, losses


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_pruned_weights_stay_exactly_zero_for_200_steps(name):
    params = mlp_dict()
    mask = jaxprune.topk_mask(jaxprune.scores.random(jax.random.key(0), params), 0.8)
    # Deliberately not pruned beforehand: the first update must zero them.
    tx = jaxprune.masked(OPTIMIZERS[name](), mask)
    x, y = data()
    final, state, losses = jax.jit(train, static_argnums=(0, 2))(tx, params, 200, x, y)
    for p0, p, m in zip(jax.tree.leaves(params), jax.tree.leaves(final), jax.tree.leaves(mask)):
        p, m = np.asarray(p), np.asarray(m)
        if m.ndim == 0:
            assert not np.array_equal(p, p0)  # biases train
            continue
        assert (p[~m] == 0).all() and not np.signbit(p[~m]).any()
        assert (p[m] != np.asarray(p0)[m]).mean() > 0.9  # kept weights train
    assert float(losses[-1]) < float(losses[0])
    chex.assert_trees_all_equal(jaxprune.mask_of(state), mask)


def test_gradient_is_masked_before_the_inner_optimizer():
    params = mlp_dict()
    mask = jaxprune.topk_mask(jaxprune.scores.magnitude(params), 0.5)
    tx = jaxprune.masked(optax.adam(1e-2), mask)
    _, state, _ = train(tx, jaxprune.apply_mask(params, mask), 3, *data())
    mu = state.inner_state[0].mu
    for m, v in zip(jax.tree.leaves(mask), jax.tree.leaves(mu)):
        if m.ndim:
            assert (np.asarray(v)[~np.asarray(m)] == 0).all()


def test_jit_equals_eager():
    params = mlp_dict()
    mask = jaxprune.topk_mask(jaxprune.scores.magnitude(params), 0.7)
    tx = jaxprune.masked(optax.sgd(0.1, momentum=0.9), mask)
    x, y = data()

    def step(params, state):
        grads = jax.grad(loss_fn)(params, x, y)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    a = b = params
    sa = sb = tx.init(params)
    for _ in range(3):
        a, sa = step(a, sa)
        b, sb = jax.jit(step)(b, sb)
    chex.assert_trees_all_close(a, b, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_equal(
        jax.tree.map(lambda p, m: p * ~m, a, mask), jax.tree.map(lambda p, m: p * ~m, b, mask)
    )


def test_without_params_pruned_weights_do_not_move():
    params = jaxprune.apply_mask(
        mlp_dict(), mask := jaxprune.topk_mask(jaxprune.scores.magnitude(mlp_dict()), 0.5)
    )
    grads = jax.grad(loss_fn)(params, *data())
    tx = jaxprune.masked(optax.adam(1e-2), mask)
    updates, _ = tx.update(grads, tx.init(params), None)
    for u, m in zip(jax.tree.leaves(updates), jax.tree.leaves(mask)):
        if m.ndim:
            assert (np.asarray(u)[~np.asarray(m)] == 0).all()


def test_nnx_optimizer():
    from flax import nnx

    model = nnx_model()
    params = nnx.state(model, nnx.Param)
    mask = jaxprune.topk_mask(jaxprune.scores.magnitude(params), 0.75)
    nnx.update(model, jaxprune.apply_mask(params, mask))
    optimizer = nnx.Optimizer(model, jaxprune.masked(optax.adamw(1e-2), mask), wrt=nnx.Param)
    x, y = data()

    @nnx.jit
    def step(model, optimizer):
        def loss(model):
            logits = model(x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        value, grads = nnx.value_and_grad(loss)(model)
        optimizer.update(model, grads)
        return value

    losses = [float(step(model, optimizer)) for _ in range(30)]
    assert losses[-1] < losses[0]
    trained = nnx.state(model, nnx.Param)
    for p, m in zip(jax.tree.leaves(trained), jax.tree.leaves(mask)):
        if m.ndim:
            assert (np.asarray(p)[~np.asarray(m)] == 0).all()
    found = jaxprune.mask_of(optimizer.opt_state)
    chex.assert_trees_all_equal(jax.tree.leaves(found), jax.tree.leaves(mask))
    # The optimizer itself, its nnx.state, and its state as a plain dict (what orbax
    # restores without a target) hold the same mask.
    for holder in (optimizer, nnx.state(optimizer), nnx.to_pure_dict(nnx.state(optimizer))):
        found = jaxprune.mask_of(holder)
        chex.assert_trees_all_equal(
            [np.asarray(x) for x in jax.tree.leaves(found)], jax.tree.leaves(mask)
        )


@jax.tree_util.register_pytree_node_class
class CallableLayer:
    """A pytree whose type has ``__call__``, as an Equinox module."""

    def __init__(self, w):
        self.w = w

    def __call__(self, x):
        return x @ self.w

    def tree_flatten(self):
        return (self.w,), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(*children)


def test_a_mask_whose_type_is_callable_is_a_mask_not_a_function():
    params = CallableLayer(jnp.arange(16.0).reshape(4, 4))
    mask = jaxprune.topk_mask(jaxprune.scores.magnitude(params), 0.5)
    assert callable(mask)
    for tx in (
        jaxprune.masked(optax.sgd(0.1), mask),
        jaxprune.rigl(optax.sgd(0.1), mask=mask, end_step=10, update_every=5),
    ):
        held = jaxprune.mask_of(tx.init(params))
        np.testing.assert_array_equal(held.w, mask.w)


@pytest.mark.parametrize("kind", ["masked", "gradual", "rigl", "set", "static", "ste"])
def test_updates_shaped_unlike_the_mask_and_bad_keys_are_named(kind):
    key, sgd = jax.random.key(0), optax.sgd(0.1)
    make = {
        "masked": lambda: jaxprune.masked(sgd, jaxprune.dense_mask),
        "gradual": lambda: jaxprune.gradual_magnitude(sgd, 0.5, begin_step=0, end_step=10),
        "rigl": lambda key=key: jaxprune.rigl(sgd, 0.5, end_step=10, update_every=5, key=key),
        "set": lambda key=key: jaxprune.set_training(
            sgd, 0.5, end_step=10, update_every=5, key=key
        ),
        "static": lambda key=key: jaxprune.static_sparse(sgd, 0.5, key=key),
        "ste": lambda: jaxprune.straight_through(sgd, 0.5),
    }[kind]
    params = mlp_dict()
    tx = make()
    grads = jax.tree.map(jnp.zeros_like, params)
    grads["layers_1"]["kernel"] = jnp.zeros((3, 3))
    with pytest.raises(ValueError, match="'layers_1/kernel' has shape \\(3, 3\\)"):
        tx.update(grads, tx.init(params), params)
    small = {**params, "layers_1": {**params["layers_1"], "kernel": jnp.zeros((3, 3))}}
    with pytest.raises(ValueError, match="'layers_1/kernel' has shape \\(3, 3\\) in the params"):
        tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), small)
    if kind in ("rigl", "set", "static"):
        with pytest.raises(TypeError, match="random key such as jax.random.key"):
            make(key=0)
        make(key=jax.random.PRNGKey(0)).init(params)  # a raw key is a key


@pytest.mark.parametrize("kind", ["masked", "gradual", "rigl", "ste"])
def test_a_step_donating_params_and_state_leaves_the_callers_arrays(kind):
    """The state holds buffers of its own: donating it (and the params) neither donates
    one buffer twice nor deletes the caller's mask, so the transform can init again."""
    params = mlp_dict()
    mask = jaxprune.topk_mask(jaxprune.scores.magnitude(params), 0.5)
    sgd = optax.sgd(0.1, momentum=0.9)
    tx = {
        "masked": lambda: jaxprune.masked(sgd, mask),
        "gradual": lambda: jaxprune.gradual_magnitude(sgd, 0.5, begin_step=0, end_step=2),
        "rigl": lambda: jaxprune.rigl(sgd, mask=mask, end_step=10, update_every=1),
        "ste": lambda: jaxprune.straight_through(sgd, 0.5),
    }[kind]()
    x, y = data()

    def step(params, state):
        updates, state = tx.update(jax.grad(loss_fn)(params, x, y), state, params)
        return optax.apply_updates(params, updates), state

    step = jax.jit(step, donate_argnums=(0, 1))
    p = jax.tree.map(jnp.copy, jaxprune.apply_mask(params, mask))
    state = tx.init(p)
    for _ in range(3):
        p, state = step(p, state)
    assert not any(m.is_deleted() for m in jax.tree.leaves(mask))
    again = tx.init(params)
    chex.assert_trees_all_equal_shapes(again, state)


@pytest.mark.parametrize("kind", ["masked", "gradual", "rigl", "set", "static", "ste", "ste_nm"])
def test_a_none_node_in_the_params_changes_nothing(kind):
    """``None`` nodes (an optional submodule, ``eqx.filter``) hold no leaves: training
    with one takes the same steps as without (straight-through once paired each layer
    with the previous one's dense weights after a ``None``)."""
    sgd, key, mag = optax.sgd(0.1, momentum=0.9), jax.random.key(0), jaxprune.scores.magnitude
    tx = {
        "masked": lambda: jaxprune.masked(sgd, lambda p: jaxprune.topk_mask(mag(p), 0.5)),
        "gradual": lambda: jaxprune.gradual_magnitude(sgd, 0.5, begin_step=0, end_step=2),
        "rigl": lambda: jaxprune.rigl(sgd, 0.5, key=key, end_step=10, update_every=1),
        "set": lambda: jaxprune.set_training(sgd, 0.5, key=key, end_step=10, update_every=1),
        "static": lambda: jaxprune.static_sparse(sgd, 0.5, key=key),
        "ste": lambda: jaxprune.straight_through(sgd, 0.5, pruned_decay=0.1),
        "ste_nm": lambda: jaxprune.straight_through(sgd, n_m=(1, 2)),
    }[kind]()
    x, y = data()

    def run(params, wrap):
        def loss(p):
            return loss_fn(p["net"], x, y)

        state, out = tx.init(wrap(params)), []
        for _ in range(4):
            p = wrap(params)
            updates, state = tx.update(jax.grad(loss)(p), state, p)
            params = optax.apply_updates(p, updates)["net"]
            out.append(params)
        return out

    plain = run(mlp_dict(), lambda p: {"net": p})
    with_none = run(mlp_dict(), lambda p: {"a": None, "net": p, "z": None})
    chex.assert_trees_all_close(with_none, plain)


def test_init_checks_the_mask_and_mask_of_explains():
    params = mlp_dict()
    bad = jaxprune.dense_mask(mlp_dict(sizes=(20, 16, 4)))
    with pytest.raises(ValueError, match="'layers_2/bias'"):
        jaxprune.masked(optax.sgd(0.1), bad).init(params)
    with pytest.raises(ValueError, match="jaxprune.masked"):
        jaxprune.mask_of(optax.adam(1e-3).init(params))


@pytest.mark.parametrize("kind", ["masked", "rigl"])
def test_a_transform_inside_multi_transform_takes_the_mask_of_all_the_parameters(kind):
    """Inside optax.multi_transform the params hold a MaskedNode where a leaf is another
    label's; a mask built from all the parameters is cut to the leaves owned."""
    params = mlp_dict()
    mask = jaxprune.topk_mask(jaxprune.scores.magnitude(params), 0.5)
    labels = {k: {"kernel": "sparse", "bias": "dense"} for k in params}
    labels["layers_0"]["kernel"] = "dense"
    sparse = {
        "masked": lambda: jaxprune.masked(optax.adam(1e-2), mask),
        "rigl": lambda: jaxprune.rigl(
            optax.adam(1e-2), mask=mask, end_step=10, update_every=2, key=jax.random.key(0)
        ),
    }[kind]()
    tx = optax.multi_transform({"sparse": sparse, "dense": optax.adam(1e-2)}, labels)
    params = jaxprune.apply_mask(params, mask)
    final, state, losses = jax.jit(train, static_argnums=(0, 2))(tx, params, 6, *data())
    assert float(losses[-1]) < float(losses[0])
    held = jaxprune.mask_of(state)
    assert isinstance(held["layers_0"]["kernel"], optax.MaskedNode)
    for k in ("layers_1", "layers_2"):
        m = np.asarray(held[k]["kernel"])
        assert m.mean() == 0.5 and (np.asarray(final[k]["kernel"])[~m] == 0).all()
    assert (np.asarray(final["layers_0"]["kernel"]) != 0).all()  # the dense label's


def test_static_sparse_is_random_erk_and_fixed():
    params = mlp_dict()
    tx = jaxprune.static_sparse(optax.sgd(0.1), 0.8, key=jax.random.key(3))
    state, (ps, masks, _) = run(tx, params, 5)
    erk = jaxprune.layer_sparsities(params, 0.8, "erk")
    for k in params:
        n = params[k]["kernel"].size
        assert (kernel_counts(masks)[k] == round((1 - erk[f"{k}/kernel"]) * n)).all()
    chex.assert_trees_all_equal(jax.tree.map(lambda m: m[-1], masks), state.mask)
