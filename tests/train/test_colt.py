"""COLT's driver and AP / dead units in the IMP driver: masks, counts, records, resume."""

import json
import shutil
from pathlib import Path

import jax
import numpy as np
import optax
import pytest
from flax import nnx

import jaxprune
from jaxprune import data, models
from jaxprune._tree import leaves_with_paths
from jaxprune.train import colt
from jaxprune.train.lottery import IMPSettings, run_imp

TRAIN = data.load("mnist1d", "train", subset=400, seed=0)
TEST = data.load("mnist1d", "test")
TX = optax.adam(3e-3)


def make(seed):
    return models.create("mnist1d_mlp", rngs=nnx.Rngs(seed))


RUN = dict(seeds=(0, 1), batch_size=50, steps=40, checkpoint_every=20, progress=False)
ARGS = (make, TX, TRAIN, {"test": TEST})
SIZES = {"hidden/0/kernel": 4000, "hidden/1/kernel": 10000, "head/kernel": 1000}


def _masks(workdir, rounds, seeds=(0, 1)):
    return {
        (r, s): dict(np.load(Path(workdir) / f"round_{r:02d}" / f"mask_seed{s}.npz"))
        for r in range(1, rounds + 1)
        for s in seeds
    }


def _by_path(tree):
    paths, leaves, _ = leaves_with_paths(tree)
    return dict(zip(paths, leaves))


def _colt(workdir, **kwargs):
    settings = IMPSettings(rate=0.3, rate_scale={"head/": 0.5}, rounds=2, variants=("ticket",))
    return colt.run_colt(*ARGS, workdir=str(workdir), settings=settings, **RUN, **kwargs)


def test_colts_mask_is_the_intersection_of_the_segment_masks_at_the_target_and_resumes(
    tmp_path, monkeypatch
):
    seen = []
    pruner = colt._overlap_pruner

    def recording(settings):
        prune = pruner(settings)

        def wrapped(params, mask):
            out = prune(params, mask)
            seen.append(jax.device_get(out))
            return out

        return wrapped

    monkeypatch.setattr(colt, "_overlap_pruner", recording)
    results = _colt(tmp_path / "run", segments=3)
    saved = _masks(tmp_path / "run", 2)
    expect = dict(SIZES)
    for r, (_, segments) in enumerate(seen, 1):
        assert len(segments) == 3
        segments = [_by_path(m) for m in segments]
        for path in SIZES:
            expect[path] = jaxprune.keep_count(expect[path], 0.15 if path == "head/kernel" else 0.3)
            for i, s in enumerate((0, 1)):
                got = saved[(r, s)][path]
                inter = np.logical_and.reduce([np.asarray(m[path][i]) for m in segments])
                np.testing.assert_array_equal(got, inter)
                assert int(got.sum()) == expect[path]  # IMP's count of the round
                assert all(int(m[path][i].sum()) > expect[path] for m in segments)
                if r > 1:
                    assert not (got & ~saved[(r - 1, s)][path]).any()
        record = results["rounds"][r - 1]
        assert record["remaining_per_layer"] == {p: expect[p] / SIZES[p] for p in SIZES}
        assert len(record["accuracy"]["ticket"]) == 2 and len(record["segment_accuracy"]) == 3
    # The segments are a fixed split: disjoint, covering the data.
    parts = colt.segment_indices(len(TRAIN.y), 3)
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(TRAIN.y)))
    # Resume: a run cut in round 2 (its ticket and results gone) gives the same masks.
    shutil.rmtree(tmp_path / "run" / "round_02" / "ticket")
    (tmp_path / "run" / "results.json").unlink()
    again = _colt(tmp_path / "run", segments=3)
    assert again["rounds"] == results["rounds"]
    for key, mask in _masks(tmp_path / "run", 2).items():
        for path in SIZES:
            np.testing.assert_array_equal(mask[path], saved[key][path])
    assert (
        json.loads((tmp_path / "run" / "results.json").read_text())["rounds"] == results["rounds"]
    )


def test_run_colt_refuses_settings_it_does_not_take(tmp_path):
    with pytest.raises(ValueError, match=r"differ at \['rewind', 'variants'\]"):
        colt.run_colt(
            make, TX, TRAIN, TEST, workdir=str(tmp_path), batch_size=50, steps=40,
            settings=IMPSettings(rewind_step=10),
        )  # fmt: skip
    with pytest.raises(ValueError, match=r"segments must be an integer in \[1, 400\]"):
        _colt(tmp_path, segments=0)
    assert not list(tmp_path.iterdir())  # nothing trained, nothing written


def test_ap_rounds_prune_imps_counts_and_record_dead_units(tmp_path):
    def imp(name, **changes):
        settings = IMPSettings(rate=0.3, rounds=2, variants=("ticket", "random_reinit"), **changes)
        return run_imp(*ARGS, workdir=str(tmp_path / name), settings=settings, **RUN)

    plain = imp("plain")
    ap = imp("ap", ap_share=0.5, record_dead_units=True)
    assert "dead_units" not in plain["dense"] and "dead_units" not in plain["rounds"][0]
    for a, b in zip(plain["rounds"], ap["rounds"]):
        assert a["remaining_per_layer"] == b["remaining_per_layer"]
        for variant in ("ticket", "random_reinit"):
            rates = b["dead_units"][variant]
            assert set(rates) == {"static", "dynamic"}
            assert all(len(v) == 2 and all(0 <= x <= 1 for x in v) for v in rates.values())
    assert len(ap["dense"]["dead_units"]["dynamic"]) == 2
    differ = [
        (a[p] != b[p]).any()
        for key, a in _masks(tmp_path / "plain", 2).items()
        for b in [_masks(tmp_path / "ap", 2)[key]]
        for p in SIZES
    ]
    assert any(differ)  # AP takes other weights than magnitude alone
    with pytest.raises(ValueError, match=r"ap_share must be in \[0, 1\]; got -0.1"):
        IMPSettings(ap_share=-0.1)
