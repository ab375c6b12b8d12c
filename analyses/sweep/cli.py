"""``neurosim sweep``: the command line of the sweep engine."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import analyses.sweep as _package

if TYPE_CHECKING:
    from analyses.sweep.spec import Sweep


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_file", nargs="?", type=Path, help="the SWEEP.toml file")
    parser.add_argument(
        "--out", type=Path, help="output directory (default: results/<sweep file name>)"
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="start a LocalCluster of N worker processes, 1 thread each (default: CPUs)",
    )
    where.add_argument(
        "--scheduler", metavar="ADDRESS", help="use a running Dask scheduler (tcp://host:8786)"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="list the runs and their output paths"
    )
    parser.add_argument(
        "--combine", type=Path, metavar="DIR", help="only combine DIR/runs into DIR/sweep.nc"
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress (a bar on a terminal, else lines)"
    )


DESCRIPTION = (
    "Run one experiment over a grid of config values and seeds on Dask; each run writes "
    "DIR/runs/<run_id>.nc, finished runs are never redone (re-run to resume), and the runs are "
    "combined into DIR/sweep.nc."
)


def _epilog() -> str:
    doc = _package.__doc__ or ""
    start = doc.find("The sweep file")
    end = doc.find("Runs = ", start)
    if start < 0 or end < 0:
        return ""
    example = doc[start:end].split("::", 1)[-1].rstrip()
    return "SWEEP.toml:" + example


def add_sweep_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``sweep`` subcommand to ``neurosim``'s subparsers; returns its parser."""
    parser = subparsers.add_parser(
        "sweep",
        help="run an experiment over a grid of configs and seeds on Dask",
        description=DESCRIPTION,
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_arguments(parser)
    return parser


def _describe(sweep: Sweep) -> str:
    grid = " x ".join(f"{d}={n}" for d, n in zip(sweep.dims, sweep.shape, strict=True))
    kind = "quick" if sweep.quick else "full"
    return (
        f"sweep of {sweep.experiment} ({kind}, device {sweep.device}): "
        f"{len(sweep.runs)} runs, {grid}"
    )


def _dry_run(sweep: Sweep, out_dir: Path) -> str:
    from analyses.sweep.files import run_status
    from analyses.sweep.spec import COMBINED_FILE

    lines = [_describe(sweep), f"output: {out_dir / COMBINED_FILE}"]
    statuses = [run_status(run, out_dir) for run in sweep.runs]
    width = max(len(run.run_id) for run in sweep.runs)
    lines.append(f"{'status':<7} {'run_id':<{width}}  output")
    for run, status in zip(sweep.runs, statuses, strict=True):
        lines.append(f"{status:<7} {run.run_id:<{width}}  {run.nc_path(out_dir)}")
    todo = sum(s != "done" for s in statuses)
    lines.append(f"{todo} of {len(sweep.runs)} runs to do")
    return "\n".join(lines)


def run_sweep_command(args: argparse.Namespace) -> int:
    """Carry out ``neurosim sweep`` for parsed ``args``; returns the exit status.

    0: all runs finished; 1: some runs failed (the rest are combined); 2: bad input (nothing
    was run or written); 130 (SIGINT) or 143 (SIGTERM): interrupted (re-run the same command
    to resume).
    """
    try:
        if args.combine is not None:
            return _combine_command(args)
        return _sweep_command(args)
    except ValueError as err:
        print(f"neurosim: error: {err}", file=sys.stderr)
        return 2


def _combine_command(args: argparse.Namespace) -> int:
    from analyses.sweep.combine import combine_runs
    from analyses.sweep.spec import COMBINED_FILE, SWEEP_FILE, load_sweep

    if args.sweep_file is not None or args.dry_run:
        raise ValueError("--combine DIR takes no sweep file and no --dry-run")
    out_dir = Path(args.combine)
    if not out_dir.is_dir():
        raise ValueError(f"--combine {str(out_dir)!r}: no such directory")
    if not (out_dir / SWEEP_FILE).is_file():
        raise ValueError(
            f"--combine {str(out_dir)!r} holds no {SWEEP_FILE}: not a sweep's output directory"
        )
    sweep = load_sweep(out_dir / SWEEP_FILE)
    ds = combine_runs(sweep, out_dir)
    missing = int(ds["completed"].size - ds["completed"].sum())
    print(
        f"combined {ds.attrs['n_completed']} of {len(sweep.runs)} runs "
        f"({missing} missing) into {out_dir / COMBINED_FILE}"
    )
    print("dims: " + ", ".join(f"{k}={v}" for k, v in ds.sizes.items()))
    return 0


def _sweep_command(args: argparse.Namespace) -> int:
    from analyses.subruns import signals_as_interrupts
    from analyses.sweep.execute import _check_out_dir, run_sweep
    from analyses.sweep.files import run_status
    from analyses.sweep.spec import RUNS_DIR, load_sweep
    from neurosim.config import check_device, check_int

    if args.sweep_file is None:
        raise ValueError("give a sweep file (neurosim sweep SWEEP.toml) or --combine DIR")
    if args.workers is not None:
        check_int("--workers", args.workers, 1, os.cpu_count() or 1)
    sweep = load_sweep(args.sweep_file)
    out_dir = args.out if args.out is not None else Path("results") / args.sweep_file.stem
    if args.dry_run:  # the checks that need no cluster, then the list
        _check_out_dir(sweep, out_dir)
        if args.scheduler is None:
            check_device(sweep.device, f"{sweep.source}: device")
        print(_dry_run(sweep, out_dir))
        return 0
    print(_describe(sweep))
    with signals_as_interrupts():
        try:
            report = run_sweep(
                sweep, out_dir, workers=args.workers, scheduler=args.scheduler, quiet=args.quiet
            )
        except KeyboardInterrupt as err:  # before the runs were submitted
            report = None
            code = getattr(err, "exit_code", 130)
    if report is None or report.interrupted:
        done = sum(run_status(r, out_dir, check_config=False) == "done" for r in sweep.runs)
        print(
            f"interrupted; {done} of {len(sweep.runs)} runs kept in {out_dir / RUNS_DIR}; "
            "run the same command again to resume",
            file=sys.stderr,
        )
        return code if report is None else report.exit_code
    ran_ok = report.n_ran - len(report.failed)
    print(
        f"{report.n_runs} runs: {report.n_skipped} already finished, {ran_ok} ran, "
        f"{len(report.failed)} failed"
    )
    for run_id, error in report.failed.items():
        print(f"  failed {run_id}: {error} (see {out_dir / RUNS_DIR / (run_id + '.error.txt')})")
    if report.combined is not None:
        print(f"wrote {report.combined}")
    return 1 if report.failed else 0


def main(argv: list[str] | None = None) -> int:
    """``python -m analyses.sweep ...``: the same as ``neurosim sweep ...``."""
    parser = argparse.ArgumentParser(
        prog="neurosim sweep",
        description=DESCRIPTION,
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_arguments(parser)
    return run_sweep_command(parser.parse_args(argv))
