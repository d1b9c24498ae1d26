"""Alignment meets pruning: are the lottery tickets of two seeds one subnetwork up to a
permutation of the hidden units, and are two tickets linearly connected once aligned?

    python -m experiments.rebasin_tickets --workdir=runs/rbt
    python -m experiments.rebasin_tickets --workdir=runs/rbt_smoke \
        --config=experiments/configs/rebasin_tickets.py:smoke

IMP (Frankle & Carbin, 2019, "The Lottery Ticket Hypothesis") runs on every seed at once
(the lottery experiment's `run_imp`, into ``WORKDIR/imp``); the seeds pair up in order,
(s0, s1), (s2, s3), ... For each pair (a, b) and each round (round 0: the trained dense
networks), b is compared with a under three alignments of b's hidden units:

- ``none``: as trained;
- ``dense``: the permutation aligning b's trained dense network to a's (weight matching,
  Ainsworth, Hayase & Srinivasa, 2023, "Git Re-Basin"), the same in every round;
- ``ticket``: the permutation aligning the two trained tickets of that round (weight
  matching with their masks: pruned weights count as zeros).

Per alignment: the overlap of the masks (`jaxprune.analysis.mask_overlap`, per layer and
in total, against two random masks with the same per-layer counts) and the barrier on
the straight line between the two trained tickets (masks applied; test error and loss,
both references "linear" and "mean", `jaxprune.train.instability` on the pair). The
midpoint of two differently masked networks keeps the union of their masks: its density
is reported beside the overlap. Round 0 is the dense reference at the same width.

Writes ``results.json`` (per pair the curves and numbers, per round the summary),
``results.md`` (mean ± sample std over pairs; an effect whose spread covers it is
marked "not settled") and ``ticket_alignment.png``; rerun the same command to resume
(IMP resumes where it stopped; rounds already compared are read back).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import app
from ml_collections import ConfigDict

import jaxprune
from experiments import lottery_ticket, sweeps
from experiments.configs.rebasin_tickets import STUDY_FIELDS
from jaxprune import analysis, rebasin, train
from jaxprune.plots import plot_ticket_alignment
from jaxprune.train.lottery import imp_initial_states, later_settings

HERE = os.path.dirname(os.path.abspath(__file__))
ALIGNMENTS = ("none", "dense", "ticket")
REFERENCES = ("linear", "mean")


def pairs_of(seeds: Sequence[int]) -> list[tuple[int, int]]:
    """The disjoint pairs of seeds, in order.

    Example:
      >>> pairs_of((0, 1, 2, 3))
      [(0, 1), (2, 3)]
    """
    seeds = tuple(seeds)
    if len(seeds) < 2 or len(seeds) % 2:
        raise ValueError(
            f"config.seeds={seeds}: give an even number of seeds (at least 2); they pair up in "
            "order, (s0, s1), (s2, s3), ... e.g. (0, 1, 2, 3, 4, 5)."
        )
    return list(zip(seeds[::2], seeds[1::2]))


def imp_config(config: ConfigDict) -> ConfigDict:
    """The lottery experiment's config of the IMP run: `config` without the study's fields."""
    c = config.copy_and_resolve_references()
    with c.unlocked():  # a config from the command line is locked
        for field in STUDY_FIELDS:
            del c[field]
    return c


def spec_of(state: train.TrainState, example: Any) -> rebasin.PermutationSpec:
    """The hidden-unit permutations of the model of `state` (one network, not a stack),
    traced on its parameters with an example input of shape ``(1, ...)``.

    Example:
      >>> spec = spec_of(train.member(template, 0), test.x[:1])  # doctest: +SKIP
      >>> spec.sizes  # the MNIST-1D MLP: one residual stream  # doctest: +SKIP
      {'hidden/0': 100}
    """
    return rebasin.permutation_spec(
        lambda p, x: train.apply_model(state, x, params=p)[0], state.params, jnp.asarray(example)
    )


def overlaps(
    spec: rebasin.PermutationSpec,
    perms: Mapping[str, Mapping[str, Any]],
    mask_a: Any,
    mask_b: Any,
) -> dict[str, dict[str, Any]]:
    """Per alignment: the overlap of `mask_a` with `mask_b` moved by its permutation.

    Args:
      spec: from `spec_of`.
      perms: alignment name -> the permutation of b's units (`weight_matching(spec, a, b)`).
      mask_a, mask_b: the two masks (boolean pytrees of the parameters).

    Returns:
      Alignment name -> ``{"iou", "random_iou", "midpoint_density", "per_layer"}``: the
      intersection over union of the kept weights, that of random masks with the same
      per-layer counts, the fraction of the masked weights nonzero at the midpoint of
      the two networks (the union of the masks), and per layer `LayerOverlap`'s fields.

    Example:
      >>> p = rebasin.random_permutation(jax.random.key(0), spec)  # doctest: +SKIP
      >>> moved = rebasin.permute(spec, p, mask)  # doctest: +SKIP
      >>> overlaps(spec, {"planted": rebasin.invert_permutation(p)}, mask, moved)[
      ...     "planted"]["iou"]  # doctest: +SKIP
      1.0
    """
    out = {}
    for name, perm in perms.items():
        r = analysis.mask_overlap(mask_a, rebasin.permute(spec, perm, mask_b))
        layers = r.per_layer.values()
        out[name] = {
            "iou": r.iou,
            "random_iou": r.random_iou,
            "midpoint_density": sum(l.union for l in layers) / sum(l.size for l in layers),
            "per_layer": {path: l._asdict() for path, l in r.per_layer.items()},
        }
    return out


def run(config: ConfigDict, workdir: str, *, progress: bool = True) -> dict[str, Any]:
    """Runs (or resumes) the study `config` describes in `workdir`; returns the results."""
    sweeps.check_seeds_and_length(config)
    pairs = pairs_of(config.seeds)
    imp = lottery_ticket.settings(config)  # bad IMP settings fail before the data loads
    if "ticket" not in imp.variants:
        raise ValueError(
            f"config.imp.variants={imp.variants}: the study compares tickets; include 'ticket'."
        )
    run_dir = train.RunDir(workdir)
    run_dir.create()
    run_dir.check_or_write_config(
        {"config": train.rundir.jsonable(config)}, later=later_settings("config.imp")
    )
    start = time.perf_counter()
    imp_dir = os.path.join(workdir, "imp")
    imp_results = lottery_ticket.run(imp_config(config), imp_dir, progress=progress)
    train_ds, test_ds = sweeps.datasets(config)
    template = imp_initial_states(
        sweeps.model_maker(config, train_ds.num_classes),
        train.optimizer(config.optim, train.lr_schedule(config.optim)),
        imp,
        config.seeds,
    )
    if jax.tree.leaves(template.model_state):
        raise ValueError(
            f"config.model={config.model!r} holds batch statistics; the study permutes and "
            "interpolates parameters only. Pick a model without batch norm (e.g. mnist1d_mlp)."
        )
    spec = spec_of(train.member(template, 0), test_ds.x[:1])
    rounds = [(0, 1.0, imp_results["dense"]["accuracy"])] + [
        (r["round"], r["remaining"], r["accuracy"]["ticket"]) for r in imp_results["rounds"]
    ]
    records, dense_perms = [], None
    for r, remaining, accuracy in rounds:
        pair_records = _round(config, workdir, r, template, spec, pairs, dense_perms, test_ds)
        if dense_perms is None:  # round 0: the dense pairs' own alignment
            dense_perms = [p["permutation"] for p in pair_records]
        records.append(
            {"round": r, "remaining": remaining, "accuracy": accuracy, "pairs": pair_records}
        )
        if progress:
            print(_line(summary(records[-1], records[0])), flush=True)
    results = {
        "title": f"Aligned lottery tickets: {config.model} on {config.dataset}",
        "seeds": list(config.seeds),
        "pairs": [list(p) for p in pairs],
        "alignments": list(ALIGNMENTS),
        "alphas": records[0]["pairs"][0]["barrier"]["none"]["alphas"],
        "spec": {name: size for name, size in spec.sizes.items()},
        "rounds": records,
        "summary": [summary(r, records[0]) for r in records],
        "config": config.to_dict(),
        "machine": sweeps.machine(),
        "invocation_wall_s": time.perf_counter() - start,  # this call only (not a resumed part)
    }
    if sweeps.write_results(run_dir, workdir, results, table(results)):
        plot_ticket_alignment(results, os.path.join(workdir, "ticket_alignment.png"))
    return results


def _round(config, workdir, r, template, spec, pairs, dense_perms, test_ds):
    """Every pair's record of round r (read back when already measured)."""
    done = os.path.join(workdir, "rounds", f"round_{r:02d}.json")
    if os.path.exists(done):
        with open(done) as f:
            return json.load(f)
    state = _trained(config, workdir, r, template)
    mask = jaxprune.mask_of(state.opt_state)
    index = {s: i for i, s in enumerate(config.seeds)}
    firsts, seconds = [], {name: [] for name in ALIGNMENTS}
    records = []
    for p, (sa, sb) in enumerate(pairs):
        a, b = train.member(state, index[sa]), train.member(state, index[sb])
        ma, mb = train.member(mask, index[sa]), train.member(mask, index[sb])
        perm, info = rebasin.weight_matching(
            spec, a.params, b.params, masks=(ma, mb), max_iter=config.max_iter, return_info=True
        )
        perms = {
            "none": rebasin.identity_permutation(spec),
            "dense": perm if dense_perms is None else dense_perms[p],
            "ticket": perm,
        }
        firsts.append(sweeps.with_mask(a, ma))
        for name, q in perms.items():
            moved = b.replace(params=rebasin.permute(spec, q, b.params))
            seconds[name].append(sweeps.with_mask(moved, rebasin.permute(spec, q, mb)))
        records.append(
            {
                "seeds": [sa, sb],
                "matching": info._asdict(),
                "permutation": {k: np.asarray(v).tolist() for k, v in perm.items()},
                "overlap": overlaps(spec, perms, ma, mb),
                "barrier": {},
            }
        )
    for name in ALIGNMENTS:
        out = train.instability(
            train.stack_states(firsts + seconds[name]),
            test_ds,
            parents=len(pairs),
            alphas=config.alphas,
            batch_size=config.eval_batch_size,
        )
        for path in out["paths"]:
            records[path["parent"]]["barrier"][name] = {
                "alphas": out["alphas"],
                **{k: path[k] for k in ("error", "loss", "error_barrier", "loss_barrier")},
                "accuracy": path["accuracy"],
            }
    if jax.process_index() == 0:
        os.makedirs(os.path.dirname(done), exist_ok=True)
        train.rundir.write_json(done, train.rundir.jsonable(records))
    return records


def _trained(config, workdir, r, template):
    """The trained networks of round r, one per seed: the dense run's (r = 0) or the
    tickets' (their final checkpoint, restored into run_imp's stack of the round)."""
    imp_dir = os.path.join(workdir, "imp", f"round_{r:02d}")
    if r == 0:
        return train.restore_checkpoint(imp_dir, template, "latest")
    n, variants = len(config.seeds), list(config.imp.variants)
    stack = [train.member(template, i) for _ in variants for i in range(n)]
    state = train.restore_checkpoint(imp_dir, train.stack_states(stack), "latest")
    j = variants.index("ticket") * n
    return train.member(state, slice(j, j + n))


def _stats(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample std and n over pairs; "settled" when the spread does not cover 0."""
    v = np.asarray(values, np.float64)
    std = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    mean = float(v.mean())
    return {"mean": mean, "std": std, "n": len(v), "settled": len(v) > 1 and abs(mean) > std}


def summary(record: Mapping[str, Any], dense: Mapping[str, Any]) -> dict[str, Any]:
    """One round's numbers over its pairs (`_stats`): overlaps, midpoint densities,
    barriers, and paired effects: alignment's overlap gains, the aligned overlap over
    random, the drop of the error barrier by alignment, and the aligned error barrier
    over the same pair's dense one (`dense`: round 0's record)."""
    pairs = record["pairs"]
    of = lambda f: _stats([f(p, d) for p, d in zip(pairs, dense["pairs"])])  # noqa: E731
    iou = lambda p, a: p["overlap"][a]["iou"]  # noqa: E731
    bar = lambda p, m, ref, a: p["barrier"][a][f"{m}_barrier"][ref]  # noqa: E731
    effects = {
        f"iou gain ({a} alignment)": of(lambda p, _, a=a: iou(p, a) - iou(p, "none"))
        for a in ("dense", "ticket")
    }
    effects["iou over random (ticket alignment)"] = of(
        lambda p, _: iou(p, "ticket") - p["overlap"]["none"]["random_iou"]
    )
    effects["error barrier drop (ticket alignment)"] = of(
        lambda p, _: bar(p, "error", "linear", "none") - bar(p, "error", "linear", "ticket")
    )
    effects["error barrier over dense (ticket alignment)"] = of(
        lambda p, d: bar(p, "error", "linear", "ticket") - bar(d, "error", "linear", "ticket")
    )
    return {
        "round": record["round"],
        "remaining": record["remaining"],
        "iou": {a: of(lambda p, _, a=a: iou(p, a)) for a in ALIGNMENTS},
        "random_iou": of(lambda p, _: p["overlap"]["none"]["random_iou"]),
        "midpoint_density": {
            a: of(lambda p, _, a=a: p["overlap"][a]["midpoint_density"]) for a in ALIGNMENTS
        },
        "barrier": {
            m: {
                r: {a: of(lambda p, _, m=m, r=r, a=a: bar(p, m, r, a)) for a in ALIGNMENTS}
                for r in REFERENCES
            }
            for m in ("error", "loss")
        },
        "effects": effects,
    }


def _cell(stat: Mapping[str, Any], scale: float = 100.0, digits: int = 2) -> str:
    return f"{scale * stat['mean']:.{digits}f} ± {scale * stat['std']:.{digits}f}"


def _effect(stat: Mapping[str, Any], scale: float = 100.0) -> str:
    return _cell(stat, scale) + ("" if stat["settled"] else " (not settled)")


def _line(s: Mapping[str, Any]) -> str:
    """A round's progress line, from its `summary`."""
    cells = lambda d: ", ".join(f"{a} {_cell(d[a])}" for a in ALIGNMENTS)  # noqa: E731
    return (
        f"round {s['round']} ({100 * s['remaining']:.1f}% left): IoU {cells(s['iou'])}, random "
        f"{_cell(s['random_iou'])}; error barrier {cells(s['barrier']['error']['linear'])}"
    )


def _markdown(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def table(results: Mapping[str, Any]) -> str:
    """The markdown tables: overlaps (%), barriers (points of error; loss), per-layer
    overlaps (%) and the paired effects, mean ± sample std over the pairs."""
    summaries, rounds = results["summary"], results["rounds"]
    name = lambda s: f"{100 * s['remaining']:.1f}% ({s['round']})"  # noqa: E731
    n = len(results["pairs"])
    lines = [
        f"# {results['title']}",
        "",
        f"Mean ± sample std over {n} disjoint pairs of seeds {results['pairs']}; alignments "
        "of b to a: none; 'dense': weight matching of the trained dense networks (round 0), "
        "the same in every round; 'ticket': weight matching of that round's trained tickets "
        "with their masks (Ainsworth et al. 2023). Round 0 is the dense pair (the "
        "reference at the same width).",
        "",
        "## Mask overlap (total IoU of the kept weights, %) and midpoint density (%)",
        "",
    ]
    head = ["remaining (round)", *[f"IoU {a}" for a in ALIGNMENTS], "IoU random"]
    head += [f"midpoint density {a}" for a in ALIGNMENTS]
    rows = [
        [name(s), *[_cell(s["iou"][a]) for a in ALIGNMENTS], _cell(s["random_iou"])]
        + [_cell(s["midpoint_density"][a]) for a in ALIGNMENTS]
        for s in summaries[1:]
    ]
    lines += _markdown(head, rows)
    for metric, scale, unit in (("error", 100.0, "points of test error"), ("loss", 1.0, "loss")):
        lines += ["", f"## Barrier between the two trained networks ({unit})", ""]
        head = ["remaining (round)"] + [f"{ref}: {a}" for ref in REFERENCES for a in ALIGNMENTS]
        rows = [
            [name(s)]
            + [
                _cell(s["barrier"][metric][ref][a], scale, 2 if metric == "error" else 3)
                for ref in REFERENCES
                for a in ALIGNMENTS
            ]
            for s in summaries
        ]
        lines += _markdown(head, rows)
    layers = list(rounds[-1]["pairs"][0]["overlap"]["none"]["per_layer"])
    lines += ["", "## IoU per layer (%): none / ticket alignment / random", ""]
    mean = lambda r, a, layer, key: (
        100
        * np.mean(  # noqa: E731
            [p["overlap"][a]["per_layer"][layer][key] for p in r["pairs"]]
        )
    )
    rows = [
        [name(r)]
        + [
            f"{mean(r, 'none', l, 'iou'):.1f} / {mean(r, 'ticket', l, 'iou'):.1f} / "
            f"{mean(r, 'none', l, 'random_iou'):.1f}"
            for l in layers
        ]
        for r in rounds[1:]
    ]
    lines += _markdown(["remaining (round)", *layers], rows)
    effects = list(summaries[-1]["effects"])
    lines += [
        "",
        "## Paired effects (points; error barriers linear; not settled: the sample std over "
        "pairs covers the mean)",
        "",
    ]
    rows = [[name(s), *[_effect(s["effects"][e]) for e in effects]] for s in summaries[1:]]
    lines += _markdown(["remaining (round)", *effects], rows)
    dense = summaries[0]["barrier"]["error"]["linear"]
    sweeps_run = [p["matching"]["sweeps"] for r in rounds for p in r["pairs"]]
    max_iter = results["config"]["max_iter"]
    lines += [
        "",
        f"Weight matching stopped at a fixed point in {sum(s < max_iter for s in sweeps_run)} "
        f"of {len(sweeps_run)} matchings (the others ran all {max_iter} sweeps).",
        "",
        f"Dense reference (round 0), error barrier (linear): none {_cell(dense['none'])}, "
        f"aligned {_cell(dense['ticket'])} points. Test accuracy of the endpoints (%): "
        + ", ".join(f"{name(s)} {_cell(_stats(r['accuracy']))}" for s, r in zip(summaries, rounds))
        + ".",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    FLAGS = sweeps.parsed_flags(argv)
    start = time.time()
    results = run(FLAGS.config, FLAGS.workdir, progress=FLAGS.progress)
    print("\n" + table(results))
    print(
        f"\n{time.time() - start:.0f} s; results.json, results.md and the plot in {FLAGS.workdir}"
    )


if __name__ == "__main__":
    sweeps.define_flags(
        "experiments/configs/rebasin_tickets.py:smoke",
        default=os.path.join(HERE, "configs", "rebasin_tickets.py"),
    )
    app.run(main)
