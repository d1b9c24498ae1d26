"""`fit`'s option groups: checked when built, and the flat keywords of old still work."""

import dataclasses

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from jaxprune import train
from jaxprune.train import Checkpointing, Evaluation, Logging, Parallel
from jaxprune.train.testing import TinyCNN, synthetic_dataset

TRAIN = synthetic_dataset(64, (16, 1), 4, seed=0)
TEST = synthetic_dataset(20, (16, 1), 4, seed=1)


@pytest.mark.parametrize(
    "build, error, match",
    [
        (lambda: Evaluation(every=0), ValueError, r"Evaluation: every must be None or an integer"),
        (lambda: Evaluation(batch_size=2.5), ValueError, "Evaluation: batch_size must be an"),
        (lambda: Evaluation(data={"train": 1}), ValueError, "eval split name 'train'"),
        (lambda: Checkpointing(every=-1), ValueError, "Checkpointing: every must be an integer"),
        (lambda: Checkpointing(keep_last=0), ValueError, "keep_last must be an integer >= 1"),
        (lambda: Checkpointing(keep="rewind"), TypeError, "keep must map names to integer"),
        (lambda: Checkpointing(keep={"rewind": 2.5}), TypeError, "keep must map names"),
        (lambda: Checkpointing(keep=(1, 2.0)), TypeError, "list integer steps"),
        (lambda: Logging(every=True), ValueError, "Logging: every must be an integer >= 1"),
        (lambda: Logging(progress="yes"), TypeError, "progress must be True or False"),
        (lambda: Logging(lr_schedule=1e-3), TypeError, "lr_schedule must be a schedule"),
        (lambda: Parallel(mesh=8), TypeError, r"mesh must be a jax.sharding.Mesh \(make_mesh"),
        (lambda: Parallel(sharding_rule="batch"), TypeError, "sharding_rule must be a function"),
        (lambda: Parallel(ensemble=None), TypeError, "ensemble must be True or False"),
    ],
)
def test_option_groups_refuse_wrong_values_when_built(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_option_groups_normalise_what_they_hold():
    assert Checkpointing(keep={5, np.int64(2)}).keep == (2, 5)
    assert Checkpointing(keep={"rewind": 5}).keep == {"rewind": 5}
    assert Evaluation(data=TEST).splits() == {"test": TEST}
    assert Evaluation().splits() == {}
    with pytest.raises(dataclasses.FrozenInstanceError):
        Logging().every = 5  # type: ignore[misc]


def fresh():
    model = TinyCNN(1, 4, 4, rngs=nnx.Rngs(0))
    return train.create_train_state(model, optax.sgd(0.1), seed=0)


def test_the_flat_keywords_of_old_warn_and_train_the_same(tmp_path):
    common = dict(batch_size=16, steps=6, seed=0)
    new = train.fit(
        fresh(),
        TRAIN,
        workdir=str(tmp_path / "new"),
        eval=Evaluation(data=TEST, every=3, batch_size=10),
        checkpoints=Checkpointing(every=2, keep_last=1, keep={"rewind": 1}),
        logging=Logging(every=2, progress=False, lr_schedule=optax.constant_schedule(0.1)),
        parallel=Parallel(mesh=train.make_mesh(1)),
        **common,
    )
    with pytest.warns(DeprecationWarning, match=r"pass eval=Evaluation\(data=..., every=..."):
        old = train.fit(
            fresh(),
            TRAIN,
            workdir=str(tmp_path / "old"),
            eval_data=TEST,
            eval_every=3,
            eval_batch_size=10,
            checkpoint_every=2,
            keep_last=1,
            keep={"rewind": 1},
            log_every=2,
            progress=False,
            lr_schedule=optax.constant_schedule(0.1),
            mesh=train.make_mesh(1),
            **common,
        )
    assert train.read_metrics(tmp_path / "old") == train.read_metrics(tmp_path / "new")
    assert (tmp_path / "old" / "config.json").read_text() == (
        tmp_path / "new" / "config.json"
    ).read_text()
    for a, b in zip(jax.tree.leaves(old.state.params), jax.tree.leaves(new.state.params)):
        np.testing.assert_array_equal(a, b)
    assert sorted(p.name for p in (tmp_path / "old" / "checkpoints").iterdir()) == ["1", "6"]


def test_an_unknown_keyword_is_a_type_error(tmp_path):
    with pytest.raises(TypeError, match="unexpected keyword argument 'eval_evry'"):
        train.fit(fresh(), TRAIN, workdir=str(tmp_path), batch_size=16, steps=2, eval_evry=1)
    assert not any(tmp_path.iterdir())
