import numpy as np
import pytest
import xarray as xr

from neurosim.atomic import atomic_path
from neurosim.export import check_variable_attrs, open_results, summarize, to_netcdf
from tests.test_config import Outer


def _dataset():
    acc = xr.DataArray(
        np.random.default_rng(0).uniform(size=(2, 3)),
        dims=("model", "seed"),
        coords={"model": ["cnn", "codistill"], "seed": [0, 1, 2]},
        attrs={"units": "1", "long_name": "test accuracy"},
    )
    return xr.Dataset({"accuracy": acc}, attrs={"quick": True})


def test_round_trip_with_provenance(tmp_path):
    cfg = Outer(seed=7)
    path = to_netcdf(_dataset(), tmp_path / "r.nc", config=cfg, seed=7, experiment="demo")
    back = open_results(path)
    xr.testing.assert_equal(back["accuracy"], _dataset()["accuracy"])
    assert Outer.from_toml(back.attrs["config_toml"]) == cfg
    for key in ("neurosim_version", "git_commit", "torch_version", "brian2_version", "created_utc"):
        assert isinstance(back.attrs[key], str) and back.attrs[key]
    assert back.attrs["seed"] == 7 and back.attrs["quick"] == 1
    assert check_variable_attrs(back) == []
    text = summarize(back)
    assert "accuracy" in text and "experiment: demo" in text


def test_interrupted_write_leaves_nothing(tmp_path):
    target = tmp_path / "out.nc"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        open_results(tmp_path / "nope.nc")


def test_atomic_files_get_normal_permissions(tmp_path):
    import os

    path = tmp_path / "a.txt"
    with atomic_path(path) as tmp:
        tmp.write_text("x")
    mask = os.umask(0)
    os.umask(mask)
    assert (path.stat().st_mode & 0o777) == (0o666 & ~mask)
