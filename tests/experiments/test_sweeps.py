"""experiments.prune_at_init and experiments.dynamic_sparse: smoke configs end to end, and their parts."""

import json

import jax
import numpy as np
import optax
import pytest
from flax import nnx
from ml_collections import ConfigDict

import jaxprune
from experiments import dynamic_sparse as dst
from experiments import prune_at_init as pai
from experiments import sweeps
from experiments.configs import dynamic_sparse as dst_configs
from experiments.configs import prune_at_init as pai_configs
from jaxprune import train


def check_outputs(workdir, summary, methods, sparsity):
    results = json.loads((workdir / "results.json").read_text())
    assert results["summary"] == summary
    assert set(summary) == set(methods)
    assert results["machine"]["backend"] == "cpu"
    for member in results["members"]:
        assert 0.0 <= member["test_accuracy"] <= 1.0
        expected = 0.0 if member["method"] == "dense" else sparsity
        assert member["final_sparsity"] == pytest.approx(expected, abs=1e-4), member
    for method in methods:
        stat = next(iter(summary[method].values()))
        assert stat["n"] == 2 and stat["min"] <= stat["mean"] <= stat["max"]
    table = (workdir / "results.md").read_text()
    assert "10% left (s=0.9)" in table and all(f"| {m}" in table for m in ("dense", "GraSP")[:1])
    png = (workdir / sweeps.PLOT).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    return results


def test_prune_at_init_smoke_runs_resumes_and_refuses_other_settings(tmp_path):
    config = pai_configs.get_config("smoke")
    summary = pai.run(config, str(tmp_path), progress=False)
    results = check_outputs(tmp_path, summary, pai.METHODS, 0.9)
    assert "SNIP (same init)" in (tmp_path / "results.md").read_text()
    # Two cells: dense, and every method of the one sparsity as one ensemble.
    assert sorted(p.name for p in (tmp_path / "cells").iterdir()) == ["s0-dense", "s0.9-masked"]
    # The same command again: nothing is retrained, the same numbers come out.
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "cells").rglob("metrics.jsonl")}
    assert pai.run(config, str(tmp_path), progress=False) == summary
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert json.loads((tmp_path / "results.json").read_text())["members"] == results["members"]
    config.optim.learning_rate = 0.5
    with pytest.raises(ValueError, match=r"other settings .*differs at \['.*learning_rate'\]"):
        pai.run(config, str(tmp_path), progress=False)


def test_dynamic_sparse_smoke(tmp_path):
    config = dst_configs.get_config("smoke")
    summary = dst.run(config, str(tmp_path), progress=False)
    check_outputs(tmp_path, summary, dst.METHODS, 0.9)
    cells = sorted(p.name for p in (tmp_path / "cells").iterdir())
    assert cells == [
        "s0-dense",
        "s0.9-gmp",
        "s0.9-rigl",
        "s0.9-set",
        "s0.9-srste",
        "s0.9-srste_nm",
        "s0.9-static",
        "s0.9-static_nm",
        "s0.9-ste",
        "s0.9-ste_nm",
    ]
    # SR-STE's decay is part of its own cell's settings only: the other cells resume
    # under another value of it (and run directories made before it existed do too).
    stored = lambda cell: json.loads((tmp_path / "cells" / cell / "config.json").read_text())
    training = lambda cell: set(stored(cell)["config"]["training"])
    assert {"srste", "nm"} <= training("s0.9-srste_nm")
    assert "srste" in training("s0.9-srste") and "nm" not in training("s0.9-srste")
    assert "nm" in training("s0.9-ste_nm") and "srste" not in training("s0.9-ste_nm")
    assert not {"srste", "nm"} & training("s0.9-ste")
    # Every member's N:M mask is 1:10 along the input axis: exactly 90% sparse.
    results = json.loads((tmp_path / "results.json").read_text())
    for member in results["members"]:
        if member["method"] in dst.NM_METHODS:
            assert member["final_sparsity"] == pytest.approx(0.9, abs=1e-6)
    config.srste.pruned_decay = 0.5
    config.nm.m = 20
    kept = ("dense", "static", "set", "rigl", "gmp", "ste")
    config.methods = kept
    assert dst.run(config, str(tmp_path), progress=False) == {m: summary[m] for m in kept}
    config.methods = (*kept, "srste")
    with pytest.raises(ValueError, match="other settings"):
        dst.run(config, str(tmp_path), progress=False)


def test_n_m_methods_need_a_whole_n_before_training(tmp_path):
    config = dst_configs.get_config("smoke")
    config.nm.m = 4  # 0.9 of 4 is no whole number
    with pytest.raises(ValueError, match=r"sparsity 0.9 with nm.m = 4.*\[0.75, 0.5, 0.25\]"):
        dst.run(config, str(tmp_path), progress=False)
    assert not (tmp_path / "cells").exists()


@pytest.mark.parametrize("module", [pai_configs, dst_configs])
def test_every_named_config_builds(module):
    for name in module.CONFIGS:
        config = module.get_config(name)
        # The model overrides are valid (built abstractly: no weights are drawn).
        assert nnx.eval_shape(lambda: sweeps.model_maker(config, 10)(0)) is not None
        members = sweeps.members(config, pai.METHODS if module is pai_configs else dst.METHODS)
        assert len(members) == len(config.seeds) * (
            1 + len(config.sparsities) * (len(config.methods) - 1)
        )
    with pytest.raises(ValueError, match="smoke"):
        module.get_config("nope")


def test_the_grid_is_checked():
    config = ConfigDict(dict(methods=("dense", "snipp"), sparsities=(0.9,), seeds=(0,)))
    with pytest.raises(ValueError, match="snipp"):
        sweeps.members(config, pai.METHODS)
    for bad in ((), (0.0,), (1.0,), (0.9, 1.2), (0.9, 0.9), (0.9, 0.9000001)):
        config = ConfigDict(dict(methods=("snip",), sparsities=bad, seeds=(0,)))
        with pytest.raises(ValueError, match="sparsities"):
            sweeps.members(config, pai.METHODS)
    config = ConfigDict(dict(methods=("snip", "snip"), sparsities=(0.9,), seeds=(0,)))
    with pytest.raises(ValueError, match=r"config.methods=.* repeats \['snip'\]"):
        sweeps.members(config, pai.METHODS)


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("seeds", (), r"config.seeds=\(\)"),
        ("seeds", (0.5,), "integer seeds"),
        ("seeds", (0, 1, 0), r"repeats \['0'\]"),
        ("steps", 0, "config.steps=0"),
        ("batch_size", 0, "config.batch_size=0"),
        ("epochs", 0, "config.epochs=0"),
    ],
)
def test_seeds_and_run_length_are_checked_before_anything_is_written(tmp_path, field, value, match):
    config = dst_configs.get_config("smoke")
    setattr(config, field, value)
    with pytest.raises(ValueError, match=match):
        dst.run(config, str(tmp_path / "run"), progress=False)
    assert not (tmp_path / "run").exists()


def test_smoke_configs_take_eval_every_on_the_command_line():
    for module in (dst_configs, pai_configs):
        config = module.get_config("smoke")
        assert config.eval_every is None
        config.eval_every = 15  # a placeholder, so that --config.eval_every=15 works
        assert config.eval_every == 15


def test_members_of_a_sparsity_share_a_cell_only_with_one_optimizer():
    members = sweeps.members(
        ConfigDict(dict(methods=("dense", "rigl", "set"), sparsities=(0.8, 0.9), seeds=(0, 1))),
        dst.METHODS,
    )
    cells = sweeps.plan_cells(members, lambda m: m.method, ensemble=True)
    assert [name for name, _ in cells] == [
        "s0-dense",
        "s0.8-rigl",
        "s0.8-set",
        "s0.9-rigl",
        "s0.9-set",
    ]
    assert all(len(group) == 2 for _, group in cells)
    alone = sweeps.plan_cells(members, lambda m: m.method, ensemble=False)
    assert len(alone) == len(members) and alone[1][0] == "s0-dense-seed1"


def test_without_ensembles_members_sharing_an_optimizer_train_alone():
    # prune_at_init.py: every sparse member shares one optimizer ("masked").
    config = pai_configs.get_config("lenet5_fashion")
    members = sweeps.members(config, pai.METHODS)
    cells = sweeps.plan_cells(
        members, lambda m: "dense" if m.method == "dense" else "masked", False
    )
    assert all(len(group) == 1 for _, group in cells) and len(cells) == len(members)
    assert cells[3][0] == "s0.8-snip-seed0"


@pytest.mark.parametrize("steps", [40, 1000, 10_000, 12_345])
def test_gradual_pruning_ends_on_its_update_grid(steps):
    config = dst_configs.get_config("lenet5_fashion")
    config.gmp.update_every = 7
    begin, end = dst.gmp_window(config, steps)
    assert (end - begin) % 7 == 0 and begin < end <= max(begin + 7, round(0.75 * steps))
    s = jaxprune.schedules.polynomial(final=0.9, begin_step=begin, end_step=end)
    assert float(s(end)) == pytest.approx(0.9)


def test_summary_statistics():
    records = [dict(method="a", sparsity=0.9, test_accuracy=v) for v in (0.5, 0.7, 0.6)]
    records.append(dict(method="dense", sparsity=0.0, test_accuracy=0.8))
    stat = sweeps.summarise(records)
    assert stat["a"]["0.9"] == pytest.approx(dict(mean=0.6, std=0.1, min=0.5, max=0.7, n=3))
    assert stat["dense"]["0"]["std"] == 0.0


def leaves_equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_snip_fresh_trains_the_snip_mask_on_other_weights():
    config = pai_configs.get_config("smoke")
    train_ds, _ = sweeps.datasets(config)
    tx = jaxprune.masked(optax.sgd(0.1), jaxprune.dense_mask)
    model = sweeps.model_maker(config, 10)(0)
    state = train.create_train_state(model, tx, seed=0)
    same = pai.init_mask(config, sweeps.Member("snip", 0.9, 0), state, train_ds)
    fresh = pai.init_mask(config, sweeps.Member("snip_fresh", 0.9, 0), state, train_ds)
    assert leaves_equal(same, fresh)
    grasp = pai.init_mask(config, sweeps.Member("grasp", 0.9, 0), state, train_ds)
    assert not leaves_equal(same, grasp)
    other_seed = pai.init_mask(config, sweeps.Member("snip", 0.9, 1), state, train_ds)
    assert not leaves_equal(same, other_seed)  # another scoring batch


@pytest.mark.parametrize("method", ["snip", "grasp", "synflow"])
def test_shuffled_baselines_keep_each_layers_count_elsewhere(method):
    """The random baseline of Frankle et al. (2021): the method's per-layer counts, placed
    at random."""
    config = pai_configs.get_config("smoke")
    config.synflow_rounds = 5
    train_ds, _ = sweeps.datasets(config)
    tx = jaxprune.masked(optax.sgd(0.1), jaxprune.dense_mask)
    state = train.create_train_state(sweeps.model_maker(config, 10)(0), tx, seed=0)
    found = pai.init_mask(config, sweeps.Member(method, 0.9, 0), state, train_ds)
    shuffled = pai.init_mask(config, sweeps.Member(f"{method}_shuffled", 0.9, 0), state, train_ds)
    for a, b in zip(jax.tree.leaves(found), jax.tree.leaves(shuffled)):
        assert a.shape == b.shape and int(a.sum()) == int(b.sum())
    assert not leaves_equal(found, shuffled)
    default = pai_configs.get_config("mnist1d").methods
    assert method + "_shuffled" not in default  # opt-in: old run directories resume


def test_static_set_and_rigl_start_from_the_seeds_mask_and_rewire_with_its_key():
    config = dst_configs.get_config("smoke")
    states = {
        (method, seed): dst.init_state(
            config, sweeps.Member(method, 0.9, seed), dst.make_tx(config, method, 0.9, 40), 10
        )
        for method in ("static", "set", "rigl")
        for seed in (0, 1)
    }
    mask = lambda k: jaxprune.mask_of(states[k].opt_state)
    for seed in (0, 1):
        assert leaves_equal(mask(("static", seed)), mask(("rigl", seed)))
        assert leaves_equal(mask(("static", seed)), mask(("set", seed)))
        assert float(jaxprune.sparsity(mask(("rigl", seed)))) == pytest.approx(0.9, abs=1e-4)
    assert not leaves_equal(mask(("rigl", 0)), mask(("rigl", 1)))
    keys = [jax.random.key_data(states[("set", s)].opt_state.key) for s in (0, 1)]
    assert not np.array_equal(keys[0], keys[1])
    kernel = states[("rigl", 0)].params["hidden"][0]["kernel"]
    assert int((kernel != 0).sum()) == int(mask(("rigl", 0))["hidden"][0]["kernel"].sum())


def test_straight_through_keeps_the_initial_masks_distribution():
    config = dst_configs.get_config("smoke")
    make = lambda m: dst.init_state(
        config, sweeps.Member(m, 0.9, 0), dst.make_tx(config, m, 0.9, 40), 10
    )
    counts = lambda mask: [int(x.sum()) for x in jax.tree.leaves(mask) if x.ndim]
    ste, static = make("ste"), make("static")
    assert counts(jaxprune.mask_of(ste.opt_state)) == counts(jaxprune.mask_of(static.opt_state))
    uniform = jaxprune.topk_mask(jaxprune.scores.magnitude(ste.params), 0.9, "uniform")
    assert counts(uniform) != counts(jaxprune.mask_of(ste.opt_state))  # ERK, not the default


def test_srste_decays_the_pruned_dense_weights_by_its_config():
    config = dst_configs.get_config("smoke")
    config.srste.pruned_decay = 1.0
    params = {"w": jax.random.normal(jax.random.key(0), (20, 10))}
    zeros = jax.tree.map(np.zeros_like, params)
    after = {}
    for method in ("ste", "srste"):
        tx = dst.make_tx(config, method, 0.9, 40)
        after[method] = tx.update(zeros, tx.init(params), params)[1]
    w, kept = np.asarray(params["w"]), np.asarray(after["ste"].mask["w"])
    np.testing.assert_array_equal(after["ste"].dense["w"], w)  # no gradient, no change
    d = np.asarray(after["srste"].dense["w"])
    assert (np.abs(d[~kept]) < np.abs(w[~kept])).all()  # pruned: decayed
    np.testing.assert_array_equal(d[kept], w[kept])  # kept: no gradient, no change
