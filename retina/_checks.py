"""Argument checks of the retina package: ``ValueError`` naming the argument and its range.

The generic checks (:func:`check_int`, :func:`check_number`) and those of the
:class:`retina.Retina` constructors (geometry, receptive fields, seed).

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

__all__ = [
    "MAX_SEED",
    "MIN_CELLS",
    "KINDS",
    "check_int",
    "check_number",
    "is_finite_number",
    "check_image_shape",
    "check_fixation",
    "check_geometry",
    "check_receptive_fields",
    "check_seed",
    "largest_fov_deg",
]

#: the largest seed (the bound of every seed in the project, ``neurosim.config.check_seed``)
MAX_SEED = 2**31 - 1
#: the smallest retina: 4 sites (8 cells) so that every site has neighbours to set its spacing
MIN_CELLS = 8
#: the constructors' kinds of retina (``kind`` of :class:`retina.Retina`)
KINDS = ("uniform", "foveated", "custom")


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


def check_image_shape(image_shape) -> tuple[int, int]:
    """``(H, W)`` as two ints >= 2, else ``ValueError`` naming ``image_shape``."""
    if not isinstance(image_shape, (tuple, list)) or len(image_shape) != 2:
        raise ValueError(f"image_shape must be (H, W) with integers >= 2; got {image_shape!r}")
    return (
        check_int("image_shape[0] (H)", image_shape[0], 2),
        check_int("image_shape[1] (W)", image_shape[1], 2),
    )


def check_fixation(fixation_px, shape: tuple[int, int]) -> tuple[float, float]:
    """``(x_px, y_px)`` of fixation inside an image of ``shape = (H, W)``; None -> the centre."""
    H, W = shape
    if fixation_px is None:
        return ((W - 1) / 2.0, (H - 1) / 2.0)
    if (
        not isinstance(fixation_px, (tuple, list, np.ndarray))
        or len(fixation_px) != 2
        or not all(is_finite_number(v) for v in fixation_px)
    ):
        raise ValueError(
            f"fixation_px must be (x_px, y_px), two finite numbers; got {fixation_px!r}"
        )
    fx, fy = float(fixation_px[0]), float(fixation_px[1])
    if not (-0.5 <= fx <= W - 0.5 and -0.5 <= fy <= H - 0.5):
        raise ValueError(
            f"fixation_px must lie inside the image: x_px in [-0.5, {W - 0.5}], "
            f"y_px in [-0.5, {H - 0.5}]; got {(fx, fy)}"
        )
    return fx, fy


def check_geometry(n_cells, fov_deg, image_shape, pixels_per_deg, fixation_px):
    """Validate and normalise a retina's geometry; ``ValueError`` names the bad argument.

    Returns:
        ``((H, W), (x_px, y_px))``: the image shape and the fixation.
    """
    shape = check_image_shape(image_shape)
    check_number("pixels_per_deg", pixels_per_deg, 0.0, None, lo_inclusive=False)
    fx, fy = check_fixation(fixation_px, shape)
    check_number("fov_deg", fov_deg, 0.0, None, lo_inclusive=False)
    max_fov = largest_fov_deg(shape, pixels_per_deg, (fx, fy))
    if fov_deg > max_fov * (1 + 1e-9):
        raise ValueError(
            f"fov_deg must fit in the image around fixation: at most {max_fov:.6g} deg for "
            f"image_shape {shape}, pixels_per_deg {pixels_per_deg:g} and fixation_px "
            f"{(fx, fy)}; got {fov_deg!r}"
        )
    max_cells = 2 * int((fov_deg * pixels_per_deg) ** 2)
    try:
        n = check_int("n_cells", n_cells, MIN_CELLS, max_cells)
    except ValueError:
        n = None
    if n is None or n % 2:
        raise ValueError(
            f"n_cells must be an even integer in [{MIN_CELLS}, {max_cells}] for this field "
            f"(one ON and one OFF cell per site, at most one site per pixel of the "
            f"{fov_deg:g} deg field); got {n_cells!r}"
        )
    return shape, (fx, fy)


def check_receptive_fields(
    center_sigma_per_spacing,
    surround_radius_ratio,
    surround_weight,
    truncate,
    coarse_sigma_px,
    render_regularization,
    render_iterations,
) -> None:
    """Validate the receptive-field and render arguments of :class:`Retina`."""
    for name, value, lo, hi in (
        ("center_sigma_per_spacing", center_sigma_per_spacing, 0.05, 5.0),
        ("surround_radius_ratio", surround_radius_ratio, 1.0, 20.0),
        ("surround_weight", surround_weight, 0.0, 1.0),
        ("truncate", truncate, 1.0, 6.0),
        ("render_regularization", render_regularization, 1e-12, 1.0),
    ):
        check_number(name, value, lo, hi)
    if coarse_sigma_px is not None:
        check_number("coarse_sigma_px (or None)", coarse_sigma_px, 0.5, 100.0)
    check_int("render_iterations", render_iterations, 1)


def check_seed(seed) -> int:
    """``seed`` as an int in ``[0, MAX_SEED]``, else ``ValueError`` naming it and the range."""
    return check_int("seed", seed, 0, MAX_SEED)


def largest_fov_deg(image_shape, pixels_per_deg, fixation_px=None) -> float:
    """Side (deg) of the largest square field around fixation inside the image; see
    :meth:`retina.Retina.largest_fov_deg`."""
    H, W = check_image_shape(image_shape)
    check_number("pixels_per_deg", pixels_per_deg, 0.0, None, lo_inclusive=False)
    fx, fy = check_fixation(fixation_px, (H, W))
    room_px = min(fx + 0.5, W - 0.5 - fx, fy + 0.5, H - 0.5 - fy)
    return 2.0 * room_px / pixels_per_deg
