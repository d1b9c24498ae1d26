"""experiments.prunability: the smoke study runs, its numbers come from the IMP runs, and
a rerun resumes to the same numbers."""

import json

import pytest

from experiments import prunability as script
from experiments.configs import prunability as configs


def _numbers(results):
    return {
        k: v for k, v in results.items() if k not in ("machine", "invocation_wall_s", "command")
    }


def test_the_smoke_study_runs_and_its_numbers_come_from_the_imp_runs(tmp_path):
    config = configs.get_config("smoke")
    results = script.run(config, str(tmp_path), progress=False)
    assert [row["dim"] for row in results["dims"]] == list(config.study.dims)
    for row in results["dims"]:
        with open(tmp_path / f"d{row['dim']:02d}" / "results.json") as f:
            imp = json.load(f)
        assert row["dense"] == pytest.approx(imp["dense"]["accuracy"])
        assert len(row["rounds"]) == config.imp.rounds
        for mine, theirs in zip(row["rounds"], imp["rounds"]):
            assert mine["accuracy"] == pytest.approx(theirs["accuracy"]["ticket"])
        expected = script.prunability(row["dense"], imp["rounds"], config.study.tolerance)
        assert row["sparsity"] == expected["sparsity"]
        assert row["twonn_dim"] == pytest.approx(row["dim"], rel=0.25)
    for name in ("results.json", "results.md", "prunability.png"):
        assert (tmp_path / name).exists(), name
    assert "python -m experiments.prunability" in (tmp_path / "results.md").read_text()
    # A rerun finds every round done and gives the same numbers.
    assert _numbers(script.run(config, str(tmp_path), progress=False)) == _numbers(results)
    config.study.tolerance = 0.5
    with pytest.raises(ValueError, match="differs"):
        script.run(config, str(tmp_path), progress=False)


def test_prunability_takes_the_sparsest_round_within_tolerance_per_seed():
    rounds = [
        {"remaining": 0.8, "accuracy": {"ticket": [0.90, 0.70]}},
        {"remaining": 0.64, "accuracy": {"ticket": [0.85, 0.91]}},
        {"remaining": 0.512, "accuracy": {"ticket": [0.895, 0.80]}},
    ]
    got = script.prunability([0.9, 0.9], rounds, 0.01)
    assert got["sparsity"] == pytest.approx([0.488, 0.36])
    assert got["remaining"] == pytest.approx([0.512, 0.64])
    # the seed-mean curve: 0.8, 0.88, 0.8475 against 0.9: no round within a point
    assert got["mean_curve"]["sparsity"] == 0.0


@pytest.mark.parametrize("dims", [(), (2, 2), (0, 4)])
def test_bad_dimensions_are_refused_before_training(tmp_path, dims):
    config = configs.get_config("smoke")
    config.study.dims = dims
    with pytest.raises(ValueError, match="config.study.dims"):
        script.run(config, str(tmp_path), progress=False)
