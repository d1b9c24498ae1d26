"""experiments.rebasin_tickets: the smoke study runs, writes its outputs and resumes; a mask
aligned to its own permuted copy overlaps it entirely."""

import json
import os

import jax
import numpy as np
import optax
import pytest
from flax import nnx
from helpers import Crash, crashing_at

import jaxprune
import jaxprune.data
from experiments import rebasin_tickets as script
from experiments.configs import rebasin_tickets as configs
from jaxprune import models, rebasin, train
from jaxprune.train.rundir import jsonable


def _numbers(results):
    """What a study measured (not when or where)."""
    return {k: v for k, v in results.items() if k not in ("invocation_wall_s", "machine")}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("rbt_smoke")
    return workdir, script.run(configs.get_config("smoke"), str(workdir), progress=False)


def test_the_smoke_study_runs_and_writes_its_outputs(smoke):
    workdir, results = smoke
    config = configs.get_config("smoke")
    assert results["pairs"] == [[0, 1], [2, 3]]
    assert [r["round"] for r in results["rounds"]] == list(range(config.imp.rounds + 1))
    dense, *tickets = results["rounds"]
    for pair in dense["pairs"]:  # the dense masks: identical, whatever the alignment
        assert all(pair["overlap"][a]["iou"] == 1.0 for a in script.ALIGNMENTS)
    for r in tickets:
        assert 0.0 < r["remaining"] < 1.0
        for pair in r["pairs"]:
            none, ticket = pair["overlap"]["none"], pair["overlap"]["ticket"]
            assert 0.0 < none["random_iou"] < 1.0
            # the midpoint keeps the union of the masks: denser than either endpoint
            assert none["midpoint_density"] > r["remaining"] * 0.9
            assert set(none["per_layer"]) == set(ticket["per_layer"])
            for a in script.ALIGNMENTS:
                barrier = pair["barrier"][a]
                assert len(barrier["error"]) == len(barrier["loss"]) == config.alphas
                assert set(barrier["error_barrier"]) == set(script.REFERENCES)
    assert set(results["summary"][-1]["effects"]) >= {"iou gain (ticket alignment)"}
    for name in ("results.json", "results.md", "ticket_alignment.png"):
        assert (workdir / name).exists(), name
    with open(workdir / "results.json") as f:
        assert _numbers(json.load(f)) == _numbers(jsonable(results))
    text = (workdir / "results.md").read_text()
    assert "IoU ticket" in text and "Dense reference" in text
    with open(workdir / "imp" / "config.json") as f:  # the IMP run's config is the lottery one's
        assert not set(configs.STUDY_FIELDS) & set(json.load(f)["config"])


@pytest.mark.slow  # the engine's resume is tested by the other studies in the default run
def test_a_resumed_study_gives_the_same_numbers(smoke, tmp_path, monkeypatch):
    workdir, full = smoke
    # Interrupted inside IMP (100 dense steps, then the first round's), then resumed.
    monkeypatch.setattr(jaxprune.data, "batches", crashing_at(150))
    with pytest.raises(Crash):
        script.run(configs.get_config("smoke"), str(tmp_path), progress=False)
    monkeypatch.undo()
    resumed = script.run(configs.get_config("smoke"), str(tmp_path), progress=False)
    assert _numbers(jsonable(resumed)) == _numbers(jsonable(full))
    # A round's comparison lost (interrupted after IMP): measured again, the same.
    os.remove(tmp_path / "rounds" / "round_01.json")
    again = script.run(configs.get_config("smoke"), str(tmp_path), progress=False)
    assert _numbers(jsonable(again)) == _numbers(jsonable(full))


def _mnist1d_mlp():
    tx = jaxprune.masked(optax.adam(1e-3), jaxprune.masks.dense_mask)
    state = train.create_train_state(models.create("mnist1d_mlp", rngs=nnx.Rngs(0)), tx)
    return state, script.spec_of(state, np.zeros((1, 40), np.float32))


def test_a_mask_aligned_by_the_planted_permutation_overlaps_its_copy_entirely():
    state, spec = _mnist1d_mlp()
    mask = jaxprune.random_mask(jax.random.key(0), state.params, 0.8)
    planted = rebasin.random_permutation(jax.random.key(1), spec)
    copy = rebasin.permute(spec, planted, mask)
    perms = {"none": rebasin.identity_permutation(spec)}
    perms["planted"] = rebasin.invert_permutation(planted)
    out = script.overlaps(spec, perms, mask, copy)
    assert out["planted"]["iou"] == 1.0
    assert all(layer["iou"] == 1.0 for layer in out["planted"]["per_layer"].values())
    assert out["none"]["iou"] < 0.5  # unaligned: near chance (0.11 at 20% kept)
    assert out["none"]["random_iou"] == pytest.approx(0.2 / 1.8, rel=0.05)
    # the midpoint of a network and its aligned copy is as sparse as they are
    assert out["planted"]["midpoint_density"] == pytest.approx(0.2, abs=0.01)
    assert out["none"]["midpoint_density"] > 0.3


def test_weight_matching_with_masks_finds_the_planted_copy_of_a_sparse_network():
    state, spec = _mnist1d_mlp()
    mask = jaxprune.random_mask(jax.random.key(0), state.params, 0.8)
    params = jaxprune.apply_mask(state.params, mask)
    planted = rebasin.random_permutation(jax.random.key(1), spec)
    moved, copy = (rebasin.permute(spec, planted, t) for t in (params, mask))
    found = rebasin.weight_matching(spec, params, moved, masks=(mask, copy), max_iter=20)
    assert script.overlaps(spec, {"found": found}, mask, copy)["found"]["iou"] == 1.0


def test_the_study_refuses_an_odd_number_of_seeds_and_no_tickets(tmp_path):
    config = configs.get_config("smoke")
    config.seeds = (0, 1, 2)
    with pytest.raises(ValueError, match="even number of seeds"):
        script.run(config, str(tmp_path), progress=False)
    config.seeds, config.imp.variants = (0, 1), ("random_reinit",)
    with pytest.raises(ValueError, match="include 'ticket'"):
        script.run(config, str(tmp_path), progress=False)
    for name in configs.CONFIGS:  # every config builds valid IMP settings and pairs
        config = configs.get_config(name)
        script.lottery_ticket.settings(config)
        assert len(script.pairs_of(config.seeds)) >= 2
