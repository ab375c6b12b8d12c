"""Brian2 backend: the same trajectories as the torch engine, and clear failures on bad input."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from neurosim import brian
from neurosim.dynamics import DynamicsConfig
from neurosim.model import Model, ModelConfig

pytestmark = [
    # brian2 2.9 uses pyparsing's pre-3.0 camelCase names (setResultsName, ...), which
    # pyparsing >= 3.3 deprecates; raised when brian2 is first imported.
    pytest.mark.filterwarnings("ignore::pyparsing.warnings.PyparsingDeprecationWarning"),
]

N_COLUMNS, N_LEVELS, DIM, N_CELLS = 16, 3, 8, 64
REL_TOL = 1e-4


def _grid(n_side: int = 4) -> np.ndarray:
    lin = np.linspace(-1.5, 1.5, n_side)
    return np.stack(np.meshgrid(lin, lin), axis=-1).reshape(-1, 2)


def _model(**overrides) -> Model:
    dyn = dict(tau_ms=10.0, dt_ms=1.0, n_steps=12, beta=0.5, beta_schedule="linear", beta_end=4.0)
    dyn.update(overrides.pop("dynamics", {}))
    kw = dict(
        n_columns=N_COLUMNS,
        n_levels=N_LEVELS,
        dim=DIM,
        hidden=(12,),
        k_cells=6,
        neighbour_k=3,
        seed=1,
        dynamics=DynamicsConfig(**dyn),
    )
    kw.update(overrides)
    cells = np.random.default_rng(0).uniform(-2, 2, size=(N_CELLS, 2))
    return Model(ModelConfig(**kw), cells, column_positions_deg=_grid()).double()


def _responses(n_frames: int | None = None, seed: int = 2) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    shape = (N_CELLS,) if n_frames is None else (n_frames, N_CELLS)
    return torch.tensor(rng.normal(size=shape), dtype=torch.float64)


def _torch_settle(model: Model, inputs: torch.Tensor, n_steps: int | None = None):
    batched = inputs[None] if inputs.dim() == 1 else inputs[:, None]
    with torch.no_grad():
        return model.settle(batched, n_steps=n_steps, return_trajectory=True)


@pytest.fixture(scope="module")
def parity():
    model = _model()
    resp = _responses()
    settled = _torch_settle(model, resp)
    net = brian.build_network(model, resp, codegen="numpy", record_terms=True)
    ds = net.run()
    return model, settled, net, ds


def test_trajectories_agree_at_every_step(parity):
    model, settled, _, ds = parity
    from neurosim.columns import assert_unshared

    assert_unshared(model)
    ref = settled.trajectory.numpy()  # [time, stimulus, column, level, unit]
    assert ds.rate.dims == ("time", "stimulus", "column", "level", "unit")
    assert ds.rate.shape == ref.shape == (13, 1, N_COLUMNS, N_LEVELS, DIM)
    np.testing.assert_allclose(ds.time_ms.values, np.arange(13) * 1.0)
    # the initial state is the model's own initial_state, not a re-computation of it
    np.testing.assert_array_equal(ds.rate.values[0], ref[0])
    err = brian.relative_error(ds.rate.values, ref)
    assert err.shape == (13,)
    assert np.all(err < REL_TOL), err
    # the dynamics really moved: the check is not between two constant trajectories
    assert np.abs(ref[-1] - ref[0]).max() > 1e-2


def test_terms_agree_at_every_step(parity):
    _, settled, _, ds = parity
    for term in ("bottom_up", "top_down", "lateral", "consensus"):
        ref = getattr(settled, term).numpy()
        assert ds[term].dims == ("step", "stimulus", "column", "level", "unit")
        err = brian.relative_error(ds[term].values, ref)
        assert np.all(err < REL_TOL), (term, err)
    assert np.all(ds["top_down"].isel(level=-1).values == 0)


def test_network_structure(parity):
    model, _, net, _ = parity
    assert len(net.levels) == N_LEVELS
    for grp in net.levels:
        assert len(grp) == N_COLUMNS * DIM
        np.testing.assert_array_equal(grp.column[:], np.repeat(np.arange(N_COLUMNS), DIM))
        np.testing.assert_array_equal(grp.unit[:], np.tile(np.arange(DIM), N_COLUMNS))
        pos = model.positions_deg.numpy()
        np.testing.assert_allclose(grp.x_deg[:], pos[grp.column[:], 0])
        np.testing.assert_allclose(grp.y_deg[:], pos[grp.column[:], 1])
        assert grp.tau[:] == pytest.approx(10.0 * 1e-3)  # seconds: units are explicit
    # one Synapses per layer; every synapse stays inside its column; weights are the model's
    for name, syns in net.synapses.items():
        for k, syn in enumerate(syns):
            w = net.spec.encoder.weights[k] if name == "encoder" else None
            pre_col = syn.source.column[syn.i[:]] if "column" in syn.source.variables else None
            post_col = syn.target.column[syn.j[:]]
            if pre_col is not None:
                np.testing.assert_array_equal(pre_col, post_col)
            if w is not None:
                d_in = w.shape[1]
                assert len(syn) == N_COLUMNS * d_in * w.shape[2]
    w0 = model.bottom_up[0].layers[0].weight.detach().numpy()  # [C, DIM, 12]
    syn = net.synapses["bottom_up1"][0]
    np.testing.assert_allclose(np.asarray(syn.w[:]).reshape(w0.shape), w0)
    # hidden layers are instantaneous: no differential equation in a hidden group
    for groups in net.hidden.values():
        for grp in groups:
            assert not grp.equations.diff_eq_names


@pytest.mark.parametrize(
    "overrides",
    [
        dict(activation="relu", hidden=()),
        dict(activation="tanh", hidden=(10, 6), position_encoding="xy"),
        dict(
            activation="silu",
            neighbour_radius_deg=0.6,  # empty radius sets at level 0: masked attention
            long_range_k=1,
            long_range_from_level=0,
            init="zeros",
        ),
        dict(dim=(4, 8, 6)),  # one size per level: groups of C * dim[l] neurons
        dict(dynamics=dict(integrator="exponential", dt_ms=2.5)),  # Brian2's "exact" method
    ],
    ids=["relu-linear", "tanh-2hidden-xy", "silu-radius-zeros", "per-level-dims", "exp-euler"],
)
def test_parity_variants_with_frames(overrides):
    dyn = dict(n_steps=8, beta_schedule="constant", beta=2.0, **overrides.pop("dynamics", {}))
    model = _model(**overrides, dynamics=dyn)
    frames = _responses(n_frames=3)
    settled = _torch_settle(model, frames)
    net = brian.build_network(model, frames, codegen="numpy")
    ds = net.run()
    err = brian.relative_error(ds.rate.values, settled.trajectory.numpy())
    assert np.all(err < REL_TOL), err
    dims = model.level_dims
    assert [len(grp) for grp in net.levels] == [N_COLUMNS * d for d in dims]
    assert ds.level_dim.values.tolist() == list(dims)
    for lv, d in enumerate(dims):  # padding of smaller levels is exactly zero
        assert np.all(ds.rate.isel(level=lv).values[..., d:] == 0.0)


def test_image_input_through_retina_and_poisson_cells():
    from retina import Retina

    ret = Retina.uniform(n_cells=72, fov_deg=4.0, image_shape=(20, 20), pixels_per_deg=5.0)
    cfg = ModelConfig(
        n_columns=N_COLUMNS,
        n_levels=N_LEVELS,
        dim=DIM,
        hidden=(12,),
        k_cells=6,
        neighbour_k=3,
        dynamics=DynamicsConfig(tau_ms=10.0, dt_ms=1.0, n_steps=6),
    )
    model = Model.from_retina(ret, cfg, column_positions_deg=_grid()).double()
    image = np.random.default_rng(5).uniform(size=(20, 20))
    resp = torch.tensor(ret(image), dtype=torch.float64)
    settled = _torch_settle(model, resp)
    net = brian.build_network(
        model, image=image, retina=ret, codegen="numpy", poisson_gain_hz=200.0, seed=4
    )
    assert len(net.synapses["retina"][0]) == ret.operator.nnz
    ds = net.run()
    err = brian.relative_error(ds.rate.values, settled.trajectory.numpy())
    assert np.all(err < REL_TOL), err
    counts = ds.spike_count.values
    assert counts.shape == (ret.n_cells,)
    # cells with a non-positive response have rate 0 Hz and never fire; some others do
    assert counts[resp.numpy() <= 0].sum() == 0
    assert counts.sum() > 0
    assert ds.spike_rate_hz.attrs["units"] == "Hz"


def test_bad_inputs_fail_clearly():
    import brian2

    model = _model()
    resp = _responses()
    with pytest.raises(ValueError, match=r"dt_ms must equal the model's dynamics.dt_ms = 1 ms"):
        brian.build_network(model, resp, dt_ms=0.5, codegen="numpy")
    with pytest.raises(ValueError, match="dt_ms must be a time"):
        brian.build_network(model, resp, dt_ms=1.0 * brian2.mV, codegen="numpy")
    with pytest.raises(ValueError, match="duration_ms must be a time"):
        brian.build_network(model, resp, duration_ms=5 * brian2.Hz, codegen="numpy")
    with pytest.raises(ValueError, match="multiple of dt_ms"):
        brian.build_network(model, resp, duration_ms=2.5, codegen="numpy")
    with pytest.raises(ValueError, match="codegen must be one of"):
        brian.build_network(model, resp, codegen="cpp_standalone")
    with pytest.raises(ValueError, match=r"responses must have shape \[64\]"):
        brian.build_network(model, resp[:10], codegen="numpy")
    with pytest.raises(ValueError, match="exactly one of responses or image"):
        brian.build_network(model, codegen="numpy")
    with pytest.raises(ValueError, match="image needs retina"):
        brian.build_network(model, image=np.zeros((8, 8)), codegen="numpy")
    with pytest.raises(ValueError, match="initial_state must have shape"):
        brian.build_network(model, resp, initial_state=np.zeros((2, 2)), codegen="numpy")
    with pytest.raises(ValueError, match="poisson_gain_hz must be a rate"):
        brian.build_network(model, resp, poisson_gain_hz=3 * brian2.ms, codegen="numpy")
    with pytest.raises(ValueError, match="model must be a neurosim.model.Model"):
        brian.build_network(torch.nn.Linear(2, 2), resp, codegen="numpy")


def test_stacked_and_layer_normalised_models_are_refused():
    with pytest.raises(ValueError, match="normalize must be 'none' for the Brian2 backend"):
        brian.build_network(_model(normalize="layer"), _responses(n_frames=1), codegen="numpy")
    stacked = Model.stack([_model(), _model()])
    with pytest.raises(ValueError, match=r"not 2 stacked replicas: export model.replica\(r\)"):
        brian.build_network(stacked, _responses(n_frames=1), codegen="numpy")


def test_weight_shared_model_is_refused():
    shared = _model(shared=True)
    with pytest.raises(ValueError, match="unshared per-column weights.*shared=True"):
        brian.build_network(shared, _responses(), codegen="numpy")


def test_position_equations_are_checked_against_the_model():
    from neurosim.brian.equations import evaluate_position_equations
    from neurosim.model import position_features

    model = _model()
    spec = brian.model_spec(model)
    pos = model.positions_deg.double().numpy()
    feats = evaluate_position_equations(
        pos, spec.position_scale_deg, spec.position_encoding, spec.n_frequencies
    )
    assert feats.shape == (N_COLUMNS, 2 + 4 * model.config.n_frequencies)
    np.testing.assert_allclose(feats, position_features(pos, model.config), rtol=0, atol=1e-12)
    with torch.no_grad():
        model.position_features[:, 3] += 0.1  # a buffer that no longer follows the encoding
    with pytest.raises(ValueError, match="position features.*do not match the position_encoding"):
        brian.model_spec(model)


def test_float32_model_runs_in_float64_and_is_left_as_it_is():
    model = _model(dynamics=dict(n_steps=2)).float()
    resp = _responses()
    net = brian.build_network(model, resp, codegen="numpy")
    assert all(p.dtype == torch.float32 for p in model.parameters())
    with torch.no_grad():
        ref = model.double().initial_state(resp[None])[0].numpy()
    np.testing.assert_array_equal(net.initial_state, ref)
    assert net.run().rate.sizes["time"] == 3  # (a network never run warns when deleted)


def test_units_accepted_as_quantities():
    import brian2

    model = _model(dynamics=dict(n_steps=3))
    net = brian.build_network(
        model, _responses(), dt_ms=1.0 * brian2.ms, duration_ms=3 * brian2.ms, codegen="numpy"
    )
    assert net.n_steps == 3 and net.dt_ms == 1.0
    ds = net.run()
    assert ds.rate.sizes["time"] == 4
    with pytest.raises(RuntimeError, match="already run"):
        net.run()


def test_missing_compiler_is_a_clear_error(monkeypatch):
    import brian2

    model = _model(dynamics=dict(n_steps=2))
    monkeypatch.setattr(brian.preferences, "cython_available", lambda cache_dir=None: False)
    with pytest.raises(RuntimeError, match="C\\+\\+ compiler.*codegen='numpy'"):
        brian.build_network(model, _responses(), codegen="cython")
    with pytest.warns(RuntimeWarning, match="falling back to codegen='numpy'"):
        net = brian.build_network(model, _responses(), codegen="auto")
    assert net.codegen == "numpy"
    assert net.run().rate.sizes["time"] == 3
    # Brian2's global preferences are restored after building
    assert brian2.prefs.codegen.target == "auto"


def test_cache_dir_is_per_process():
    path = brian.default_cache_dir()
    assert f"pid-{os.getpid()}" in path.name


@pytest.mark.slow
def test_trajectories_agree_with_cython(tmp_path):
    if not brian.cython_available(tmp_path):
        # a C++ compiler is a system package, outside what pip installs; the numpy code
        # generation target is compared with torch by the default tests above
        pytest.skip("Brian2's Cython target needs a working C++ compiler; none found here")
    model = _model()
    resp = _responses()
    settled = _torch_settle(model, resp)
    net = brian.build_network(model, resp, codegen="cython", cache_dir=tmp_path)
    assert net.codegen == "cython"
    ds = net.run()
    err = brian.relative_error(ds.rate.values, settled.trajectory.numpy())
    assert np.all(err < REL_TOL), err
    assert any(tmp_path.iterdir())  # compiled into the given cache directory


def test_brian_parity_experiment_quick(tmp_path):
    from analyses.experiments import brian_parity
    from neurosim.export import check_variable_attrs, open_results, to_netcdf

    cfg = brian_parity.Config.quick().updated({"n_steps": 6, "train_steps": 2})
    ds = brian_parity.run(cfg, quiet=True)
    assert ds["torch_rate"].dims == ds["brian_rate"].dims == ("time", "column", "level", "unit")
    assert ds["torch_rate"].shape == (7, 16, 3, 8)
    np.testing.assert_allclose(ds["difference"], ds["brian_rate"] - ds["torch_rate"])
    assert float(ds["relative_error"].max()) < REL_TOL
    assert ds.attrs["trained"] == 1 and ds.sizes["train_step"] == 2
    assert check_variable_attrs(ds) == []
    path = to_netcdf(ds, tmp_path / brian_parity.RESULT_FILE, config=cfg, seed=cfg.seed)
    back = open_results(path)
    np.testing.assert_allclose(back["brian_rate"], ds["brian_rate"])
    paths = brian_parity.figures(back, tmp_path)
    assert all(p.is_file() for p in paths)
    text = brian_parity.summary(back)
    assert "max rel. error" in text
    # the text speaks of the code generation that ran (numpy here), not of Cython
    assert "codegen=numpy" in text and "nothing compiled" in text and "Cython" not in text


def test_no_compiler_detected_in_a_fresh_process(tmp_path):
    """With a compiler that does not exist, Brian2's test compilation fails and is reported."""
    import subprocess
    import sys

    code = "import sys; from neurosim import brian; print(brian.cython_available(sys.argv[1]))"
    env = {**os.environ, "CC": "/nonexistent/cc", "CXX": "/nonexistent/c++"}
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=300,
    )
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    from neurosim.brian import default_cache_dir

    monkeypatch.setenv("NEUROSIM_BRIAN2_CACHE_DIR", str(tmp_path / "cache"))
    assert default_cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("NEUROSIM_BRIAN2_CACHE_DIR")
    assert default_cache_dir().name.startswith("pid-")
