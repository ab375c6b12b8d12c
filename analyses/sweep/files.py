"""The sweep's state on disk: which runs are done, failed or still to do."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import xarray as xr

from analyses.subruns import first_difference
from analyses.sweep.spec import Run


def _local_io():
    """Context in which xarray uses process-local file locks, not Dask-distributed ones.

    With a distributed ``Client`` active (in the sweep's process, or inside a worker), xarray
    would take a scheduler-wide ``distributed.Lock`` for every NetCDF read and write, a round
    trip to the scheduler per file; sweep files are each written by one task, so a local lock
    is enough.
    """
    import dask

    return dask.config.set(scheduler="synchronous")


def _first_difference(a: Mapping[str, Any], b: Mapping[str, Any]) -> str | None:
    diff = first_difference(a, b)
    if diff is None:
        return None
    key, there, wanted = diff
    return f"{key}: file has {there!r}, the sweep wants {wanted!r}"


def run_status(run: Run, out_dir: str | Path, *, check_config: bool = True) -> str:
    """``"done"`` (the run's file exists and opens), ``"failed"`` (an error file) or ``"todo"``.

    With ``check_config``, a finished file made with a different config raises ``ValueError``
    naming the file and the first differing field.
    """
    path = run.nc_path(out_dir)
    if path.is_file():
        try:
            with _local_io(), xr.open_dataset(path, engine="h5netcdf") as ds:
                stored = ds.attrs.get("config_toml")
        except Exception:  # noqa: BLE001 - any unreadable file is simply redone
            stored = None
            opened = False
        else:
            opened = True
        if opened:
            if check_config and isinstance(stored, str):
                diff = _first_difference(tomllib.loads(stored), run.config.to_dict())
                if diff is not None:
                    raise ValueError(
                        f"{path} was made with a different config ({diff}); remove it or "
                        "use another --out"
                    )
            return "done"
    if run.error_path(out_dir).is_file():
        return "failed"
    return "todo"
