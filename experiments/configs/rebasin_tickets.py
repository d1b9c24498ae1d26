"""Configs for experiments/rebasin_tickets.py: the lottery experiment's IMP (as in
experiments/configs/lottery.py) on pairs of seeds, plus how the pairs are compared.

    python -m experiments.rebasin_tickets --workdir=runs/rbt                    # mnist1d_mlp
    python -m experiments.rebasin_tickets --workdir=runs/rbt_smoke \
        --config=experiments/configs/rebasin_tickets.py:smoke

IMP is Frankle & Carbin, 2019, "The Lottery Ticket Hypothesis: Finding Sparse, Trainable
Neural Networks" (the lottery config's settings: 20% of the remaining weights per round,
the output layer at half rate, rewinding to the initialisation); the alignment is weight
matching from Ainsworth, Hayase & Srinivasa, 2023, "Git Re-Basin: Merging Models modulo
Permutation Symmetries". Seeds pair up in order: (s0, s1), (s2, s3), ... Numbers marked
(unverified) are defaults, not the papers'.
"""

from ml_collections import ConfigDict

from experiments.configs import lottery
from experiments.configs import train as train_configs

# Fields this study adds to a lottery config: left out of the IMP run's own config, so
# that changing how the pairs are compared never invalidates the trained rounds.
STUDY_FIELDS = ("alphas", "eval_batch_size", "max_iter")


def _study(c: ConfigDict, *, seeds, rounds: int) -> ConfigDict:
    c.seeds = tuple(seeds)  # pairs in order: (s0, s1), (s2, s3), ...
    c.imp.variants = ("ticket",)  # the tickets are what is compared
    c.imp.rounds = rounds
    c.alphas = 31  # points on each path, endpoints included (Frankle et al. 2020: 30)
    c.eval_batch_size = 1000  # examples per evaluation step on a path
    # Weight matching's most sweeps (Git Re-Basin's code: 100); results say how many
    # matchings stopped before it.
    c.max_iter = 100
    return c


def mnist1d_mlp() -> ConfigDict:
    """The default: the lottery experiment's MNIST-1D MLP (Adam 1e-2, batch 100, 6000 steps
    a round), 8 seeds (4 disjoint pairs), 11 rounds down to 10.1% of the prunable weights;
    about 5 minutes on a 2-core CPU."""
    return _study(lottery.mnist1d_mlp(), seeds=range(8), rounds=11)


def smoke() -> ConfigDict:
    """Seconds: 4 seeds (2 pairs), 2 rounds at 50%, 100 steps, 5 points a path."""
    c = _study(lottery.smoke(), seeds=range(4), rounds=2)
    c.steps = c.eval_every = 100
    c.checkpoint_every = 50
    c.alphas = 5
    return c


CONFIGS = {f.__name__: f for f in (mnist1d_mlp, smoke)}


def get_config(name: str = "mnist1d_mlp") -> ConfigDict:
    """The named config (`--config=experiments/configs/rebasin_tickets.py:NAME`)."""
    return train_configs.named_config(CONFIGS, name)
