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


# ----------------------------------------------------------------------------- state trajectories
def _small_model(**overrides):
    import torch  # noqa: F401  (the model is torch)

    from neurosim.dynamics import DynamicsConfig
    from neurosim.model import Model, ModelConfig

    kw = dict(
        n_columns=9,
        n_levels=3,
        dim=6,
        hidden=(8,),
        k_cells=4,
        neighbour_k=3,
        seed=3,
        dynamics=DynamicsConfig(tau_ms=10.0, dt_ms=0.5, n_steps=5),
    )
    kw.update(overrides)
    lin = np.linspace(-1.0, 2.0, 3)
    columns = np.stack(np.meshgrid(lin, lin), axis=-1).reshape(-1, 2)
    cells = np.random.default_rng(0).uniform(-2, 2, size=(32, 2))
    return Model(ModelConfig(**kw), cells, column_positions_deg=columns)


def _settle(model, n_stimuli=2, *, return_trajectory=True):
    import torch

    resp = torch.as_tensor(np.random.default_rng(1).normal(size=(n_stimuli, model.n_cells)))
    with torch.no_grad():
        return model.settle(resp.to(torch.float32), return_trajectory=return_trajectory)


def test_settled_dataset_layout_coords_and_values():
    from neurosim.export import STATE_DIMS, settled_dataset

    model = _small_model()
    settled = _settle(model)
    ds = settled_dataset(settled, model)
    rate = ds["rate"]
    assert rate.dims == STATE_DIMS == ("time", "stimulus", "column", "level", "unit")
    assert rate.shape == (6, 2, 9, 3, 6) == tuple(settled.trajectory.shape)
    assert rate.dtype == np.float32  # the tensor's values, not a rounded copy
    np.testing.assert_array_equal(rate.values, settled.trajectory.numpy())
    np.testing.assert_array_equal(rate.isel(time=-1).values, settled.state.numpy())
    np.testing.assert_array_equal(ds["time"].values, np.arange(6))
    np.testing.assert_allclose(ds["time_ms"].values, np.arange(6) * 0.5)
    assert ds["time_ms"].attrs["units"] == "ms"
    pos = model.positions_deg.numpy()
    np.testing.assert_allclose(ds["x_deg"].values, pos[:, 0])
    np.testing.assert_allclose(ds["y_deg"].values, pos[:, 1])
    np.testing.assert_allclose(ds["ecc_deg"].values, np.hypot(pos[:, 0], pos[:, 1]), rtol=1e-6)
    assert ds["x_deg"].dims == ("column",) and ds["x_deg"].attrs["units"] == "deg"
    assert ds["level_mask"].values.all() and "padding" not in rate.attrs
    assert check_variable_attrs(ds) == []
    assert rate.attrs["units"] == "1" and rate.attrs["long_name"]


def test_settled_dataset_of_levels_with_different_sizes(tmp_path):
    from neurosim.export import settled_dataset

    model = _small_model(dim=(3, 6, 4))
    settled = _settle(model)
    ds = settled_dataset(settled, model)
    np.testing.assert_array_equal(ds["level_dim"].values, [3, 6, 4])
    mask = ds["level_mask"].values
    assert mask.shape == (3, 6) and mask.sum(axis=1).tolist() == [3, 6, 4]
    assert np.all(ds["rate"].values[..., ~mask] == 0.0)  # the padding, documented and masked
    assert np.any(ds["rate"].values[..., mask] != 0.0)
    assert "level_mask" in ds["rate"].attrs["padding"]
    # the masked view drops the padding: NaN there, the values elsewhere
    masked = ds["rate"].where(ds["level_mask"])
    assert int(masked.isnull().sum()) == 6 * 2 * 9 * (6 - 3 + 6 - 4)
    back = open_results(to_netcdf(ds, tmp_path / "traj.nc"))
    assert back["level_mask"].dtype == bool
    xr.testing.assert_equal(back["rate"], ds["rate"])


def test_settled_dataset_without_trajectory_needs_the_number_of_steps():
    from neurosim.export import settled_dataset

    model = _small_model()
    settled = _settle(model, return_trajectory=False)
    with pytest.raises(ValueError, match="n_steps must be given when settled.trajectory is None"):
        settled_dataset(settled, model)
    ds = settled_dataset(settled, model, n_steps=5, dt_ms=2.0)
    assert ds["rate"].shape == (1, 2, 9, 3, 6)
    np.testing.assert_array_equal(ds["rate"].isel(time=0).values, settled.state.numpy())
    assert ds["time"].values.tolist() == [5] and ds["time_ms"].values.tolist() == [10.0]


def test_trajectory_dataset_rejects_bad_inputs():
    from neurosim.export import trajectory_dataset

    traj = np.zeros((4, 1, 3, 2, 5))
    pos = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"must have shape \[time, stimulus.*\[:, None\]"):
        trajectory_dataset(traj[:, 0], 1.0, pos)
    with pytest.raises(ValueError, match="trajectory must hold floating-point values"):
        trajectory_dataset(traj.astype(int), 1.0, pos)
    with pytest.raises(ValueError, match=r"positions_deg must have shape \[3, 2\]"):
        trajectory_dataset(traj, 1.0, np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"dt_ms must be in \(0, inf\)"):
        trajectory_dataset(traj, 0.0, pos)
    with pytest.raises(ValueError, match="level_dims must have one size per level"):
        trajectory_dataset(traj, 1.0, pos, level_dims=(5,))
    with pytest.raises(ValueError, match=r"level_dims\[1\] must be an integer in \[1, 5\]"):
        trajectory_dataset(traj, 1.0, pos, level_dims=(5, 6))
    bad = traj.copy()
    bad[..., 1, 4] = 1.0
    with pytest.raises(ValueError, match="rate must be zero on the padding"):
        trajectory_dataset(bad, 1.0, pos, level_dims=(5, 4))
    with pytest.raises(ValueError, match=r"terms\['lateral'\] must have shape \(3, 1, 3, 2, 5\)"):
        trajectory_dataset(traj, 1.0, pos, terms={"lateral": traj})


def test_torch_and_brian2_give_the_same_layout():
    """One settling in both engines: the same dims, coords and attrs; values to 1e-4."""
    import torch

    from neurosim.brian import build_network, relative_error
    from neurosim.export import settled_dataset

    model = _small_model(dim=(3, 6, 4)).double()
    resp = torch.as_tensor(np.random.default_rng(2).normal(size=(model.n_cells,)))
    with torch.no_grad():
        settled = model.settle(resp[None], return_trajectory=True)
    torch_ds = settled_dataset(settled, model)
    brian_ds = build_network(model, resp, codegen="numpy").run()
    assert brian_ds["rate"].dims == torch_ds["rate"].dims
    assert brian_ds["rate"].shape == torch_ds["rate"].shape == (6, 1, 9, 3, 6)
    assert set(brian_ds.coords) == set(torch_ds.coords)
    for name in torch_ds.coords:
        xr.testing.assert_allclose(brian_ds[name], torch_ds[name])
        assert brian_ds[name].attrs == torch_ds[name].attrs
    assert brian_ds["rate"].attrs["units"] == torch_ds["rate"].attrs["units"] == "1"
    assert check_variable_attrs(brian_ds) == check_variable_attrs(torch_ds) == []
    err = relative_error(brian_ds["rate"].values, torch_ds["rate"].values)
    assert np.all(err < 1e-4), err


def test_settled_dataset_of_a_sparse_record_has_the_recorded_times():
    import torch

    from neurosim.export import settled_dataset
    from neurosim.model import Model, ModelConfig

    rng = np.random.default_rng(0)
    model = Model(
        ModelConfig(n_columns=6, n_levels=2, dim=(3, 4), hidden=(4,), k_cells=3, neighbour_k=2),
        rng.uniform(-1, 1, (20, 2)),
        column_positions_deg=rng.uniform(-1, 1, (6, 2)),
    )
    out = model.settle(torch.randn(2, 20), n_steps=6, record=("state",), every=3)
    ds = settled_dataset(out, model)
    assert ds["time"].values.tolist() == [0, 3, 6]
    np.testing.assert_allclose(ds["time_ms"].values, [0.0, 15.0, 30.0])
    np.testing.assert_allclose(ds["rate"].isel(time=-1).values, out.state.detach().numpy())
    assert ds["x_deg"].shape == (6,)
