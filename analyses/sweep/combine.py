"""Combining a sweep's run files into one Dataset with one dimension per varied field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from analyses.sweep.files import _local_io, run_status
from analyses.sweep.spec import COMBINED_FILE, RUNS_DIR, Run, Sweep, _coord_values
from neurosim.export import open_results, to_netcdf


def combine_runs(sweep: Sweep, out_dir: str | Path, *, write: bool = True) -> xr.Dataset:
    """Combine the finished runs of ``sweep`` in ``out_dir`` into one Dataset.

    Dims: ``(*sweep.dims, *the runs' own dims)``; missing or failed runs are NaN, with
    ``completed = 0``. With ``write``, the result is written atomically to ``out_dir/sweep.nc``.
    """
    with _local_io():
        return _combine_runs(sweep, Path(out_dir), write=write)


_CONCAT = dict(
    data_vars="all", coords="different", compat="equals", join="outer",
    combine_attrs="drop_conflicts",
)  # fmt: skip


def _combine_runs(sweep: Sweep, out_dir: Path, *, write: bool) -> xr.Dataset:
    dims = sweep.dims
    done = [run for run in sweep.runs if run_status(run, out_dir) == "done"]
    if not done:
        raise ValueError(f"no finished runs of this sweep in {out_dir / RUNS_DIR}")
    datasets = [_open_run(sweep, run, out_dir) for run in done]
    own_seed = ["seed" in ds.dims for ds in datasets]
    if any(own_seed) and not all(own_seed):
        raise ValueError("some runs have a 'seed' dimension of their own and others do not")
    own_seed = all(own_seed)
    combined = _stack(sweep, _cells(done, datasets, own_seed), own_seed)
    combined = combined.transpose(*dims, ...)
    for name, values in sweep.zip.items():
        combined = combined.assign_coords({name: (sweep.zip_dim, _coord_values(values))})
    for name in combined.variables:
        combined[name].encoding = {}  # the runs' dtypes/fill values no longer fit (NaN holes)
    _add_completion(combined, sweep, done, datasets, own_seed)
    failed = [run.run_id for run in sweep.runs if run.error_path(out_dir).is_file()]
    combined.attrs.update(
        {
            "sweep_toml": sweep.text,
            "sweep_dims": " ".join(dims),
            "n_runs": len(sweep.runs),
            "n_completed": len(done),
            "failed_runs": " ".join(failed) or "none",
            "device": sweep.device,
            "quick": int(sweep.quick),
        }
    )
    for key in ("seed", "config_toml", "config_class", "run_id", "wall_time_s", "cpu_time_s"):
        combined.attrs.pop(key, None)
    if write:
        to_netcdf(combined, out_dir / COMBINED_FILE, experiment=sweep.experiment)
    return combined


def _open_run(sweep: Sweep, run: Run, out_dir: Path) -> xr.Dataset:
    """One finished run's results, without the variables that become sweep coordinates."""
    dims = sweep.dims
    ds = open_results(run.nc_path(out_dir))
    for name in dims[:-1]:  # the vary fields and the zip dim
        if name in ds.dims:
            raise ValueError(
                f"run {run.run_id}: its results already have a dimension {name!r}, which is "
                "also a sweep dimension"
            )
    return ds.drop_vars([n for n in (*dims[:-1], *sweep.zip) if n in ds.variables])


def _cells(done: list[Run], datasets: list[xr.Dataset], own_seed: bool):
    """``(grid position, dataset)`` pairs, one per point of the grid that has results.

    An experiment that runs seeds ``seed .. seed + n_seeds - 1`` itself (a ``seed`` dim in its
    results) has the runs of one grid point joined along that dim; otherwise the seed is part
    of the grid position.
    """
    if not own_seed:
        return [(run.index, ds) for run, ds in zip(done, datasets, strict=True)]
    groups: dict[tuple[int, ...], list[xr.Dataset]] = {}
    for run, ds in zip(done, datasets, strict=True):
        groups.setdefault(run.index[:-1], []).append(ds)
    cells = []
    for key, members in groups.items():
        joined = members[0] if len(members) == 1 else xr.concat(members, "seed", **_CONCAT)
        if joined.indexes["seed"].has_duplicates:
            raise ValueError(
                "the sweep's seeds overlap the seeds the experiment runs itself (seed .. "
                "seed + n_seeds - 1); space the sweep's seeds by n_seeds or set n_seeds = 1"
            )
        cells.append((key, joined))
    return cells


def _stack(sweep: Sweep, cells, own_seed: bool) -> xr.Dataset:
    """The cells stacked into one Dataset along the sweep's grid dims (NaN where missing)."""
    grid = sweep.dims[:-1] if own_seed else sweep.dims
    coords = sweep.coords()
    if not grid:
        combined = cells[0][1]
        return combined.sortby("seed") if own_seed else combined
    combined = xr.concat([ds for _, ds in cells], dim="_run", **_CONCAT)
    position = {d: [coords[d][key[i]] for key, _ in cells] for i, d in enumerate(grid)}
    combined = combined.assign_coords({d: ("_run", v) for d, v in position.items()})
    if len(grid) == 1:
        combined = combined.swap_dims({"_run": grid[0]})
    else:
        combined = combined.set_index(_run=grid).unstack("_run")
    combined = combined.reindex({d: coords[d] for d in grid})
    return combined.sortby("seed") if own_seed else combined


def _add_completion(combined, sweep: Sweep, done, datasets, own_seed: bool) -> None:
    """``completed`` and ``run_id`` over ``(*grid, seed)``; an own-seed run covers its seeds."""
    dims = sweep.dims
    coords = sweep.coords()
    seeds = combined["seed"].values.tolist()
    outer = dims[:-1]
    shape = (*(len(coords[d]) for d in outer), len(seeds))
    completed = np.zeros(shape, dtype=np.int8)
    run_ids = np.full(shape, "", dtype=object)
    covered = {
        run.run_id: ds["seed"].values.tolist() if own_seed else [run.seed]
        for run, ds in zip(done, datasets, strict=True)
    }
    for run in sweep.runs:
        for seed in covered.get(run.run_id, [run.seed]):
            if seed in seeds:
                at = (*run.index[: len(outer)], seeds.index(seed))
                run_ids[at] = run.run_id
                completed[at] = run.run_id in covered
    combined["completed"] = xr.DataArray(
        completed,
        dims=dims,
        attrs={"units": "1", "long_name": "1 where the run finished, 0 where it is missing"},
    )
    combined["run_id"] = xr.DataArray(
        run_ids.astype(str), dims=dims, attrs={"units": "1", "long_name": "run identifier"}
    )
