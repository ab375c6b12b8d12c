"""The ``neurosim run retina`` experiment, end to end at its quick size."""

from __future__ import annotations

import numpy as np
import pytest

from analyses.cli import main
from analyses.experiments import retina as experiment
from neurosim.export import check_variable_attrs, open_results


def test_run_retina_quick_writes_results_and_figures(tmp_path, capsys):
    assert main(["run", "retina", "--quick", "--quiet", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "uniform" in printed and "foveated" in printed
    assert (tmp_path / "config.toml").is_file()
    for stem in ("retina_lattices", "retina_responses", "retina_renders", "retina_density"):
        png = tmp_path / f"{stem}.png"
        assert png.is_file() and png.stat().st_size > 5000
        assert (tmp_path / f"{stem}.pdf").is_file()
    ds = open_results(tmp_path / "retina.nc")
    cfg = experiment.Config.quick()
    assert list(ds.retina.values) == ["uniform", "foveated"]
    assert ds.sizes["cell"] == cfg.n_cells  # equal cell counts: no padding
    for name in ("x_deg", "y_deg", "ecc_deg", "sigma_center_deg", "response"):
        assert ds[name].dims == ("retina", "cell")
        assert np.isfinite(ds[name].values).all()
    assert (ds.polarity == "on").sum("cell").values.tolist() == [cfg.n_cells // 2] * 2
    assert np.abs(ds.x_deg).max() <= cfg.fov_deg / 2
    assert ds.render.shape == (2, cfg.image_px, cfg.image_px)
    assert check_variable_attrs(ds) == []
    assert ds.attrs["experiment"] == "retina"
    # the foveated retina puts more cells near fixation and has smaller fields there
    near = (ds.ecc_deg < 2).sum("cell")
    assert int(near.sel(retina="foveated")) > 3 * int(near.sel(retina="uniform"))
    # the foveated render is the better one near fixation, measured on the real photo
    rmse = ds.render_rmse.sel(region="centre")
    assert float(rmse.sel(retina="foveated")) < float(rmse.sel(retina="uniform"))


@pytest.mark.parametrize(
    ("override", "name"),
    [
        ({"n_cells": 7}, "n_cells"),
        ({"image_px": 8}, "image_px"),
        ({"photo": "cat.jpg"}, "photo"),
        ({"periphery_deg": 30.0}, "periphery_deg"),
        ({"surround_weight": -0.1}, "surround_weight"),
    ],
)
def test_config_rejects_bad_values(override, name):
    with pytest.raises(ValueError, match=name):
        experiment.Config.quick().updated(override)


def test_log_axes_label_1_2_5_ticks():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0.5, 20], [0.05, 5])
    ax.set_xscale("log")
    ax.set_yscale("log")
    experiment._plain_log_ticks(ax.xaxis)
    experiment._plain_log_ticks(ax.yaxis)
    ax.set_xlim(0.4, 25)
    ax.set_ylim(0.04, 6)
    fig.canvas.draw()
    xt = [t.get_text() for t in ax.get_xticklabels() if 0.4 <= t.get_position()[0] <= 25]
    yt = [t.get_text() for t in ax.get_yticklabels() if 0.04 <= t.get_position()[1] <= 6]
    assert xt == ["0.5", "1", "2", "5", "10", "20"]
    assert yt == ["0.05", "0.1", "0.2", "0.5", "1", "2", "5"]
    plt.close(fig)
