"""Argument checks of the retina package: ``ValueError`` naming the argument and its range.

:func:`check_int` is a copy of :func:`neurosim.config.check_int` (same signature, same
message), not an import of it: nothing in ``retina/`` imports ``neurosim/`` (docs/DESIGN.md),
and importing ``neurosim.config`` runs ``neurosim/__init__``, which imports torch, which
``import retina`` must not need. ``tests/test_retina.py`` checks that the two agree.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np

__all__ = ["check_int", "check_number", "is_finite_number"]


def check_int(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    """Return ``value`` as a Python int if it is an integer in ``[lo, hi]``.

    numpy integers are accepted (``operator.index``), bools and floats are not (``1.0`` and
    ``True`` are rejected). ``None`` for a bound means unbounded on that side.

    Args:
        name: the argument's name, used in the message.
        value: the value to check.
        lo: smallest allowed value, or None.
        hi: largest allowed value, or None.

    Returns:
        ``value`` as an int.

    Raises:
        ValueError: naming ``name`` and the allowed range, e.g.
            ``"seed must be an integer in [0, 2147483647]; got -1"``.
    """
    out = None
    if not isinstance(value, bool) and not (hasattr(value, "dtype") and value.dtype == bool):
        try:
            out = operator.index(value)
        except TypeError:
            out = None
    if out is None or (lo is not None and out < lo) or (hi is not None and out > hi):
        if hi is None:
            allowed = "an integer" if lo is None else f"an integer >= {lo}"
        elif lo is None:
            allowed = f"an integer <= {hi}"
        else:
            allowed = f"an integer in [{lo}, {hi}]"
        raise ValueError(f"{name} must be {allowed}; got {value!r}")
    return out


def is_finite_number(value: Any) -> bool:
    """True for a finite real number (Python or numpy scalar), False for bools and the rest."""
    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, (bool, np.bool_))
        and math.isfinite(float(value))
    )


def check_number(
    name: str,
    value: Any,
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_inclusive: bool = True,
    hi_inclusive: bool = True,
) -> float:
    """Return ``value`` as a float if it is a finite number in the given interval.

    Args:
        name: the argument's name, used in the message.
        value: the value to check.
        lo: lower bound, or None (unbounded).
        hi: upper bound, or None (unbounded).
        lo_inclusive: whether ``lo`` itself is allowed.
        hi_inclusive: whether ``hi`` itself is allowed.

    Returns:
        ``value`` as a float.

    Raises:
        ValueError: naming ``name`` and the interval, e.g.
            ``"pixels_per_deg must be a finite number in (0, inf); got 0.0"``.
    """
    ok = is_finite_number(value)
    if ok and lo is not None:
        ok = value >= lo if lo_inclusive else value > lo
    if ok and hi is not None:
        ok = value <= hi if hi_inclusive else value < hi
    if not ok:
        left = "(-inf" if lo is None else ("[" if lo_inclusive else "(") + f"{lo:g}"
        right = "inf)" if hi is None else f"{hi:g}" + ("]" if hi_inclusive else ")")
        raise ValueError(f"{name} must be a finite number in {left}, {right}; got {value!r}")
    return float(value)
