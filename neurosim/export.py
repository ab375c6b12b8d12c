"""Results -> xarray Dataset -> NetCDF (h5netcdf), with provenance attributes, written atomically.

Every results file neurosim writes carries, as global attributes:

``neurosim_version``, ``git_commit``, ``created_utc``, ``torch_version``, ``brian2_version``,
``numpy_version``, ``xarray_version``, ``python_version``, ``config_toml`` (the full config as
TOML text, when given), ``seed`` (when given) and ``experiment`` (when given).

Per-variable ``units`` and ``long_name`` are the caller's job (experiments set them);
:func:`check_variable_attrs` verifies them.

State trajectories, of the torch engine (:class:`neurosim.model.Settled`) and of the Brian2 one
(:meth:`neurosim.brian.BrianNetwork.run`) alike, become Datasets through one function,
:func:`trajectory_dataset` (or :func:`settled_dataset` for a ``Settled`` and its model), with
dims ``(time, stimulus, column, level, unit)`` and the columns' positions as coords.
"""

from __future__ import annotations

import datetime as _dt
import functools
import importlib.metadata
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from neurosim.atomic import atomic_path
from neurosim.config import Config, check_int, check_range

__all__ = [
    "STATE_DIMS",
    "trajectory_dataset",
    "settled_dataset",
    "provenance",
    "to_netcdf",
    "open_results",
    "check_variable_attrs",
    "summarize",
]

ENGINE = "h5netcdf"

#: dims of a state trajectory Dataset, in this order (time first, as ``Settled.trajectory``)
STATE_DIMS = ("time", "stimulus", "column", "level", "unit")


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


@functools.lru_cache(maxsize=1)
def _git_commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if out.returncode != 0:
        return "unknown"
    commit = out.stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=here,
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    )
    return commit + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def provenance(
    *,
    config: Config | None = None,
    seed: int | None = None,
    experiment: str | None = None,
) -> dict[str, Any]:
    """Global attributes describing how a result was made (all values are str or int)."""
    attrs: dict[str, Any] = {
        "neurosim_version": _version("neurosim"),
        "git_commit": _git_commit(),
        "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "torch_version": _version("torch"),
        "brian2_version": _version("brian2"),
        "numpy_version": np.__version__,
        "xarray_version": xr.__version__,
        "python_version": platform.python_version(),
    }
    if config is not None:
        attrs["config_toml"] = config.to_toml()
        attrs["config_class"] = type(config).__qualname__
    if seed is not None:
        attrs["seed"] = int(seed)
    if experiment is not None:
        attrs["experiment"] = experiment
    return attrs


def _netcdf_safe_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in attrs.items():
        if isinstance(value, bool):
            value = int(value)
        elif isinstance(value, (list, tuple)):
            value = np.asarray(value)
        elif value is None:
            value = "none"
        out[key] = value
    return out


def to_netcdf(
    ds: xr.Dataset,
    path: str | Path,
    *,
    config: Config | None = None,
    seed: int | None = None,
    experiment: str | None = None,
) -> Path:
    """Write ``ds`` to ``path`` (NetCDF4 via h5netcdf) atomically, adding provenance attrs.

    Existing attrs of ``ds`` are kept; provenance keys are added (or overwritten). Boolean
    attributes become ints and ``None`` becomes ``"none"`` so that the file is valid NetCDF.
    Returns the path written.
    """
    path = Path(path)
    out = ds.copy()
    out.attrs = _netcdf_safe_attrs(
        {**ds.attrs, **provenance(config=config, seed=seed, experiment=experiment)}
    )
    for name in list(out.variables):
        out[name].attrs = _netcdf_safe_attrs(dict(out[name].attrs))
    with atomic_path(path) as tmp:
        out.to_netcdf(tmp, engine=ENGINE, invalid_netcdf=False)
    return path


def open_results(path: str | Path) -> xr.Dataset:
    """Load a results file fully into memory (the file is closed on return)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"results file {str(path)!r} does not exist")
    return xr.load_dataset(path, engine=ENGINE)


def check_variable_attrs(ds: xr.Dataset) -> list[str]:
    """Names of data variables missing a ``units`` or ``long_name`` attribute."""
    return [
        name
        for name, var in ds.data_vars.items()
        if "units" not in var.attrs or "long_name" not in var.attrs
    ]


def summarize(ds: xr.Dataset, *, max_values: int = 8) -> str:
    """A plain-text summary of any results Dataset: provenance, dims, variables with ranges."""
    lines = []
    exp = ds.attrs.get("experiment", "?")
    lines.append(f"experiment: {exp}")
    for key in ("created_utc", "neurosim_version", "git_commit", "seed"):
        if key in ds.attrs:
            lines.append(f"{key}: {ds.attrs[key]}")
    lines.append("dims: " + ", ".join(f"{k}={v}" for k, v in ds.sizes.items()))
    for name, coord in ds.coords.items():
        if coord.ndim == 1 and coord.size <= max_values and coord.dtype.kind in "UOSifb":
            values = ", ".join(str(v) for v in coord.values.tolist())
            lines.append(f"  {name}: {values}")
    lines.append("variables:")
    width = max((len(str(n)) for n in ds.data_vars), default=4)
    for name, var in ds.data_vars.items():
        dims = "(" + ", ".join(map(str, var.dims)) + ")"
        units = var.attrs.get("units", "")
        if var.dtype.kind in "iuf" and var.size:
            values = np.asarray(var.values, dtype=float)
            finite = values[np.isfinite(values)]
            if finite.size:
                rng = f"min {finite.min():.4g}  mean {finite.mean():.4g}  max {finite.max():.4g}"
            else:
                rng = "no finite values"
        else:
            rng = f"dtype {var.dtype}"
        lines.append(f"  {str(name):<{width}} {dims:<32} [{units}]  {rng}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- state trajectories
def _float_array(name: str, values: Any) -> np.ndarray:
    """A torch tensor (any device, with or without grad) or array-like as a float numpy array.

    The dtype is kept (float32 stays float32), so the Dataset holds the tensor's values exactly.
    """
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values)
    if arr.dtype.kind != "f":
        raise ValueError(f"{name} must hold floating-point values; got dtype {arr.dtype}")
    return arr


def _level_dims(level_dims: Any, n_levels: int, dim: int) -> tuple[int, ...]:
    """``level_dims`` checked against the state's ``[..., n_levels, dim]``; None: all ``dim``."""
    if level_dims is None:
        return (dim,) * n_levels
    dims = tuple(level_dims)
    if len(dims) != n_levels:
        raise ValueError(
            f"level_dims must have one size per level ({n_levels}); got {len(dims)}: {dims}"
        )
    return tuple(check_int(f"level_dims[{lv}]", d, 1, dim) for lv, d in enumerate(dims))


def _state_variable(
    name: str, values: np.ndarray, dims: tuple[str, ...], long_name: str, ragged: bool
) -> xr.DataArray:
    """One state-shaped variable with its attrs (and the padding documented when ragged)."""
    attrs = {"units": "1", "long_name": long_name}
    if ragged:
        attrs["padding"] = (
            "levels have different sizes (coord level_dim); entries where level_mask is False "
            "are zero padding, not values of the model"
        )
    return xr.DataArray(values, dims=dims, attrs=attrs, name=name)


def _state_coords(
    pos: np.ndarray,
    dims: tuple[int, ...],
    mask: np.ndarray,
    n_stimuli: int,
    times: tuple[int, int, float],
    *,
    with_steps: bool,
) -> dict[str, Any]:
    """Coords of a state Dataset: time (steps and ms), columns (deg), levels and their padding.

    ``pos [C, 2]`` (deg), ``dims`` (one size per level), ``mask [L, D]``; ``times = (first
    step, number of times, dt_ms)``; ``with_steps``: also the ``step`` dim of per-step terms
    (one fewer than the times).
    """
    first, n_t, dt_ms = times
    steps = first + np.arange(n_t)
    step_attrs = {"units": "1", "long_name": "Euler step index"}
    coords: dict[str, Any] = {
        "time": ("time", steps, step_attrs),
        "time_ms": ("time", steps * dt_ms, {"units": "ms", "long_name": "time from the start"}),
        "stimulus": np.arange(n_stimuli),
        "column": np.arange(pos.shape[0]),
        "level": np.arange(mask.shape[0]),
        "unit": np.arange(mask.shape[1]),
        "x_deg": ("column", pos[:, 0], {"units": "deg", "long_name": "column x position"}),
        "y_deg": ("column", pos[:, 1], {"units": "deg", "long_name": "column y position"}),
        "ecc_deg": (
            "column",
            np.hypot(pos[:, 0], pos[:, 1]),
            {"units": "deg", "long_name": "column eccentricity"},
        ),
        "level_dim": (
            "level",
            np.asarray(dims, dtype=np.int64),
            {"units": "1", "long_name": "units a level uses (the rest is zero padding)"},
        ),
        "level_mask": (
            ("level", "unit"),
            mask,
            {"units": "1", "long_name": "True where the level has this unit"},
        ),
    }
    if with_steps:
        coords["step"] = ("step", steps[:-1], step_attrs)
        coords["step_time_ms"] = (
            "step",
            steps[:-1] * dt_ms,
            {"units": "ms", "long_name": "time of the state a step starts from"},
        )
    return coords


def trajectory_dataset(
    trajectory: Any,
    dt_ms: float,
    positions_deg: Any,
    *,
    level_dims: Any = None,
    name: str = "rate",
    long_name: str = "level embedding rate r",
    terms: dict[str, Any] | None = None,
    first_step: int = 0,
) -> xr.Dataset:
    """A state trajectory as a Dataset with dims ``(time, stimulus, column, level, unit)``.

    Args:
        trajectory: ``[T, B, C, L, D]``, numpy or torch (time first, as
            ``Settled.trajectory``; a single state ``[B, C, L, D]`` is ``state[None]``). Values
            are kept as they are (float32 stays float32).
        dt_ms: Euler step in ms; time ``t`` is at ``(first_step + t) * dt_ms`` ms.
        positions_deg: ``[C, 2]`` visual-field positions of the columns (``model.positions_deg``).
        level_dims: size of each level (``model.level_dims``); level ``l`` uses units
            ``[0, level_dims[l])`` and must be exactly zero beyond (the zero padding of a state
            whose levels have different sizes). Default: every level uses all ``D`` units.
        name, long_name: the state variable's name and ``long_name`` attribute.
        terms: optional per-step terms ``{name: [T - 1, B, C, L, D]}`` (e.g. ``bottom_up``),
            on a dim ``step``: step ``s`` is computed from the state at time ``s``.
        first_step: the step index of ``trajectory[0]`` (e.g. ``n_steps`` for a final state).

    Returns:
        Dataset with ``name (time, stimulus, column, level, unit)`` (and ``terms`` on
        ``(step, stimulus, column, level, unit)``), units ``"1"`` (rates are dimensionless) and
        a ``long_name`` on every variable. Coords: ``time`` (step index), ``time_ms (time)``,
        ``stimulus``, ``column``, ``level``, ``unit``, ``x_deg``, ``y_deg``, ``ecc_deg`` per
        column (deg), ``level_dim (level)`` and ``level_mask (level, unit)`` (True on the
        entries a level uses; with different level sizes the rest is zero padding, kept as
        zeros so that the values equal the tensor's). Attr ``dt_ms``.

    Raises:
        ValueError: a shape that does not match (naming the argument and the expected shape),
            a non-float trajectory, ``dt_ms`` not in (0, inf), non-zero padding.
    """
    traj = _trajectory_array(trajectory)
    n_t, n_b, n_c, n_lv, d = traj.shape
    dt_ms = _check_dt_ms(dt_ms)
    first_step = check_int("first_step", first_step, 0)
    pos = _column_positions(positions_deg, n_c)
    dims = _level_dims(level_dims, n_lv, d)
    mask = np.arange(d)[None, :] < np.asarray(dims)[:, None]  # [L, D]
    ragged = not mask.all()
    variables = {name: (traj, STATE_DIMS, long_name)}
    variables.update(_term_variables(terms, (n_t - 1, n_b, n_c, n_lv, d)))
    if ragged:
        _check_padding(variables, mask, dims)
    coords = _state_coords(pos, dims, mask, n_b, (first_step, n_t, dt_ms), with_steps=bool(terms))
    data = {
        key: _state_variable(key, arr, var_dims, text, ragged)
        for key, (arr, var_dims, text) in variables.items()
    }
    return xr.Dataset(data, coords=coords, attrs={"dt_ms": dt_ms})


def _trajectory_array(trajectory: Any) -> np.ndarray:
    """``trajectory`` as a float array ``[time, stimulus, column, level, unit]`` (checked)."""
    traj = _float_array("trajectory", trajectory)
    if traj.ndim != 5:
        raise ValueError(
            "trajectory must have shape [time, stimulus, column, level, unit]; got "
            f"{traj.shape} (one stimulus [T, C, L, D]: pass trajectory[:, None]; one state "
            "[B, C, L, D]: state[None])"
        )
    return traj


def _check_dt_ms(dt_ms: Any) -> float:
    """``dt_ms`` checked: a finite number of ms > 0 (numpy scalars as Python floats)."""
    if isinstance(dt_ms, (np.floating, np.integer)):
        dt_ms = float(dt_ms)
    check_range("dt_ms", dt_ms, 0, None, lo_inclusive=False)
    if dt_ms == float("inf"):
        raise ValueError(f"dt_ms must be finite; got {dt_ms!r}")
    return dt_ms


def _column_positions(positions_deg: Any, n_columns: int) -> np.ndarray:
    """``positions_deg`` as float64 ``[n_columns, 2]`` (checked against the trajectory)."""
    pos = _float_array("positions_deg", positions_deg).astype(np.float64)
    if pos.shape != (n_columns, 2):
        raise ValueError(
            f"positions_deg must have shape [{n_columns}, 2] (one (x, y) per column of the "
            f"trajectory); got {pos.shape}"
        )
    return pos


def _term_variables(
    terms: dict[str, Any] | None, shape: tuple[int, ...]
) -> dict[str, tuple[np.ndarray, tuple[str, ...], str]]:
    """The per-step ``terms`` as variables on dim ``step``, each checked to be ``shape``."""
    variables = {}
    for key, values in (terms or {}).items():
        arr = _float_array(f"terms[{key!r}]", values)
        if arr.shape != shape:
            raise ValueError(
                f"terms[{key!r}] must have shape {shape} (one step fewer "
                f"than the trajectory); got {arr.shape}"
            )
        variables[key] = (arr, ("step", *STATE_DIMS[1:]), f"{key} term of each Euler step")
    return variables


def _check_padding(
    variables: dict[str, tuple[np.ndarray, tuple[str, ...], str]],
    mask: np.ndarray,
    dims: tuple[int, ...],
) -> None:
    """Every variable checked to be zero where ``mask [L, D]`` is False (level padding)."""
    for key, (arr, _, _) in variables.items():
        if np.any(arr[..., ~mask]):
            raise ValueError(
                f"{key} must be zero on the padding of smaller levels (level l beyond unit "
                f"level_dims[l] = {dims}); got non-zero values there"
            )


def settled_dataset(
    settled: Any,
    model: Any,
    *,
    dt_ms: float | None = None,
    n_steps: int | None = None,
    name: str = "rate",
) -> xr.Dataset:
    """:func:`trajectory_dataset` of a :class:`neurosim.model.Settled` and the model it came from.

    Reads only ``settled.trajectory`` ``[n_steps + 1, B, C, L, D]`` or, when that is None
    (settled without ``"state"`` in ``record``), ``settled.state`` ``[B, C, L, D]`` as the one
    time ``n_steps``; and from the model ``positions_deg [C, 2]`` (deg), ``level_dims`` and
    ``config.dynamics.dt_ms``.

    Args:
        settled: the result of ``model.settle``.
        model: the :class:`neurosim.model.Model` that settled.
        dt_ms: Euler step in ms (default: the model's ``config.dynamics.dt_ms``).
        n_steps: with a final state only, the number of steps it was settled for (its time is
            ``n_steps * dt_ms``); required then, and ignored with a trajectory.
        name: the state variable's name.
    """
    if dt_ms is None:
        dt_ms = float(model.config.dynamics.dt_ms)
    traj = settled.trajectory
    first_step = 0
    if traj is None:
        if n_steps is None:
            raise ValueError(
                "n_steps must be given when settled.trajectory is None (settled without "
                "'state' in record): the final state's time is n_steps * dt_ms"
            )
        first_step = check_int("n_steps", n_steps, 0)
        traj = settled.state[None]
    ds = trajectory_dataset(
        traj,
        dt_ms,
        model.positions_deg,
        level_dims=model.level_dims,
        name=name,
        first_step=first_step,
    )
    steps = tuple(getattr(settled, "recorded_steps", ()) or ())
    if settled.trajectory is not None and len(steps) + 1 == ds.sizes["time"]:
        # a record spec with every=k keeps the initial state and every k-th step's
        t = np.array([0, *steps], dtype=ds["time"].dtype)
        time_attrs, ms_attrs = dict(ds["time"].attrs), dict(ds["time_ms"].attrs)
        ds = ds.assign_coords(time=t, time_ms=("time", t * float(dt_ms)))
        ds["time"].attrs, ds["time_ms"].attrs = time_attrs, ms_attrs
    return ds
