"""Learning-rate schedules and optimizers from configs."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxprune.train import constant, cosine, linear_warmup, lr_schedule, optimizer, step_decay


def values(schedule, steps):
    return [float(schedule(t)) for t in steps]


def test_step_decay_drops_at_each_boundary():
    s = step_decay(0.1, [10, 20], 0.1)
    np.testing.assert_allclose(
        values(s, [0, 9, 10, 19, 20, 100]), [0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-6
    )
    per = step_decay(1.0, [5, 8], [0.5, 0.2])
    np.testing.assert_allclose(values(per, [4, 5, 8]), [1.0, 0.5, 0.1], rtol=1e-6)


@pytest.mark.parametrize(
    "boundaries,factor,match",
    [
        ([10, 5], 0.1, "increasing"),
        ([-1], 0.1, "non-negative"),
        ([1, 2], [0.1], "one factor per boundary"),
    ],
)
def test_step_decay_rejects_bad_input(boundaries, factor, match):
    with pytest.raises(ValueError, match=match):
        step_decay(0.1, boundaries, factor)


def test_cosine_goes_from_start_to_end():
    s = cosine(0.2, 100, end_value=0.02)
    np.testing.assert_allclose(values(s, [0, 50, 100, 200]), [0.2, 0.11, 0.02, 0.02], rtol=1e-5)


def test_warmup_ramps_linearly_then_follows_the_schedule_at_absolute_steps():
    s = linear_warmup(step_decay(0.1, [20], 0.1), 10)
    np.testing.assert_allclose(
        values(s, [0, 1, 5, 10, 19, 20]), [0.0, 0.01, 0.05, 0.1, 0.1, 0.01], rtol=1e-6
    )
    assert linear_warmup(constant(0.3), 0) is not None
    assert float(linear_warmup(constant(0.3), 0)(0)) == pytest.approx(0.3)


def test_lr_schedule_reads_a_config_dict():
    cfg = ml_collections.ConfigDict(
        dict(
            learning_rate=0.1,
            schedule="step",
            boundaries=[32_000, 48_000],
            warmup_steps=100,
            optimizer="momentum",
        )
    )
    np.testing.assert_allclose(
        values(lr_schedule(cfg), [50, 1000, 40_000, 50_000]), [0.05, 0.1, 0.01, 0.001], rtol=1e-5
    )
    cos = lr_schedule({"learning_rate": 1.0, "schedule": "cosine", "total_steps": 10})
    assert float(cos(10)) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize(
    "cfg,err,match",
    [
        ({}, KeyError, "learning_rate"),
        ({"learning_rate": 0.1, "schedule": "step"}, KeyError, "boundaries"),
        ({"learning_rate": 0.1, "schedule": "cosine"}, KeyError, "total_steps"),
        ({"learning_rate": 0.1, "schedule": "linear"}, ValueError, "unknown schedule"),
        ({"learning_rate": 0.1, "lr_decay": 0.5}, KeyError, "lr_decay"),
    ],
)
def test_lr_schedule_errors_name_the_problem(cfg, err, match):
    with pytest.raises(err, match=match):
        lr_schedule(cfg)


def first_update(tx, grad=1.0, param=2.0):
    params = {"w": jnp.array([param])}
    updates, _ = tx.update({"w": jnp.array([grad])}, tx.init(params), params)
    return float(updates["w"][0])


def test_optimizers_take_the_expected_first_step():
    assert first_update(optimizer({"optimizer": "sgd", "learning_rate": 0.5})) == pytest.approx(
        -0.5
    )
    wd = optimizer({"optimizer": "sgd", "learning_rate": 0.5, "weight_decay": 0.1})
    assert first_update(wd) == pytest.approx(-0.5 * (1.0 + 0.1 * 2.0))
    adam = optimizer({"optimizer": "adam", "learning_rate": 1.2e-3})
    assert first_update(adam, grad=3.0) == pytest.approx(-1.2e-3, rel=1e-4)  # sign step
    nest = optimizer({"optimizer": "nesterov", "learning_rate": 0.1, "momentum": 0.9})
    assert first_update(nest) == pytest.approx(-0.1 * 1.9)
    adamw = optimizer({"optimizer": "adamw", "learning_rate": 1e-3, "weight_decay": 0.5})
    assert first_update(adamw, grad=3.0) == pytest.approx(-1e-3 * (1 + 0.5 * 2.0), rel=1e-4)


def test_optimizer_uses_a_given_schedule_and_clips():
    sched = optax.constant_schedule(0.25)
    assert first_update(optimizer({"optimizer": "sgd"}, sched)) == pytest.approx(-0.25)
    clip = optimizer({"optimizer": "sgd", "learning_rate": 1.0, "grad_clip_norm": 0.5})
    assert first_update(clip, grad=3.0) == pytest.approx(-0.5)


@pytest.mark.parametrize("name", ["nesterov", "adamw"])
def test_weight_decay_on_kernels_leaves_biases_alone(name):
    """RigL's code regularises the kernels only; the lottery-ticket code every parameter."""
    params = {"kernel": jnp.full((2, 2), 2.0), "bias": jnp.full((2,), 2.0)}
    zero = {k: jnp.zeros_like(v) for k, v in params.items()}
    cfg = {"optimizer": name, "learning_rate": 0.1, "weight_decay": 0.5}
    for on, bias_moves in (("all", True), ("kernels", False)):
        tx = optimizer({**cfg, "weight_decay_on": on})
        updates, _ = tx.update(zero, tx.init(params), params)
        assert float(jnp.abs(updates["kernel"]).max()) > 0
        assert (float(jnp.abs(updates["bias"]).max()) > 0) == bias_moves, on
    with pytest.raises(ValueError, match="weight_decay_on must be 'all' or 'kernels'"):
        optimizer({**cfg, "weight_decay_on": "biases"})


def test_optimizer_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        optimizer({"optimizer": "rmsprop", "learning_rate": 0.1})
