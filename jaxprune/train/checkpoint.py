"""Orbax checkpoints of a `TrainState`: the last few, plus named points kept on request.

A checkpoint is one orbax step directory with two items: `state` (the state's
arrays; typed PRNG keys are stored as their key data, boolean arrays such as
masks at 1 bit per entry by `jaxprune.pack_mask`; checkpoints written before
that, with boolean arrays, still restore) and `extra` (small JSON:
the names given to this step, and whatever the caller adds, e.g. `fit`'s
pending metrics). Orbax writes each step into a temporary directory and renames
it when complete, so a process killed mid-write leaves no partial step behind.
A step that exists but cannot be read (a truncated or deleted file) is moved
to `corrupt/<step>` with a warning, and the previous step is used.
"""

from __future__ import annotations

import collections
import os
import shutil
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from orbax.checkpoint import checkpoint_managers as policies

from jaxprune import masks
from jaxprune._tree import path_str
from jaxprune.train.state import TrainState

__all__ = ["Checkpoints", "CheckpointWarning", "restore_checkpoint"]


class CheckpointWarning(UserWarning):
    """A checkpoint could not be read and was set aside."""


class Checkpoints:
    """The checkpoints of one run: save, list, restore by step or name, resume.

    Args:
      directory: where the step directories go (`<run>/checkpoints`).
      keep_last: how many of the most recent checkpoints to keep.
      keep: checkpoints never deleted: a mapping `{name: step}` (e.g.
        `{"rewind": 500}`, loadable later by name) or an iterable of steps.
      async_save: write in a background thread while training goes on.
      read_only: only read (``restore_checkpoint``): no save, and the temporary
        directories of a save in flight (another process training into
        ``directory``) are left alone.

    Example:
      >>> ckpts = Checkpoints(run / "checkpoints", keep={"rewind": 500})  # doctest: +SKIP
      >>> ckpts.save(500, state)  # doctest: +SKIP
      >>> rewound, _ = ckpts.restore(template, "rewind")  # doctest: +SKIP
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        keep_last: int = 3,
        keep: Mapping[str, int] | Iterable[int] = (),
        async_save: bool = True,
        read_only: bool = False,
    ):
        self.directory = os.path.abspath(os.fspath(directory))
        self.keep = _as_named_steps(keep)
        if keep_last < 1:
            raise ValueError(f"Checkpoints: keep_last must be >= 1, got {keep_last}.")
        preservation = policies.AnyPreservationPolicy(
            [policies.LatestN(keep_last), policies.CustomSteps(sorted(set(self.keep.values())))]
        )
        options = ocp.CheckpointManagerOptions(
            preservation_policy=preservation,
            cleanup_tmp_directories=not read_only,  # Leftovers of a killed save.
            enable_async_checkpointing=async_save,
            read_only=read_only,
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "extra")
        )

    def steps(self) -> list[int]:
        """The steps with a complete checkpoint, ascending."""
        self._manager.wait_until_finished()
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: TrainState, extra: Mapping[str, Any] | None = None) -> None:
        """Saves `state` as checkpoint `step` (asynchronously unless disabled).

        `extra` is a JSON-serialisable dict stored alongside; the names that
        `keep` gives to `step` are added under "names".
        """
        extra = dict(extra or {})
        extra["names"] = sorted(n for n, s in self.keep.items() if s == step)
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(_storable(state.arrays())),
                extra=ocp.args.JsonSave(extra),
            ),
            force=True,
        )

    def restore(
        self, template: TrainState, which: int | str = "latest"
    ) -> tuple[TrainState, dict[str, Any]]:
        """Restores checkpoint `which` (a step, a name given in `keep`, or "latest").

        Args:
          template: a state with the same structure (e.g. freshly created);
            restored arrays get its shardings.
          which: the step, the name, or "latest".

        Returns:
          `(state, extra)`.

        Raises:
          FileNotFoundError: no such step or name; the message lists what exists.
          ValueError: the checkpoint's arrays (by its metadata) are not the
            template's: another model, optimizer or library version wrote it.
        """
        step = self.resolve(which)
        abstract = _abstract(template.arrays())
        misfit = self._misfit(step, abstract)
        if misfit and not self._misfit(step, unpacked := _abstract(template.arrays(), False)):
            abstract, misfit = unpacked, None  # written before masks were packed
        if misfit:  # checked first: a failed restore leaves orbax's reads in flight
            raise _Misfit(
                f"checkpoint {step} in {self.directory} does not fit this run's state "
                f"({misfit}): the directory was written with another model, optimizer "
                "or library version. Use a new work directory, or the code and config "
                "that wrote it. Nothing was moved."
            )
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract),
                extra=ocp.args.JsonRestore(),
            ),
        )
        arrays = _unstorable(restored.state, template.arrays())
        held = np.unique(np.asarray(arrays["step"]))  # one value; an ensemble's members share it
        if held.tolist() != [step]:
            raise ValueError(
                f"checkpoint {step} in {self.directory} holds a state at step "
                f"{', '.join(map(str, held.tolist()))}; the checkpoint is inconsistent."
            )
        return template.replace(**arrays), dict(restored.extra or {})

    def restore_latest(self, template: TrainState) -> tuple[TrainState, dict[str, Any]] | None:
        """Restores the newest readable checkpoint, or returns None if there is none.

        A checkpoint that fails to load is moved to `<directory>/corrupt/<step>`
        with a `CheckpointWarning`, and the previous one is tried.

        Raises:
          ValueError: the newest checkpoint is readable but does not fit
            `template` (another model, optimizer or library version wrote the
            directory); nothing is moved.
        """
        for step in reversed(self.steps()):
            try:
                return self.restore(template, step)
            except _Misfit:
                raise
            except Exception as err:  # Orbax/tensorstore raise many types on bad files.
                self._set_aside(step, err)
        return None

    def _misfit(self, step: int, abstract: Any) -> str | None:
        """How the arrays stored in checkpoint `step` (by its metadata; no array is read)
        differ from `abstract`, or None if they do not or the metadata is unreadable."""
        handler = ocp.StandardCheckpointHandler()
        try:
            stored = handler.metadata(epath.Path(self.directory) / str(step) / "state")
        except Exception:  # Unreadable metadata: a damaged checkpoint.
            return None
        finally:
            handler.close()
        held, wanted = _leaf_specs(stored), _leaf_specs(abstract)
        if held == wanted:
            return None
        only = (
            lambda a, b: ", ".join(  # noqa: E731
                f"{n} x {k}" if n > 1 else k for k, n in list((a - b).items())[:3]
            )
        )
        return (
            f"it holds {only(held, wanted) or 'nothing else'} that this state has not, "
            f"this state {only(wanted, held) or 'nothing else'} that it has not"
        )

    def resolve(self, which: int | str) -> int:
        """The step that `which` (a step, a name, or "latest") refers to."""
        steps = self.steps()
        if which == "latest":
            if not steps:
                raise FileNotFoundError(f"no checkpoints in {self.directory}.")
            return steps[-1]
        if isinstance(which, str):
            named = self.named()
            if which not in named:
                raise FileNotFoundError(
                    f"no checkpoint named {which!r} in {self.directory}; named "
                    f"checkpoints: {named or 'none'}; steps: {steps}."
                )
            return named[which]
        if int(which) not in steps:
            raise FileNotFoundError(
                f"no checkpoint at step {which} in {self.directory}; steps: {steps}."
            )
        return int(which)

    def named(self) -> dict[str, int]:
        """`{name: step}` for the named checkpoints on disk."""
        names = {}
        for step in self.steps():
            try:
                extra = self._manager.restore(
                    step, args=ocp.args.Composite(extra=ocp.args.JsonRestore())
                ).extra
            except Exception:  # An unreadable step has no usable name.
                continue
            names.update({name: step for name in (extra or {}).get("names", [])})
        return names

    def wait(self) -> None:
        """Blocks until background writes are complete."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Finishes pending writes and releases the manager."""
        self._manager.close()

    def __enter__(self) -> Checkpoints:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _set_aside(self, step: int, err: Exception) -> None:
        src = os.path.join(self.directory, str(step))
        dst = os.path.join(self.directory, "corrupt", str(step))
        if os.path.exists(dst):
            shutil.rmtree(dst)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.move(src, dst)
        self._manager.reload()
        warnings.warn(
            f"checkpoint {step} in {self.directory} is unreadable "
            f"({type(err).__name__}: {str(err)[:200]}); moved it to {dst} and "
            "falling back to the previous checkpoint.",
            CheckpointWarning,
            stacklevel=3,
        )


class _Misfit(ValueError):
    """A readable checkpoint whose arrays are not the template's: not corrupt."""


def restore_checkpoint(
    directory: str | os.PathLike, template: TrainState, which: int | str = "latest"
) -> TrainState:
    """Loads one checkpoint of a run, by step, by name or the latest.

    Args:
      directory: a run directory (with `checkpoints/`) or a checkpoints directory.
      template: a state with the same structure (e.g. freshly created).
      which: a step, a name given with `keep` (e.g. "rewind"), or "latest".

    Example (lottery-ticket rewinding):
      >>> rewound = restore_checkpoint("runs/dense", fresh_state, "rewind")  # doctest: +SKIP
    """
    directory = os.fspath(directory)
    if os.path.isdir(os.path.join(directory, "checkpoints")):
        directory = os.path.join(directory, "checkpoints")
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"restore_checkpoint: no directory {directory}.")
    with Checkpoints(directory, read_only=True) as ckpts:  # the run may still be training
        return ckpts.restore(template, which)[0]


def _as_named_steps(keep: Mapping[str, int] | Iterable[int]) -> dict[str, int]:
    if isinstance(keep, Mapping):
        named = {str(k): int(v) for k, v in keep.items()}
    else:
        named = {f"step_{int(s)}": int(s) for s in keep}
    bad = {k: v for k, v in named.items() if v < 0}
    if bad:
        raise ValueError(f"Checkpoints: keep steps must be >= 0, got {bad}.")
    return named


def _leaf_specs(tree: Any) -> collections.Counter[str]:
    """``"path shape dtype"`` of every leaf, paths as ``path_str`` renders them
    (orbax's metadata names a NamedTuple field or a list index as a dict key: the
    rendered paths compare equal)."""
    return collections.Counter(
        f"{path_str(path)} {tuple(x.shape)} {np.dtype(x.dtype).name}"
        for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]
    )


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _is_packable(x: Any) -> bool:
    return np.ndim(x) > 0 and getattr(x, "dtype", None) == jnp.bool_


def _storable(tree: Any, pack: bool = True) -> Any:
    """Typed PRNG keys become their uint32 key data (orbax stores plain arrays); boolean
    arrays (masks) their packed bits (``pack``)."""

    def one(x):
        if _is_key(x):
            return jax.random.key_data(x)
        return masks.pack_mask(x) if pack and _is_packable(x) else x

    return jax.tree.map(one, tree)


def _unstorable(tree: Any, template: Any) -> Any:
    def one(x, t):
        if _is_key(t):
            return jax.random.wrap_key_data(x, impl=jax.random.key_impl(t))
        if _is_packable(t) and x.dtype == jnp.uint8:
            return masks.unpack_mask(x, t)
        return x

    return jax.tree.map(one, tree, template)


def _abstract(tree: Any, pack: bool = True) -> Any:
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, _storable(tree, pack))
