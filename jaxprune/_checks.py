"""Argument checks shared by the core, each raised at the public boundary.

One exception type per kind of mistake (a wrong type: ``TypeError``; a wrong value:
``ValueError``) and one message style: ``<argument> must be ...; got <value>
(<where>). <what to do>.``
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

DISTRIBUTIONS = ("uniform", "global", "er", "erk")


def concrete(x: Any) -> float | None:
    """The Python float of a scalar, or None when it is traced under jit.

    Example:
      >>> concrete(np.float32(0.5))
      0.5
    """
    if isinstance(x, jax.core.Tracer):
        return None
    return float(np.asarray(x))


def _where(where: str | None) -> str:
    return f" ({where})" if where else ""


def suggest(value: Any, choices: Sequence[str]) -> str:
    """`` Did you mean 'x'?`` for the choice closest to a mistyped name, or ``""``.

    Example:
      >>> suggest("ERK ", ("uniform", "erk")), suggest("xyz", ("uniform", "erk"))
      (" Did you mean 'erk'?", '')
    """
    if not isinstance(value, str):
        return ""
    folded = value.strip().lower()
    close = [folded] if folded in choices else difflib.get_close_matches(folded, choices, n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def check_choice(value: Any, choices: Sequence[str], name: str, where: str | None = None) -> None:
    """Raises a ValueError unless ``value`` is one of ``choices``, suggesting the closest.

    Example:
      >>> check_choice("Radix", ("radix", "sort"), "method")
      Traceback (most recent call last):
      ...
      ValueError: method must be one of ('radix', 'sort'); got 'Radix'. Did you mean 'radix'?
    """
    if value not in choices:
        raise ValueError(
            f"{name} must be one of {tuple(choices)}; got {value!r}{_where(where)}."
            + suggest(value, choices)
        )


def check_distribution(distribution: Any, where: str | None = None) -> None:
    """Raises unless ``distribution`` is a known name (ValueError) or a mapping (else TypeError).

    Example:
      >>> check_distribution("ERK")  # doctest: +ELLIPSIS
      Traceback (most recent call last):
      ...
      ValueError: Unknown distribution 'ERK': distribution must be one of (...; got 'ERK'. Did you mean 'erk'?
    """
    if isinstance(distribution, Mapping):
        return
    if not isinstance(distribution, str):
        raise TypeError(
            "distribution must be a name or a mapping from path regex to sparsity; got "
            f"{distribution!r}{_where(where)}."
        )
    if distribution not in DISTRIBUTIONS:
        raise ValueError(
            f"Unknown distribution {distribution!r}: distribution must be one of "
            f"{DISTRIBUTIONS} or a mapping from path regex to sparsity; got "
            f"{distribution!r}{_where(where)}." + suggest(distribution, DISTRIBUTIONS)
        )


def check_sparsity(
    s: Any, what: str = "sparsity", upper_inclusive: bool = False, where: str | None = None
) -> None:
    """Raises a TypeError unless ``s`` is a real number (or a 0-d numeric array, traced or
    not), a ValueError unless a concrete one lies in [0, 1) ([0, 1] if asked).

    A percentage (such as 95) is answered with the fraction it means (0.95).

    Example:
      >>> check_sparsity(0.9)
      >>> check_sparsity(95)  # doctest: +ELLIPSIS
      Traceback (most recent call last):
      ...
      ValueError: sparsity must be a fraction ... in [0, 1); got 95.0. Did you mean 0.95? ...
    """
    dtype = getattr(s, "dtype", None)
    number = isinstance(s, (int, float)) and not isinstance(s, bool)
    if not number and not (
        dtype is not None
        and np.ndim(s) == 0
        and (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer))
    ):
        shape = f" of shape {np.shape(s)}" if dtype is not None else ""
        raise TypeError(
            f"{what} must be a number (a fraction of entries to prune, e.g. 0.9); got "
            f"{s!r}{shape}{_where(where)}."
        )
    v = concrete(s)
    if v is None:
        return
    ok = 0.0 <= v <= 1.0 if upper_inclusive else 0.0 <= v < 1.0
    if ok:
        return
    bound = "[0, 1]" if upper_inclusive else "[0, 1)"
    hint = " (NaN)" if math.isnan(v) else ""
    percent = 1.0 < v < 100.0 or (upper_inclusive and v == 100.0)
    hint += f". Did you mean {v / 100:g}?" if percent else "."
    raise ValueError(
        f"{what} must be a fraction of entries to prune in {bound}; got {v}{_where(where)}"
        f"{hint} (0.9 keeps 10% of the weights.)"
    )


def is_integer(x: Any) -> bool:
    """Whether ``x`` is a Python or NumPy integer (not a bool).

    Example:
      >>> is_integer(np.int64(3)), is_integer(True), is_integer(3.0)
      (True, False, False)
    """
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def check_steps(minimum: int = 0, **steps: Any) -> None:
    """Raises unless every named step count is an integer (Python or NumPy) >= ``minimum``.

    Example:
      >>> check_steps(begin_step=0, end_step=100)
      >>> check_steps(1, update_every=2.5)
      Traceback (most recent call last):
      ...
      TypeError: update_every must be an integer number of steps; got 2.5.
    """
    for name, value in steps.items():
        if not is_integer(value):
            raise TypeError(f"{name} must be an integer number of steps; got {value!r}.")
        if value < minimum:
            raise ValueError(f"{name} must be >= {minimum}; got {value}.")


def check_key(key: Any, name: str = "key") -> None:
    """Raises a TypeError unless ``key`` is a JAX random key: a typed key
    (``jax.random.key(0)``) or a raw ``uint32`` one (``jax.random.PRNGKey(0)``).

    Example:
      >>> check_key(jax.random.key(0))
      >>> check_key(0)
      Traceback (most recent call last):
      ...
      TypeError: key must be a JAX random key such as jax.random.key(0); got 0.
    """
    dtype, shape = getattr(key, "dtype", None), getattr(key, "shape", None)
    typed = dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)
    if typed and shape == ():
        return
    if not typed and dtype == jnp.uint32 and shape is not None and len(shape) == 1:
        return
    got = f"an array of shape {shape} and dtype {dtype}" if shape is not None else repr(key)
    raise TypeError(f"{name} must be a JAX random key such as jax.random.key(0); got {got}.")


def check_nm(n: Any, m: Any) -> tuple[int, int]:
    """``(n, m)`` as Python ints: a TypeError unless both are integers (Python or NumPy,
    not bools), a ValueError unless ``0 <= n <= m`` and ``m >= 1``.

    Example:
      >>> check_nm(np.int64(2), 4)
      (2, 4)
    """
    if not (is_integer(n) and is_integer(m)):
        raise TypeError(
            f"N:M needs integers n and m (keep n of every m entries); got n={n!r}, m={m!r}. "
            "Pass e.g. 2, 4."
        )
    if not (0 <= n <= m and m >= 1):
        raise ValueError(
            f"N:M needs integers 0 <= n <= m, m >= 1; got n={n!r}, m={m!r}. Pass e.g. 2, 4."
        )
    return int(n), int(m)
