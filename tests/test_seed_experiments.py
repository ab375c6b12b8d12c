"""The seed's distillation experiments in their --quick form: structure, labels, ranges, files."""

from __future__ import annotations

import numpy as np
import pytest

from analyses.cli import main
from neurosim.export import check_variable_attrs, open_results


@pytest.fixture(scope="module")
def codistill_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("codistill")
    assert main(["run", "codistill-nets", "--quick", "--quiet", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def distill_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("distill")
    assert main(["run", "distill", "--quick", "--quiet", "--out", str(out)]) == 0
    return out


def test_codistill_nets_quick_results(codistill_run, capsys):
    from analyses.experiments import codistill_nets as exp

    ds = open_results(codistill_run / exp.RESULT_FILE)
    cfg = exp.Config.quick()
    assert ds["condition"].values.tolist() == [
        "independent",
        "ensemble",
        "codistilled",
        "codistilled-subsets",
    ]
    assert ds["test_errors"].dims == ("condition", "seed", "net")
    assert ds.sizes["net"] == cfg.n_nets and ds.sizes["seed"] == cfg.n_seeds
    assert check_variable_attrs(ds) == []
    assert ds["test_errors"].attrs["units"] == "count"
    n_test = int(ds.attrs["n_test"])
    assert n_test > 100
    for cond in ("independent", "codistilled", "codistilled-subsets"):
        v = ds["test_errors"].sel(condition=cond).values
        assert np.all(np.isfinite(v)) and np.all((v >= 0) & (v <= n_test))
        assert np.all(v == np.round(v))
    # the ensemble: one classifier per seed, stored at net 0, NaN elsewhere
    ens = ds["test_errors"].sel(condition="ensemble").values
    assert np.all(np.isfinite(ens[:, 0])) and np.all(np.isnan(ens[:, 1:]))
    np.testing.assert_array_equal(
        ens[:, 0], ds["ensemble_errors"].sel(condition="independent").values
    )
    rate = ds["test_error_rate"].sel(condition="independent").values
    assert np.all((rate >= 0) & (rate <= 1))
    # even the quick run learns something: well below chance (90 % errors)
    assert ds["test_errors"].sel(condition="independent").mean() < 0.8 * n_test
    assert ds.attrs["experiment"] == "codistill-nets"
    assert (codistill_run / "config.toml").is_file()
    assert (codistill_run / "codistill_nets.png").is_file()
    text = exp.summary(ds)
    for cond in ds["condition"].values:
        assert cond in text
    assert "158" in text


def test_distill_quick_results(distill_run):
    from analyses.experiments import distill as exp

    ds = open_results(distill_run / exp.RESULT_FILE)
    assert ds["model"].values.tolist() == list(exp.MODELS)
    assert ds["test_errors"].dims == ("model", "seed")
    assert check_variable_attrs(ds) == []
    n_test = int(ds.attrs["n_test"])
    errors = ds["test_errors"].values
    assert np.all((errors >= 0) & (errors <= n_test))
    np.testing.assert_allclose(ds["test_error_rate"].values, errors / n_test)
    acc = ds["class3_accuracy"].values
    assert np.all((acc >= 0) & (acc <= 1))
    assert ds.sizes["shift"] > 10 and ds["shift"].values[0] == 0.0
    # the sweep at zero shift is the un-raised no-3 net
    np.testing.assert_array_equal(
        ds["sweep_test_errors"].isel(shift=0).values,
        ds["test_errors"].sel(model="small-soft-no3").values,
    )
    prior = ds["learned_prior"].values
    np.testing.assert_allclose(prior.sum(-1), 1.0, rtol=1e-5)
    assert (distill_run / "distill.png").is_file() and (distill_run / "distill.pdf").is_file()
    text = exp.summary(ds)
    assert "small-soft-no3-bias" in text and "146" in text


def test_bias_raise_rule():
    from analyses.experiments.distill import bias_raise

    prior = np.full(10, 0.1)
    assert bias_raise(prior, 3) == pytest.approx(0.0)
    prior = np.array([0.11] * 10)
    prior[3] = 0.11 / np.e**2
    assert bias_raise(prior, 3) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="omitted_class"):
        bias_raise(prior, 10)


@pytest.mark.parametrize(
    ("module", "field", "value"),
    [
        ("codistill_nets", "n_nets", 1),
        ("codistill_nets", "temperature", 0.0),
        ("codistill_nets", "subset_fraction", 0.0),
        ("codistill_nets", "test_fraction", 1.0),
        ("distill", "omitted_class", 10),
        ("distill", "dropout_hidden", 1.0),
        ("distill", "temperature", -1.0),
        ("distill", "epochs_big", 0),
        # every size has an upper bound tied to what it depends on
        ("codistill_nets", "n_nets", 101),
        ("codistill_nets", "n_seeds", 101),
        ("codistill_nets", "epochs", 10_001),
        ("codistill_nets", "hidden", (4097,)),
        ("codistill_nets", "hidden", (8,) * 9),
        ("codistill_nets", "batch_size", 1259),  # > the 1258 training images
        ("codistill_nets", "warmup_epochs", 21),  # > epochs
        ("codistill_nets", "ramp_epochs", 21),
        ("distill", "n_seeds", 101),
        ("distill", "small_hidden", (5000,)),
        ("distill", "big_hidden", (64,) * 9),
        ("distill", "epochs_small", 10_001),
        ("distill", "batch_size", 1259),
    ],
)
def test_bad_config_names_field(module, field, value):
    import importlib

    exp = importlib.import_module(f"analyses.experiments.{module}")
    with pytest.raises(ValueError, match=field):
        exp.Config().updated({field: value})


@pytest.mark.parametrize("module", ["codistill_nets", "distill"])
def test_the_batch_size_bound_follows_the_training_set(module):
    import importlib

    from analyses.experiments.codistill_nets import digits_train_size
    from analyses.tasks import digits_split

    for fraction in (0.05, 0.3, 0.95):
        assert digits_train_size(fraction) == len(digits_split(test_fraction=fraction).y_train)
    exp = importlib.import_module(f"analyses.experiments.{module}")
    assert exp.Config(test_fraction=0.5, batch_size=896).batch_size == 896
    with pytest.raises(ValueError, match=r"batch_size must be an integer in \[1, 896\]; got 897"):
        exp.Config(test_fraction=0.5, batch_size=897)


def test_distill_summary_says_lowered_for_a_negative_shift(distill_run):
    from analyses.experiments import distill as exp

    ds = open_results(distill_run / exp.RESULT_FILE)
    ds["bias_shift"][:] = -0.16
    text = exp.summary(ds)
    assert "class-3 bias lowered by 0.16 by the prior rule (per seed: -0.16)" in text
    assert "raised by -" not in text
    ds["bias_shift"][:] = 2.5
    assert "class-3 bias raised by 2.50 by the prior rule (per seed: +2.50)" in exp.summary(ds)


def test_bad_config_from_cli_fails_before_running(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("n_nets = 0\n")
    out = tmp_path / "never"
    assert main(["run", "codistill-nets", "--config", str(cfg), "--out", str(out)]) == 2
    assert "n_nets" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("name", ["codistill_nets", "distill"])
def test_figures_label_their_references_and_keep_legends_off_the_data(
    name, codistill_run, distill_run, monkeypatch, tmp_path
):
    import importlib

    import analyses.figures

    exp = importlib.import_module(f"analyses.experiments.{name}")
    run = codistill_run if name == "codistill_nets" else distill_run
    drawn = []
    monkeypatch.setattr(analyses.figures, "save_figure", lambda fig, *a, **k: drawn.append(fig))
    exp.figures(open_results(run / exp.RESULT_FILE), tmp_path)
    (fig,) = drawn
    fig.canvas.draw()
    (legend,) = fig.legends
    texts = [t.get_text() for t in legend.get_texts()]
    box = legend.get_window_extent()
    for ax in fig.axes:
        assert box.y1 <= ax.get_window_extent().y0  # below every panel, over no data
        assert ax.get_legend() is None
    if name == "codistill_nets":
        assert texts == ["one net", "mean", "ensemble of the nets", "chance: 90 % wrong (485)"]
    else:
        assert legend.get_title().get_text() == "one seed: no error bars"
        assert texts[-1].startswith("shift by the prior rule (") and "mean over seeds" in texts


def test_distill_error_bars_stay_within_zero_and_the_test_set():
    """Few errors with a large spread: the t interval would reach below 0 errors; the bars are
    clipped to [0, n_test] and the legend says so."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import xarray as xr

    from analyses.experiments import distill

    errors = np.array([[0.0, 1.0, 40.0], [10.0, 12.0, 11.0]])
    ds = xr.Dataset(
        {"test_errors": (("model", "seed"), errors)},
        coords={"model": ["small", "big"], "seed": [0, 1, 2]},
        attrs={"n_test": 100},
    )
    fig, ax = plt.subplots()
    bars, _ = distill._draw_models(ax, ds)
    (segments,) = bars.errorbar.lines[2]
    lows = [seg[:, 1].min() for seg in segments.get_segments()]
    assert min(lows) == pytest.approx(0.0)  # cut at 0, not below
    assert all(seg[:, 1].max() <= 100 for seg in segments.get_segments())
    plt.close(fig)
