"""experiments.rethinking and its configs: a tiny study runs, writes its outputs and resumes."""

import numpy as np
import pytest
from ml_collections import ConfigDict

from experiments import rethinking as script
from experiments.configs import rethinking as configs


def _tiny():
    """The smoke config cut to LeNet-5 and one seed: six short runs."""
    config = configs.get_config("smoke")
    config.subset = 128
    config.models = ConfigDict(dict(lenet5=config.models.lenet5))
    config.seeds = (0,)
    return config


@pytest.mark.slow  # six compiled runs: the longest test of the suite beside the others
def test_a_tiny_study_runs_writes_its_outputs_and_resumes(tmp_path, monkeypatch):
    config = _tiny()
    results = script.run(config, str(tmp_path), progress=False)
    arms = {(r["method"], r["arm"]) for r in results["rows"]}
    assert arms == {
        ("dense", "dense"),
        *(("l1_filter", a) for a in script.ARMS),
        ("magnitude", "fine_tuned"),
        ("magnitude", "scratch_e"),
    }
    assert results["complete"]
    by = {(r["method"], r["arm"]): r for r in results["rows"]}
    pruned = by[("l1_filter", "fine_tuned")]
    assert 0 < pruned["params_fraction"] < 1 and 0 < pruned["macs_fraction"] < 1
    # Scratch-B: the dense MACs' budget, at most twice the dense epochs.
    ratio = min(config.scratch_b_cap, 1 / pruned["macs_fraction"])
    assert by[("l1_filter", "scratch_b")]["epochs"] == pytest.approx(config.epochs * ratio)
    assert by[("l1_filter", "scratch_e")]["epochs"] == config.epochs
    assert by[("magnitude", "scratch_e")]["params_fraction"] == pruned["params_fraction"]
    for name in ("results.json", "results.md", script.PLOT):
        assert (tmp_path / name).exists(), name
    md = (tmp_path / "results.md").read_text()
    assert (
        "python -m experiments.rethinking" in md and "| lenet5 | L1-norm filters | 0.5 | 1 |" in md
    )
    # A rerun trains nothing: every record is read back.
    monkeypatch.setattr(script._Seed, "_train", lambda *a: pytest.fail("retrained"))
    assert _accuracies(script.run(config, str(tmp_path), progress=False)) == _accuracies(results)
    monkeypatch.setattr(script._Seed, "run", lambda *a: pytest.fail("report_only trained"))
    again = script.run(config, str(tmp_path), progress=False, report_only=True)
    assert _accuracies(again) == _accuracies(results)


def _accuracies(results):
    return sorted((r["method"], r["arm"], r["test_accuracy"]) for r in results["rows"])


def test_every_config_passes_the_checks():
    for name in configs.CONFIGS:
        script._check(configs.get_config(name))
    bad = configs.get_config("smoke")
    bad.models.lenet5.methods = ("l1_filter", "taylor")
    with pytest.raises(ValueError, match="unknown \\['taylor'\\]"):
        script._check(bad)


def test_a_re_initialised_smaller_kernel_has_the_variance_of_its_own_fan():
    rng = np.random.default_rng(0)
    full = {"k": rng.normal(0, np.sqrt(2 / (9 * 64)), (3, 3, 64, 32)).astype(np.float32)}
    small = {"k": full["k"][:, :, :16, :8]}
    out = script._rescaled(small, full, "fan_in")["k"]
    assert np.std(out) == pytest.approx(np.sqrt(2 / (9 * 16)), rel=0.1)
    glorot = script._rescaled(small, full, "fan_avg")["k"]
    assert np.std(glorot) / np.std(small["k"]) == pytest.approx(np.sqrt((64 + 32) / (16 + 8)))


def test_resized_pads_or_pools_the_images():
    from jaxprune import data

    ds = data.load("fashion_mnist", "test", subset=4)
    assert script._resized(ds, 32).x.shape == (4, 32, 32, 1)
    pooled = script._resized(ds, 14).x
    assert pooled.shape == (4, 14, 14, 1)
    np.testing.assert_allclose(pooled[0, 0, 0, 0], ds.x[0, :2, :2, 0].mean(), rtol=1e-6)
    assert script._resized(ds, None) is ds and script._resized(ds, 28) is ds
    with pytest.raises(ValueError, match="divisor"):
        script._resized(ds, 13)


def test_the_verdict_says_not_settled_where_spreads_overlap():
    line = {
        "fine_tuned": {"mean": 90.0, "std": 0.5},
        "scratch_e": {"mean": 90.4, "std": 0.3},
        "scratch_b": None,
    }
    line.update(fine_tuned_n=3, scratch_e_n=3, scratch_b_n=0)
    assert script._verdict(line) == "not settled"
    line.update(scratch_b={"mean": 92.0, "std": 0.2}, scratch_b_n=3)
    assert script._verdict(line) == "scratch"
    line.update(scratch_b_n=1)  # one seed: no spread to judge by
    assert script._verdict(line) == "not settled (1 seed)"


def test_a_seed_held_by_a_live_process_is_left_to_it(tmp_path):
    sdir = str(tmp_path / "m" / "seed0")
    with script._claim(sdir) as mine:
        assert mine
        with script._claim(sdir) as again:  # held by this (live) process
            assert not again
    assert not (tmp_path / "m" / "seed0.lock").exists()
    (tmp_path / "m" / "seed0.lock").write_text("999999999")  # a process that ended
    with script._claim(sdir) as mine:
        assert mine


def test_only_trains_one_model_of_the_config():
    config = configs.get_config("smoke")
    assert script._count_runs(config) == 2 * (6 + 10)  # LeNet-5: 1 + 3 + 2; VGG: 2 + 6 + 2
    config.only = "lenet5"
    assert script._count_runs(config) == 2 * 6
