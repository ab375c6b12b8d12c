"""The ``neurosim`` command: messages and exit codes (through subprocesses), resuming, signals.

Subprocess tests run ``[sys.executable, "-m", "analyses.cli", ...]`` from the repository root,
so they exercise the tree under test. A tiny fake experiment (``tests.test_cli:Fake``, named
through the documented ``package.module:object`` hook) keeps most of them fast; the real
``codistill-nets`` and ``distill`` are used where resuming must give their exact results.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import xarray as xr

from analyses import cli
from neurosim.config import Config, check_int

ROOT = Path(__file__).resolve().parent.parent
FAKE = "tests.test_cli:Fake"
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
# provenance that differs between any two runs
RUN_ATTRS = ("created_utc", "wall_time_s", "git_commit")


# --------------------------------------------------------------------------- a fake experiment


@dataclasses.dataclass(frozen=True, kw_only=True)
class FakeConfig(Config):
    seed: int = 0
    n_parts: int = 3
    bad_in_run: bool = False  # run() finds the config bad (as transfer's n_train check does)
    out_of_memory: bool = False  # run() asks for more memory than there is

    def __post_init__(self):
        check_int("n_parts", self.n_parts, 1, 50)

    @classmethod
    def quick(cls) -> FakeConfig:
        return cls(n_parts=2)


class Fake:
    """The experiment protocol with a store, a check and a figure, in a few lines."""

    Config = FakeConfig
    RESULT_FILE = "results.nc"

    @staticmethod
    def check(config: FakeConfig) -> None:
        if config.seed == 13:
            raise ValueError("seed must not be 13 (the fake's own check)")

    @staticmethod
    def run(config, *, device="cpu", quiet=False, store=None) -> xr.Dataset:
        from analyses.subruns import run_units

        if config.bad_in_run:
            raise ValueError("bad_in_run: the experiment refused its config")
        if config.out_of_memory:
            raise MemoryError("Unable to allocate 447. GiB for an array")

        def compute(unit, done):
            return {k: {"value": np.float64(config.seed + i)} for i, k in enumerate(unit)}

        keys = [f"part={i}" for i in range(config.n_parts)]
        out = run_units([keys], compute, store=store, desc="fake", quiet=quiet)
        values = [float(out[k]["value"]) for k in keys]
        return xr.Dataset({"value": ("part", values, {"units": "1", "long_name": "fake"})})

    @staticmethod
    def figures(ds, out_dir):
        from analyses.figures import new_figure, save_figure

        fig, axes = new_figure()
        axes[0, 0].plot(ds["value"].values)
        return save_figure(fig, out_dir, "fake")

    @staticmethod
    def summary(ds) -> str:
        return f"fake: {ds.sizes['part']} parts"


# --------------------------------------------------------------------------- helpers


def _sigint_default() -> None:  # a child of a non-interactive shell may start with SIGINT ignored
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def neurosim(*args, cwd=ROOT, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "analyses.cli", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        **kwargs,
    )


def in_process(capsys, *args) -> subprocess.CompletedProcess:
    """``neurosim ARGS`` run by :func:`analyses.cli.main` in this process (no torch start-up)."""
    capsys.readouterr()
    try:
        code = cli.main([str(a) for a in args])
    except SystemExit as exit_:  # argparse
        code = exit_.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def assert_bad_input(proc, message: str) -> None:
    """Exit status 2, one line on stderr containing ``message``, no traceback, no stdout."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert message in proc.stderr, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0, proc.stderr


def listing(path: Path) -> dict[str, int]:
    return {str(p.relative_to(path)): p.stat().st_mtime_ns for p in sorted(path.rglob("*"))}


def same_results(a: Path, b: Path) -> None:
    one, two = xr.load_dataset(a), xr.load_dataset(b)
    for ds in (one, two):
        for key in RUN_ATTRS:
            ds.attrs.pop(key, None)
    xr.testing.assert_identical(one, two)


# --------------------------------------------------------------------------- fast: no run


def test_version_and_help_load_neither_torch_nor_numpy():
    proc = neurosim("--version")
    assert proc.returncode == 0 and re.fullmatch(r"neurosim \d+\.\d+\.\d+\S*\n", proc.stdout)
    code = (
        "import sys; from analyses.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'numpy', 'xarray', 'distributed') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_an_unknown_option_prints_the_subcommand_usage():
    proc = neurosim("run", "--bogus")
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: neurosim run ")
    assert "neurosim run: error: unrecognized arguments: --bogus" in proc.stderr
    proc = neurosim("sweep", "x.toml", "--bogus")
    assert proc.returncode == 2 and proc.stderr.startswith("usage: neurosim sweep ")


def test_show_says_what_is_wrong_with_its_argument(tmp_path, capsys):
    (tmp_path / "text.nc").write_text("not a results file\n")
    assert_bad_input(
        neurosim("show", tmp_path / "text.nc"),
        f"show: '{tmp_path / 'text.nc'}' is not a NetCDF results file",
    )
    assert_bad_input(
        in_process(capsys, "show", tmp_path),
        f"show: '{tmp_path}' is a directory; give a results file (e.g. {tmp_path / 'text.nc'})",
    )
    assert_bad_input(in_process(capsys, "show", tmp_path / "none.nc"), "does not exist")


# --------------------------------------------------------------------------- bad input: exit 2


def test_bad_out_and_device_fail_before_anything_is_written(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert_bad_input(neurosim("run", FAKE, "--out", afile), f"--out '{afile}' is a file")
    proc = in_process(capsys, "run", FAKE, "--out", afile / "sub")
    assert_bad_input(proc, f"'{afile}' is a file")
    new = tmp_path / "new"
    assert_bad_input(
        in_process(capsys, "run", FAKE, "--device", "gpu", "--out", new),
        "--device must be 'cpu', 'cuda' or 'cuda:N' (N a GPU index); got 'gpu'",
    )
    if not torch.cuda.is_available():
        assert_bad_input(
            in_process(capsys, "run", FAKE, "--device", "cuda", "--out", new),
            "--device is 'cuda' but torch",
        )
    proc = in_process(capsys, "run", FAKE, "--seed", "13", "--out", new)
    assert_bad_input(proc, "seed must not be 13")
    proc = in_process(capsys, "run", FAKE, "--config", tmp_path, "--out", new)
    assert_bad_input(proc, "is a directory; give a TOML")
    proc = in_process(capsys, "run", FAKE, "--config", "/dev/null", "--out", new)
    assert_bad_input(proc, "--config '/dev/null' is not a regular file; give a TOML file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_an_out_the_user_cannot_write_is_refused(tmp_path, capsys, monkeypatch):
    """The same refusal for any user (root included): the writability check answers no for
    ``locked``, as the file system does for a non-root user in a mode-0555 directory."""
    locked = tmp_path / "locked"
    locked.mkdir()
    monkeypatch.setattr(cli, "_writable", lambda path: Path(path) != locked)
    assert_bad_input(in_process(capsys, "run", FAKE, "--out", locked), "is not writable")
    assert_bad_input(in_process(capsys, "run", FAKE, "--out", locked / "sub"), "not writable")
    assert list(locked.iterdir()) == []


@pytest.mark.skipif(
    os.geteuid() == 0,
    reason="as root a mode-0555 directory is still writable, so permissions cannot provoke the "
    "refusal; test_an_out_the_user_cannot_write_is_refused covers the check for every user",
)
def test_an_unwritable_out_is_refused(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert_bad_input(neurosim("run", FAKE, "--out", locked), "is not writable")
        assert_bad_input(in_process(capsys, "run", FAKE, "--out", locked / "sub"), "not writable")
    finally:
        locked.chmod(0o755)
    assert list(locked.iterdir()) == []


def test_validation_inside_the_experiment_leaves_nothing_behind(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("bad_in_run = true\n")
    out = tmp_path / "out"
    assert_bad_input(in_process(capsys, "run", FAKE, "--config", bad, "--out", out), "bad_in_run")
    assert not out.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = in_process(capsys, "run", FAKE, "--config", bad, "--out", empty)
    assert_bad_input(proc, "bad_in_run")
    assert list(empty.iterdir()) == []


def test_running_out_of_memory_is_one_line(tmp_path, capsys):
    huge = tmp_path / "huge.toml"
    huge.write_text("out_of_memory = true\n")
    proc = in_process(capsys, "run", FAKE, "--config", huge, "--out", tmp_path / "out")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr == (
        f"neurosim: error: {FAKE} ran out of memory (Unable to allocate 447. GiB for an array); "
        f"a size in its config is too large for this machine; 0 sub-runs kept in "
        f"{tmp_path / 'out'}\n"
    )


def test_a_foreign_out_is_refused_unless_forced_and_a_changed_config_never_mixes(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old_figure.png").write_text("from another run")
    before = listing(out)
    proc = neurosim("run", FAKE, "--out", out)
    assert_bad_input(proc, f"--out '{out}' is not empty (1 entries, e.g. 'old_figure.png')")
    assert "--force" in proc.stderr and listing(out) == before

    proc = in_process(capsys, "run", FAKE, "--out", out, "--force", "--quiet", "--no-figures")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # --quiet: no progress
    assert f"wrote results.nc, config.toml in {out} (no figures: --no-figures)" in proc.stdout
    assert "smoke test" not in proc.stdout

    # the same experiment and config: not foreign, resumed (here: everything was kept)
    proc = in_process(capsys, "run", FAKE, "--out", out, "--quiet", "--no-figures")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == f"resuming in {out}: 3 sub-runs kept from an earlier run\n"
    # a changed config refuses to mix, naming the field, and writes nothing
    before = listing(out)
    proc = in_process(capsys, "run", FAKE, "--out", out, "--seed", "4")
    assert_bad_input(proc, "made with a different config (seed: 0 there, 4 now)")
    assert listing(out) == before
    proc = in_process(capsys, "run", FAKE, "--quick", "--out", out, "--quiet", "--force")
    assert proc.returncode == 0, proc.stderr
    assert xr.load_dataset(out / "results.nc").sizes["part"] == 2


def test_every_run_gets_a_directory_of_its_own(tmp_path, monkeypatch, capsys):
    noon = dt.datetime(2025, 5, 1, 12, 0, 0)
    names = [cli.new_run_dir(tmp_path, "distill", now=noon).name for _ in range(3)]
    assert names == [
        "distill-20250501-120000",
        "distill-20250501-120000-2",
        "distill-20250501-120000-3",
    ]

    class Frozen(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return noon

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "_dt", SimpleNamespace(datetime=Frozen))
    assert cli.main(["run", FAKE, "--quiet", "--no-figures"]) == 0
    assert cli.main(["run", FAKE, "--quiet", "--no-figures"]) == 0  # the same second
    runs = sorted(p.name for p in (tmp_path / "results").iterdir())
    assert runs == ["Fake-20250501-120000", "Fake-20250501-120000-2"]
    assert all((tmp_path / "results" / r / "results.nc").is_file() for r in runs)


# --------------------------------------------------------------------------- real experiments


@pytest.mark.parametrize(
    "experiment, desc",
    [
        ("retina", "retina"),
        ("islands", "islands"),
        ("column-similarity", "column-similarity"),
        ("brian-parity", "brian-parity training"),
        ("ff-digits", "ff-digits"),
    ],
)
def test_every_experiment_reports_progress_in_a_batch_log(experiment, desc, tmp_path, capsys):
    """Off a terminal (here: captured stderr) each experiment writes timestamped lines of what
    finished, with the elapsed time and the ETA, where a tqdm bar alone would write nothing."""
    assert (
        cli.main(["run", experiment, "--quick", "--no-figures", "--out", str(tmp_path / "o")]) == 0
    )
    lines = capsys.readouterr().err.splitlines()
    pattern = STAMP + rf" {re.escape(desc)}: (\d+)/(\d+) .* done.*; elapsed \d+:\d\d:\d\d, ETA \S+"
    matched = [re.fullmatch(pattern, line) for line in lines]
    assert matched and all(matched), lines
    done, total = matched[-1].groups()
    assert done == total  # the last finished unit is always reported


def test_a_batch_log_shows_each_finished_sub_run_and_the_quick_run_says_it_is_a_smoke_test(
    tmp_path,
):
    out = tmp_path / "out"
    proc = neurosim("run", "codistill-nets", "--quick", "--out", out)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 4, proc.stderr
    for i, (line, kind) in enumerate(
        zip(
            lines,
            ["independent", "codistilled", "subsets-alone", "codistilled-subsets"],
            strict=True,
        )
    ):
        assert re.fullmatch(
            STAMP + rf" codistill-nets: {i + 1}/4 sub-runs done, last seed=0/{kind} "
            r"\(mean test errors \d+\.\d\); elapsed \d+:\d\d:\d\d, ETA \d+:\d\d:\d\d",
            line,
        ), line
    assert (
        f"wrote results.nc, config.toml, codistill_nets.png, codistill_nets.pdf in {out}"
        in proc.stdout
    )
    assert proc.stdout.rstrip().endswith(
        "--quick: a smoke test at test-suite size; its numbers are not results"
    )


def test_ctrl_c_keeps_the_finished_sub_runs_and_the_same_command_resumes_exactly(tmp_path, capsys):
    """SIGINT after two sub-runs: exit 130 and what was kept; the re-run equals a full run."""
    cfg = tmp_path / "slow.toml"
    # 8 sub-runs of about a quarter of a second each (with 3 epochs, 0.05-0.1 s: the run could
    # finish between the second kept sub-run and the signal)
    cfg.write_text("n_seeds = 2\nepochs = 20\n")
    out = tmp_path / "out"
    args = ["run", "codistill-nets", "--quick", "--config", str(cfg), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "analyses.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_sigint_default,
    )
    try:
        deadline = time.monotonic() + 240
        while len(list((out / "subruns").glob("*.npz"))) < 2 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and stdout == ""
    kept = re.search(r"interrupted; (\d) of 8 sub-runs kept in (.*); run the same command", stderr)
    assert kept and 2 <= int(kept.group(1)) < 8 and kept.group(2) == str(out / "subruns"), stderr
    assert not (out / "results.nc").exists()
    assert not [p for p in out.rglob(".*") if ".tmp" in p.name]

    resumed = in_process(capsys, *args)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming in {out}: {kept.group(1)} sub-runs kept" in resumed.stderr
    # the ETA counts only the sub-runs run now
    assert f"{int(kept.group(1)) + 1}/8 sub-runs done" in resumed.stderr
    whole = tmp_path / "whole"
    assert cli.main([*args[:-1], str(whole), "--quiet", "--no-figures"]) == 0
    same_results(out / "results.nc", whole / "results.nc")


def test_an_interrupted_distill_resumes_to_the_result_of_an_uninterrupted_run(
    tmp_path, monkeypatch
):
    from analyses.subruns import SubrunStore

    whole, cut = tmp_path / "whole", tmp_path / "cut"
    args = ["run", "distill", "--quick", "--quiet", "--no-figures", "--out"]
    assert cli.main([*args, str(whole)]) == 0
    put = SubrunStore.put
    calls = []

    def put_then_interrupt(self, results):
        calls.append(list(results))
        if len(calls) == 3:  # the 3rd stage is finished but not yet kept: Ctrl-C
            raise KeyboardInterrupt
        return put(self, results)

    monkeypatch.setattr(SubrunStore, "put", put_then_interrupt)
    assert cli.main([*args, str(cut)]) == 130
    monkeypatch.setattr(SubrunStore, "put", put)
    assert len(list((cut / "subruns").glob("*.npz"))) == 2  # small-hard, big-regularised
    assert cli.main([*args, str(cut)]) == 0
    same_results(cut / "results.nc", whole / "results.nc")


FIGURE_SIGTERM = """
import os, sys, time
import matplotlib.figure
from analyses.cli import main

def slow_savefig(self, fname, **kwargs):
    open(fname, "wb").close()          # the temporary exists, empty: the moment of the bug
    print("SAVING", fname, file=sys.stderr, flush=True)
    time.sleep(60)

matplotlib.figure.Figure.savefig = slow_savefig
sys.exit(main(["run", "codistill-nets", "--quick", "--quiet", "--out", sys.argv[1]]))
"""


def test_sigterm_while_a_figure_is_written_leaves_no_temporary_file(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", FIGURE_SIGTERM, str(out)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not list(out.glob(".codistill_nets.*.tmp.png")) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, stderr
    assert "interrupted; 4 of 4 sub-runs kept" in stderr and "Traceback" not in stderr
    assert sorted(p.name for p in out.iterdir()) == ["config.toml", "results.nc", "subruns"]


def test_the_python_api_checks_the_device_first():
    from analyses.experiments import (
        codistill_nets,
        column_similarity,
        distill,
        ff_digits,
        islands,
        retina,
        transfer,
    )

    for exp in (codistill_nets, distill, transfer, retina, islands, column_similarity, ff_digits):
        with pytest.raises(ValueError, match=r"^device must be 'cpu', 'cuda' or 'cuda:N'"):
            exp.run(exp.Config.quick(), device="gpu")
        if not torch.cuda.is_available():
            with pytest.raises(ValueError, match="^device is 'cuda' but torch"):
                exp.run(exp.Config.quick(), device="cuda")


def test_the_startup_benchmark_writes_a_row_per_command(tmp_path, capsys):
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location(
        "bench_cli_startup", ROOT / "benchmarks" / "bench_cli_startup.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "startup.json"
    assert bench.main(["--reps", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [r["command"] for r in rows] == [
        "neurosim --help",
        "neurosim --version",
        "neurosim run --help",
        "neurosim sweep --help",
    ]
    assert all(0 < r["min_s"] <= r["median_s"] <= r["max_s"] for r in rows)
    assert all(r["exit_status"] == 0 for r in rows)
    assert "median s" in capsys.readouterr().out


def test_a_named_config_is_found_in_the_package(tmp_path):
    """``--config decisive`` is analyses/configs/decisive.toml; a path still wins."""
    from analyses.cli import CONFIGS_DIR, load_config, named_config

    assert named_config("decisive") == CONFIGS_DIR / "decisive.toml"
    assert named_config("decisive").is_file()
    cfg = load_config("transfer", quick=False, config_file=Path("decisive"), seed=None)
    assert cfg.video and cfg.n_seeds >= 5
    local = tmp_path / "decisive"
    local.write_text("n_seeds = 2\n")
    assert named_config(local) == local
    with pytest.raises(ValueError, match="does not exist"):
        load_config("transfer", quick=False, config_file=Path("no-such-config"), seed=None)


def test_the_named_configs_load_and_keep_their_measured_budgets():
    """Every config shipped in analyses/configs loads; the decisive ones keep the 720 steps they
    were measured at, static-5seeds runs the default budget with 5 seeds."""
    from analyses.cli import CONFIGS_DIR, load_config
    from analyses.experiments.transfer import Config

    names = sorted(p.stem for p in CONFIGS_DIR.glob("*.toml"))
    assert {"decisive", "decisive-broadcast", "static-5seeds"} <= set(names)
    cfgs = {n: load_config("transfer", quick=False, config_file=Path(n), seed=None) for n in names}
    assert cfgs["decisive"].baseline.steps == cfgs["decisive-broadcast"].baseline.steps == 720
    static = cfgs["static-5seeds"]
    assert static.n_seeds == 5 and static.models == ("cnn", "local", "codistill")
    assert static.baseline.steps == Config().baseline.steps and static.max_epochs == 50


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            "[baseline.model]\nn_columns = 100000\n",
            r"baseline.model.n_columns must be an integer in \[2, 65536\]",
        ),
        (
            "[baseline]\nn_columns = 100000\n",
            r"baseline.n_columns has moved: it is now n_columns in the \[baseline.model\] table",
        ),
        ("n_cells = 100000\n", r"n_cells must be an integer in \[64, 1152\]"),
    ],
)
def test_sizes_have_upper_bounds_checked_before_any_work(tmp_path, capsys, toml, message):
    """A size far beyond what the machine or the canvas allows fails at once, naming the field
    and its range (it used to pass and run for minutes in silence)."""
    cfg = tmp_path / "big.toml"
    cfg.write_text(toml)
    out = tmp_path / "out"
    assert cli.main(["run", "transfer", "--config", str(cfg), "--out", str(out)]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not out.exists()
