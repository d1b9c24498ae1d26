"""Configs for experiments/ap_colt.py: IMP, IMP with AP and COLT on the same training.

    python -m experiments.ap_colt --workdir=runs/ap_colt                       # mnist1d_mlp
    python -m experiments.ap_colt --config=experiments/configs/ap_colt.py:smoke \
        --workdir=runs/ap_colt_smoke

The training of every round and the IMP settings are the lottery-ticket main job's
(experiments/configs/lottery.py: the MNIST-1D MLP, Adam 1e-2, batch 100, 6,000 steps a
round, 20% per round, the output layer 10%, down to <= 3.6%), tickets only, with the
dead-unit rates recorded every round. ``ap_share`` is AP's share of a round's budget
(Liu et al. 2022; their code: 0.1); ``colt`` sets COLT's data segments (Hossain et al.
2022: two).
"""

from ml_collections import ConfigDict, config_dict

from experiments.configs import lottery
from experiments.configs import train as train_configs


def _arms(c: ConfigDict) -> ConfigDict:
    """A lottery config with tickets only, dead units recorded, AP's share and COLT's split."""
    c.imp.variants = ("ticket",)
    c.imp.record_dead_units = True
    c.ap_share = 0.1
    c.colt = ConfigDict(
        {"segments": 2, "segment_steps": config_dict.placeholder(int), "split_seed": 0}
    )
    return c


def mnist1d_mlp() -> ConfigDict:
    """The main job: 3 seeds, IMP against IMP + AP (0.1) against COLT (2 segments)."""
    return _arms(lottery.mnist1d_mlp())


def smoke() -> ConfigDict:
    """Seconds: lottery's smoke run (2 seeds, 50% a round), 2 rounds of 100 steps."""
    c = _arms(lottery.smoke())
    c.steps = c.eval_every = 100
    c.imp.rounds = 2
    c.checkpoint_every = 50
    return c


CONFIGS = {f.__name__: f for f in (mnist1d_mlp, smoke)}


def get_config(name: str = "mnist1d_mlp") -> ConfigDict:
    """The named config (`--config=experiments/configs/ap_colt.py:NAME`)."""
    return train_configs.named_config(CONFIGS, name)
