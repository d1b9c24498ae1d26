"""experiments.ap_colt: the smoke configuration end to end, its numbers, and the resume."""

import json

import numpy as np

from experiments import ap_colt as script
from experiments.configs import ap_colt as configs


def test_the_smoke_configuration_compares_the_arms_at_equal_sparsity_and_resumes(tmp_path):
    config = configs.get_config("smoke")
    results = script.run(config, str(tmp_path), progress=False)
    assert [r["round"] for r in results["rounds"]] == [1, 2]
    for arm in script.ARMS:
        run = json.loads((tmp_path / arm / "results.json").read_text())
        assert [r["remaining"] for r in run["rounds"]] == [
            r["remaining"] for r in results["rounds"]
        ]
    for r in results["rounds"]:
        acc = {a: np.asarray(r["accuracy"][a]["seeds"]) for a in script.ARMS}
        for arm in ("ap", "colt"):
            paired = r["paired"][f"{arm} - imp"]
            np.testing.assert_allclose(paired["seeds"], acc[arm] - acc["imp"])
            assert np.isclose(paired["mean"], np.mean(acc[arm] - acc["imp"]))
            assert np.isclose(paired["std"], np.std(acc[arm] - acc["imp"], ddof=1))
        assert all(len(r["dead_units"][a]["dynamic"]["seeds"]) == 2 for a in script.ARMS)
        assert len(r["colt_segment_remaining"]) == config.colt.segments
        assert all(s > r["remaining"] for s in r["colt_segment_remaining"])
    text = (tmp_path / "results.md").read_text()
    assert "AP - IMP (paired)" in text and text.count("\n") == 5
    assert (tmp_path / "ap_colt.png").stat().st_size > 0
    assert results["command"].endswith(
        f"--config=experiments/configs/ap_colt.py:smoke --workdir={tmp_path}"
    )
    again = script.run(config, str(tmp_path), progress=False)  # resumes: nothing to train
    assert again["rounds"] == results["rounds"]
    for name in configs.CONFIGS:  # every config builds valid settings
        script._settings(configs.get_config(name))
