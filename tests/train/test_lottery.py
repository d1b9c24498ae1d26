"""The IMP driver: rounds, rewinding, baselines, KD tickets, resume, and the main job's smoke run."""

import json
from pathlib import Path

import jax
import numpy as np
import optax
import pytest
from flax import nnx

import jaxprune
from jaxprune import data, lottery, models
from jaxprune.data.dataset import subset_indices
from jaxprune.plots import plot_imp
from jaxprune.train import create_train_state, ensemble_axes, member, stack_states
from jaxprune.train import lottery as driver
from jaxprune.train.lottery import IMPSettings, run_imp
from jaxprune.train.rundir import read_metrics

TRAIN = data.load("mnist1d", "train", subset=400, seed=0)
TEST = data.load("mnist1d", "test")
TX = optax.adam(3e-3)


def make(seed):
    return models.create("mnist1d_mlp", rngs=nnx.Rngs(seed))


def imp(workdir, settings, steps=40, **kwargs):
    return run_imp(
        make,
        TX,
        TRAIN,
        {"test": TEST},
        workdir=str(workdir),
        seeds=(0, 1),
        settings=settings,
        batch_size=50,
        steps=steps,
        checkpoint_every=20,
        progress=False,
        **kwargs,
    )


def masks_of(workdir, rounds, seeds=(0, 1)):
    return {
        (r, s): dict(np.load(Path(workdir) / f"round_{r:02d}" / f"mask_seed{s}.npz"))
        for r in range(1, rounds + 1)
        for s in seeds
    }


def test_rounds_prune_at_the_layer_rates_and_an_interrupted_run_resumes_the_same(
    tmp_path, monkeypatch
):
    settings = IMPSettings(rate=0.3, rate_scale={"head/": 0.5}, rounds=3)
    results = imp(tmp_path / "full", settings)
    assert [r["round"] for r in results["rounds"]] == [1, 2, 3]
    sizes = {"hidden/0/kernel": 4000, "hidden/1/kernel": 10000, "head/kernel": 1000}
    expect = dict(sizes)
    saved = masks_of(tmp_path / "full", 3)
    for r, record in enumerate(results["rounds"], 1):
        for path in sizes:
            expect[path] = jaxprune.keep_count(expect[path], 0.15 if path == "head/kernel" else 0.3)
            assert record["remaining_per_layer"][path] == expect[path] / sizes[path]
            for s in (0, 1):
                assert int(saved[(r, s)][path].sum()) == expect[path]
                if r > 1:  # every round's mask is a subset of the previous one
                    assert not (saved[(r, s)][path] & ~saved[(r - 1, s)][path]).any()
        assert set(record["accuracy"]) == {"ticket", "random_reinit", "random_pruning"}
        assert all(len(v) == 2 for v in record["accuracy"].values())
    assert not (tmp_path / "full" / "lottery.png").exists()  # the engine does not plot
    plot_imp(results, tmp_path / "full" / "lottery.png")  # the experiment script does
    assert (tmp_path / "full" / "lottery.png").stat().st_size > 0
    assert (
        json.loads((tmp_path / "full" / "results.json").read_text())["rounds"] == results["rounds"]
    )

    # The same run, killed mid-way through round 2, then run again: the same masks
    # and numbers (one test with the above, so that the full run is trained once).
    real = data.batches
    seen = [0]

    def crashing(*args, **kwargs):  # dies mid-way through round 2
        for batch in real(*args, **kwargs):
            seen[0] += 1
            if seen[0] == 40 + 40 + 25:
                raise KeyboardInterrupt("killed in round 2")
            yield batch

    monkeypatch.setattr(data, "batches", crashing)
    with pytest.raises(KeyboardInterrupt):
        imp(tmp_path / "cut", settings)
    monkeypatch.setattr(data, "batches", real)
    assert not (tmp_path / "cut" / "round_02" / "results.json").exists()
    resumed = imp(tmp_path / "cut", settings)
    assert resumed == results
    cut = masks_of(tmp_path / "cut", 3)
    for key in saved:
        for path in saved[key]:
            np.testing.assert_array_equal(saved[key][path], cut[key][path])


def test_members_rewind_reinit_and_random_pruning():
    tx = jaxprune.masked(TX, jaxprune.dense_mask)
    seeds = (0, 1)
    rewind_point = stack_states([create_train_state(make(s), tx, seed=s) for s in seeds])
    trained = jax.tree.map(lambda x: x + 1.0 if x.dtype == np.float32 else x, rewind_point)
    reinit = stack_states([create_train_state(make(s + 7), tx, seed=s) for s in seeds])
    dense_mask = jaxprune.mask_of(rewind_point.opt_state)
    mask = jax.vmap(
        lambda p, m: lottery.prune_round(p, m, 0.6),
        in_axes=(ensemble_axes(trained.params), ensemble_axes(dense_mask)),
    )(trained.params, dense_mask)
    settings = IMPSettings(variants=("ticket", "random_reinit", "random_pruning", "one_shot"))
    members, names = driver._members(
        settings, tx, 1, mask, rewind_point, trained, trained, reinit, seeds
    )
    assert names[:2] == ["ticket/seed0", "ticket/seed1"] and len(members) == 8
    for i in range(2):
        m = jax.tree.map(np.asarray, member(mask, i))
        saved = jax.tree.map(np.asarray, member(rewind_point, i).params)
        ticket, fresh, rnd, shot = (
            jax.tree.map(np.asarray, members[2 * v + i].params) for v in range(4)
        )
        for leaf_m, t, s, f, r in zip(
            *(jax.tree.leaves(x) for x in (m, ticket, saved, fresh, rnd))
        ):
            if leaf_m.ndim == 0:
                continue
            np.testing.assert_array_equal(t[leaf_m], s[leaf_m])  # rewound exactly
            assert (t[~leaf_m] == 0).all()
            assert ((f != 0) == leaf_m).all() and not np.allclose(f[leaf_m], s[leaf_m])
            assert (r != 0).sum() == leaf_m.sum() and ((r != 0) != leaf_m).any()
        for v in range(4):  # every member holds its own mask, with the ticket's counts
            held = jaxprune.mask_of(members[2 * v + i].opt_state)
            assert lottery.kept_counts(held) == lottery.kept_counts(member(mask, i))


def _kept_items(m, granularity):
    """The kept units (or blocks) of a kernel mask, checking each is kept whole."""
    m = np.asarray(m)
    if granularity == "unit":
        kept = m.any(axis=0)
        assert (m == kept[None, :]).all()
        return kept
    r, c = granularity
    b = m.reshape(m.shape[0] // r, r, m.shape[1] // c, c)
    assert (b.all(axis=(1, 3)) == b.any(axis=(1, 3))).all()
    return b.any(axis=(1, 3))


@pytest.mark.parametrize("granularity", ["unit", (2, 2)])
def test_imp_at_a_coarse_granularity_prunes_whole_units_or_blocks(tmp_path, granularity):
    """Each round prunes the rate of the remaining units (blocks), kept whole, exactly."""
    settings = IMPSettings(
        rate=0.5, rounds=2, granularity=granularity, variants=("ticket", "random_pruning")
    )
    results = imp(tmp_path, settings, steps=20)
    shapes = {"hidden/0/kernel": (40, 100), "hidden/1/kernel": (100, 100), "head/kernel": (100, 10)}
    if granularity == "unit":
        expect = {p: b for p, (_, b) in shapes.items()}
    else:
        expect = {p: a * b // 4 for p, (a, b) in shapes.items()}
    saved = masks_of(tmp_path, 2)
    for rnd in (1, 2):
        for path in shapes:
            expect[path] = jaxprune.keep_count(expect[path], 0.5)
            for s in (0, 1):
                kept = _kept_items(saved[(rnd, s)][path], granularity)
                assert kept.sum() == expect[path], (rnd, path)
                if rnd > 1:  # a pruned unit (block) stays pruned
                    assert not (kept & ~_kept_items(saved[(rnd - 1, s)][path], granularity)).any()
    assert [len(r["accuracy"]["random_pruning"]) for r in results["rounds"]] == [2, 2]


def test_unit_random_pruning_and_one_shot_members_keep_whole_units_in_the_tickets_counts():
    tx = jaxprune.masked(TX, jaxprune.dense_mask)
    seeds = (0, 1)
    state = stack_states([create_train_state(make(s), tx, seed=s) for s in seeds])
    trained = jax.tree.map(lambda x: x + 1.0 if x.dtype == np.float32 else x, state)
    dense_mask = jaxprune.mask_of(state.opt_state)
    mask = jax.vmap(
        lambda p, m: lottery.prune_round(p, m, 0.6, granularity="unit"),
        in_axes=(ensemble_axes(trained.params), ensemble_axes(dense_mask)),
    )(trained.params, dense_mask)
    settings = IMPSettings(
        granularity="unit", variants=("ticket", "random_reinit", "random_pruning", "one_shot")
    )
    members, _ = driver._members(settings, tx, 1, mask, state, trained, trained, state, seeds)
    kernels = lambda m: [np.asarray(x) for x in jax.tree.leaves(m) if x.ndim]  # noqa: E731
    for i in range(2):
        ticket = kernels(member(mask, i))
        want = [_kept_items(m, "unit").sum() for m in ticket]
        assert sorted(want) == [4, 40, 40]  # 40% of 10, 100 and 100 units
        random_pruning, one_shot = (
            kernels(jaxprune.mask_of(members[2 * v + i].opt_state)) for v in (2, 3)
        )
        for held in (random_pruning, one_shot):
            assert [_kept_items(m, "unit").sum() for m in held] == want
        assert any((a != b).any() for a, b in zip(random_pruning, ticket))


@pytest.mark.parametrize("rewind", ["lr", "finetune"])
def test_without_weight_rewinding_one_shot_goes_on_from_the_trained_dense_network(rewind):
    """Tickets keep their trained weights; one_shot, the dense network pruned at once,
    keeps the trained dense weights (it took the rewind point's before)."""
    tx = jaxprune.masked(optax.sgd(0.1), jaxprune.dense_mask)
    seeds = (0, 1)
    rewind_point = stack_states([create_train_state(make(s), tx, seed=s) for s in seeds])
    trained = jax.tree.map(lambda x: x + 1.0 if x.dtype == np.float32 else x, rewind_point)
    dense = jax.tree.map(lambda x: x + 2.0 if x.dtype == np.float32 else x, rewind_point)
    dense_mask = jaxprune.mask_of(rewind_point.opt_state)
    mask = jax.vmap(
        lambda p, m: lottery.prune_round(p, m, 0.6),
        in_axes=(ensemble_axes(trained.params), ensemble_axes(dense_mask)),
    )(trained.params, dense_mask)
    settings = IMPSettings(rewind=rewind, variants=("ticket", "one_shot"))
    members, names = driver._members(
        settings, tx, 1, mask, rewind_point, trained, dense, None, seeds
    )
    assert names == ["ticket/seed0", "ticket/seed1", "one_shot/seed0", "one_shot/seed1"]
    for i in range(2):
        for got, source in ((members[i], trained), (members[2 + i], dense)):
            held = jax.tree.map(np.asarray, jaxprune.mask_of(got.opt_state))
            for m, p, want in zip(
                jax.tree.leaves(held),
                jax.tree.leaves(got.params),
                jax.tree.leaves(member(source, i).params),
            ):
                keep = m if m.ndim else np.ones(np.shape(p), bool)
                np.testing.assert_array_equal(np.asarray(p)[keep], np.asarray(want)[keep])
            assert int(got.step) == int(member(rewind_point, i).step)


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"target": 0.0}, "target"),
        ({"target": 1.5}, "target"),
        ({"rounds": 0}, "rounds must be None or an integer >= 1"),
        ({"rounds": True}, "rounds must be None or an integer >= 1"),
        ({"rounds": 2.5}, "rounds must be None or an integer >= 1"),
        ({"kd_temperature": 0.0}, "kd_temperature must be > 0"),
        ({"kd_alpha": 2.0}, "kd_alpha"),
        ({"variants": ("ticket", "ticket")}, "must not repeat"),
        ({"granularity": "units"}, r"granularity must be .*IMPSettings.granularity"),
        ({"granularity": (2, 0)}, "granularity must be"),
    ],
)
def test_imp_settings_refuse_values_that_cannot_run(bad, match):
    with pytest.raises(ValueError, match=match):
        IMPSettings(**bad)


def test_run_imp_checks_its_inputs_before_the_dense_training(tmp_path):
    typo = IMPSettings(rounds=1, rate_scale={"heads/": 0.5})
    with pytest.raises(ValueError, match="'heads/' matches no prunable leaf"):
        imp(tmp_path / "typo", typo)
    assert not (tmp_path / "typo" / "round_00").exists()
    with pytest.raises(ValueError, match="split named 'test'"):
        run_imp(
            make,
            TX,
            TRAIN,
            {"val": TEST},
            workdir=str(tmp_path / "val"),
            batch_size=50,
            steps=40,
            progress=False,
        )
    assert not (tmp_path / "val" / "round_00").exists()


def test_imp_stops_with_a_warning_when_a_round_would_prune_nothing(tmp_path, monkeypatch):
    """Kept counts that round back to themselves (a target below what the rate can reach)
    stop the loop instead of training the same round until round 9999."""
    monkeypatch.setattr(driver.lottery, "prune_round", lambda params, mask, *a, **k: mask)
    with pytest.warns(driver.IMPStalled, match="out of reach"):
        results = imp(tmp_path, IMPSettings(target=0.01))
    assert results["rounds"] == []
    assert json.loads((tmp_path / "results.json").read_text())["rounds"] == []


def test_weight_rewinding_kd_tickets_and_lr_rewinding_run(tmp_path):
    kd = IMPSettings(
        rate=0.5, rounds=1, rewind_step=10, variants=("ticket", "kd_ticket", "one_shot")
    )
    results = imp(tmp_path / "kd", kd)
    assert set(results["rounds"][0]["accuracy"]) == {"ticket", "kd_ticket", "one_shot"}
    assert (tmp_path / "kd" / "round_00" / "checkpoints").exists()
    lr = IMPSettings(rate=0.5, rounds=1, rewind="lr", rewind_step=10, variants=("ticket",))
    assert len(imp(tmp_path / "lr", lr)["rounds"]) == 1
    ft = IMPSettings(rate=0.5, rounds=1, rewind="finetune", variants=("ticket",))
    assert len(imp(tmp_path / "ft", ft)["rounds"]) == 1
    with pytest.raises(ValueError, match="finetune"):
        IMPSettings(rewind="finetune")
    with pytest.raises(ValueError, match="variants"):
        IMPSettings(variants=("random_reinit",))


@pytest.mark.parametrize("rewind", ["weights", "finetune"])
def test_a_rewound_ticket_goes_on_with_the_schedule_at_its_step(tmp_path, rewind):
    """A fresh optimizer's schedule counts start at 0; rewound to step k they must go on
    from k (the learning rate's decay at step 20 is then where it belongs), fine-tuning
    from the end of training: the schedule's count is the state's step at the end."""
    import orbax.checkpoint as ocp

    schedule = optax.piecewise_constant_schedule(0.1, {20: 0.0})
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=optax.linear_schedule(0.1, 0.0, 40))
    k = 0 if rewind == "finetune" else 10
    settings = IMPSettings(rate=0.5, rounds=1, rewind=rewind, rewind_step=k, variants=("ticket",))
    for name, opt in (("schedule", optax.sgd(schedule)), ("inject", tx)):
        workdir = tmp_path / name
        run_imp(
            make,
            opt,
            TRAIN,
            {"test": TEST},
            workdir=str(workdir),
            seeds=(0,),
            settings=settings,
            batch_size=50,
            steps=30,
            checkpoint_every=10,
            progress=False,
        )
        checkpoints = workdir / "round_01" / "checkpoints"
        with ocp.CheckpointManager(checkpoints, item_names=("state", "extra")) as manager:
            last = manager.latest_step()
            stored = manager.restore(
                last, args=ocp.args.Composite(state=ocp.args.StandardRestore())
            )
        counts = [
            int(np.max(v))
            for p, v in jax.tree_util.tree_leaves_with_path(stored.state["opt_state"])
            if jax.tree_util.keystr(p).endswith("['count']")
        ]
        assert int(np.max(stored.state["step"])) == last == (60 if rewind == "finetune" else 30)
        assert counts and all(c == last for c in counts), (name, counts)  # not last - k


def test_the_plots_of_old_live_in_jaxprune_plots_and_the_old_name_warns():
    import jaxprune.plots
    import jaxprune.train.plots

    with pytest.warns(DeprecationWarning, match="moved to jaxprune.plots"):
        old = jaxprune.train.plots.plot_accuracy_vs_remaining
    assert old is jaxprune.plots.plot_accuracy_vs_remaining
    with pytest.raises(AttributeError):
        jaxprune.train.plots.plot_imp  # noqa: B018


def test_plan_imp_names_members_rounds_and_the_stop_without_training():
    settings = IMPSettings(rewind="finetune", rewind_step=10, variants=("ticket", "one_shot"))
    plan = driver.plan_imp(settings, seeds=(3, 4), batch_size=50, steps=40)
    assert plan.names == ("ticket/seed3", "ticket/seed4", "one_shot/seed3", "one_shot/seed4")
    assert (plan.round_start, plan.round_steps) == (40, 70)
    assert plan.dense_keep == {"rewind": 10}
    assert plan.record["imp"]["variants"] == ["ticket", "one_shot"]
    assert not plan.last_round(5, 0.04) and plan.last_round(5, 0.036)
    fixed = driver.plan_imp(IMPSettings(rounds=2), seeds=(0,), batch_size=50, steps=40)
    assert (fixed.round_start, fixed.round_steps, fixed.dense_keep) == (None, 40, ())
    assert not fixed.last_round(1, 0.01) and fixed.last_round(2, 0.9)
    with pytest.raises(ValueError, match=r"rewind_step must be in \[0, steps=40\), got 40"):
        driver.plan_imp(IMPSettings(rewind_step=40), seeds=(0,), batch_size=50, steps=40)


def test_without_validation_the_numbers_are_those_of_the_driver_before_the_option(tmp_path):
    """validation=0 (the default) trains and reports exactly what the driver did before
    the option existed: these accuracies are that driver's, on this machine's numerics."""
    settings = IMPSettings(rate=0.5, rounds=2, variants=("ticket", "random_reinit"))
    results = imp(tmp_path, settings, eval_every=20)
    assert results["dense"] == {"accuracy": [0.283, 0.29], "steps": 40}
    assert [r["accuracy"] for r in results["rounds"]] == [
        {"ticket": [0.283, 0.281], "random_reinit": [0.267, 0.248]},
        {"ticket": [0.274, 0.263], "random_reinit": [0.213, 0.202]},
    ]
    assert all("min_val_loss" not in r for r in results["rounds"])


def test_min_val_loss_is_the_first_argmin_of_the_logged_validation_losses(tmp_path):
    lines = [
        {"step": 0, "split": "val", "loss": [2.0, 2.0], "accuracy": [0.1, 0.1]},
        {"step": 0, "split": "test", "loss": [2.0, 2.0], "accuracy": [0.2, 0.2]},
        {"step": 5, "split": "train", "loss": [0.1, 0.1], "accuracy": [0.9, 0.9]},
        {"step": 10, "split": "val", "loss": [0.5, 0.7], "accuracy": [0.6, 0.5]},
        {"step": 10, "split": "test", "loss": [0.6, 0.7], "accuracy": [0.55, 0.45]},
        {"step": 20, "split": "val", "loss": [0.9, 0.5], "accuracy": [0.4, 0.7]},
        {"step": 20, "split": "test", "loss": [0.9, 0.5], "accuracy": [0.35, 0.65]},
        {"step": 30, "split": "val", "loss": [0.5, 0.6], "accuracy": [0.61, 0.6]},
        {"step": 30, "split": "test", "loss": [0.5, 0.6], "accuracy": [0.5, 0.6]},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert driver._min_val_loss(str(tmp_path)) == {
        "step": [10, 20],  # member 0: the first of its two minima
        "val_loss": [0.5, 0.5],
        "val_accuracy": [0.6, 0.7],
        "test_accuracy": [0.55, 0.65],
    }


def test_held_out_validation_records_each_members_step_of_minimum_validation_loss(
    tmp_path, monkeypatch
):
    real, trained_on = data.batches, []

    def spying(ds, *args, **kwargs):
        for batch in real(ds, *args, **kwargs):
            trained_on.append(batch["x"])
            yield batch

    monkeypatch.setattr(data, "batches", spying)
    settings = IMPSettings(rate=0.5, rounds=1, variants=("ticket", "random_reinit"), validation=100)
    results = imp(tmp_path, settings, eval_every=10)
    held = subset_indices(len(TRAIN), 100, settings.validation_seed)
    seen = {row.tobytes() for x in trained_on for row in x}
    assert not seen & {row.tobytes() for row in TRAIN.x[held]}  # never trained on
    rest = np.setdiff1d(np.arange(len(TRAIN)), held)
    assert seen <= {row.tobytes() for row in TRAIN.x[rest]} and len(seen) > 100

    def logged(round_dir):
        records = read_metrics(tmp_path / round_dir)
        val = [r for r in records if r["split"] == "val"]
        assert [r["step"] for r in val] == [0, 10, 20, 30, 40]
        assert all(r["count"] == 100 for r in val)
        test = {r["step"]: r["accuracy"] for r in records if r["split"] == "test"}
        return np.asarray([r["loss"] for r in val]), [r["step"] for r in val], test

    losses, steps, test = logged("round_00")
    best = results["dense"]["min_val_loss"]
    assert best["step"] == [steps[i] for i in np.argmin(losses, axis=0)]
    assert best["test_accuracy"] == [test[s][m] for m, s in enumerate(best["step"])]
    losses, steps, test = logged("round_01")
    record = results["rounds"][0]["min_val_loss"]
    for j, v in enumerate(("ticket", "random_reinit")):
        want = [steps[i] for i in np.argmin(losses[:, 2 * j : 2 * j + 2], axis=0)]
        assert record[v]["step"] == want
        assert record[v]["val_loss"] == [
            losses[steps.index(s), 2 * j + m] for m, s in enumerate(want)
        ]
        assert record[v]["test_accuracy"] == [test[s][2 * j + m] for m, s in enumerate(want)]


@pytest.mark.parametrize(
    "settings, kwargs, error, match",
    [
        ({"validation": -1}, None, ValueError, "validation must be >= 0"),
        ({"validation": 2.5}, None, TypeError, "validation must be an integer"),
        ({"validation": 10}, {}, ValueError, "eval_every must be set"),
        ({"validation": 400}, {"eval_every": 10}, ValueError, "below the 400 training"),
        ({"validation": 10}, {"eval_every": 10, "val": True}, ValueError, "named 'val'"),
    ],
)
def test_validation_settings_are_checked_before_any_training(
    tmp_path, settings, kwargs, error, match
):
    with pytest.raises(error, match=match):
        settings = IMPSettings(rounds=1, **settings)
        kwargs = dict(kwargs)
        evals = {"test": TEST, "val": TEST} if kwargs.pop("val", False) else {"test": TEST}
        run_imp(
            make,
            TX,
            TRAIN,
            evals,
            workdir=str(tmp_path),
            settings=settings,
            batch_size=50,
            steps=40,
            progress=False,
            **kwargs,
        )
    assert not (tmp_path / "round_00").exists()


def test_a_run_recorded_before_a_setting_existed_resumes_at_its_default(tmp_path):
    from jaxprune.train.lottery import later_settings
    from jaxprune.train.rundir import RunDir

    run = RunDir(tmp_path)
    run.create()
    old = {"imp": {"rate": 0.2}, "config": {"imp": {"rate": 0.2}}, "steps": 10}
    run.check_or_write_config(old)
    later = later_settings("imp", "config.imp")
    new = {
        "imp": {"rate": 0.2, "granularity": "element", "validation": 0},
        "config": {"imp": {"rate": 0.2, "granularity": "element"}},
        "steps": 10,
    }
    run.check_or_write_config(new, later=later)  # the defaults: the old run resumes
    assert json.loads((tmp_path / "config.json").read_text()) == old  # left as it was
    for changed in (
        {**new, "imp": {**new["imp"], "granularity": "unit"}},
        {**new, "config": {"imp": {"rate": 0.2, "granularity": "unit"}}},
        {**new, "steps": 20},
    ):
        with pytest.raises(ValueError, match="different config"):
            run.check_or_write_config(changed, later=later)
    with pytest.raises(ValueError, match=r"differs at \[.*'imp.granularity'"):
        run.check_or_write_config(new)  # without `later`, any new key differs
