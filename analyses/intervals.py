"""Intervals over seeds that a reviewer can accept: bounded means, and the gap closed.

:mod:`analyses.metrics` re-exports everything here; import from there.

**Confidence interval of a mean over seeds** (:func:`confidence_interval`): Student's t interval
``mean +- t_{(1+level)/2, n-1} * s / sqrt(n)`` (``s`` the sample standard deviation, ddof = 1,
of the ``n`` finite values; Wasserman, *All of Statistics*, sec. 10.6), **intersected with the
measure's range** when it has one (``bounds=(0, 1)`` for an accuracy, ``(-1, 1)`` for an
adjusted Rand index or a cosine similarity). Why this and not a bootstrap percentile interval:
our experiments have 2 to 5 seeds, and a percentile interval of ``n`` values can never be wider
than their range -- with 2 seeds it is ``[min, max]``, which covers the median of the seeds'
distribution only half the time, not 95 %. The t interval keeps its coverage at small ``n``,
and intersecting it with the range loses none of it: the true mean lies in the range, so
whenever the t interval covers it, so does the intersection. With fewer than 2 finite values
there is no spread to estimate: the interval is NaN, and ``reason`` says why.

**Gap closed** (:func:`gap_closed_interval`): ``(a - control) / (reference - control)`` of the
seed means, e.g. how much of the gap from a locally connected baseline (control) to a CNN
(reference) co-distillation (``a``) closes. A ratio whose denominator is within noise means
nothing, so the gap is reported only where the reference-control difference is significant: its
paired t interval (the per-seed differences, at the same ``level``) excludes 0; elsewhere the
gap is NaN with the reason. Its interval is a **paired bootstrap** over seeds: the seeds are
resampled with replacement (``n_resamples``, default 10,000, from ``numpy.random.default_rng(
seed)``), the same seeds for ``a``, ``control`` and ``reference`` (they are paired: one training
run of each model per seed), the ratio of the resampled means is taken, and its
``(1 - level) / 2`` and ``(1 + level) / 2`` percentiles are the interval (Efron & Tibshirani,
*An Introduction to the Bootstrap*, 1993, ch. 13). With few seeds it inherits the percentile
interval's optimism described above; read it with ``n``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "ACCURACY_BOUNDS",
    "ARI_BOUNDS",
    "COSINE_BOUNDS",
    "ConfidenceInterval",
    "confidence_interval",
    "interval_description",
    "mean_ci_text",
    "GapClosed",
    "gap_closed_interval",
    "PairedDifference",
    "paired_difference",
]

#: the range of an accuracy (or any fraction)
ACCURACY_BOUNDS = (0.0, 1.0)
#: the range of the adjusted Rand index as bounded here (1 for identical partitions)
ARI_BOUNDS = (-1.0, 1.0)
#: the range of a cosine similarity or a correlation
COSINE_BOUNDS = (-1.0, 1.0)
#: bootstrap resamples of :func:`gap_closed_interval`
N_RESAMPLES = 10_000

_NO_VALUE = "no finite value over seeds"
_ONE_VALUE = "n < 2 finite values over seeds: no spread to estimate"


def _np(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a numeric array; got {type(x).__name__}") from None


def _check_level(level: Any) -> float:
    if not isinstance(level, int | float) or isinstance(level, bool) or not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1); got {level!r}")
    return float(level)


def _check_bounds(bounds: Any) -> tuple[float, float] | None:
    if bounds is None:
        return None
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ValueError(f"bounds must be (low, high) with low < high; got {bounds!r}") from None
    if not lo < hi or np.isnan(lo) or np.isnan(hi):
        raise ValueError(f"bounds must be (low, high) with low < high; got {bounds!r}")
    return lo, hi


def _attrs_bounds(values: Any) -> tuple[float, float] | None:
    """``(valid_min, valid_max)`` of a DataArray's attrs (the CF attributes), else None."""
    attrs = getattr(values, "attrs", {})
    if "valid_min" in attrs and "valid_max" in attrs:
        return float(attrs["valid_min"]), float(attrs["valid_max"])
    return None


def _bounds_text(bounds: tuple[float, float] | None) -> str:
    if bounds is None:
        return ""
    lo, hi = (f"{b:g}" for b in bounds)
    return f", clipped to [{lo}, {hi}]"


def interval_description(
    n: Any, *, level: float = 0.95, bounds: tuple[float, float] | None = None
) -> str:
    """What an interval of :func:`confidence_interval` is, for a table header or an attribute.

    Args:
        n: seeds (an int, or an array of per-cell counts: their range is given).
        level: confidence level in (0, 1).
        bounds: the measure's range the interval was clipped to, or None.

    Returns:
        e.g. ``"95 % t CI over 3 seeds, clipped to [0, 1]"``.
    """
    arr = np.asarray(n)
    lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
    count = f"{lo}" if lo == hi else f"{lo}-{hi}"
    seeds = "seed" if hi == 1 else "seeds"
    return f"{100 * level:g} % t CI over {count} {seeds}{_bounds_text(_check_bounds(bounds))}"


class ConfidenceInterval(NamedTuple):
    """Mean and confidence interval; arrays of the input shape without the reduced axis.

    Attributes:
        mean: the mean of the finite values (NaN where n = 0).
        low, high: the interval, within ``bounds`` when given (NaN where n < 2: the spread is
            unknown, so no interval is claimed; matplotlib's ``errorbar`` draws no bar for
            NaN).
        half_width: the t half-width before clipping (NaN where n < 2); ``low`` and ``high``
            are ``mean -+ half_width`` when no bound cuts them.
        n: finite values per cell.
        method: the kind of interval, e.g. ``"95 % Student-t CI of the mean, clipped to [0,
            1]"`` (one string for all cells).
        reason: why a cell has no interval (``""`` where it has one), a str or an array of
            str of the cells' shape.
    """

    mean: Any
    low: Any
    high: Any
    half_width: Any
    n: Any
    method: str
    reason: Any


def confidence_interval(
    values: Any,
    axis: int | str = -1,
    level: float = 0.95,
    *,
    bounds: tuple[float, float] | None = None,
) -> ConfidenceInterval:
    """Confidence interval of the mean along ``axis`` (e.g. over seeds), within a range.

    Student's t interval, intersected with ``bounds`` (see the module docstring for why);
    NaNs are ignored (``n`` counts finite values per cell).

    Args:
        values: array ``[..., n, ...]`` or an ``xarray.DataArray``; then ``axis`` may be a dim
            name (e.g. ``"seed"``) and the fields are DataArrays without that dim.
        axis: the axis (or dim name) to reduce.
        level: confidence level in (0, 1).
        bounds: ``(low, high)``, the measure's range (:data:`ACCURACY_BOUNDS`,
            :data:`ARI_BOUNDS`, :data:`COSINE_BOUNDS`); the interval is clipped to it and the
            values must lie in it. Default: a DataArray's ``valid_min`` / ``valid_max``
            attributes when it has both, else unbounded (the plain t interval).

    Returns:
        ConfidenceInterval(mean, low, high, half_width, n, method, reason).

    Raises:
        ValueError: for a bad ``axis``, ``level`` or ``bounds``, or values outside ``bounds``.
    """
    from scipy.special import stdtrit  # Student-t quantile; lighter to import than scipy.stats

    level = _check_level(level)
    bounds = _check_bounds(_attrs_bounds(values) if bounds is None else bounds)
    is_xr, ax, arr = _reduction_array(values, axis)
    finite = np.isfinite(arr)
    if bounds is not None:
        _check_within(arr[finite], bounds)
    n = finite.sum(axis=ax)
    filled = np.where(finite, arr, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, filled.sum(axis=ax) / np.maximum(n, 1), np.nan)
        dev = np.where(finite, arr - np.expand_dims(mean, ax), 0.0)
        var = (dev**2).sum(axis=ax) / np.maximum(n - 1, 1)
        tq = stdtrit(np.maximum(n - 1, 1), (1.0 + level) / 2.0)
        half = np.where(n > 1, tq * np.sqrt(var / np.maximum(n, 1)), np.nan)
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = np.clip(low, *bounds), np.clip(high, *bounds)
    reason = np.where(n > 1, "", np.where(n == 1, _ONE_VALUE, _NO_VALUE))
    method = f"{100 * level:g} % Student-t CI of the mean{_bounds_text(bounds)}"
    fields: list[Any] = [mean, low, high, half, n, reason]
    if is_xr:
        fields = _as_dataarrays(fields, values, ax % arr.ndim)
    elif mean.ndim == 0:
        fields = [float(f) for f in fields[:4]] + [int(fields[4]), str(fields[5])]
    return ConfidenceInterval(*fields[:5], method, fields[5])


def _reduction_array(values: Any, axis: int | str) -> tuple[bool, int, np.ndarray]:
    """Whether ``values`` is a DataArray, the integer axis to reduce and the numpy values."""
    is_xr = hasattr(values, "dims") and hasattr(values, "get_axis_num")
    if is_xr:
        if isinstance(axis, str) and axis not in values.dims:
            raise ValueError(f"axis must be one of the dims {list(values.dims)}; got {axis!r}")
        ax = values.get_axis_num(axis) if isinstance(axis, str) else axis
        arr = _np(values.values, "values")
    else:
        if isinstance(axis, str):
            raise ValueError("axis may be a dim name only for an xarray.DataArray")
        ax = axis
        arr = _np(values, "values")
    if arr.ndim == 0:
        raise ValueError("values must have at least one dimension")
    if not -arr.ndim <= ax < arr.ndim:
        raise ValueError(f"axis must be in [{-arr.ndim}, {arr.ndim - 1}]; got {axis!r}")
    return is_xr, ax, arr


def _check_within(fin: np.ndarray, bounds: tuple[float, float]) -> None:
    """Raise ``ValueError`` when a finite value lies outside ``bounds`` (beyond rounding)."""
    tol = 1e-9 * (bounds[1] - bounds[0])
    if fin.size and (fin.min() < bounds[0] - tol or fin.max() > bounds[1] + tol):
        raise ValueError(
            f"values must lie in bounds [{bounds[0]:g}, {bounds[1]:g}]; found "
            f"[{fin.min():.6g}, {fin.max():.6g}]"
        )


def _as_dataarrays(fields: list[Any], values: Any, ax: int) -> list[Any]:
    """The fields as DataArrays with the dims and coords of ``values`` less dim ``ax``."""
    import xarray as xr

    dims = [d for i, d in enumerate(values.dims) if i != ax]
    coords = {k: v for k, v in values.coords.items() if values.dims[ax] not in v.dims}
    return [xr.DataArray(f, dims=dims, coords=coords) for f in fields]


def mean_ci_text(
    values: Any,
    axis: int | str = "seed",
    *,
    bounds: tuple[float, float] | None = None,
    level: float = 0.95,
    kind: bool = True,
) -> str:
    """The mean and its interval over ``axis`` as text, saying what the interval is.

    Args:
        values: one cell's values over the seeds, an ``xarray.DataArray`` (or a 1-d array); its
            ``valid_min`` / ``valid_max`` attrs are the default bounds (as in
            :func:`confidence_interval`).
        axis: dim name (or axis) of the seeds.
        bounds: the measure's range, as in :func:`confidence_interval`.
        level: confidence level.
        kind: append what the interval is (for a table, print :func:`interval_description`
            once in its header and pass ``kind=False``).

    Returns:
        ``"+0.200 [+0.071, +0.329] (95 % t CI over 3 seeds, clipped to [0, 1])"``;
        ``"+0.500 (1 seed: no CI)"`` when one finite value gives no interval; ``"nan"`` when
        there is none.
    """
    ci = confidence_interval(values, axis=axis, level=level, bounds=bounds)
    m, lo, hi, n = float(ci.mean), float(ci.low), float(ci.high), int(ci.n)
    if not np.isfinite(m):
        return "nan"
    if not np.isfinite(lo):
        return f"{m:+.3f} ({n} seed: no CI)"
    text = f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}]"
    if kind:
        used = bounds if bounds is not None else _attrs_bounds(values)
        text += f" ({interval_description(n, level=level, bounds=used)})"
    return text


class GapClosed(NamedTuple):
    """The gap closed and its paired-bootstrap interval; arrays of the cells' shape.

    Attributes:
        value: ``(mean a - mean control) / (mean reference - mean control)``; NaN where the
            reference-control difference is not significant or n < 2.
        low, high: the bootstrap percentile interval of ``value`` (NaN where ``value`` is).
        difference_low, difference_high: the paired t interval of ``reference - control``
            (NaN where n < 2): the significance test of the denominator.
        n: seeds where all three are finite (the pairs used).
        method: how the interval was made (one string for all cells).
        reason: why a cell has no value (``""`` where it has one).
    """

    value: Any
    low: Any
    high: Any
    difference_low: Any
    difference_high: Any
    n: Any
    method: str
    reason: Any


def _as_last_axis(x: Any, axis: int | str, name: str):
    """``x`` with the seed axis last: a DataArray (``axis`` a dim name) or a numpy array."""
    if hasattr(x, "dims") and hasattr(x, "get_axis_num"):
        if axis not in x.dims:
            raise ValueError(f"axis must be one of the dims of {name} {list(x.dims)}; got {axis!r}")
        return x.transpose(..., axis)
    if isinstance(axis, str):
        raise ValueError("axis may be a dim name only for xarray.DataArray inputs")
    arr = _np(x, name)
    return np.moveaxis(arr, axis, -1) if arr.ndim else arr


def gap_closed_interval(
    a: Any,
    control: Any,
    reference: Any,
    *,
    axis: int | str = -1,
    level: float = 0.95,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> GapClosed:
    """How much of the gap from ``control`` to ``reference`` ``a`` closes, with an interval.

    ``(mean a - mean control) / (mean reference - mean control)`` over the seeds where all
    three are finite, reported only where ``reference - control`` is significant (its paired
    t interval at ``level`` excludes 0), with a paired-bootstrap percentile interval over
    seeds; see the module docstring. A call for the flagship's accuracies::

        acc = ds["accuracy"]  # [model, retina, n_train, seed]
        gap = gap_closed_interval(
            acc.sel(model="codistill"), acc.sel(model="lc-backprop"), acc.sel(model="cnn"),
            axis="seed",
        )  # gap.value, gap.low, gap.high, gap.reason: DataArrays [retina, n_train]

    Args:
        a, control, reference: per-seed values paired along ``axis`` (the same seeds in the
            same order), arrays or DataArrays that broadcast against each other (a scalar
            ``control`` such as 0 is allowed: then the gap is ``a / reference``).
        axis: the seed axis (a dim name for DataArrays).
        level: confidence level of both intervals, in (0, 1).
        n_resamples: bootstrap resamples (>= 100).
        seed: seed of the resampling (``numpy.random.default_rng``); each cell uses its own
            generator from it, so a cell's interval does not depend on the other cells.

    Returns:
        :class:`GapClosed`; floats for 1-d inputs, else arrays (DataArrays for DataArray
        inputs) of the broadcast shape without the seed axis.
    """
    from neurosim.config import check_int, check_seed

    level = _check_level(level)
    n_resamples = check_int("n_resamples", n_resamples, 100)
    check_seed("seed", seed)
    (x_a, x_c, x_r), wrap = _seed_last(a, control, reference, axis)
    cells = x_a.shape[:-1]
    fields = [np.full(cells, np.nan) for _ in range(5)] + [
        np.zeros(cells, np.int64),
        np.full(cells, "", dtype=object),
    ]
    for cell in np.ndindex(cells):
        values = _gap_cell(x_a[cell], x_c[cell], x_r[cell], level, n_resamples, seed)
        for field, v in zip(fields, values, strict=True):
            field[cell] = v
    method = (
        f"gap closed (a - control) / (reference - control) of seed means; {100 * level:g} % "
        f"paired bootstrap percentile CI over seeds ({n_resamples} resamples, rng seed {seed}); "
        f"NaN unless the {100 * level:g} % paired t CI of reference - control excludes 0"
    )
    fields[6] = fields[6].astype(str)
    if wrap is not None:
        fields = [wrap(f) for f in fields]
    elif not cells:
        fields = [float(f) for f in fields[:5]] + [int(fields[5]), str(fields[6])]
    return GapClosed(*fields[:6], method, fields[6])


def _seed_last(a: Any, control: Any, reference: Any, axis: int | str):
    """The three inputs as float64 arrays ``[..., n]`` broadcast together, the seed axis last,
    and a function wrapping a ``[...]`` result as a DataArray (None for numpy inputs)."""
    named = ((a, "a"), (control, "control"), (reference, "reference"))
    if not any(hasattr(v, "dims") and hasattr(v, "get_axis_num") for v, _ in named):
        arrays = np.broadcast_arrays(*(_as_last_axis(v, axis, name) for v, name in named))
        if arrays[0].ndim == 0:
            raise ValueError("a, control and reference must have a seed axis")
        return arrays, None
    import xarray as xr

    if not isinstance(axis, str):
        raise ValueError(f"axis must be a dim name for DataArray inputs; got {axis!r}")
    for v, name in named:
        if not hasattr(v, "dims") and np.ndim(v) != 0:
            raise ValueError(f"{name} must be a DataArray or a scalar when another one is")
    parts = [
        _as_last_axis(v, axis, name).reset_coords(drop=True)
        if hasattr(v, "dims")
        else xr.DataArray(float(v))
        for v, name in named
    ]
    parts = [p.transpose(..., axis) for p in xr.broadcast(*parts)]
    dims = parts[0].dims[:-1]
    coords = {k: v for k, v in parts[0].coords.items() if k != axis}
    arrays = [np.asarray(p.values, dtype=np.float64) for p in parts]
    return arrays, lambda f: xr.DataArray(f, dims=dims, coords=coords)


def _gap_cell(va, vc, vr, level: float, n_resamples: int, seed: int) -> tuple:
    """One cell of :func:`gap_closed_interval` from its per-seed values ``[n]``:
    ``(value, low, high, difference_low, difference_high, n, reason)``."""
    from scipy.special import stdtrit

    nan = float("nan")
    ok = np.isfinite(va) & np.isfinite(vc) & np.isfinite(vr)
    va, vc, vr = va[ok], vc[ok], vr[ok]
    n = int(ok.sum())
    if n < 2:
        return nan, nan, nan, nan, nan, n, f"n = {n} < 2 seeds with all three values: no interval"
    d = vr - vc
    half = stdtrit(n - 1, (1 + level) / 2) * d.std(ddof=1) / np.sqrt(n)
    d_lo, d_hi = d.mean() - half, d.mean() + half
    if d_lo <= 0.0 <= d_hi:
        reason = (
            f"reference - control not significant: its {100 * level:g} % paired t CI "
            f"[{d_lo:+.3g}, {d_hi:+.3g}] over {n} seeds includes 0"
        )
        return nan, nan, nan, d_lo, d_hi, n, reason
    value = (va.mean() - vc.mean()) / d.mean()
    # paired: one draw of seed indices for all three; the ratio of the resampled means
    idx = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))
    num = va[idx].mean(axis=1) - vc[idx].mean(axis=1)
    den = d[idx].mean(axis=1)
    ratio = np.divide(num, den, out=np.full(n_resamples, np.nan), where=den != 0)
    low, high = np.nanpercentile(ratio, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return value, low, high, d_lo, d_hi, n, ""


class PairedDifference(NamedTuple):
    """The mean of ``a - b`` over paired seeds with its Student-t interval.

    Attributes:
        mean, low, high: the mean difference and its interval (NaN where n < 2).
        n: the pairs where both are finite.
        method: how the interval was made.
    """

    mean: Any
    low: Any
    high: Any
    n: Any
    method: str


def paired_difference(
    a: Any, b: Any, *, axis: int | str = -1, level: float = 0.95
) -> PairedDifference:
    """``a - b`` paired along the seed ``axis``: its mean and ``level`` Student-t interval.

    The difference of two accuracies lies in [-1, 1]; the interval is clipped there. Pairing
    removes what the seeds share (the same data order and test set), so a small difference can
    be significant when the seeds agree on it.

    Args:
        a, b: per-seed values paired along ``axis`` (DataArrays with a dim name, or arrays).
        axis: the seed axis.
        level: confidence level in (0, 1).

    Returns:
        :class:`PairedDifference` (floats for 1-d inputs, else arrays / DataArrays).
    """
    (x_a, x_b, _), wrap = _seed_last(a, b, 0.0, axis)
    d = x_a - x_b
    ci = confidence_interval(d, axis=-1, level=level, bounds=(-1.0, 1.0))
    fields = [np.asarray(ci.mean), np.asarray(ci.low), np.asarray(ci.high), np.asarray(ci.n)]
    if wrap is not None:
        fields = [wrap(f) for f in fields]
    elif fields[0].ndim == 0:
        fields = [float(f) for f in fields[:3]] + [int(fields[3])]
    return PairedDifference(*fields, f"paired {ci.method} of the per-seed differences")
