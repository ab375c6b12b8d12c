"""The columns benchmark runs end to end and compares like with like (no timings asserted)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench_columns():
    spec = importlib.util.spec_from_file_location(
        "bench_columns", ROOT / "benchmarks" / "bench_columns.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_loop_reference_computes_the_same_step(bench_columns):
    """The per-column loop holds the model's own weights: same step, same gradients."""
    model = bench_columns.build(12, shared=False, device="cpu")
    ref = bench_columns.loop_reference(model)
    n_loop = sum(isinstance(m, torch.nn.Linear) for m in ref.modules())
    assert n_loop == 12 * 2 * (1 + 2 * (bench_columns.N_LEVELS - 1))
    gen = torch.Generator().manual_seed(0)
    state = torch.randn(3, 12, bench_columns.N_LEVELS, bench_columns.DIM, generator=gen)
    responses = torch.randn(3, model.n_cells, generator=gen)
    grads = []
    for m in (model, ref):
        x = state.clone().requires_grad_(True)
        new, _ = m.step(x, responses)
        new.square().mean().backward()
        grads.append((new.detach(), x.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-5, atol=1e-6)
    first = ref.bottom_up[0].nets[5][0]
    torch.testing.assert_close(first.weight, model.bottom_up[0].layers[0].weight[5].t())


def test_benchmark_writes_one_row_per_size(bench_columns, tmp_path, capsys):
    out = tmp_path / "cols.json"
    argv = ["--sizes", "12", "16", "--batch", "2", "--reps", "1", "--no-memory"]
    argv += ["--loop-max-columns", "12", "--json", str(out)]
    assert bench_columns.main(argv) == 0
    rows = json.loads(out.read_text())
    assert [r["n_columns"] for r in rows] == [12, 16]
    assert rows[0]["ratio_vs_loop"] > 0 and rows[1]["ratio_vs_loop"] is None
    assert all(r["ratio_vs_shared"] > 0 for r in rows)
    assert rows[0]["loop_max_abs_diff"] < 1e-4
    assert "unsh/shared" in capsys.readouterr().out


def test_train_benchmark_counts_flops_and_prints_its_table(tmp_path, capsys):
    """bench_train's throughput part at a tiny size: a row per kind, FLOPs counted by torch,
    the JSON written (no timing asserted)."""
    spec = importlib.util.spec_from_file_location(
        "bench_train", ROOT / "benchmarks" / "bench_train.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "t.json"
    assert (
        module.main(
            [
                "--no-compare",
                "--replicas",
                "2",
                "--columns",
                "36",
                "--reps",
                "1",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    rows = json.loads(out.read_text())["throughput"]
    assert [r["kind"] for r in rows] == [
        "cnn",
        "shared-columns",
        "lc-backprop",
        "local",
        "codistill",
    ]
    assert all(r["gflop_per_step"] > 0 and r["column_images_per_s"] > 0 for r in rows)
    assert "GFLOP/s" in capsys.readouterr().out
