"""The ml_collections configs of the experiment scripts, one file per script.

Give a script one by path and name (``--config=experiments/configs/lottery.py:smoke``);
they import each other as ``experiments.configs.train``, so run the scripts from the
repository root (``python -m experiments.NAME``).
"""
