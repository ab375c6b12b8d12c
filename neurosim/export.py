"""Results -> xarray Dataset -> NetCDF (h5netcdf), with provenance attributes, written atomically.

Every results file neurosim writes carries, as global attributes:

``neurosim_version``, ``git_commit``, ``created_utc``, ``torch_version``, ``brian2_version``,
``numpy_version``, ``xarray_version``, ``python_version``, ``config_toml`` (the full config as
TOML text, when given), ``seed`` (when given) and ``experiment`` (when given).

Per-variable ``units`` and ``long_name`` are the caller's job (experiments set them);
:func:`check_variable_attrs` verifies them.
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
from neurosim.config import Config

__all__ = [
    "provenance",
    "to_netcdf",
    "open_results",
    "check_variable_attrs",
    "summarize",
]

ENGINE = "h5netcdf"


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
