"""The files of a run directory: `config.json`, `metrics.jsonl`, `results.json`.

`metrics.jsonl` holds one JSON object per line, each with a `step`. Lines are
flushed as they are written, and on resume the file is cut back to the
restored checkpoint's step, so a run killed and resumed ends with exactly the
lines of an uninterrupted run (a half-written last line is dropped too).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["RunDir", "jsonable", "read_metrics"]


class RunDir:
    """Paths and file operations of one run directory.

    Example:
      >>> run = RunDir("/tmp/runs/lenet")  # doctest: +SKIP
      >>> run.append_metrics([{"step": 100, "split": "train", "loss": 0.3}])  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.path.abspath(os.fspath(path))
        self.config = os.path.join(self.path, "config.json")
        self.metrics = os.path.join(self.path, "metrics.jsonl")
        self.results = os.path.join(self.path, "results.json")
        self.checkpoints = os.path.join(self.path, "checkpoints")

    def create(self) -> None:
        """Creates the directory if needed."""
        os.makedirs(self.path, exist_ok=True)

    def check_or_write_config(
        self, config: Mapping[str, Any], *, later: Mapping[str, Any] | None = None
    ) -> None:
        """Writes `config.json`, or checks that an existing one matches `config`.

        Args:
          config: the run's config (JSON-like).
          later: settings added after runs were made, by dotted key, with the default
            that reproduces the older behaviour: an existing `config.json` without the
            key matches a `config` that holds the default there, so older runs resume.

        Raises:
          ValueError: the directory holds a run with another config; resuming it
            would mix two experiments.
        """
        normalized = jsonable(config)
        if os.path.exists(self.config):
            with open(self.config) as f:
                existing = json.load(f)
            if existing != normalized:
                normalized = _without_later_defaults(existing, normalized, later or {})
            if existing != normalized:
                diff = diff_keys(existing, normalized)
                raise ValueError(
                    f"{self.path} holds a run with a different config (differs at "
                    f"{diff}); use a new workdir, or delete this one to start over."
                )
            return
        write_json(self.config, normalized)

    def append_metrics(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Appends records to `metrics.jsonl` and flushes."""
        with open(self.metrics, "a") as f:
            for record in records:
                f.write(json.dumps(record) + "\n")
            f.flush()

    def truncate_metrics(self, last_step: int) -> None:
        """Keeps the complete lines with `step <= last_step`; drops the rest."""
        if not os.path.exists(self.metrics):
            return
        kept = [r for r in read_metrics(self.metrics) if r["step"] <= last_step]
        tmp = self.metrics + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)
        os.replace(tmp, self.metrics)

    def write_results(self, results: Mapping[str, Any]) -> None:
        """Writes `results.json` atomically."""
        write_json(self.results, results)


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a `metrics.jsonl` (or of the run directory holding it).

    An incomplete last line (a process killed mid-write) is skipped.

    Example:
      >>> [r["loss"] for r in read_metrics("runs/lenet") if r["split"] == "test"]  # doctest: +SKIP
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "metrics.jsonl")
    records = []
    with open(path) as f:
        for line in f:
            if not line.endswith("\n"):
                break  # Torn write at the end of a killed run.
            records.append(json.loads(line))
    return records


def write_json(path: str, obj: Any) -> None:
    """Writes JSON to `path` through a temporary file and an atomic rename."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=_json_default)
        f.write("\n")
    os.replace(tmp, path)


def jsonable(obj: Any) -> Any:
    """`obj` as plain JSON values (what `json.load` of its file gives back), keys sorted.

    A config object becomes its `to_dict()`, any mapping a dict, a set its sorted list;
    anything else JSON cannot hold becomes its `str`.

    Example:
      >>> jsonable({"b": (1, 2), "a": {3, 1}, "c": None})
      {'a': [1, 3], 'b': [1, 2], 'c': None}
    """
    return json.loads(json.dumps(obj, sort_keys=True, default=_json_default))


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    return str(obj)


def _without_later_defaults(
    existing: dict[str, Any], config: dict[str, Any], later: Mapping[str, Any]
) -> dict[str, Any]:
    """`config` less every `later` key that `existing` lacks and `config` holds at its default."""
    config = json.loads(json.dumps(config))  # a deep copy of plain JSON
    for key, default in later.items():
        *parents, leaf = key.split(".")
        old, new = existing, config
        for part in parents:
            old = old.get(part) if isinstance(old, dict) else None
            new = new.get(part) if isinstance(new, dict) else None
        if (
            isinstance(new, dict)
            and leaf in new
            and not (isinstance(old, dict) and leaf in old)
            and new[leaf] == jsonable(default)
        ):
            del new[leaf]
    return config


def diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    """The dotted keys at which two JSON-like configs differ, sorted.

    Example:
      >>> diff_keys({"fit": {"steps": 10, "seed": 0}}, {"fit": {"steps": 20, "seed": 0}})
      ['fit.steps']
    """
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in set(a) | set(b):
            out += diff_keys(a.get(key), b.get(key), f"{prefix}{key}.")
        return sorted(out)
    return [] if a == b else [prefix.rstrip(".")]
