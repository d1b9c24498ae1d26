"""Instability analysis: per-member data orders, children of one state, IMP tickets, barriers."""

import functools

import jax
import numpy as np
import optax
import pytest
from flax import nnx
from helpers import Crash, crashing_at

import jaxprune
from jaxprune import masks
from jaxprune.train import (
    Checkpointing,
    Logging,
    Parallel,
    create_train_state,
    fit,
    imp_tickets,
    instability,
    make_mesh,
    member,
    read_metrics,
    restore_checkpoint,
    stack_states,
    train_children,
)
from jaxprune.train.lottery import IMPSettings, run_imp
from jaxprune.train.testing import TinyCNN, TinyMLP, synthetic_dataset

TRAIN = synthetic_dataset(192, (16,), 4, seed=0)
TEST = synthetic_dataset(64, (16,), 4, seed=1)
TX = optax.sgd(0.2, momentum=0.9)


def parent(seed=0):
    return create_train_state(TinyMLP(16, 12, 4, rngs=nnx.Rngs(seed)), TX, seed=seed)


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def run(workdir, state, seed, **overrides):
    kwargs = dict(
        workdir=str(workdir),
        batch_size=16,
        steps=20,
        seed=seed,
        logging=Logging(every=5, progress=False),
        checkpoints=Checkpointing(every=7),
        parallel=Parallel(mesh=make_mesh(1), ensemble=True),
    )
    return fit(state, TRAIN, **(kwargs | overrides))


def test_each_member_trains_on_its_own_data_order_as_if_alone(tmp_path):
    pair = stack_states([parent(), parent()])
    together = run(tmp_path / "pair", pair, (1, 2))
    for i, seed in enumerate((1, 2)):
        alone = fit(
            parent(),
            TRAIN,
            workdir=str(tmp_path / f"alone{seed}"),
            batch_size=16,
            steps=20,
            seed=seed,
            logging=Logging(progress=False),
            parallel=Parallel(mesh=make_mesh(1)),
        )
        for a, b in zip(leaves(member(together.state, i).params), leaves(alone.state.params)):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    first, second = (
        leaves(member(together.state, 0).params),
        leaves(member(together.state, 1).params),
    )
    assert any(not np.array_equal(a, b) for a, b in zip(first, second))


def test_children_with_one_data_order_are_identical_and_with_two_are_not(tmp_path):
    same = train_children(
        parent(), TRAIN, workdir=str(tmp_path / "same"), steps=20, batch_size=16,
        data_seeds=(1, 1), progress=False,
    )  # fmt: skip
    for a in leaves(same.params):
        np.testing.assert_array_equal(a[0], a[1])
    out = instability(same, TEST, alphas=5)
    assert out["error_barrier"] == {"mean": 0.0, "linear": 0.0} and out["instability"] == 0.0
    assert out["loss_barrier"]["mean"] == pytest.approx(0.0, abs=1e-6)
    assert out["loss_barrier"]["linear"] == pytest.approx(0.0, abs=1e-6)
    differ = train_children(
        parent(), TRAIN, workdir=str(tmp_path / "differ"), steps=20, batch_size=16,
        progress=False,
    )  # fmt: skip
    assert any(not np.array_equal(a[0], a[1]) for a in leaves(differ.params))
    out = instability(differ, TEST, alphas=5)
    (path,) = out["paths"]
    assert len(path["loss"]) == 5 and path["loss"][0] != path["loss"][-1]
    assert out["alphas"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert set(out["error_barrier"]) == {"mean", "linear"} and not out["bn_reestimated"]


def test_children_continue_from_the_parents_step_and_schedule(tmp_path):
    tx = optax.sgd(optax.piecewise_constant_schedule(0.2, {10: 0.0}))  # no update from step 10
    at_10 = fit(
        create_train_state(TinyMLP(16, 12, 4, rngs=nnx.Rngs(0)), tx),
        TRAIN,
        workdir=str(tmp_path / "parent"),
        batch_size=16,
        steps=10,
        logging=Logging(progress=False),
        parallel=Parallel(mesh=make_mesh(1)),
    ).state
    children = train_children(
        at_10, TRAIN, workdir=str(tmp_path / "kids"), steps=15, batch_size=16, progress=False
    )
    assert int(children.step) == 15
    for a, b in zip(leaves(children.params), leaves(at_10.params)):
        np.testing.assert_array_equal(a[0], b)
        np.testing.assert_array_equal(a[1], b)


def test_stacked_parents_have_child_major_children(tmp_path):
    parents = stack_states([parent(0), parent(1)])
    children = train_children(
        parents, TRAIN, workdir=str(tmp_path / "kids"), steps=3, batch_size=16,
        data_seeds=(1, 1), stacked=True, progress=False,
    )  # fmt: skip
    kernel = np.asarray(children.params["hidden"]["kernel"])
    assert kernel.shape[0] == 4
    np.testing.assert_array_equal(kernel[0], kernel[2])  # parent 0, orders 0 and 1
    np.testing.assert_array_equal(kernel[1], kernel[3])
    assert not np.array_equal(kernel[0], kernel[1])
    assert len(instability(children, TEST, parents=2, alphas=3)["paths"]) == 2
    with pytest.raises(ValueError, match="parents"):
        instability(children, TEST, parents=3)


def test_per_member_orders_resume_to_the_uninterrupted_run(tmp_path):
    pair = lambda: stack_states([parent(), parent()])  # noqa: E731
    full = run(tmp_path / "full", pair(), (1, 2))
    with pytest.raises(Crash):
        run(tmp_path / "cut", pair(), (1, 2), batches=crashing_at(12))
    resumed = run(tmp_path / "cut", pair(), (1, 2))
    assert read_metrics(tmp_path / "cut" / "metrics.jsonl") == read_metrics(
        tmp_path / "full" / "metrics.jsonl"
    )
    for a, b in zip(leaves(full.state.params), leaves(resumed.state.params)):
        np.testing.assert_array_equal(a, b)


def test_per_member_seeds_are_checked(tmp_path):
    with pytest.raises(ValueError, match="one data order per ensemble member"):
        run(tmp_path / "a", stack_states([parent(), parent()]), (1, 2, 3))
    with pytest.raises(ValueError, match="ensemble"):
        run(tmp_path / "b", parent(), (1, 2), parallel=Parallel(mesh=make_mesh(1)))
    with pytest.raises(TypeError, match="seed must be"):
        run(tmp_path / "c", stack_states([parent(), parent()]), "12")


def test_imp_tickets_are_rebuilt_from_the_drivers_rewind_point_and_masks(tmp_path):
    make = lambda s: TinyMLP(16, 12, 4, rngs=nnx.Rngs(s))  # noqa: E731
    settings = IMPSettings(rounds=2, rewind_step=4, distribution="global", rate_scale={})
    workdir = str(tmp_path / "imp")
    run_imp(make, TX, TRAIN, TEST, workdir=workdir, seeds=(0, 1), settings=settings,
            batch_size=16, steps=12, progress=False)  # fmt: skip
    tx = jaxprune.masked(TX, functools.partial(masks.dense_mask, prunable=settings.prunable()))
    template = stack_states([create_train_state(make(s), tx, seed=s) for s in (0, 1)])
    tickets = imp_tickets(workdir, template, 2)
    rewound = restore_checkpoint(f"{workdir}/round_00", template, "rewind")
    assert int(tickets.step) == 4
    for i, s in enumerate((0, 1)):
        mask = jaxprune.train.load_mask(
            f"{workdir}/round_02/mask_seed{s}.npz", member(template, i).params
        )
        expected = jaxprune.apply_mask(member(rewound, i).params, mask)
        for a, b in zip(leaves(member(tickets, i).params), leaves(expected)):
            np.testing.assert_array_equal(a, b)
        kept = masks.sparsity_report(jaxprune.mask_of(member(tickets, i).opt_state)).kept
        assert kept == masks.sparsity_report(mask).kept < masks.sparsity_report(mask).size
    random = imp_tickets(workdir, template, 2, random_key=jax.random.key(0))
    ticket_mask, random_mask = (jaxprune.mask_of(member(t, 0).opt_state) for t in (tickets, random))
    for a, b in zip(leaves(ticket_mask), leaves(random_mask)):
        assert a.sum() == b.sum()
    assert any(not np.array_equal(a, b) for a, b in zip(leaves(ticket_mask), leaves(random_mask)))
    with pytest.raises(ValueError, match="members"):
        imp_tickets(workdir, member(template, slice(0, 1)), 1)


def test_batch_norm_children_have_their_statistics_reestimated_on_the_path(tmp_path):
    images = synthetic_dataset(64, (16, 1), 4, seed=0)
    state = create_train_state(TinyCNN(1, 4, 4, rngs=nnx.Rngs(0)), TX)
    children = train_children(
        state, images, workdir=str(tmp_path), steps=3, batch_size=16, progress=False
    )
    out = instability(children, images, alphas=3, bn_data=images, bn_batch_size=16)
    assert out["bn_reestimated"]
    with pytest.raises(ValueError, match="bn_data"):
        instability(children, images, alphas=3)  # batch norm needs training data
