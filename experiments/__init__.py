"""The experiment scripts and their configs, run from the repository root as modules.

python -m experiments.train --config=experiments/configs/train.py:lenet_fashion --workdir=DIR
python -m experiments.lottery_ticket --workdir=DIR
python -m experiments.prune_at_init --config=experiments/configs/prune_at_init.py --workdir=DIR
python -m experiments.dynamic_sparse --config=experiments/configs/dynamic_sparse.py --workdir=DIR
python -m experiments.quickstart
"""
