"""The islands experiment: the --quick run's Dataset, and the pieces it is built from."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from analyses.cli import main
from analyses.experiments import islands
from neurosim.export import check_variable_attrs, open_results, to_netcdf


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("islands")
    assert main(["run", "islands", "--quick", "--quiet", "--out", str(out)]) == 0
    return out


def test_quick_run_dataset(quick_run, capsys):
    ds = open_results(quick_run / islands.RESULT_FILE)
    cfg = islands.Config.quick()
    n_lv = cfg.baseline.n_levels
    assert ds.attrs["experiment"] == "islands"
    assert islands.Config.from_toml(ds.attrs["config_toml"]) == cfg
    assert check_variable_attrs(ds) == []
    assert ds["model"].values.tolist() == list(cfg.models)
    assert ds["retina"].values.tolist() == ["uniform", "foveated"]
    assert ds["dynamics"].values.tolist() == list(islands.DYNAMICS)
    assert ds["level"].values.tolist() == list(range(n_lv))
    assert ds["seed"].values.tolist() == [cfg.seed, cfg.seed + 1]
    dims = ("model", "retina", "dynamics", "level", "seed")
    for name in (
        "ari",
        "ari_unnormalized",
        "ari_objects",
        "cos_within",
        "cos_between",
        "cos_gap_matched",
    ):
        assert ds[name].dims == dims
        v = ds[name].values
        assert np.isfinite(v[:, :, :, :, 0]).any(), name
        fin = v[np.isfinite(v)]
        assert np.all((fin >= -1 - 1e-9) & (fin <= 1 + 1e-9)), name
    # a cosine gap is a difference of two cosines
    assert np.all(np.abs(ds["cos_gap_matched"].values[np.isfinite(ds["cos_gap_matched"])]) <= 2)
    assert ds["accuracy"].dims == ("model", "retina", "seed")
    assert np.all((ds["accuracy"] >= 0) & (ds["accuracy"] <= 1))
    for name in ("ari_position_only", "ari_objects_position_only"):
        assert ds[name].dims == ("retina", "seed")
        fin = ds[name].values[np.isfinite(ds[name].values)]
        assert fin.size and np.all(np.abs(fin) <= 1 + 1e-9)
    c = cfg.baseline.n_columns
    assert ds["example_embedding"].shape == (len(cfg.models), 2, n_lv, c, cfg.baseline.model.dim)
    assert np.isfinite(ds["example_embedding"]).all()
    assert ds["example_image"].shape == (cfg.canvas_px, cfg.canvas_px)
    assert set(np.unique(ds["example_label"].values)) <= {0, 1, 2}
    for coord in ("x_deg", "y_deg", "ecc_deg", "row_px", "col_px"):
        assert ds[coord].dims == ("retina", "column")
        assert ds[coord].attrs["units"] in ("deg", "px")
    # columns sit on the canvas
    assert float(ds["row_px"].min()) > -1 and float(ds["row_px"].max()) < cfg.canvas_px
    for stem in ("islands_embeddings", "islands_ari"):
        assert (quick_run / f"{stem}.png").stat().st_size > 0
        assert (quick_run / f"{stem}.pdf").stat().st_size > 0
    text = islands.summary(ds)
    assert "codistill" in text and "ari_obj" in text and "position" in text


def test_netcdf_round_trip(quick_run, tmp_path):
    ds = open_results(quick_run / islands.RESULT_FILE)
    again = open_results(to_netcdf(ds, tmp_path / "again.nc"))
    xr.testing.assert_identical(again.drop_attrs(), ds.drop_attrs())
    for name in ds.data_vars:
        assert again[name].attrs == ds[name].attrs


def test_column_positions_px_follow_the_retina_convention():
    from analyses.baselines import build_retina

    retina = build_retina("uniform", n_cells=64, canvas_px=20, pixels_per_deg=2.0, seed=0)
    fx, fy = retina.fixation_px
    px = islands.column_positions_px(retina, np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
    np.testing.assert_allclose(px[0], [fy, fx])  # fixation -> (row, col) of the centre
    np.testing.assert_allclose(px[1], [fy, fx + 2.0])  # +x is right
    np.testing.assert_allclose(px[2], [fy - 2.0, fx])  # +y is up: smaller row
    with pytest.raises(ValueError, match="positions_deg"):
        islands.column_positions_px(retina, np.zeros((3, 3)))


def test_pca_rgb_range_and_degenerate_input():
    rng = np.random.default_rng(0)
    rgb = islands.pca_rgb(rng.normal(size=(30, 8)))
    assert rgb.shape == (30, 3) and rgb.min() >= 0 and rgb.max() <= 1
    np.testing.assert_allclose(rgb.min(axis=0), 0.0)
    np.testing.assert_allclose(rgb.max(axis=0), 1.0)
    np.testing.assert_allclose(islands.pca_rgb(np.ones((5, 4))), 0.5)
    assert islands.pca_rgb(rng.normal(size=(5, 2))).shape == (5, 3)


def test_matched_gap_is_zero_for_a_map_of_places_and_positive_for_objects():
    # columns on a line; digit 1 on the left half, digit 2 on the right half
    c = 20
    pos = np.stack([np.zeros(c), np.arange(c, dtype=float)], axis=1)
    labels = np.where(np.arange(c) < c // 2, 1, 2)[None]
    # a map of places: embedding = a smooth function of the position only
    angle = pos[:, 1] / c * np.pi
    places = np.stack([np.cos(angle), np.sin(angle)], axis=1)[None]
    objects = np.where(labels[..., None] == 1, [1.0, 0.0], [0.0, 1.0])
    from analyses.metrics import within_between_cosine

    within, between = within_between_cosine(places, labels)
    assert within > between + 0.2  # the unmatched comparison is fooled by position
    gap_places = islands.matched_cosine_gap(places, labels, pos, bin_px=1.0)
    gap_objects = islands.matched_cosine_gap(objects, labels, pos, bin_px=1.0)
    assert abs(gap_places) < 0.05
    assert gap_objects > 0.9
    one = np.ones((1, c), int)
    assert np.isnan(islands.matched_cosine_gap(objects, one, pos, bin_px=1.0))


def test_no_lateral_control_changes_the_dynamics_not_the_model():
    from analyses.baselines import build_model, build_retina

    cfg = islands.Config.quick()
    retina = build_retina("uniform", n_cells=64, canvas_px=20, pixels_per_deg=2.0, seed=0)
    model = build_model("lc-backprop", retina, cfg.baseline, seed=0).eval()
    before = model.sheet.term_weights.clone()
    x = torch.randn(3, retina.n_cells)
    settled = islands._states(model, x, dynamics="settled")
    no_lat = islands._states(model, x, dynamics="no-lateral")
    bottom_up = islands._states(model, x, dynamics="bottom-up")
    assert settled.shape == no_lat.shape == bottom_up.shape == (3, 16, 2, 8)
    assert not np.allclose(settled, no_lat)
    torch.testing.assert_close(model.sheet.term_weights, before)


def test_mask_dilation_grows_each_digit():
    m = np.zeros((1, 2, 9, 9), bool)
    m[0, 0, 4, 4] = True
    d = islands._dilate(m, 1)
    assert d[0, 0].sum() == 5 and not d[0, 1].any()
    assert islands._dilate(m, 0) is m


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("models", ("untrained", "nope")),
        ("retinas", ("uniform", "uniform")),
        ("canvas_px", 20),
        ("n_train", 5000),
        ("mask_dilation_px", -1),
        ("distance_bin_px", 0.0),
    ],
)
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        islands.Config(**{field: value})


def test_config_toml_round_trip_with_nested_baseline():
    cfg = islands.Config.quick()
    assert islands.Config.from_toml(cfg.to_toml()) == cfg
    changed = cfg.updated_from_toml("[baseline]\nsteps = 7\n")
    assert changed.baseline.steps == 7
    with pytest.raises(ValueError, match="stepz"):
        cfg.updated_from_toml("[baseline]\nstepz = 7\n")


def _intervals(text: str) -> list[tuple[float, float]]:
    import re

    return [(float(a), float(b)) for a, b in re.findall(r"\[([+-]\d\.\d+), ([+-]\d\.\d+)\]", text)]


def test_summary_intervals_stay_in_each_measures_range(quick_run):
    ds = open_results(quick_run / islands.RESULT_FILE)
    assert ds["ari"].attrs["valid_min"] == -1.0 and ds["ari"].attrs["valid_max"] == 1.0
    assert ds["accuracy"].attrs["valid_min"] == 0.0
    assert ds["cos_gap_matched"].attrs["valid_max"] == 2.0
    assert "Student-t" in ds.attrs["ci_method"] and "clipped" in ds.attrs["ci_method"]
    text = islands.summary(ds)
    assert "95 % t CI over 2 seeds" in text
    found = _intervals(text)
    assert len(found) > 100
    assert all(-2.0 <= lo <= hi <= 2.0 for lo, hi in found)
    tables, accuracy = text.split("single-digit test accuracy")
    before, cos_table = tables.split("cos_within")  # the second table's header
    ari_table = before.rsplit("ari_obj", 1)[1]  # after the first table's header
    # ARIs and cosines in [-1, 1], the gap (third column of the cosine table) in [-2, 2]
    assert all(-1.0 <= lo <= hi <= 1.0 for lo, hi in _intervals(ari_table))
    for line in cos_table.splitlines():
        assert all(-1.0 <= lo <= hi <= 1.0 for lo, hi in _intervals(line)[:2])
    acc_lines = accuracy.split("reference")[0]
    assert all(0.0 <= lo <= hi <= 1.0 for lo, hi in _intervals(acc_lines))
