"""Speed of the retina's sparse operator against a dense-matrix reference.

Builds a uniform and a foveated retina (default: 128x128 images, 4096 cells = 2048 ON/OFF
sites, 32 deg field at 4 px/deg), applies each to batches of 64 images with

* ``numpy``: the scipy.sparse multi-scale operator (``Retina.__call__``) vs the dense
  ``[n_cells, H*W]`` matrix (float32 BLAS matmul), and
* ``torch``: the cached torch sparse CSR operator vs a dense torch matmul (float32),

checks that sparse and dense give the same numbers, and prints a table. Both sides run with
``--threads`` BLAS/OpenMP threads (default 1, which gives stable timings on a shared
machine). ``--json FILE`` writes the table, with a headline ``speedup_vs_dense`` (the
smallest over retinas and backends) and ``images_per_s`` (the sparse rate of that same
worst case). Goal: >= 10x.

    python benchmarks/bench_retina.py [--json FILE] [--n-cells 4096] [--size 128] [--batch 64]
                                      [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

import retina


def _best_time(fn, repeats: int) -> float:
    fn()  # warm-up (caches, first-touch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def bench(n_cells: int, size: int, batch: int, fov_deg: float, repeats: int, seed: int) -> dict:
    ppd = size / fov_deg
    rng = np.random.default_rng(seed)
    images = rng.random((batch, size, size)).astype(np.float32)
    images_t = torch.from_numpy(images)
    flat = images.reshape(batch, -1)
    rows = []
    for kind in ("uniform", "foveated"):
        start = time.perf_counter()
        ret = getattr(retina.Retina, kind)(
            n_cells=n_cells,
            fov_deg=fov_deg,
            image_shape=(size, size),
            pixels_per_deg=ppd,
            seed=seed,
        )
        build_s = time.perf_counter() - start
        start = time.perf_counter()
        ret.torch_levels("cpu", torch.float32)
        torch_build_s = time.perf_counter() - start
        dense = ret.operator.toarray().astype(np.float32)  # [n_cells, H*W]
        dense_t = torch.from_numpy(dense)
        applied_nnz = sum(M.nnz + (0 if P is None else P.nnz) for _, P, M in ret.levels)

        ref = flat @ dense.T
        out_np = ret(images)
        out_t = ret(images_t).numpy()
        scale = float(np.abs(ref).max())
        err_np = float(np.abs(out_np - ref).max()) / scale
        err_t = float(np.abs(out_t - ref).max()) / scale
        if max(err_np, err_t) > 1e-5:
            raise AssertionError(f"sparse and dense disagree: rel errors {err_np}, {err_t}")

        t_np = _best_time(lambda ret=ret: ret(images), repeats)
        t_np_dense = _best_time(lambda d=dense: flat @ d.T, repeats)
        with torch.inference_mode():
            t_t = _best_time(lambda ret=ret: ret(images_t), repeats)
            t_t_dense = _best_time(lambda d=dense_t: images_t.reshape(batch, -1) @ d.T, repeats)
        for backend, ts, td in (("numpy", t_np, t_np_dense), ("torch", t_t, t_t_dense)):
            rows.append(
                {
                    "retina": kind,
                    "backend": backend,
                    "n_cells": ret.n_cells,
                    "image": f"{size}x{size}",
                    "batch": batch,
                    "operator_nnz": int(ret.operator.nnz),
                    "applied_nnz": int(applied_nnz),
                    "dense_entries": int(dense.size),
                    "build_s": round(build_s + (torch_build_s if backend == "torch" else 0.0), 3),
                    "sparse_ms": round(1e3 * ts, 3),
                    "dense_ms": round(1e3 * td, 3),
                    "images_per_s": round(batch / ts, 1),
                    "dense_images_per_s": round(batch / td, 1),
                    "speedup_vs_dense": round(td / ts, 2),
                    "max_rel_error": max(err_np, err_t),
                }
            )
    worst = min(rows, key=lambda r: r["speedup_vs_dense"])
    return {
        "benchmark": "retina",
        "goal_speedup_vs_dense": 10.0,
        "speedup_vs_dense": worst["speedup_vs_dense"],
        "images_per_s": worst["images_per_s"],
        "worst_case": f"{worst['retina']}/{worst['backend']}",
        "rows": rows,
        "fov_deg": fov_deg,
        "pixels_per_deg": ppd,
        "repeats": repeats,
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "machine": platform.machine(),
    }


def table(result: dict) -> str:
    cols = [
        ("retina", 9),
        ("backend", 8),
        ("applied_nnz", 12),
        ("build_s", 8),
        ("sparse_ms", 10),
        ("dense_ms", 10),
        ("images_per_s", 13),
        ("dense_images_per_s", 19),
        ("speedup_vs_dense", 17),
    ]
    lines = ["  ".join(f"{name:>{w}}" for name, w in cols)]
    for row in result["rows"]:
        lines.append("  ".join(f"{row[name]!s:>{w}}" for name, w in cols))
    lines.append(
        f"worst case {result['worst_case']}: speedup_vs_dense {result['speedup_vs_dense']}x "
        f"(goal >= {result['goal_speedup_vs_dense']:g}x), images_per_s {result['images_per_s']}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    parser.add_argument("--n-cells", type=int, default=4096)
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--fov-deg", type=float, default=32.0)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="BLAS/OpenMP threads for both sides (default 1: stable timings on a shared machine)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with threadpool_limits(limits=args.threads):
        result = bench(args.n_cells, args.size, args.batch, args.fov_deg, args.repeats, args.seed)
    print(table(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
