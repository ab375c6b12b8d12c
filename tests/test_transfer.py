"""The flagship experiment end to end at its --quick size: structure, ranges, NetCDF round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from analyses.baselines import MODEL_KINDS
from analyses.cli import main
from analyses.experiments import transfer
from neurosim.export import check_variable_attrs, open_results


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("transfer")
    previous = torch.get_num_threads()
    assert main(["run", "transfer", "--quick", "--quiet", "--out", str(out)]) == 0
    assert torch.get_num_threads() == previous  # the run restores the thread setting
    return out, open_results(out / transfer.RESULT_FILE)


def test_files_written(quick_run):
    out, _ = quick_run
    assert (out / "config.toml").is_file()
    for stem in ("transfer_accuracy", "transfer_location", "transfer_wave", "transfer_loss"):
        assert (out / f"{stem}.png").is_file() and (out / f"{stem}.pdf").is_file()
    cfg = transfer.Config.from_toml((out / "config.toml").read_text())
    assert cfg == transfer.Config.quick()


def test_dims_coords_and_attrs(quick_run):
    _, ds = quick_run
    cfg = transfer.Config.quick()
    assert ds["accuracy"].dims == ("model", "retina", "n_train", "seed")
    assert list(ds["model"].values) == list(MODEL_KINDS)
    assert list(ds["retina"].values) == ["uniform", "foveated"]
    assert list(ds["n_train"].values) == sorted(cfg.n_train)
    assert list(ds["seed"].values) == [cfg.seed + i for i in range(cfg.n_seeds)]
    assert ds["gap_closed"].dims == ("control", "retina", "n_train")
    assert list(ds["control"].values) == ["lc-backprop", "local"]
    assert ds["accuracy_heldout_location"].dims == ("model", "retina", "seed")
    assert ds["accuracy_by_offset"].dims == ("model", "retina", "seed", "offset_px", "checkpoint")
    assert list(ds["offset_px"].values) == list(cfg.wave_offsets_px)
    assert list(ds["checkpoint"].values) == [2, 4]  # half-way and the end of 4 steps
    assert ds["final_loss_change"].dims == ("model", "retina", "n_train", "seed")
    assert ds["generalisation_radius_px"].dims == ("model", "retina")
    assert ds["convergence_ratio"].dims == ("model", "retina", "n_train", "seed")
    assert ds["training_steps"].dims == ("n_train",)
    assert ds["accuracy_train_region"].dims == ("model", "retina", "seed")
    assert ds["n_parameters"].dims == ("model", "retina")
    for name in ("accuracy_mean", "accuracy_ci_low", "accuracy_ci_high"):
        assert ds[name].dims == ("model", "retina", "n_train")
    assert check_variable_attrs(ds) == []
    for key in ("experiment", "git_commit", "config_toml", "seed", "torch_version", "created_utc"):
        assert key in ds.attrs
    assert ds.attrs["experiment"] == "transfer"
    assert transfer.Config.from_toml(ds.attrs["config_toml"]) == cfg


def test_value_ranges(quick_run):
    _, ds = quick_run
    for name in ("accuracy", "accuracy_heldout_location", "accuracy_train_region"):
        v = ds[name].values
        assert np.all(np.isfinite(v)) and v.min() >= 0.0 and v.max() <= 1.0
    mean = ds["accuracy"].mean("seed")
    np.testing.assert_allclose(ds["accuracy_mean"].values, mean.values, atol=1e-12)
    lo, hi = ds["accuracy_ci_low"].values, ds["accuracy_ci_high"].values
    assert np.all(lo <= ds["accuracy_mean"].values + 1e-12)
    assert np.all(hi >= ds["accuracy_mean"].values - 1e-12)
    # the gap closed is recomputed from the stored per-seed accuracies
    from analyses.intervals import gap_closed_interval

    acc = ds["accuracy"]
    for control in ("lc-backprop", "local"):
        g = gap_closed_interval(
            acc.sel(model="codistill"), acc.sel(model=control), acc.sel(model="cnn"), axis="seed"
        )
        got = ds["gap_closed"].sel(control=control).transpose("retina", "n_train")
        np.testing.assert_allclose(
            got.values, g.value.transpose("retina", "n_train").values, equal_nan=True
        )
        reasons = ds["gap_closed_reason"].sel(control=control).values
        assert np.all((reasons != "") == np.isnan(got.values))
    wave = ds["accuracy_by_offset"].values
    assert np.all(np.isfinite(wave)) and wave.min() >= 0.0 and wave.max() <= 1.0
    assert np.all(np.isfinite(ds["final_loss_change"].values))
    n_par = ds["n_parameters"]
    per = ds["n_parameters_per_column"]
    assert np.all(n_par.values > 0)
    assert float(per.sel(model="lc-backprop", retina="uniform")) == float(
        n_par.sel(model="shared-columns", retina="uniform")
    )
    assert np.all(ds["train_seconds"].values > 0)


def test_netcdf_round_trip(quick_run, tmp_path):
    from neurosim.export import to_netcdf

    _, ds = quick_run
    path = to_netcdf(ds, tmp_path / "again.nc")
    back = open_results(path)
    xr.testing.assert_equal(back, ds)
    for name in ds.variables:
        assert back[name].attrs == ds[name].attrs, name
    assert back.attrs["config_toml"] == ds.attrs["config_toml"]


def test_summary_table(quick_run):
    _, ds = quick_run
    text = transfer.summary(ds)
    for word in (
        "Gap closed",
        "uniform",
        "foveated",
        "Location-restricted",
        "Convergence",
        "Wave",
        *MODEL_KINDS,
    ):
        assert word in text


def test_figures_of_a_subset_of_models(quick_run, tmp_path):
    """A run of some models only (no gap closed: all NaN) still draws its figures."""
    _, ds = quick_run
    sub = ds.sel(model=["codistill", "shared-columns"])
    sub["gap_closed"] = xr.full_like(sub["gap_closed"], np.nan)
    paths = transfer.figures(sub, tmp_path)
    assert paths and all(p.is_file() for p in paths)


def test_gap_closed_is_nan_safe():
    g = transfer.gap_closed(
        np.array([0.5, 0.5, 0.7, np.nan]),
        np.array([0.3, 0.3, 0.3, 0.3]),
        np.array([0.7, 0.305, 0.5, 0.7]),
        0.02,
    )
    np.testing.assert_allclose(g, [0.5, np.nan, 2.0, np.nan], equal_nan=True)


def test_unknown_config_key_fails_before_writing(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("n_seeds = 2\n[baseline]\nno_such_field = 1\n")
    out = tmp_path / "out"
    assert main(["run", "transfer", "--quick", "--config", str(bad), "--out", str(out)]) == 2
    assert "baseline.no_such_field" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"models": ["cnn", "mlp"]}, "models[1]"),
        ({"retinas": ["uniform", "uniform"]}, "retinas"),
        ({"n_train": [-1]}, "n_train[0]"),
        ({"heldout_overlap": 0.0, "digit_px": 14}, "heldout_overlap"),
        ({"baseline": {"steps": 0}}, "baseline.steps"),
    ],
)
def test_bad_config_names_field(overrides, field):
    with pytest.raises(ValueError, match=field.replace("[", r"\[").replace("]", r"\]")):
        transfer.Config.quick().updated(overrides)


def test_video_protocol_runs_and_only_codistill_learns_from_videos(tmp_path):
    """video = true: the location-restricted models also get unlabelled videos; codistill's
    temporal term reads them, local (no co-distillation) trains exactly as without."""
    cfg = transfer.Config.quick().updated(
        {
            "models": ["local", "codistill"],
            "retinas": ["uniform"],
            "n_train": [24],
            "n_seeds": 1,
            "video": True,
            "video_frames": 3,
            "n_videos": 16,
            "baseline": {
                "steps": 3,
                "unlabelled_batch_size": 4,
                "objective": {"w_temporal": 1.0, "warmup_fraction": 0.0},
            },
        }
    )
    ds = transfer.run(cfg, quiet=True)
    no_video = transfer.run(
        cfg.updated({"video": False, "baseline": {"unlabelled_batch_size": 0}}), quiet=True
    )
    held = ds["accuracy_heldout_location"]
    assert np.all(np.isfinite(held.values))
    # local cannot use unlabelled videos: its results are those of the run without them
    xr.testing.assert_equal(
        held.sel(model="local"), no_video["accuracy_heldout_location"].sel(model="local")
    )
    with pytest.raises(ValueError, match="unlabelled_batch_size >= 1"):
        cfg.updated({"baseline": {"unlabelled_batch_size": 0}})


def test_an_interrupted_transfer_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    """Every unit (kind x retina) is kept as it finishes; Ctrl-C after two units, then the same
    command trains only the rest and writes the uninterrupted run's results (timings aside)."""
    from analyses.cli import main as cli_main
    from analyses.subruns import SubrunStore

    cfg = tmp_path / "small.toml"
    cfg.write_text('models = ["cnn", "local", "codistill"]\nretinas = ["uniform"]\n')
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    args = ["run", "transfer", "--quick", "--quiet", "--no-figures", "--config", str(cfg), "--out"]
    assert cli_main([*args, str(whole)]) == 0
    put, calls = SubrunStore.put, []

    def put_then_interrupt(self, results):
        calls.append(list(results))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return put(self, results)

    monkeypatch.setattr(SubrunStore, "put", put_then_interrupt)
    assert cli_main([*args, str(cut)]) == 130
    monkeypatch.setattr(SubrunStore, "put", put)
    assert len(list((cut / "subruns").glob("*.npz"))) == 2
    import analyses.runner as runner

    trained, real = [], runner.run_units

    def counting(units, *a, **k):
        trained.extend(u.key for u in units)
        return real(units, *a, **k)

    monkeypatch.setattr(runner, "run_units", counting)
    assert cli_main([*args, str(cut)]) == 0
    assert len(trained) == 1  # two of the three units were kept
    a, b = xr.load_dataset(whole / "results.nc"), xr.load_dataset(cut / "results.nc")
    for ds in (a, b):
        for key in ("wall_time_s", "train_wall_time_s", "created_utc", "git_commit"):
            ds.attrs.pop(key, None)
    xr.testing.assert_identical(a.drop_vars("train_seconds"), b.drop_vars("train_seconds"))


def test_verdict_is_recomputed_from_the_stored_accuracies(quick_run):
    """The verdict's differences and intervals follow from the per-seed accuracies in the file,
    and the summary prints them first."""
    from analyses.intervals import paired_difference

    _, ds = quick_run
    full = ds["accuracy"].sel(n_train=ds["n_train"].values.max())
    d = paired_difference(full.sel(model="codistill"), full.sel(model="local"), axis="seed")
    got = ds["codistill_minus_local"].isel(split=0)
    np.testing.assert_allclose(got.values, d.mean.transpose("retina").values)
    np.testing.assert_allclose(
        ds["codistill_minus_local_ci_low"].isel(split=0).values, d.low.transpose("retina").values
    )
    held = ds["accuracy_heldout_location"].sel(model="codistill")
    np.testing.assert_allclose(
        ds["heldout_above_chance"].values, (held.mean("seed") - 0.1).transpose("retina").values
    )
    text = transfer.summary(ds)
    assert text.startswith("Verdict (2 seeds")
    assert "co-distillation" in text and "held-out location accuracy" in text
    assert ds.attrs["protocol"] == "static images"


def test_generalisation_radius_by_hand():
    """The radius is where the seed-mean accuracy beyond the trained offsets falls half-way
    from its trained level to chance, linearly interpolated."""
    from analyses.experiments.transfer_results import _radius

    cfg = transfer.Config()  # trained offsets 0-3 (left region with overlap 0.25, digit 12)
    acc = np.array([0.9, 0.9, 0.3, 0.1, 0.1])  # offsets 0, 3, 6, 9, 12
    ds = xr.Dataset(
        {
            "accuracy_by_offset": (
                ("model", "retina", "seed", "offset_px", "checkpoint"),
                acc.reshape(1, 1, 1, 5, 1),
            )
        },
        coords={"offset_px": [0, 3, 6, 9, 12]},
    )
    # level = (0.9 + 0.1) / 2 = 0.5, reached between 3 (0.9) and 6 (0.3): 3 + 3 * 0.4/0.6 = 5
    np.testing.assert_allclose(_radius(ds, cfg), [[2.0]])


def test_the_default_budget_is_fifty_passes_over_every_training_set():
    """The flagship trains every model 50 epochs (batch 32): 157, 469 and 1966 steps for the
    default training sets of 100, 300 and all 1258 canvases, at most baseline.steps."""
    import math

    from analyses.experiments.transfer import Config, job_steps

    cfg = Config()
    assert cfg.max_epochs == 50 and cfg.baseline.batch_size == 32
    assert [job_steps(cfg, n) for n in (100, 300, 1258)] == [157, 469, 1966]
    assert job_steps(cfg, 10**6) == cfg.baseline.steps == 2000
    assert all(job_steps(cfg, n) == math.ceil(50 * n / 32) for n in (100, 300, 1258))
