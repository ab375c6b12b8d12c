"""The settling step of the column sheet, old code against new, in one run.

Runs ``benchmarks/bench_columns.py`` of an old commit (``--old-commit``, checked out into a git
worktree, importing its own packages) and of this tree, alternately, ``--rounds`` times each, on
the same sizes (no loop reference, no memory runs), and reports per size the fastest time of
the unshared and the shared step (forward + backward) of each code and their ratio. Alternating
the two codes spreads a busy machine's noise over both.

Usage::

    python benchmarks/bench_columns_old_new.py [--old-commit 0f34337] [--sizes 256 1024]
                                               [--rounds 2] [--reps 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_train import _old_worktree  # noqa: E402


def run_once(tree: Path, sizes: list[int], reps: int, batch: int) -> list[dict]:
    """One run of ``tree``'s bench_columns.py in a fresh process; its JSON rows."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        cmd = [
            sys.executable,
            str(tree / "benchmarks" / "bench_columns.py"),
            "--sizes",
            *map(str, sizes),
            "--reps",
            str(reps),
            "--batch",
            str(batch),
            "--loop-max-columns",
            "0",
            "--no-memory",
            "--json",
            str(out),
        ]
        env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
        subprocess.run(cmd, cwd=tree, env=env, check=True, capture_output=True, text=True)
        return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-commit", default="0f34337")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    trees = {"old": _old_worktree(args.old_commit), "new": ROOT}
    best: dict[tuple[str, int, str], float] = {}
    for r in range(args.rounds):
        for code, tree in trees.items():
            for row in run_once(tree, args.sizes, args.reps, args.batch):
                for part in ("unshared", "shared"):
                    key = (code, row["n_columns"], part)
                    best[key] = min(best.get(key, float("inf")), row[f"{part}_s"])
            print(f"round {r + 1}/{args.rounds}: {code} done", file=sys.stderr, flush=True)
    print(
        f"one settling step fwd+bwd (batch {args.batch}, 1 thread), fastest of {args.rounds} "
        f"runs x {args.reps} reps; old = {args.old_commit}"
    )
    print(f"{'columns':>8} {'step':>9} {'old ms':>9} {'new ms':>9} {'new/old':>8}")
    rows = []
    for n in args.sizes:
        for part in ("unshared", "shared"):
            old, new = best[("old", n, part)], best[("new", n, part)]
            rows.append(dict(n_columns=n, step=part, old_s=old, new_s=new, ratio=new / old))
            print(f"{n:>8} {part:>9} {1e3 * old:>9.1f} {1e3 * new:>9.1f} {new / old:>8.2f}")
    if args.json:
        report = dict(old_commit=args.old_commit, batch=args.batch, rounds=args.rounds, rows=rows)
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
