"""Start-up time of the ``neurosim`` command: how long ``--help`` and friends take.

::

    python benchmarks/bench_cli_startup.py [--reps 5] [--root DIR] [--json FILE]

Each command (``neurosim --help``, ``--version``, ``run --help``, ``sweep --help``) runs as
``python -m analyses.cli ...`` in a fresh process, from ``--root`` (default: this repository)
with ``PYTHONPATH=ROOT``, so a second tree (e.g. an export of an older commit) can be measured
the same way. One run of each is a warm-up (byte code, file cache) and is not counted; the
table gives the minimum, median and maximum wall-clock seconds of the ``--reps`` others, and
``--json`` writes one row per command (with its exit status: an older tree may not know
``--version``). The goal is ``--help`` under 1.5 s: only the argument
parser is imported, not torch, numpy or Dask.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "--help": ["--help"],
    "--version": ["--version"],
    "run --help": ["run", "--help"],
    "sweep --help": ["sweep", "--help"],
}


def time_command(args: list[str], root: Path, reps: int) -> tuple[list[float], int]:
    """Wall-clock seconds of ``reps`` runs of ``python -m analyses.cli ARGS`` (after a warm-up)
    and the exit status (an older tree may not know an option: it is timed all the same)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    cmd = [sys.executable, "-m", "analyses.cli", *args]
    times = []
    for i in range(reps + 1):
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True)
        if i:  # the first run is the warm-up
            times.append(time.perf_counter() - start)
    return times, proc.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="timed runs per command (>= 1)")
    parser.add_argument("--root", type=Path, default=ROOT, help="the tree to measure")
    parser.add_argument("--json", type=Path, help="write the rows to this JSON file")
    args = parser.parse_args(argv)
    if args.reps < 1:
        parser.error(f"--reps must be >= 1; got {args.reps}")
    if not (args.root / "analyses" / "cli.py").is_file():
        parser.error(f"--root {str(args.root)!r} holds no analyses/cli.py")
    rows = []
    print(f"neurosim start-up, {args.root} ({args.reps} runs each, after a warm-up)")
    print(f"{'command':<16}{'min s':>8}{'median s':>10}{'max s':>8}")
    for name, cmd in COMMANDS.items():
        times, status = time_command(cmd, args.root, args.reps)
        row = {
            "command": f"neurosim {name}",
            "min_s": min(times),
            "median_s": statistics.median(times),
            "max_s": max(times),
            "reps": args.reps,
            "exit_status": status,
        }
        rows.append(row)
        note = "" if status == 0 else f"  (exit status {status})"
        print(f"{name:<16}{row['min_s']:>8.2f}{row['median_s']:>10.2f}{row['max_s']:>8.2f}{note}")
    if args.json is not None:
        meta = {"root": str(args.root), "python": platform.python_version(), "cpus": os.cpu_count()}
        args.json.write_text(json.dumps([{**row, **meta} for row in rows], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
