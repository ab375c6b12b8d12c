"""The column-similarity experiment: the --quick run's Dataset, and the pieces it is built from."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from analyses.cli import main
from analyses.experiments import column_similarity as cs
from neurosim.export import check_variable_attrs, open_results, to_netcdf


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("column_similarity")
    assert main(["run", "column-similarity", "--quick", "--quiet", "--out", str(out)]) == 0
    return out


def test_quick_run_dataset(quick_run):
    ds = open_results(quick_run / cs.RESULT_FILE)
    cfg = cs.Config.quick()
    assert ds.attrs["experiment"] == "column-similarity"
    assert cs.Config.from_toml(ds.attrs["config_toml"]) == cfg
    assert check_variable_attrs(ds) == []
    assert ds["model"].values.tolist() == list(cfg.models)
    assert ds["retina"].values.tolist() == ["uniform", "foveated"]
    assert ds["seed"].values.tolist() == [cfg.seed, cfg.seed + 1]
    levels = [f"level_{lv}" for lv in range(cfg.baseline.n_levels)]
    assert ds["output"].values.tolist() == ["encoder", *levels, "logits"]
    assert ds["measure"].values.tolist() == list(cs.MEASURES)
    fs = ds["functional_similarity"]
    assert fs.dims == ("model", "retina", "seed", "output", "measure")
    assert np.isfinite(fs).all()
    assert float(np.abs(fs).max()) <= 1 + 1e-9
    ws = ds["weight_similarity"]
    assert ws.dims == ("model", "retina", "seed", "layer")
    assert {"encoder.0", "readout"} <= set(ds["layer"].values.tolist())
    assert np.isfinite(ws).all() and float(np.abs(ws).max()) <= 1 + 1e-9
    # tied weights are the ceiling; independent random initialisations are near 0
    np.testing.assert_allclose(ws.sel(model="shared-columns"), 1.0, atol=1e-9)
    assert float(np.abs(ws.sel(model="untrained")).max()) < 0.2
    for name in ("class_agreement", "centred_accuracy", "accuracy"):
        assert ds[name].dims == ("model", "retina", "seed")
        assert np.all((ds[name] >= 0) & (ds[name] <= 1)), name
    assert (quick_run / "column_similarity.png").stat().st_size > 0
    assert (quick_run / "column_similarity.pdf").stat().st_size > 0
    text = cs.summary(ds)
    assert "codistill" in text and "weight similarity" in text


def test_netcdf_round_trip(quick_run, tmp_path):
    ds = open_results(quick_run / cs.RESULT_FILE)
    again = open_results(to_netcdf(ds, tmp_path / "again.nc"))
    xr.testing.assert_identical(again.drop_attrs(), ds.drop_attrs())
    for name in ds.data_vars:
        assert again[name].attrs == ds[name].attrs


def test_centred_canvases_put_the_patch_centre_on_the_position():
    patch = np.zeros((1, 5, 5), np.float32)
    patch[0, 2, 2] = 1.0  # the centre pixel of a 5 px patch
    centres = np.array([[3.0, 4.0], [6.0, 0.0], [-1.6, 7.0]])
    canv = cs.centred_canvases(patch, centres, 12)
    assert canv.shape == (3, 1, 12, 12)
    assert np.unravel_index(canv[0, 0].argmax(), (12, 12)) == (3, 4)
    assert np.unravel_index(canv[1, 0].argmax(), (12, 12)) == (6, 0)
    assert canv[2, 0].sum() == 0  # the centre lies off the canvas: cropped away
    full = cs.centred_canvases(np.ones((2, 5, 5), np.float32), centres, 12)
    assert full[0, 0].sum() == 25 and full[1, 0].sum() == 15  # cropped at the left edge
    with pytest.raises(ValueError, match="patches"):
        cs.centred_canvases(np.ones((5, 5)), centres, 12)


def test_column_outputs_keep_each_columns_own_response():
    from analyses.baselines import build_model, build_retina

    cfg = cs.Config.quick()
    retina = build_retina("uniform", n_cells=64, canvas_px=20, pixels_per_deg=2.0, seed=0)
    model = build_model("lc-backprop", retina, cfg.baseline, seed=0).eval()
    c, s = model.sheet.n_columns, 3
    x = torch.randn(c * s, retina.n_cells)
    outs = cs.column_outputs(model, x, s, batch_size=7)
    assert outs["encoder"].shape == (c, s, cfg.baseline.model.dim)
    assert outs["logits"].shape == (c, s, 10)
    with torch.no_grad():
        state = model.sheet.settle(x).state
        logits = model.readout(model.features(state))
        enc = model.sheet.encode(x)
    for col, stim in ((0, 0), (5, 2), (c - 1, 1)):
        row = col * s + stim
        np.testing.assert_allclose(outs["encoder"][col, stim], enc[row, col], atol=1e-5)
        np.testing.assert_allclose(outs["level_1"][col, stim], state[row, col, 1], atol=1e-5)
        np.testing.assert_allclose(outs["logits"][col, stim], logits[row, col], atol=1e-5)
    with pytest.raises(ValueError, match="responses"):
        cs.column_outputs(model, x[:-1], s)


def test_layer_weight_similarity_of_tied_and_independent_columns():
    from analyses.baselines import build_model, build_retina
    from neurosim.columns import tie_columns_

    cfg = cs.Config.quick()
    retina = build_retina("uniform", n_cells=64, canvas_px=20, pixels_per_deg=2.0, seed=0)
    shared = cs.layer_weight_similarity(build_model("shared-columns", retina, cfg.baseline, seed=0))
    assert all(v == pytest.approx(1.0) for v in shared.values())
    model = build_model("lc-backprop", retina, cfg.baseline, seed=0)
    free = cs.layer_weight_similarity(model)
    assert list(free) == list(shared)
    assert all(abs(v) < 0.2 for v in free.values())
    tied = cs.layer_weight_similarity(tie_columns_(model))
    assert all(v == pytest.approx(1.0) for v in tied.values())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("models", ("cnn",)),
        ("retinas", ()),
        ("n_stimuli", 0),
        ("n_accuracy", 1000),
        ("canvas_px", 4),
    ],
)
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        cs.Config(**{field: value})


def test_summary_intervals_and_the_ceiling_fraction(quick_run):
    import re

    ds = open_results(quick_run / cs.RESULT_FILE)
    for name in ("functional_similarity", "weight_similarity"):
        assert (ds[name].attrs["valid_min"], ds[name].attrs["valid_max"]) == (-1.0, 1.0)
    assert ds["class_agreement"].attrs["valid_min"] == 0.0
    assert "bootstrap" in ds.attrs["gap_method"] and "Student-t" in ds.attrs["ci_method"]
    text = cs.summary(ds)
    pairs = re.findall(r"\[([+-]\d\.\d+), ([+-]\d\.\d+)\]", text.split("fraction of")[0])
    assert pairs and all(-1.0 <= float(a) <= float(b) <= 1.0 for a, b in pairs)
    ceiling = text.split("fraction of the shared-columns ceiling")[1].split("measure 'cosine'")[0]
    rows = [ln for ln in ceiling.splitlines()[2:] if ln.startswith(("uniform", "foveated"))]
    assert len(rows) == 2 * 2  # retinas x (lc-backprop, codistill)
    cell = r"(?:[+-]\d\.\d{3} \[[+-]\d\.\d{3}, [+-]\d\.\d{3}\]|-)"
    n_out = ds.sizes["output"]
    for row in rows:
        assert len(re.findall(rf"(?:^|\s){cell}(?=\s|$)", row[32:])) == n_out, row
    # a '-' cell has its reason listed below the table
    if any(re.search(r"\s-(?=\s|$)", row[32:]) for row in rows):
        assert "reference - control not significant" in ceiling


def test_model_bars_draw_means_and_clipped_intervals():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from analyses.interval_bars import error_bar_text, model_bars

    # model a: ticks (0.6, 0.7, 0.8) and (0.1, 0.1, 0.1) over 3 seeds; model b: (0.9, 0.95, 1.0)
    vals = {
        "a": xr.DataArray([[0.6, 0.7, 0.8], [0.1, 0.1, 0.1]], dims=("tick", "seed")),
        "b": xr.DataArray([[0.9, 0.95, 1.0], [0.2, 0.3, np.nan]], dims=("tick", "seed")),
    }
    fig, ax = plt.subplots()
    bars = model_bars(ax, vals, bounds=(0.0, 1.0))
    heights = [[p.get_height() for p in b.patches] for b in bars]
    np.testing.assert_allclose(heights, [[0.7, 0.1], [0.95, 0.25]])
    # error bar of model a, tick 0: 0.7 -+ 0.248414; of model b, tick 0: up to the bound 1
    segments = bars[0].errorbar.lines[2][0].get_segments()
    np.testing.assert_allclose(segments[0][:, 1], [0.7 - 0.248414, 0.7 + 0.248414], atol=1e-6)
    top = bars[1].errorbar.lines[2][0].get_segments()[0][:, 1]
    np.testing.assert_allclose(top, [0.95 - 0.124207, 1.0], atol=1e-6)
    plt.close(fig)
    assert error_bar_text(3, (0, 1)) == (
        "bars: mean over 3 seeds; error bars: 95 % t CI over 3 seeds, clipped to [0, 1]"
    )
    assert error_bar_text(1) == "bars: mean over 1 seed; no error bars (1 seed)"
