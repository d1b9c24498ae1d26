"""Train any zoo model on any dataset, dense or under a mask; one run directory per run.

    python -m experiments.train --config=experiments/configs/train.py:lenet_fashion \
        --workdir=runs/lenet_fashion
    python -m experiments.train --config=experiments/configs/train.py:mnist1d_mlp \
        --workdir=runs/mlp_s90 --config.sparsity=0.9 --config.mask=magnitude
    python -m experiments.train --config=experiments/configs/train.py:mnist1d_mlp \
        --workdir=runs/mlp_same_mask --config.mask=runs/mlp_s90 --config.seed=1

The run directory gets `config.json`, `metrics.jsonl`, `checkpoints/`,
`results.json` and, for a masked run, `mask.npz`. Rerunning the same command on
the same directory resumes from the last checkpoint. Data parallel over all
devices when the batch size divides among them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax
from absl import app, flags, logging
from flax import nnx
from ml_collections import ConfigDict, config_flags

import jaxprune
from jaxprune import data, models, train


def build_mask(config: ConfigDict, params: Any) -> Any:
    """The mask `config` asks for, for `params`, or None for dense training.

    Example:
      >>> from experiments.configs.train import get_config  # doctest: +SKIP
      >>> cfg = get_config("mnist1d_mlp"); cfg.mask, cfg.sparsity = "random", 0.9  # doctest: +SKIP
      >>> mask = build_mask(cfg, params)  # doctest: +SKIP
    """
    kind = config.mask
    if kind in ("none", "", None):
        if config.sparsity:
            raise ValueError(
                f"config.sparsity={config.sparsity} but config.mask='none'; set "
                "--config.mask=magnitude or random (or a mask file) to prune."
            )
        return None
    if kind in ("magnitude", "random"):
        if not 0.0 < config.sparsity < 1.0:
            raise ValueError(
                f"config.mask={kind!r} needs 0 < config.sparsity < 1, got {config.sparsity}."
            )
        if kind == "magnitude":
            scores = jaxprune.scores.magnitude(params)
        else:
            # A key of its own, so the mask does not correlate with the init.
            key = jax.random.fold_in(jax.random.key(config.seed), 0x3A5C)
            scores = jaxprune.scores.random(key, params)
        return jaxprune.topk_mask(scores, config.sparsity, config.distribution)
    if os.path.exists(kind):
        return train.load_mask(kind, params)
    raise ValueError(
        f"config.mask={kind!r} is neither 'none', 'magnitude', 'random' nor an existing "
        "mask file or run directory."
    )


def datasets(config: ConfigDict) -> tuple[data.Dataset, data.Dataset]:
    """The train split (subset, label noise and data seed from `config`) and the test split."""
    load = dict(data_dir=config.data_dir)
    train_ds = data.load(
        config.dataset,
        "train",
        subset=config.subset,
        label_noise=config.label_noise,
        seed=config.data_seed,
        **load,
    )
    return train_ds, data.load(config.dataset, "test", **load)


def model_maker(config: ConfigDict, num_classes: int) -> Callable[[int], nnx.Module]:
    """`seed -> model`: the zoo model `config` names, with its overrides."""
    overrides = {"num_classes": num_classes, **config.model_overrides.to_dict()}
    return lambda seed: models.create(config.model, rngs=nnx.Rngs(seed), **overrides)


def run(config: ConfigDict, workdir: str, *, progress: bool = True) -> dict[str, Any]:
    """Trains as `config` says into `workdir` (resuming it if it exists); returns results.

    Example:
      >>> from experiments.configs.train import get_config  # doctest: +SKIP
      >>> run(get_config("mnist1d_mlp"), "runs/mlp")["eval"]["test"]["accuracy"]  # doctest: +SKIP
    """
    train_ds, test_ds = datasets(config)
    model = model_maker(config, train_ds.num_classes)(config.seed)
    mask = build_mask(config, nnx.as_pure(nnx.state(model, nnx.Param)))
    schedule = train.lr_schedule(config.optim)
    tx = train.optimizer(config.optim, schedule)
    state = train.create_train_state(model, tx, seed=config.seed, mask=mask)
    out = train.fit(
        state,
        train_ds,
        workdir=workdir,
        batch_size=config.batch_size,
        steps=None if config.epochs is not None else config.steps,
        epochs=config.epochs,
        seed=config.data_seed,
        eval=train.Evaluation(
            data={"test": test_ds}, every=config.eval_every, batch_size=config.eval_batch_size
        ),
        checkpoints=train.Checkpointing(
            every=config.checkpoint_every,
            keep_last=config.keep_last,
            keep={} if config.rewind_step is None else {"rewind": config.rewind_step},
        ),
        logging=train.Logging(every=config.log_every, progress=progress, lr_schedule=schedule),
        augment=data.augmentation_for(config.dataset) if config.augment else None,
        config=config,
    )
    results = dict(out.results)
    if mask is not None:
        final_mask = jaxprune.mask_of(out.state.opt_state)
        if jax.process_index() == 0:
            train.save_mask(workdir, final_mask)
        results["sparsity"] = float(jaxprune.sparsity(final_mask))
    if jax.process_index() == 0:
        train.RunDir(workdir).write_results(results)
    return results


def define_flags() -> None:
    """The command-line flags (only when run as a script, so importing has no side effects)."""
    config_flags.DEFINE_config_file(
        "config", None, "config file and name, e.g. experiments/configs/train.py:lenet_fashion"
    )
    flags.DEFINE_string("workdir", None, "the run directory (created or resumed)")
    flags.DEFINE_bool("progress", True, "show a progress bar")
    flags.mark_flags_as_required(["config", "workdir"])


def parsed_flags(argv: list[str]) -> flags.FlagValues:
    """The parsed flags of an experiment script's `main`: no stray arguments, and Orbax
    quiet (it logs every checkpoint at INFO) unless `--verbosity` is given."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    return flags.FLAGS


def main(argv: list[str]) -> None:
    FLAGS = parsed_flags(argv)
    results = run(FLAGS.config, FLAGS.workdir, progress=FLAGS.progress)
    test = results["eval"].get("test", {})
    print(
        f"step {results['step']}: test accuracy {test.get('accuracy', float('nan')):.4f}, "
        f"loss {test.get('loss', float('nan')):.4f}"
        + (f", sparsity {results['sparsity']:.3f}" if "sparsity" in results else "")
    )


if __name__ == "__main__":
    define_flags()
    app.run(main)
