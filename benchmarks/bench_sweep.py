"""Sweep throughput: the same 8 quick runs on a LocalCluster of 1 and of 2 workers.

::

    python benchmarks/bench_sweep.py [--experiment NAME] [--runs 8] [--workers 1 2] [--serial]
                                     [--json FILE]

The runs are ``--runs`` seeds of a registered experiment at its ``--quick`` size (default: the
first of codistill-nets, distill, retina that is installed), one torch thread per worker. For
each worker count the table gives the cluster start-up (processes up), the sweep itself (from
submitting to the last file written, which includes each worker's first imports of torch and of
the experiment) and the combine into ``sweep.nc``; the speed-up is relative to the first worker
count. "run wall s" and "run cpu s" are the mean wall-clock and CPU time of one run inside its
worker (wall much larger than CPU means the cores were shared with other work). ``--serial``
adds the same runs one after another in this process (no Dask), the floor that the Dask
overhead is measured against.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from analyses import sweep as sw
from analyses.experiments import available
from neurosim.export import open_results


def _sweep_text(experiment: str, n_runs: int, base: str = "") -> str:
    text = f'experiment = "{experiment}"\nquick = true\nseeds = {list(range(n_runs))}\n'
    if base:
        text += f"[base]\n{base}\n"
    return text


def bench_workers(sweep: sw.Sweep, n_workers: int) -> dict:
    from distributed import Client

    with tempfile.TemporaryDirectory(prefix="bench_sweep_") as tmp:
        t0 = time.perf_counter()
        with sw.start_local_cluster(n_workers, torch_threads=1, dashboard_address=":0") as cluster:
            with Client(cluster) as client:
                t1 = time.perf_counter()
                report = sw.run_sweep(
                    sweep, tmp, client=client, quiet=True, combine=False, echo=lambda _: None
                )
                t2 = time.perf_counter()
            sw.close_workers(cluster)  # as `neurosim sweep` does: workers exit, none is killed
        t3 = time.perf_counter()
        sw.combine_runs(sweep, tmp)
        t4 = time.perf_counter()
        per_run = [open_results(run.nc_path(tmp)).attrs for run in sweep.runs]
    if not report.ok:
        raise RuntimeError(f"benchmark runs failed: {report.failed}")
    return {
        "workers": n_workers,
        "runs": len(sweep.runs),
        "startup_s": t1 - t0,
        "sweep_s": t2 - t1,
        "shutdown_s": t3 - t2,
        "combine_s": t4 - t3,
        "total_s": t4 - t0,
        "run_wall_s": sum(a["wall_time_s"] for a in per_run) / len(per_run),
        "run_cpu_s": sum(a["cpu_time_s"] for a in per_run) / len(per_run),
    }


def bench_serial(sweep: sw.Sweep) -> dict:
    import torch

    from neurosim.export import to_netcdf

    torch.set_num_threads(1)
    module = sw.resolve_experiment(sweep.experiment)
    with tempfile.TemporaryDirectory(prefix="bench_sweep_") as tmp:
        t0 = time.perf_counter()
        c0 = time.process_time()
        for run in sweep.runs:
            ds = module.run(run.config, device="cpu", quiet=True)
            to_netcdf(ds, run.nc_path(tmp), config=run.config, seed=run.seed)
        t1 = time.perf_counter()
        c1 = time.process_time()
    return {
        "workers": 0,
        "runs": len(sweep.runs),
        "startup_s": 0.0,
        "sweep_s": t1 - t0,
        "shutdown_s": 0.0,
        "combine_s": 0.0,
        "total_s": t1 - t0,
        "run_wall_s": (t1 - t0) / len(sweep.runs),
        "run_cpu_s": (c1 - c0) / len(sweep.runs),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", help="experiment name (default: first quick one found)")
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--serial", action="store_true", help="also run in-process, no Dask")
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    parser.add_argument(
        "--base",
        default="",
        help="TOML lines for the sweep's [base] table, to make each run longer, e.g. 'epochs = 60'",
    )
    args = parser.parse_args(argv)
    experiment = args.experiment
    if experiment is None:
        found = [n for n in ("codistill-nets", "distill", "retina") if n in available()]
        if not found:
            parser.error(f"no quick experiment installed; available: {available()}")
        experiment = found[0]
    sweep = sw.parse_sweep(_sweep_text(experiment, args.runs, args.base), source="bench")
    load_before = os.getloadavg()[0]

    rows = []
    if args.serial:
        rows.append(bench_serial(sweep))
    for n in args.workers:
        rows.append(bench_workers(sweep, n))
    ref = next(r for r in rows if r["workers"] == args.workers[0])
    for row in rows:
        row["speedup_sweep"] = ref["sweep_s"] / row["sweep_s"]
        row["speedup_total"] = ref["total_s"] / row["total_s"]
        row["s_per_run"] = row["sweep_s"] / row["runs"]

    print(f"{args.runs} quick runs of {experiment}, 1 torch thread per worker, "
          f"{os.cpu_count()} CPUs, load average before: {load_before:.1f}")  # fmt: skip
    header = (
        f"{'workers':>8} {'startup s':>10} {'sweep s':>8} {'sweep s/run':>12} "
        f"{'run wall s':>11} {'run cpu s':>10} {'combine s':>10} {'total s':>8} "
        f"{'speed-up sweep':>15} {'speed-up total':>15}"
    )
    print(header)
    for r in rows:
        label = "serial" if r["workers"] == 0 else str(r["workers"])
        print(
            f"{label:>8} {r['startup_s']:>10.1f} {r['sweep_s']:>8.1f} {r['s_per_run']:>12.2f} "
            f"{r['run_wall_s']:>11.2f} {r['run_cpu_s']:>10.2f} {r['combine_s']:>10.2f} "
            f"{r['total_s']:>8.1f} {r['speedup_sweep']:>15.2f} {r['speedup_total']:>15.2f}"
        )
    print(
        "run wall/cpu s: mean time inside one run (on its worker); wall >> cpu means the CPUs "
        "were busy with other work"
    )
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    if args.json is not None:
        payload = {
            "benchmark": "sweep",
            "experiment": experiment,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "rows": rows,
        }
        args.json.write_text(json.dumps(payload, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
