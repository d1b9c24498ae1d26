"""Rethinking the value of network pruning: fine-tuned pruned models against the same
architecture trained from scratch.

    python -m experiments.rethinking --workdir=runs/rethinking
    python -m experiments.rethinking --workdir=runs/rt_smoke \
        --config=experiments/configs/rethinking.py:smoke

Liu, Sun, Zhou, Huang & Darrell, 2019. Per model and seed one dense network trains (and,
for network slimming, one with the L1 penalty on the batch-norm scales, `jaxprune.bn_l1`);
per method (L1-norm filters: `jaxprune.filter_scores`, per layer; slimming:
`jaxprune.bn_scale_scores`, one global threshold) and unit sparsity its units are pruned
(`jaxprune.unit_mask`) and removed (`jaxprune.slim`), and the smaller network is

- fine-tuned from the pruned weights (`ft_epochs` at `ft_learning_rate`);
- Scratch-E: the same smaller architecture from a fresh initialisation (each kernel drawn
  with the variance its own, smaller fan gives), trained for the dense epochs;
- Scratch-B: the same, for the dense epochs x dense MACs / pruned MACs (at most
  `scratch_b_cap` times), the learning rate dropped at 50% and 75% as in every run.

The unstructured pair: one-shot magnitude pruning of the dense network's kernels at the
parameter fraction the L1-filter model keeps, fine-tuned, against the same mask on a fresh
initialisation (kernels rescaled to their kept fan-in) trained for the dense epochs.
`--config.only=LABEL` trains one model of the config; processes sharing one --workdir
share its seeds (a lock file per model and seed); `--report_only` writes the outputs from the runs
finished so far. Each run's record is written as it finishes (a rerun skips it), then
`results.json`,
`results.md` (mean ± sample std over seeds) and `rethinking.png` in --workdir.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags
from flax import nnx
from ml_collections import ConfigDict
from tqdm.auto import tqdm

import jaxprune
from experiments import sweeps
from experiments.configs.rethinking import METHODS
from jaxprune import data, train
from jaxprune.plots import plot_scratch_vs_finetuned

HERE = os.path.dirname(os.path.abspath(__file__))
ARMS = ("fine_tuned", "scratch_e", "scratch_b")
UNSTRUCTURED = "magnitude"
PLOT = "rethinking.png"
COMMAND = "python -m experiments.rethinking"


def run(
    config: ConfigDict,
    workdir: str,
    *,
    progress: bool = True,
    command: str | None = None,
    report_only: bool = False,
) -> dict[str, Any]:
    """Runs (or resumes) the study `config` describes in `workdir`; returns the results.

    With `report_only`, trains nothing: the outputs hold the runs finished so far.
    """
    _check(config)
    run_dir = train.RunDir(workdir)
    run_dir.create()
    stored = train.rundir.jsonable(config)
    stored.pop("only", None)  # which models this process trains: not how any run trains
    run_dir.check_or_write_config({"config": stored})
    start = time.perf_counter()
    rows = []
    if report_only:
        rows = _finished_rows(config, workdir)
    else:
        train_ds, test_ds = sweeps.datasets(ConfigDict(dict(config, label_noise=0.0)))
        total = _count_runs(config)
        bar = tqdm(total=total, desc="runs", disable=not progress, dynamic_ncols=True)
        for label, mc in config.models.items():
            if config.get("only") not in (None, label):
                continue
            tr, te = _resized(train_ds, mc.resize), _resized(test_ds, mc.resize)
            for seed in config.seeds:
                sdir = os.path.join(workdir, label, f"seed{seed}")
                with _claim(sdir) as mine:
                    if mine:
                        rows += _Seed(config, label, mc, seed, sdir).run(tr, te, bar)
        bar.close()
        rows = _finished_rows(config, workdir)  # with those of other processes
    command = command or (
        f"python -m experiments.rethinking --workdir={workdir} "
        f"--config=experiments/configs/rethinking.py:{config.name}"
    )
    results = {
        "title": f"Scratch vs fine-tuned structured pruning on {config.dataset}",
        "command": command,
        "models": list(config.models),
        "sparsities": list(config.sparsities),
        "seeds": list(config.seeds),
        "complete": len(rows) == _count_runs(ConfigDict(dict(config, only=None))),
        "rows": rows,
        "config": config.to_dict(),
        "machine": sweeps.machine(),
        "invocation_wall_s": time.perf_counter() - start,  # this call only
    }
    if sweeps.write_results(run_dir, workdir, results, table(results)):
        plot_scratch_vs_finetuned(results, os.path.join(workdir, PLOT))
    return results


def _check(config: ConfigDict) -> None:
    sweeps.check_seeds_and_length(config)
    sweeps.check_sparsities(config.sparsities)
    if not config.models:
        raise ValueError("config.models is empty: give one or more models, e.g. lenet5.")
    for label, mc in config.models.items():
        sweeps.check_methods(mc.methods, METHODS)
        if mc.init_mode not in ("fan_in", "fan_avg"):
            raise ValueError(
                f"config.models.{label}.init_mode={mc.init_mode!r}: give 'fan_in' (He) or "
                "'fan_avg' (Glorot), as the model's kernel initialiser scales."
            )
    for field in ("ft_epochs",):
        if not (isinstance(config[field], int) and config[field] >= 1):
            raise ValueError(f"config.{field}={config[field]!r}: give a positive integer.")
    if not config.scratch_b_cap >= 1:
        raise ValueError(f"config.scratch_b_cap={config.scratch_b_cap!r}: give 1 or more.")


@contextlib.contextmanager
def _claim(sdir: str) -> Iterator[bool]:
    """Whether this process takes the runs of `sdir`: not while a live process holds its
    lock file (so processes training one config in one workdir share its seeds)."""
    os.makedirs(sdir, exist_ok=True)
    lock = sdir + ".lock"
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        with open(lock) as f:
            holder = f.read().strip()
        if holder.isdigit() and os.path.exists(f"/proc/{holder}"):
            yield False
            return
        os.remove(lock)  # left by a process that ended
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    try:
        yield True
    finally:
        os.remove(lock)


def _finished_rows(config: ConfigDict, workdir: str) -> list[dict[str, Any]]:
    """The records of the runs finished in `workdir`, in the study's order."""
    rows = []
    for label in config.models:
        for seed in config.seeds:
            sdir = os.path.join(workdir, label, f"seed{seed}")
            names = sorted(os.listdir(sdir)) if os.path.isdir(sdir) else []
            for name in names:
                if name.endswith(".json"):
                    with open(os.path.join(sdir, name)) as f:
                        rows.append(json.load(f))
    return rows


def _count_runs(config: ConfigDict) -> int:
    return sum(
        len(config.seeds) * len(_Seed(config, label, mc, 0, "").names())
        for label, mc in config.models.items()
        if config.get("only") in (None, label)
    )


def _resized(ds: data.Dataset, size: int | None) -> data.Dataset:
    """`ds` with its square images zero-padded (larger `size`) or average-pooled (smaller)."""
    x = np.asarray(ds.x)
    if size is None or size == x.shape[1]:
        return ds
    if size > x.shape[1]:
        lo = (size - x.shape[1]) // 2
        hi = size - x.shape[1] - lo
        x = np.pad(x, ((0, 0), (lo, hi), (lo, hi), (0, 0)))
    else:
        f = x.shape[1] // size
        if f * size != x.shape[1]:
            raise ValueError(
                f"resize={size}: pooling needs a divisor of the image size {x.shape[1]}."
            )
        x = x.reshape(x.shape[0], size, f, size, f, x.shape[3]).mean(axis=(2, 4))
    return dataclasses.replace(ds, x=x.astype(np.float32))


def _optimizer(optim: ConfigDict, steps: int, penalty: float = 0.0) -> optax.GradientTransformation:
    """The config's optimizer with its learning rate dropped at 50% and 75% of `steps`."""
    half = max(1, steps // 2)
    cfg = dict(optim.to_dict(), boundaries=[half, max(half + 1, (3 * steps) // 4)])
    tx = train.optimizer(cfg, train.lr_schedule(cfg))
    return optax.chain(jaxprune.bn_l1(penalty), tx) if penalty else tx


def _constant(optim: ConfigDict, lr: float) -> optax.GradientTransformation:
    cfg = dict(optim.to_dict(), schedule="constant", learning_rate=lr)
    return train.optimizer(cfg, train.lr_schedule(cfg))


def macs(state: train.TrainState, x: np.ndarray) -> float:
    """Floating-point operations of one eval forward pass on one example (XLA's count)."""
    f = jax.jit(train.state_apply(state))
    cost = f.lower((state.params, state.model_state), jnp.asarray(x[:1])).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    return float(cost.get("flops", float("nan")))


def _n_params(params: Any) -> int:
    return int(sum(np.size(x) for x in jax.tree.leaves(params)))


def _kernel_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    receptive = int(np.prod(shape[:-2]))
    return receptive * shape[-2], receptive * shape[-1]


def _rescaled(fresh: Any, full: Any, mode: str) -> Any:
    """Fresh kernels of the smaller shapes `fresh`, sliced from full-size ones `full`:
    scaled to the variance the initialiser gives their own fans."""

    def one(small, big):
        if np.ndim(small) < 2:
            return small
        (fi, fo), (Fi, Fo) = _kernel_fans(np.shape(small)), _kernel_fans(np.shape(big))
        ratio = Fi / fi if mode == "fan_in" else (Fi + Fo) / (fi + fo)
        return small * np.float32(np.sqrt(ratio))

    return jax.tree.map(one, fresh, full)


def _masked_init(params: Any, mask: Any) -> Any:
    """Weight-level scratch (Liu et al.): each kept kernel column rescaled to the Kaiming
    variance of its kept fan-in, so N(0, sqrt(2 / n)) for n kept inputs."""

    def one(p, m):
        if np.ndim(p) < 2 or np.ndim(m) == 0:
            return p
        m = np.asarray(m)  # on the host: the mask may be placed like the parameters
        fan_in = int(np.prod(p.shape[:-1]))
        kept = np.maximum(m.reshape(-1, p.shape[-1]).sum(axis=0), 1)
        return np.where(m, np.asarray(p) * np.sqrt(fan_in / kept), 0.0).astype(p.dtype)

    return jax.tree.map(one, params, mask)


class _Seed:
    """Every run of one model and seed: dense, pruned by each method, and the scratch arms."""

    def __init__(self, config, label, mc, seed, sdir):
        self.config, self.label, self.mc, self.seed, self.dir = config, label, mc, seed, sdir
        self.make = lambda s, classes: jaxprune_model(mc, classes, s)

    def _steps(self, n_train: int, epochs: float) -> int:
        return max(1, int(round(epochs * (n_train // self.config.batch_size))))

    def _fit(self, name, state, tr, te, steps, record) -> tuple[train.TrainState, dict]:
        """Trains `state` (or reads its finished record); returns the state and the record."""
        path = os.path.join(self.dir, f"{name}.json")
        run = os.path.join(self.dir, name)
        if os.path.exists(path) and name.startswith("dense"):
            out = self._train(state, tr, run, steps)  # restored from its last checkpoint
            with open(path) as f:
                return out, json.load(f)
        t0 = time.perf_counter()
        out = self._train(state, tr, run, steps)
        ev = train.evaluate(out, te, batch_size=self.config.eval_batch_size)
        record = dict(
            record,
            model=self.label,
            seed=self.seed,
            steps=steps,
            test_accuracy=float(ev["accuracy"]),
            test_loss=float(ev["loss"]),
            wall_s=time.perf_counter() - t0,
        )
        if jax.process_index() == 0:
            train.rundir.write_json(path, record)
        return out, record

    def _train(self, state, tr, run, steps) -> train.TrainState:
        c = self.config
        out = train.fit(
            state,
            tr,
            workdir=run,
            batch_size=c.batch_size,
            steps=steps,
            seed=c.data_seed + self.seed,
            checkpoints=train.Checkpointing(every=steps, keep_last=1),
            logging=train.Logging(progress=False),
            augment=data.augmentation_for(c.dataset) if c.augment else None,
        )
        return out.state

    def _done(self, name) -> dict | None:
        path = os.path.join(self.dir, f"{name}.json")
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f)

    def names(self) -> list[str]:
        """Every run of this model and seed, by record name."""
        c, mc = self.config, self.mc
        out = ["dense"] + (["dense_slimming"] if "slimming" in mc.methods else [])
        for s in c.sparsities:
            out += [f"{m}_s{s:g}_{arm}" for m in mc.methods for arm in ARMS]
            if c.unstructured:
                out += [f"{UNSTRUCTURED}_s{s:g}_{arm}" for arm in ("fine_tuned", "scratch_e")]
        return out

    def run(self, tr, te, bar) -> list[dict[str, Any]]:
        c, mc = self.config, self.mc
        os.makedirs(self.dir, exist_ok=True)
        done = [self._done(n) for n in self.names()]
        if all(done):  # finished: not even the dense networks are restored
            bar.update(len(done))
            return done
        steps = self._steps(len(tr.y), c.epochs)
        x1 = np.asarray(tr.x[:1])
        rows = []
        dense_states = {}
        for name, penalty in (("dense", 0.0), ("dense_slimming", mc.slim_penalty)):
            if name == "dense_slimming" and "slimming" not in mc.methods:
                continue
            bar.set_description(f"{self.label} seed {self.seed} {name}")
            tx = _optimizer(c.optim, steps, penalty)
            state = train.create_train_state(
                self.make(self.seed, tr.num_classes), tx, seed=self.seed
            )
            full = dict(params=_n_params(state.params), macs=macs(state, x1))
            record = dict(method=name, arm="dense", sparsity=0.0, epochs=c.epochs, **full)
            record.update(l1_penalty=penalty)
            dense_states[name], r = self._fit(name, state, tr, te, steps, record)
            rows.append(r)
            bar.update()
        dense = dense_states["dense"]
        full = dict(params=_n_params(dense.params), macs=macs(dense, x1))
        spec = train.state_spec(dense, x1)
        for s in c.sparsities:
            l1_fraction = None
            for method in mc.methods:
                src = dense_states["dense_slimming" if method == "slimming" else "dense"]
                new = self._pruned(method, s, src, spec, tr, te, full, steps, bar)
                rows += new
                if method == "l1_filter":
                    l1_fraction = new[0]["params"] / full["params"]
            if c.unstructured:
                if l1_fraction is None:
                    l1_fraction = self._l1_fraction(dense, spec, s, full)
                rows += self._unstructured(s, l1_fraction, dense, tr, te, full, steps, bar)
        return rows

    def _mask(self, method, s, state, spec):
        v = (state.params, state.model_state)
        if method == "l1_filter":
            return jaxprune.unit_mask(spec, jaxprune.filter_scores(spec, v), s, tree=v)
        scores = jaxprune.bn_scale_scores(spec, v)
        return jaxprune.unit_mask(spec, scores, s, "global", tree=v)

    def _l1_fraction(self, dense, spec, s, full) -> float:
        small = jaxprune.slim(
            spec, (dense.params, dense.model_state), self._mask("l1_filter", s, dense, spec)
        )
        return _n_params(small[0]) / full["params"]

    def _pruned(self, method, s, src, spec, tr, te, full, steps, bar) -> list[dict]:
        c, mc = self.config, self.mc
        names = {arm: f"{method}_s{s:g}_{arm}" for arm in ARMS}
        if all(self._done(n) for n in names.values()):
            bar.update(len(ARMS))
            return [self._done(n) for n in names.values()]
        mask = self._mask(method, s, src, spec)
        params, model_state = jaxprune.slim(spec, (src.params, src.model_state), mask)
        tx_ft = _constant(c.optim, c.ft_learning_rate)
        pruned = src.replace(
            params=params,
            model_state=model_state,
            opt_state=tx_ft.init(params),
            step=jnp.zeros((), jnp.int32),
            tx=tx_ft,
        )
        cost = dict(params=_n_params(params), macs=macs(pruned, tr.x[:1]))
        base = dict(method=method, sparsity=float(s), **cost)
        base.update(params_fraction=cost["params"] / full["params"])
        base.update(macs_fraction=cost["macs"] / full["macs"])
        ratio = min(c.scratch_b_cap, full["macs"] / cost["macs"])
        fresh = train.create_train_state(
            self.make(10_000 + self.seed, tr.num_classes), optax.identity(), seed=self.seed
        )
        fp, fs = jaxprune.slim(spec, (fresh.params, fresh.model_state), mask)
        fp = _rescaled(fp, fresh.params, mc.init_mode)
        rows = []
        for arm in ARMS:
            bar.set_description(f"{self.label} seed {self.seed} {method} s={s:g} {arm}")
            done = self._done(names[arm])
            if done is None:
                if arm == "fine_tuned":
                    state, n, epochs = pruned, self._steps(len(tr.y), c.ft_epochs), c.ft_epochs
                else:
                    epochs = c.epochs * (ratio if arm == "scratch_b" else 1.0)
                    n = self._steps(len(tr.y), epochs)
                    tx = _optimizer(c.optim, n)
                    state = pruned.replace(params=fp, model_state=fs, opt_state=tx.init(fp), tx=tx)
                done = self._fit(names[arm], state, tr, te, n, dict(base, arm=arm, epochs=epochs))[
                    1
                ]
            rows.append(done)
            bar.update()
        return rows

    def _unstructured(self, s, fraction, dense, tr, te, full, steps, bar) -> list[dict]:
        c = self.config
        names = {arm: f"{UNSTRUCTURED}_s{s:g}_{arm}" for arm in ("fine_tuned", "scratch_e")}
        if all(self._done(n) for n in names.values()):
            bar.update(2)
            return [self._done(n) for n in names.values()]
        # The kernels' sparsity that leaves `fraction` of all parameters.
        kernels = sum(np.size(x) for x in jax.tree.leaves(dense.params) if np.ndim(x) >= 2)
        weight_s = min(0.999, (1.0 - fraction) * full["params"] / kernels)
        mask = jaxprune.magnitude_mask(
            dense.params, weight_s, distribution=c.unstructured_distribution
        )
        base = dict(method=UNSTRUCTURED, sparsity=float(s), weight_sparsity=weight_s)
        base.update(params_fraction=fraction, macs_fraction=1.0, **full)
        rows = []
        for arm, name in names.items():
            bar.set_description(f"{self.label} seed {self.seed} {UNSTRUCTURED} s={s:g} {arm}")
            done = self._done(name)
            if done is None:
                if arm == "fine_tuned":
                    n, epochs = self._steps(len(tr.y), c.ft_epochs), c.ft_epochs
                    model = train.to_model(dense)
                    tx = _constant(c.optim, c.ft_learning_rate)
                else:
                    n, epochs = steps, c.epochs
                    model = self.make(10_000 + self.seed, tr.num_classes)
                    tx = _optimizer(c.optim, n)
                state = train.create_train_state(model, tx, seed=self.seed, mask=mask)
                if arm == "scratch_e":
                    state = state.replace(params=_masked_init(state.params, mask))
                done = self._fit(name, state, tr, te, n, dict(base, arm=arm, epochs=epochs))[1]
            rows.append(done)
            bar.update()
        return rows


def jaxprune_model(mc: ConfigDict, num_classes: int, seed: int) -> nnx.Module:
    """The zoo model `mc` names, with its overrides, initialised from `seed`."""
    return sweeps.model_maker(mc, num_classes)(seed)


def _stats(values) -> tuple[float, float]:
    v = 100 * np.asarray(values, np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def _cell(values) -> str:
    if not len(values):
        return "—"
    m, s = _stats(values)
    return f"{m:.2f} ± {s:.2f}"


def summary(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One line per model x method x sparsity: test accuracy (%) mean and std per arm."""
    rows = results["rows"]
    out = []
    for model in results["models"]:
        of = [r for r in rows if r["model"] == model]
        methods = [m for m in (*METHODS, UNSTRUCTURED) if any(r["method"] == m for r in of)]
        for method in methods:
            for s in results["sparsities"]:
                rs = [r for r in of if r["method"] == method and r["sparsity"] == s]
                if not rs:
                    continue
                line = dict(model=model, method=method, sparsity=s)
                line["params_fraction"] = float(np.mean([r["params_fraction"] for r in rs]))
                line["macs_fraction"] = float(np.mean([r["macs_fraction"] for r in rs]))
                for arm in ARMS:
                    acc = [r["test_accuracy"] for r in rs if r["arm"] == arm]
                    line[arm] = dict(zip(("mean", "std"), _stats(acc))) if acc else None
                    line[f"{arm}_n"] = len(acc)
                out.append(line)
    return out


def _verdict(line: dict[str, Any]) -> str:
    ft, best = line["fine_tuned"], None
    for arm in ("scratch_e", "scratch_b"):
        if line[arm] is not None and (best is None or line[arm]["mean"] > best["mean"]):
            best = line[arm]
    if ft is None or best is None:
        return "—"
    if min(line["fine_tuned_n"], *(line[f"{a}_n"] for a in ARMS[1:] if line[a])) < 2:
        return "not settled (1 seed)"
    if abs(ft["mean"] - best["mean"]) <= ft["std"] + best["std"]:
        return "not settled"
    return "scratch" if best["mean"] > ft["mean"] else "fine-tuned"


LABELS = {
    "l1_filter": "L1-norm filters",
    "slimming": "network slimming",
    UNSTRUCTURED: "magnitude (unstructured)",
}


def table(results: dict[str, Any]) -> str:
    """The markdown table: per model x method x unit sparsity, the parameter and MAC
    fractions kept and the test accuracy (mean ± sample std over seeds) of every arm."""
    cfg = results["config"]
    lines = [
        f"# {results['title']}",
        "",
        f"`{results['command']}`",
        "",
        f"Test accuracy (%), mean ± sample std over seeds {results['seeds']}; "
        f"{cfg['epochs']} dense epochs of batch {cfg['batch_size']}"
        + (f" on {cfg['subset']} training examples" if cfg.get("subset") else "")
        + f", fine-tuning {cfg['ft_epochs']} epoch(s) at lr {cfg['ft_learning_rate']:g}. "
        "Sparsity: the fraction of units removed (per layer for L1-norm filters, one "
        "global threshold for slimming); the unstructured rows prune kernel weights by "
        "magnitude to the L1-filter model's parameter fraction and their scratch run "
        "keeps the mask on a fresh initialisation."
        + ("" if results.get("complete", True) else " Partial: the runs finished so far.")
        + " Verdict: 'not settled' where the best "
        "scratch arm and fine-tuning are within the sum of their standard deviations.",
        "",
        "| model | method | sparsity | seeds | params kept | MACs kept | fine-tuned "
        "| Scratch-E | Scratch-B | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = results["rows"]
    for model in results["models"]:
        dense = [r["test_accuracy"] for r in rows if r["model"] == model and r["method"] == "dense"]
        row = f"| {model} | dense | 0 | {len(dense)} | 100% | 100% | {_cell(dense)} | | | |"
        lines.append(row)
    for line in summary(results):
        cells = [
            line["model"],
            LABELS.get(line["method"], line["method"]),
            f"{line['sparsity']:g}",
            str(max(line[f"{a}_n"] for a in ARMS)),
            f"{100 * line['params_fraction']:.1f}%",
            f"{100 * line['macs_fraction']:.1f}%",
        ]
        cells += [
            "—" if line[a] is None else f"{line[a]['mean']:.2f} ± {line[a]['std']:.2f}"
            for a in ARMS
        ]
        cells.append(_verdict(line))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    FLAGS = sweeps.parsed_flags(argv)
    args = [a for a in sys.argv[1:] if a != "--report_only"]
    kw = dict(progress=FLAGS.progress, report_only=FLAGS.report_only)
    t0 = time.time()
    out = run(FLAGS.config, FLAGS.workdir, command=" ".join([COMMAND, *args]), **kw)
    print(f"\n{table(out)}\n\n{time.time() - t0:.0f} s; outputs in {FLAGS.workdir}")


if __name__ == "__main__":
    sweeps.define_flags(
        "experiments/configs/rethinking.py:smoke",
        default=os.path.join(HERE, "configs", "rethinking.py"),
    )
    flags.DEFINE_bool("report_only", False, "write the outputs from the finished runs only")
    app.run(main)
