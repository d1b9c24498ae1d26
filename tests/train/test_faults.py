"""Real crashes: a training process SIGKILLed mid-training or mid-checkpoint resumes
to the uninterrupted result, bit for bit, with no duplicated or missing metric lines."""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import os, sys, time
    workdir, mode = sys.argv[1], sys.argv[2]
    if mode.startswith("hang_in_save:"):
        # Block the commit (the atomic rename) of one checkpoint, after its
        # files are written, and tell the parent: it kills us right there.
        from orbax.checkpoint._src.path import atomicity
        target = mode.split(":")[1]
        original = atomicity.AtomicRenameTemporaryPath.finalize

        async def finalize(self):
            if self._final_path.name == target:
                open(os.path.join(workdir, "in_save"), "w").close()
                time.sleep(3600)
            return await original(self)

        atomicity.AtomicRenameTemporaryPath.finalize = finalize

    import jax, numpy as np, optax
    from flax import nnx
    from jaxprune.train import (Checkpointing, Evaluation, Logging, Parallel,
                                create_train_state, fit, make_mesh)
    from jaxprune.train.testing import TinyCNN, synthetic_dataset

    def noise(rng, x):
        return x + 0.1 * jax.random.normal(rng, x.shape)

    train = synthetic_dataset(200, (16, 1), 4, seed=0)  # 12 steps per epoch
    state = create_train_state(TinyCNN(1, 4, 4, rngs=nnx.Rngs(0)), optax.adam(1e-2), seed=0)
    out = fit(state, train, workdir=workdir, batch_size=16, steps=STEPS, seed=0,
              eval=Evaluation(data=synthetic_dataset(70, (16, 1), 4, seed=1), every=10),
              logging=Logging(every=3, progress=False),
              checkpoints=Checkpointing(every=5, keep_last=2), augment=noise,
              parallel=Parallel(mesh=make_mesh(1)))
    leaves = jax.tree.leaves((out.state.params, out.state.model_state, out.state.opt_state))
    np.savez(os.path.join(workdir, "final.npz"), *[np.asarray(x) for x in leaves])
    """
)


def start(tmp_path, workdir, mode="plain", steps=60):
    script = tmp_path / "child.py"
    script.write_text(CHILD.replace("STEPS", str(steps)))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with open(tmp_path / f"{Path(workdir).name}.log", "a") as log:  # the child keeps a copy
        return subprocess.Popen(
            [sys.executable, str(script), str(workdir), mode],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def finish(proc, tmp_path, timeout=240):
    assert proc.wait(timeout) == 0, (tmp_path / "run.log").read_text()[-3000:]


def wait_for(predicate, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, "the child ended before it could be killed"
        assert time.monotonic() < deadline, "timed out waiting for the child"
        time.sleep(0.01)


def logged_step(workdir):
    try:
        lines = (Path(workdir) / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return -1
    steps = []
    for line in lines:
        try:
            steps.append(json.loads(line)["step"])
        except json.JSONDecodeError:
            pass  # a line being written
    return max(steps, default=-1)


def assert_same_run(workdir, reference):
    got, want = np.load(Path(workdir) / "final.npz"), np.load(Path(reference) / "final.npz")
    assert got.files == want.files
    for name in want.files:
        np.testing.assert_array_equal(got[name], want[name])
    assert (Path(workdir) / "metrics.jsonl").read_text() == (
        Path(reference) / "metrics.jsonl"
    ).read_text()
    with open(Path(workdir) / "results.json") as a, open(Path(reference) / "results.json") as b:
        assert json.load(a)["eval"] == json.load(b)["eval"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("reference")
    proc = start(tmp_path, tmp_path / "run")
    finish(proc, tmp_path)
    return tmp_path / "run"


def test_sigkill_mid_training_resumes_bit_for_bit(tmp_path, reference):
    workdir = tmp_path / "run"
    proc = start(tmp_path, workdir)
    wait_for(lambda: logged_step(workdir) >= 22, proc)  # past checkpoints 5..20, mid-epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (workdir / "final.npz").exists()
    assert 0 < logged_step(workdir) < 60
    finish(start(tmp_path, workdir), tmp_path)
    assert_same_run(workdir, reference)


def test_sigkill_mid_checkpoint_write_resumes_from_the_previous_checkpoint(tmp_path, reference):
    workdir = tmp_path / "run"
    proc = start(tmp_path, workdir, mode="hang_in_save:25")
    wait_for(lambda: (workdir / "in_save").exists(), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    checkpoints = workdir / "checkpoints"
    complete = sorted(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit())
    assert complete[-1] == 20, complete  # 25 was written but never committed
    assert any(not p.name.isdigit() for p in checkpoints.iterdir())  # its leftover tmp dir
    finish(start(tmp_path, workdir), tmp_path)
    assert_same_run(workdir, reference)
    assert all(p.name.isdigit() for p in checkpoints.iterdir())  # leftover cleaned up


@pytest.mark.slow
def test_repeated_sigkills_at_random_moments_still_resume_bit_for_bit(tmp_path):
    finish(start(tmp_path, tmp_path / "ref", steps=600), tmp_path)
    workdir, rng, kills = tmp_path / "run", random.Random(0), 0
    while kills < 8:
        proc = start(tmp_path, workdir, steps=600)
        if kills % 2 == 0:  # in import or compile
            time.sleep(rng.uniform(0.2, 1.5))
        else:  # in training or saving, at a random step ahead (by progress, not by the
            # clock: a fast machine finishes the run within seconds)
            after = logged_step(workdir) + 1
            target = rng.randint(after, max(after, 590))
            try:
                wait_for(lambda: logged_step(workdir) >= target, proc)
            except AssertionError:
                pass  # ended first: checked below
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    assert kills >= 3, "the run finished too fast for the kills to mean anything"
    if not (workdir / "final.npz").exists():
        finish(start(tmp_path, workdir, steps=600), tmp_path)
    assert_same_run(workdir, tmp_path / "ref")
