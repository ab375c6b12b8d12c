"""Tests of the sweep engine (analyses.sweep) on a LocalCluster of 2 worker processes.

Most tests use a tiny fake experiment defined here, named in the sweep file through the
documented hook ``experiment = "tests.test_sweep:FakeExperiment"``, so that they do not depend on
the other experiments; one test sweeps a real quick experiment when one is installed.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from analyses import sweep as sw
from analyses.experiments import available
from neurosim.config import Config, check_positive_int, check_range
from neurosim.export import open_results

ROOT = Path(__file__).resolve().parent.parent
FAKE = "tests.test_sweep:FakeExperiment"


def torch_cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


# --------------------------------------------------------------------------- a fake experiment


@dataclasses.dataclass(frozen=True, kw_only=True)
class FakeModel(Config):
    scale: float = 1.0
    n_levels: int = 2

    def __post_init__(self):
        check_range("scale", self.scale, 0.0, 10.0)
        check_positive_int("n_levels", self.n_levels, 8)


@dataclasses.dataclass(frozen=True, kw_only=True)
class FakeConfig(Config):
    seed: int = 0
    gain: float = 1.0
    n_points: int = 5
    label: str = "a"
    fail_on_gain: float = -1.0  # the run with this gain raises (to test failure handling)
    sleep_s: float = 0.0
    n_seeds: int = 0  # > 0: results get a seed dim of their own (seed .. seed + n_seeds - 1)
    model: FakeModel = FakeModel()

    def __post_init__(self):
        check_range("gain", self.gain, 0.0, 100.0)
        check_positive_int("n_points", self.n_points)
        check_range("sleep_s", self.sleep_s, 0.0, 60.0)
        if self.n_points < self.model.n_levels:  # a rule between two fields
            raise ValueError(f"n_points must be >= model.n_levels; got {self.n_points}")

    @classmethod
    def quick(cls) -> FakeConfig:
        return cls(n_points=3)


class FakeExperiment:
    """The experiment protocol of analyses.experiments, in a few lines."""

    Config = FakeConfig
    RESULT_FILE = "results.nc"

    @staticmethod
    def check(config: FakeConfig) -> None:
        """A check beyond the config's own fields (as a data set's size would be)."""
        if config.label == "bad":
            raise ValueError("label must not be 'bad' (the fake's own check)")

    @staticmethod
    def run(config: FakeConfig, *, device: str = "cpu", quiet: bool = False) -> xr.Dataset:
        import torch

        if config.gain == config.fail_on_gain:
            raise RuntimeError(f"fake failure at gain {config.gain}")
        time.sleep(config.sleep_s)
        point = np.arange(config.n_points)
        if config.n_seeds:
            seeds = config.seed + np.arange(config.n_seeds)
            response = [_expected_response(config.gain, config.model.scale, s) for s in seeds]
            dims, coords = ("seed", "point"), {"point": point, "seed": seeds}
        else:
            response = _expected_response(config.gain, config.model.scale, config.seed)
            dims, coords = ("point",), {"point": point}
        return xr.Dataset(
            {
                "response": (dims, response, {"units": "1", "long_name": "fake response"}),
                "torch_threads": ((), torch.get_num_threads(), {"units": "1", "long_name": "n"}),
            },
            coords=coords,
            attrs={
                "worker_pid": os.getpid(),
                "cython_cache_dir": os.environ.get("CYTHON_CACHE_DIR", ""),
                "device_seen": device,
            },
        )


class FakeBrianExperiment(FakeExperiment):
    """The fake experiment, also reporting where Brian2 would compile its code."""

    @staticmethod
    def run(config: FakeConfig, *, device: str = "cpu", quiet: bool = False) -> xr.Dataset:
        from brian2 import prefs
        from brian2.codegen.runtime.cython_rt.extension_manager import get_cython_cache_dir

        ds = FakeExperiment.run(config, device=device, quiet=quiet)
        ds.attrs["brian2_cache_dir"] = get_cython_cache_dir()
        ds.attrs["brian2_pref"] = str(prefs["codegen.runtime.cython.cache_dir"])
        return ds


class SlowExitExperiment(FakeExperiment):
    """The fake experiment in a worker process that takes 5 s to exit (as torch and Brian2 can
    on a busy machine)."""

    @staticmethod
    def run(config: FakeConfig, *, device: str = "cpu", quiet: bool = False) -> xr.Dataset:
        import atexit

        atexit.register(time.sleep, 5.0)
        return FakeExperiment.run(config, device=device, quiet=quiet)


def _expected_response(gain: float, scale: float, seed: int, n_points: int = 3) -> np.ndarray:
    """What the fake experiment's quick run returns."""
    rng = np.random.default_rng(seed)
    return gain * scale * np.arange(n_points) + rng.normal(size=n_points)


def write(tmp_path: Path, text: str, name: str = "sweep.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


def _mtimes(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted((out / "runs").glob("*.nc"))}


# --------------------------------------------------------------------------- the sweep file

GRID = f"""
experiment = "{FAKE}"
quick = true
seeds = [0, 1]
device = "cpu"
[base]
label = "b"
[vary]
gain = [3.0, 1.0, 2.0]
"model.scale" = [1.0, 0.5]
"""


def test_parse_grid_ids_and_configs(tmp_path):
    sweep = sw.load_sweep(write(tmp_path, GRID))
    assert sweep.dims == ["gain", "model.scale", "seed"]
    assert sweep.shape == (3, 2, 2)
    assert len(sweep.runs) == 12
    first = sweep.runs[0]
    assert first.run_id == "gain=3.0__model.scale=1.0__seed=0"
    assert first.config == FakeConfig.quick().updated({"label": "b", "gain": 3.0, "seed": 0})
    last = sweep.runs[-1]
    assert last.index == (2, 1, 1)
    assert last.config.model.scale == 0.5 and last.config.gain == 2.0 and last.config.seed == 1
    assert len({r.run_id for r in sweep.runs}) == 12
    # the same file parses to the same ids (deterministic)
    assert [r.run_id for r in sw.parse_sweep(GRID).runs] == [r.run_id for r in sweep.runs]


def test_nested_tables_zip_and_odd_values(tmp_path):
    text = f"""
experiment = "{FAKE}"
zip_dim = "pair"
[vary.model]
n_levels = [2, 3]
[zip]
gain = [1.0, 2.0]
label = ["x y", "3"]
"""
    sweep = sw.parse_sweep(text)
    assert sweep.dims == ["model.n_levels", "pair", "seed"]
    assert sweep.seeds == (0,)  # the config's own seed
    assert [r.config.model.n_levels for r in sweep.runs] == [2, 2, 3, 3]
    assert [r.config.label for r in sweep.runs] == ["x y", "3", "x y", "3"]
    ids = [r.run_id for r in sweep.runs]
    # "x y" and "3" (a string that reads as a number) are not exact in a file name: hash added
    assert ids[0].startswith("model.n_levels=2__gain=1.0__label=x-y__seed=0-")
    assert len(ids[0].rsplit("-", 1)[1]) == 8
    assert all("/" not in i and " " not in i for i in ids)
    assert sw.make_run_id({"gain": 1.0}, 0) == "gain=1.0__seed=0"


BAD_FILES = [
    ("sweeps = [0]", "unknown sweep key 'sweeps'"),
    ("[base]\ngian = 2.0", "[base] unknown config key gian"),
    ("[base]\nmodel.scal = 2.0", "[base] unknown config key model.scal"),
    ("[vary]\ngain = [1.0, -5.0]", "[vary] gain = -5.0: gain must be in [0, 100]"),
    ("[vary]\n'model.n_levels' = [2, 0]", "[vary] model.n_levels = 0: model.n_levels must be"),
    ("[vary]\ngain = 2.0", "[vary] gain must be a non-empty list"),
    ("[vary]\ngain = [1.0, 1.0]", "[vary] gain has repeated values"),
    ("[vary]\nlabel = ['a', 3]", "[vary] label = 3: label must be a string"),
    ("[zip]\ngain = [1.0, 2.0]\nn_points = [3]", "[zip] lists must have equal lengths"),
    ("[vary]\nseed = [1, 2]", "[vary] seed: set seeds with the top-level key"),
    ("seeds = [0, 'one']", "seeds must be a non-empty list of integers"),
    ("seeds = [1, 1]", "seeds has repeated values"),
    ("device = 'gpu'", "device must be 'cpu', 'cuda' or 'cuda:N' (N a GPU index); got 'gpu'"),
    ("torch_threads = 0", "torch_threads must be an integer in [1, 256]; got 0"),
    ("torch_threads = 1000", "torch_threads must be an integer in [1, 256]; got 1000"),
    (
        "seeds = [0, 1]\n[base]\nn_seeds = 2",
        "with n_seeds = 2 each run covers seeds seed .. "
        "seed + 1, so the runs with seed=0 and seed=1 both cover seed 1; space the seeds by "
        "n_seeds (e.g. seeds = [0, 2]) or set n_seeds = 1 in [base]",
    ),
    ("[vary]\nlabel = ['a', 'bad']", "[vary] label = 'bad': label must not be 'bad'"),
    (
        "[vary]\ngain = "
        + str([float(g) for g in range(101)])
        + "\n'model.scale' = "
        + str([i / 10 for i in range(100)]),
        "the grid has 10100 runs; a sweep may have at most 10000",
    ),
    ("quick = 'yes'", "quick must be true or false"),
    ("[base]\ngain = 1.0\n[vary]\ngain = [2.0]", "field gain is in [base] and also varied"),
    (  # each value is fine alone, one combination is not
        "[vary]\nn_points = [2, 4]\n'model.n_levels' = [2, 3]",
        "run n_points=2__model.n_levels=3__seed=0: n_points must be >= model.n_levels; got 2",
    ),
]


@pytest.mark.parametrize(("body", "message"), BAD_FILES)
def test_bad_sweep_file_fails_before_any_work_naming_the_field(tmp_path, capsys, body, message):
    path = write(tmp_path, f'experiment = "{FAKE}"\n{body}\n')
    with pytest.raises(ValueError) as err:
        sw.load_sweep(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)
    out = tmp_path / "out"
    assert sw.main([str(path), "--out", str(out), "--workers", "2"]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()  # nothing was created, no cluster was started


def test_bad_experiment_names(tmp_path):
    with pytest.raises(ValueError, match="experiment must be one of"):
        sw.parse_sweep('experiment = "no-such-experiment"')
    with pytest.raises(ValueError, match="cannot import 'tests.nope'"):
        sw.parse_sweep('experiment = "tests.nope:X"')
    with pytest.raises(ValueError, match="has no attribute 'Missing'"):
        sw.parse_sweep('experiment = "tests.test_sweep:Missing"')
    with pytest.raises(ValueError, match="lacks Config, run"):
        sw.parse_sweep('experiment = "tests.test_sweep:write"')
    with pytest.raises(ValueError, match="experiment is required"):
        sw.parse_sweep("seeds = [0]")


def test_dry_run_lists_runs_and_paths(tmp_path, capsys):
    path = write(tmp_path, GRID)
    out = tmp_path / "out"
    assert sw.main([str(path), "--out", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "12 runs, gain=3 x model.scale=2 x seed=2" in text
    for run in sw.load_sweep(path).runs:
        assert f"todo    {run.run_id}" in text
        assert str(out / "runs" / f"{run.run_id}.nc") in text
    assert "12 of 12 runs to do" in text
    assert not out.exists()


def test_seeds_that_overlap_an_experiments_own_seeds_fail_when_read():
    """transfer --quick runs n_seeds = 2 seeds itself: seeds = [0, 1, 2, 3] cannot combine."""
    from analyses.experiments import get_experiment

    n_seeds = get_experiment("transfer").Config.quick().n_seeds
    if n_seeds < 2:
        pytest.skip("transfer's quick size runs one seed per run")
    with pytest.raises(ValueError, match=f"with n_seeds = {n_seeds} each run covers"):
        sw.parse_sweep('experiment = "transfer"\nquick = true\nseeds = [0, 1, 2, 3]\n')
    spaced = sw.parse_sweep(f'experiment = "transfer"\nquick = true\nseeds = [0, {n_seeds}]\n')
    assert len(spaced.runs) == 2


def test_the_example_in_sweep_help_is_a_valid_sweep_file(tmp_path):
    help_text = subprocess.run(
        [sys.executable, "-m", "analyses.cli", "sweep", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    example = textwrap.dedent(help_text.split("SWEEP.toml:", 1)[1])
    sweep = sw.parse_sweep(example, source="the example")
    assert sweep.experiment == "codistill-nets" and len(sweep.runs) == 2 * 2 * 2 * 3


def _readme_blocks(language: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def test_the_readme_sweep_file_is_valid_and_its_python_sweeps_can_be_saved_as_scripts():
    (grid,) = [b for b in _readme_blocks("toml") if b.startswith("# grid.toml")]
    sweep = sw.parse_sweep(grid, source="README grid.toml")
    assert len(sweep.runs) == 36 and sweep.dims == [
        "temperature",
        "codistill_weight",
        "zip",
        "seed",
    ]
    scripts = [b for b in _readme_blocks("python") if "run_sweep(" in b]
    assert len(scripts) == 2
    for block in scripts:  # a LocalCluster's workers re-import the script: guard the sweep
        guard = block.index('if __name__ == "__main__":')
        assert block.index("run_sweep(") > guard  # the first call is inside the guard


def test_bad_command_lines_fail_before_anything_is_written(tmp_path, capsys):
    path = write(tmp_path, GRID)
    out = tmp_path / "out"
    n_cpus = os.cpu_count()
    for argv, message in [
        (["--workers", "0"], f"--workers must be an integer in [1, {n_cpus}]; got 0"),
        (["--workers", str(n_cpus + 1)], f"must be an integer in [1, {n_cpus}]; got {n_cpus + 1}"),
        (["--dry-run", "--workers", "0"], "--workers must be an integer in"),
    ]:
        assert sw.main([str(path), "--out", str(out), *argv]) == 2
        assert message in capsys.readouterr().err
    # --combine names what is wrong with its directory, not a file inside it
    assert sw.main(["--combine", str(tmp_path / "missing")]) == 2
    assert f"--combine '{tmp_path / 'missing'}': no such directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert sw.main(["--combine", str(tmp_path / "empty")]) == 2
    assert "holds no sweep.toml: not a sweep's output directory" in capsys.readouterr().err
    # a non-empty directory that holds no sweep is not written into
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    for extra in ([], ["--dry-run"]):
        assert sw.main([str(path), "--out", str(foreign), *extra]) == 2
        assert "is not empty and holds no sweep" in capsys.readouterr().err
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    assert not out.exists() and list((tmp_path / "empty").iterdir()) == []


def test_an_unreachable_scheduler_leaves_nothing_behind(tmp_path, capsys):
    import dask
    import distributed  # noqa: F401 - its defaults must be in dask.config before set() below

    path = write(tmp_path, GRID)
    out = tmp_path / "out"
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        code = sw.main([str(path), "--out", str(out), "--scheduler", "tcp://127.0.0.1:9"])
    assert code == 2
    assert "--scheduler 'tcp://127.0.0.1:9': cannot connect" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.skipif(torch_cuda_available(), reason="needs a machine without a CUDA GPU")
def test_a_cuda_sweep_without_a_gpu_fails_before_any_work(tmp_path, capsys, client):
    path = write(tmp_path, f'experiment = "{FAKE}"\ndevice = "cuda"\n')
    out = tmp_path / "out"
    for extra in (["--dry-run"], ["--workers", "1"]):
        assert sw.main([str(path), "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err
        assert f"{path}: device is 'cuda' but torch" in err and "sees no CUDA GPU" in err
    # on a running cluster the device is checked on a worker, before any file
    with pytest.raises(ValueError, match=r"device is 'cuda' but torch .* \(on a worker of tcp"):
        sw.run_sweep(sw.load_sweep(path), out, client=client, quiet=True)
    assert not out.exists()


# --------------------------------------------------------------------------- running on Dask


def test_cli_sweep_on_two_workers_combines_with_sweep_dims(tmp_path, capsys, client):
    """``neurosim sweep SWEEP.toml --scheduler ADDRESS`` on the 2-worker LocalCluster."""
    path = write(tmp_path, GRID)
    out = tmp_path / "out"
    address = client.scheduler.address
    assert sw.main([str(path), "--out", str(out), "--scheduler", address, "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "dask dashboard: http://" in text
    assert "12 runs: 0 already finished, 12 ran, 0 failed" in text

    ds = open_results(out / "sweep.nc")
    assert ds["response"].dims == ("gain", "model.scale", "seed", "point")
    assert ds["response"].shape == (3, 2, 2, 3)
    assert ds["gain"].values.tolist() == [3.0, 1.0, 2.0]  # the file's order, not sorted
    assert ds["model.scale"].values.tolist() == [1.0, 0.5]
    assert ds["seed"].values.tolist() == [0, 1]
    assert ds["point"].values.tolist() == [0, 1, 2]
    assert ds["completed"].values.all()
    assert ds.attrs["experiment"] == FAKE and ds.attrs["n_completed"] == 12
    assert ds.attrs["failed_runs"] == "none"
    for gain in (3.0, 1.0, 2.0):
        for scale in (1.0, 0.5):
            for seed in (0, 1):
                got = ds["response"].sel(gain=gain, seed=seed, **{"model.scale": scale})
                np.testing.assert_allclose(got, _expected_response(gain, scale, seed))
    # each worker process: 1 torch thread and its own Brian2/Cython cache under DIR/.cache
    assert (ds["torch_threads"] == 1).all()
    caches = {}
    for run in sw.load_sweep(path).runs:
        one = open_results(run.nc_path(out))
        assert one.attrs["run_id"] == run.run_id and one.attrs["device_seen"] == "cpu"
        assert FakeConfig.from_toml(one.attrs["config_toml"]) == run.config
        caches.setdefault(one.attrs["worker_pid"], set()).add(one.attrs["cython_cache_dir"])
    assert all(len(dirs) == 1 for dirs in caches.values())
    dirs = set().union(*caches.values())
    assert len(dirs) == len(caches)
    assert all(Path(d).parent == (out / ".cache" / "brian2").resolve() for d in dirs)

    # the combined file can be rebuilt from the directory alone
    (out / "sweep.nc").unlink()
    assert sw.main(["--combine", str(out)]) == 0
    assert "combined 12 of 12 runs (0 missing)" in capsys.readouterr().out
    xr.testing.assert_identical(open_results(out / "sweep.nc")["response"], ds["response"])


def test_failing_run_is_recorded_and_the_rest_complete(tmp_path, client):
    text = f"""
experiment = "{FAKE}"
quick = true
seeds = [0, 1]
[base]
fail_on_gain = 2.0
[vary]
gain = [1.0, 2.0, 3.0]
"""
    sweep = sw.parse_sweep(text)
    out = tmp_path / "out"
    report = sw.run_sweep(sweep, out, client=client, quiet=True)
    bad = {"gain=2.0__seed=0", "gain=2.0__seed=1"}
    assert set(report.failed) == bad
    assert all("RuntimeError: fake failure at gain 2.0" in e for e in report.failed.values())
    assert report.n_ran == 6 and not report.ok
    for run in sweep.runs:
        if run.run_id in bad:
            assert not run.nc_path(out).exists()
            error = run.error_path(out).read_text()
            assert "Traceback" in error and "fake failure at gain 2.0" in error
            assert sw.run_status(run, out) == "failed"
        else:
            assert sw.run_status(run, out) == "done"
    ds = open_results(out / "sweep.nc")
    assert ds["completed"].values.tolist() == [[1, 1], [0, 0], [1, 1]]
    assert np.isnan(ds["response"].sel(gain=2.0)).all()
    assert np.isfinite(ds["response"].sel(gain=[1.0, 3.0])).all()
    assert ds.attrs["failed_runs"] == "gain=2.0__seed=0 gain=2.0__seed=1"

    # re-running retries only the failed runs; fixing the cause completes the sweep
    before = _mtimes(out)
    fixed = sw.parse_sweep(text.replace("fail_on_gain = 2.0", "fail_on_gain = 50.0"))
    with pytest.raises(ValueError, match="different config .*fail_on_gain"):
        sw.run_sweep(fixed, out, client=client, quiet=True)  # finished files disagree: refuse
    again = sw.run_sweep(sweep, out, client=client, quiet=True)
    assert again.n_skipped == 4 and again.n_ran == 2 and set(again.failed) == bad
    assert _mtimes(out) == before


def test_resume_runs_only_missing_runs(tmp_path, client):
    head = f'experiment = "{FAKE}"\nquick = true\nseeds = [0, 1]\n[vary]\n'
    out = tmp_path / "out"
    part = sw.parse_sweep(head + "gain = [1.0, 2.0]\n")
    assert sw.run_sweep(part, out, client=client, quiet=True).ok
    before = _mtimes(out)
    assert len(before) == 4
    time.sleep(0.05)
    full = sw.parse_sweep(head + "gain = [1.0, 2.0, 3.0, 4.0]\n")
    report = sw.run_sweep(full, out, client=client, quiet=True)
    assert report.ok and report.n_skipped == 4 and report.n_ran == 4
    after = _mtimes(out)
    assert len(after) == 8
    assert {k: after[k] for k in before} == before  # finished runs were not redone
    ds = open_results(out / "sweep.nc")
    assert ds["response"].dims == ("gain", "seed", "point") and ds["completed"].all()
    # a corrupt (unopenable) file counts as missing and is redone
    broken = full.runs[0].nc_path(out)
    broken.write_bytes(b"not netcdf")
    assert sw.run_status(full.runs[0], out) == "todo"
    report = sw.run_sweep(full, out, client=client, quiet=True)
    assert report.n_ran == 1 and sw.run_status(full.runs[0], out) == "done"


def test_a_local_sweep_logs_each_run_and_lets_its_workers_exit(tmp_path):
    """``python -m analyses.sweep --workers 1`` in a batch log: a line per finished run (with
    the ETA), and a worker slow to exit is waited for, not killed ("Worker process still
    alive after 4.0 seconds, killing" after a sweep that went well)."""
    path = write(
        tmp_path,
        'experiment = "tests.test_sweep:SlowExitExperiment"\nquick = true\nseeds = [0, 1]\n',
    )
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "analyses.sweep", str(path), "--out", str(out), "--workers", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "still alive" not in proc.stderr and "killing" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "runs done" in ln]
    assert len(lines) == 2, proc.stderr
    assert re.search(
        r"SlowExitExperiment: 1/2 runs done, last seed=\d \(\d+\.\d s\); "
        r"elapsed \d:\d\d:\d\d, ETA \d:\d\d:\d\d$",
        lines[0],
    ), lines[0]
    assert "2/2 runs done" in lines[1] and "ETA 0:00:00" in lines[1]
    assert "2 runs: 0 already finished, 2 ran, 0 failed" in proc.stdout


def _sigint_default() -> None:  # a child of a non-interactive shell may start with SIGINT ignored
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["ctrl-c", "kill"])
def test_interrupted_sweep_resumes_without_redoing_runs(tmp_path, client, how):
    """Start ``python -m analyses.sweep --workers 2``, interrupt it after 2 runs, re-run.

    ``ctrl-c`` sends SIGINT to the whole process group (the command and its Dask workers), as a
    terminal does; ``kill`` sends SIGTERM to the command only. Slow (30-70 s on the shared
    machine): the interrupted command starts its own LocalCluster and imports torch and Brian2.
    """
    path = write(
        tmp_path,
        f'experiment = "{FAKE}"\nquick = true\nseeds = [0, 1]\n'
        "[base]\nsleep_s = 0.6\n[vary]\ngain = [1.0, 2.0, 3.0, 4.0, 5.0]\n",
    )
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "analyses.sweep", str(path), "--out", str(out), "--workers", "2"]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=_sigint_default,
    )
    try:
        deadline = time.monotonic() + 120
        while len(list((out / "runs").glob("*.nc"))) < 2 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[0]
            time.sleep(0.05)
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == (130 if how == "ctrl-c" else 143), output
    assert "dask dashboard: http://" in output
    assert re.search(r"interrupted; \d+ of 10 runs kept in .*; run the same command again", output)
    before = _mtimes(out)
    assert 2 <= len(before) < 10
    assert not list((out / "runs").glob("*.error.txt"))
    assert not (out / "sweep.nc").exists()
    time.sleep(0.05)
    sweep = sw.load_sweep(path)
    report = sw.run_sweep(sweep, out, client=client, quiet=True)
    assert report.ok and report.n_skipped == len(before) and report.n_ran == 10 - len(before)
    after = _mtimes(out)
    assert len(after) == 10 and {k: after[k] for k in before} == before
    assert open_results(out / "sweep.nc")["completed"].all()


@pytest.mark.slow
def test_sweep_of_a_real_quick_experiment(tmp_path, client):
    """Two seeds of codistill-nets --quick on the 2 workers (about 40 s on the shared machine)."""
    name = "codistill-nets"
    assert name in available()
    sweep = sw.parse_sweep(f'experiment = "{name}"\nquick = true\nseeds = [0, 1]\n')
    out = tmp_path / "out"
    report = sw.run_sweep(sweep, out, client=client, quiet=True)
    assert report.ok, report.failed
    ds = open_results(out / "sweep.nc")
    one = open_results(sweep.runs[0].nc_path(out))
    assert ds["seed"].values.tolist() == [0, 1]
    assert ds["completed"].values.tolist() == [1, 1]
    for var in one.data_vars:
        assert ds[var].dims[0] == "seed"
        assert set(ds[var].dims) == {"seed", *one[var].dims}
        mine = one[var].sel(seed=0) if "seed" in one[var].dims else one[var]
        np.testing.assert_allclose(
            ds[var].sel(seed=0).transpose(*mine.dims).values.astype(float),
            mine.values.astype(float),
        )


def test_experiment_with_its_own_seed_dim(tmp_path, client):
    """Runs whose results have a ``seed`` dim (n_seeds per run) are joined along it."""
    text = f"""
experiment = "{FAKE}"
quick = true
seeds = [0, 5]
[base]
n_seeds = 2
[vary]
gain = [1.0, 2.0]
"""
    out = tmp_path / "out"
    sweep = sw.parse_sweep(text)
    assert sw.run_sweep(sweep, out, client=client, quiet=True).ok
    ds = open_results(out / "sweep.nc")
    assert ds["response"].dims == ("gain", "seed", "point")
    assert ds["seed"].values.tolist() == [0, 1, 5, 6]
    for gain in (1.0, 2.0):
        for seed in (0, 1, 5, 6):
            got = ds["response"].sel(gain=gain, seed=seed)
            np.testing.assert_allclose(got, _expected_response(gain, 1.0, seed))
    assert ds["completed"].values.all()
    assert ds["run_id"].sel(gain=2.0, seed=6).item() == "gain=2.0__seed=5"
    # seeds 0 and 1 with two seeds per run would both produce seed 1: refused when read
    with pytest.raises(ValueError, match="the runs with seed=0 and seed=1 both cover seed 1"):
        sw.parse_sweep(text.replace("seeds = [0, 5]", "seeds = [0, 1]"))


@pytest.mark.slow
def test_each_worker_has_its_own_brian2_cache(tmp_path, client):
    """Brian2, imported inside a task, compiles into DIR/.cache/brian2/worker-<name>.

    (Importing Brian2 in a Dask task thread would fail: the worker plugin imports it first.)
    """
    text = (
        'experiment = "tests.test_sweep:FakeBrianExperiment"\nquick = true\nseeds = [0, 1, 2, 3]\n'
    )
    out = tmp_path / "out"
    sweep = sw.parse_sweep(text)
    assert sw.run_sweep(sweep, out, client=client, quiet=True).ok
    by_pid = {}
    for run in sweep.runs:
        attrs = open_results(run.nc_path(out)).attrs
        worker_dir = Path(attrs["cython_cache_dir"])
        assert worker_dir.parent == (out / ".cache" / "brian2").resolve()
        assert Path(attrs["brian2_cache_dir"]) == worker_dir / "brian_extensions"
        assert attrs["brian2_pref"] == attrs["brian2_cache_dir"]
        by_pid.setdefault(attrs["worker_pid"], set()).add(attrs["brian2_cache_dir"])
    assert all(len(dirs) == 1 for dirs in by_pid.values())
    assert len(set().union(*by_pid.values())) == len(by_pid)
