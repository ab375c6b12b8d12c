"""The column model: API and shapes, locality of gradients, equivariance, convergence, islands."""

import numpy as np
import pytest
import torch

from neurosim.columns import ColumnLinear, WeightSharingError, assert_unshared, tie_columns_
from neurosim.dynamics import DynamicsConfig
from neurosim.model import Model, ModelConfig, Settled


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def cell_grid(n_side=20, half=5.0):
    g = np.linspace(-half, half, n_side)
    return np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)


def random_columns(n, seed=0, half=5.0):
    return np.random.default_rng(seed).uniform(-half, half, size=(n, 2))


def small_config(**kw):
    base = dict(n_columns=24, n_levels=3, dim=8, hidden=(12,), k_cells=6, neighbour_k=4)
    base.update(kw)
    return ModelConfig(**base)


def build(config=None, seed=0, **kw):
    config = small_config() if config is None else config
    model = Model(config, cell_grid(), column_positions_deg=random_columns(config.n_columns, seed))
    if not config.shared:
        assert_unshared(model, check_values=True)
    return model


def responses(model, batch=2, seed=1):
    return torch.randn(batch, model.n_cells, generator=gen(seed))


def test_settle_shapes_and_terms():
    model = build()
    r = responses(model)
    out = model.settle(r, return_trajectory=True)
    assert isinstance(out, Settled)
    n = model.config.dynamics.n_steps
    assert out.state.shape == (2, 24, 3, 8)
    assert out.trajectory.shape == (n + 1, 2, 24, 3, 8)
    for name in ("bottom_up", "top_down", "lateral", "consensus"):
        assert getattr(out, name).shape == (n, 2, 24, 3, 8)
    torch.testing.assert_close(out.trajectory[-1], out.state)
    assert torch.count_nonzero(out.top_down[..., -1, :]) == 0
    assert model.has_top_down.tolist() == [True, True, False]
    last = model.settle(r, n_steps=3)
    assert last.trajectory is None and last.consensus.shape == (1, 2, 24, 3, 8)
    assert len(last.betas) == 3
    torch.testing.assert_close(model(r, n_steps=3).state, last.state)
    # the Euler step: x_new = x + dt/tau (consensus - x)
    dyn = model.config.dynamics
    x0, x1 = out.trajectory[0], out.trajectory[1]
    torch.testing.assert_close(x1, x0 + dyn.dt_ms / dyn.tau_ms * (out.consensus[0] - x0))


def test_step_api_matches_settle():
    model = build()
    r = responses(model)
    state = model.initial_state(r)
    manual = state
    for t in range(3):
        manual, terms = model.step(manual, r, t, n_steps=3)
    torch.testing.assert_close(manual, model.settle(r, n_steps=3).state)
    torch.testing.assert_close(terms.consensus, model.settle(r, n_steps=3).consensus[0])


def test_frames_drive_successive_steps_and_the_last_frame_is_held():
    model = build()
    r = responses(model)
    held = model.settle(r, n_steps=5).state
    as_video = model.settle(r[None].expand(2, -1, -1), n_steps=5).state
    torch.testing.assert_close(held, as_video)
    frames = torch.stack([responses(model, seed=7), r])
    moving = model.settle(frames, n_steps=5).state
    assert not torch.allclose(moving, held)
    with pytest.raises(ValueError, match="number of frames"):
        model.settle(torch.zeros(6, 2, model.n_cells), n_steps=5)


def test_columns_read_their_nearest_cells():
    model = build()
    cells = cell_grid()
    pos = model.positions_deg.numpy()
    d = np.linalg.norm(pos[:, None] - cells[None], axis=-1)
    expected = np.sort(np.argsort(d, axis=1)[:, :6], axis=1)
    assert np.array_equal(np.sort(model.cell_index.numpy(), axis=1), expected)
    r = responses(model)
    torch.testing.assert_close(model.column_inputs(r), r[:, model.cell_index])


def test_local_mode_gradients_stay_in_the_column_and_the_step():
    """detach_inputs=True: column c's co-distillation loss reaches only column c's parameters."""
    model = build()
    r = responses(model)
    c = 5
    out = model.settle(r, n_steps=4, detach_inputs=True, return_trajectory=True)
    target = out.consensus.detach()
    loss = (out.bottom_up[:, :, c] - target[:, :, c]).square().mean()
    loss = loss + (out.top_down[:, :, c, :-1] - target[:, :, c, :-1]).square().mean()
    loss = loss + out.state[:, c].square().mean()
    loss.backward()
    layers = [m for m in model.modules() if isinstance(m, ColumnLinear)]
    for layer in layers:
        for p in (layer.weight, layer.bias):
            others = torch.cat([p.grad[:c], p.grad[c + 1 :]]).reshape(-1)
            assert torch.count_nonzero(others) == 0
    assert any(float(layer.weight.grad[c].abs().sum()) > 0 for layer in layers)
    assert not out.lateral.requires_grad
    # no gradient crosses time steps
    traj = out.trajectory
    assert torch.autograd.grad(traj[-1].sum(), traj[-2], allow_unused=True)[0] is None


def test_bptt_mode_does_couple_columns():
    model = build()
    out = model.settle(responses(model), n_steps=4)
    out.state[:, 5].square().mean().backward()
    w = model.encoder.layers[0].weight.grad
    assert torch.count_nonzero(torch.cat([w[:5], w[6:]])) > 0


def test_relabelling_columns_permutes_the_outputs():
    config = small_config(n_columns=30)
    pos = random_columns(30, seed=3)
    a = Model(config, cell_grid(), column_positions_deg=pos)
    perm = np.random.default_rng(0).permutation(30)
    b = Model(config, cell_grid(), column_positions_deg=pos[perm])
    assert_unshared(a)
    assert_unshared(b)
    with torch.no_grad():
        for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
            pb.copy_(pa[torch.from_numpy(perm)])
    r = responses(a)
    sa, sb = a.settle(r, return_trajectory=True), b.settle(r, return_trajectory=True)
    torch.testing.assert_close(sb.state, sa.state[:, perm])
    torch.testing.assert_close(sb.lateral, sa.lateral[:, :, perm])


def test_tied_columns_reproduce_the_shared_model():
    shared = build(small_config(shared=True))
    with pytest.raises(WeightSharingError, match="weight-shared"):
        assert_unshared(shared)
    unshared = build()
    with torch.no_grad():
        for ps, pu in zip(shared.parameters(), unshared.parameters(), strict=True):
            pu.copy_(ps.expand_as(pu))
    r = responses(shared)
    torch.testing.assert_close(unshared.settle(r).state, shared.settle(r).state)


def test_contractive_dynamics_converge_to_a_fixed_point():
    """Small weights and low beta make x -> consensus(x) a contraction: the state settles."""
    config = small_config(activation="tanh", dynamics=DynamicsConfig(n_steps=300, beta=0.2))
    model = build(config)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0.3)
    out = model.settle(responses(model), return_trajectory=True)
    steps = (out.trajectory[1:] - out.trajectory[:-1]).flatten(1).norm(dim=1)
    assert steps[-1] < 1e-6 * steps[0]
    assert bool((steps[1:] <= steps[:-1] * (1 + 1e-4) + 1e-9).all())  # monotone decay
    # at the fixed point the state equals its own consensus
    torch.testing.assert_close(out.consensus[-1], out.state, atol=1e-5, rtol=0)


def test_input_mask_hides_a_columns_input():
    config = small_config(init="zeros")
    model = build(config)
    hidden = torch.zeros(2, 24, dtype=torch.bool)
    a = model.settle(responses(model, seed=1), input_mask=hidden).state
    b = model.settle(responses(model, seed=2), input_mask=hidden).state
    torch.testing.assert_close(a, b)  # nothing of the input gets in
    seen = torch.ones(2, 24, dtype=torch.bool)
    torch.testing.assert_close(
        model.settle(responses(model), input_mask=seen).state,
        model.settle(responses(model)).state,
    )
    with pytest.raises(ValueError, match="input_mask"):
        model.settle(responses(model), input_mask=seen[:, :3])


def test_model_moves_to_a_device_and_dtype():
    model = build()
    model = model.to(torch.float64)
    out = model.settle(responses(model).double(), n_steps=2)
    assert out.state.dtype == torch.float64
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    m2 = Model(small_config(), cell_grid(), column_positions_deg=random_columns(24), device=dev)
    assert m2.device.type == dev and m2.nb_index_0.device.type == dev
    assert m2.settle(responses(m2).to(dev), n_steps=2).state.device.type == dev


def test_from_a_real_retina_columns_follow_its_kind():
    import retina as retina_mod

    kw = dict(n_cells=400, fov_deg=8.0, image_shape=(48, 48), pixels_per_deg=5.0)
    config = small_config(n_columns=36, k_cells=8)
    spans = {}
    for kind in ("uniform", "foveated"):
        eye = getattr(retina_mod.Retina, kind)(**kw)
        model = Model.from_retina(eye, config)
        assert_unshared(model, check_values=True)
        images = torch.rand(2, 48, 48, generator=gen())
        out = model.settle(eye(images), n_steps=2)
        assert out.state.shape == (2, 36, 3, 8)
        # receptive field span (deg) of each column: max distance to the cells it reads
        cells = torch.as_tensor(eye.positions_deg, dtype=torch.float32)
        span = (cells[model.cell_index] - model.positions_deg[:, None]).norm(dim=-1).amax(1)
        ecc = model.positions_deg.norm(dim=1)
        spans[kind] = (span, ecc)
    span, ecc = spans["foveated"]
    central, peripheral = span[ecc < ecc.median()].mean(), span[ecc >= ecc.median()].mean()
    assert peripheral > 1.5 * central  # peripheral columns of a foveated retina cover more deg
    span_u, ecc_u = spans["uniform"]
    ratio_u = span_u[ecc_u >= ecc_u.median()].mean() / span_u[ecc_u < ecc_u.median()].mean()
    assert ratio_u < 1.3


def _slot_layouts(idx, cell_positions, column_positions, polarity):
    """One hashable layout per column: each slot's rounded offset and polarity, in slot order."""
    from collections import Counter

    rel = cell_positions[idx] - column_positions[:, None, :]
    return Counter(
        tuple(np.round(rel[c], 4).ravel()) + tuple(polarity[idx[c]]) for c in range(len(idx))
    )


def test_shared_columns_see_one_relative_layout_on_a_uniform_retina():
    """Input slot j means the same relative cell (offset and polarity) in every interior column
    of a uniform retina, so a shared filter is a true shared filter; the k-d tree's own
    distance order (ties and ON/OFF cells at one place, arbitrary) does not give that."""
    from scipy.spatial import cKDTree

    import retina as retina_mod

    eye = retina_mod.Retina.uniform(
        n_cells=288, fov_deg=12.0, image_shape=(24, 24), pixels_per_deg=2.0
    )
    config = ModelConfig(
        n_columns=36, n_levels=2, dim=8, hidden=(8,), k_cells=64, neighbour_k=4, shared=True
    )
    cols = np.asarray(retina_mod.uniform_lattice(36, 12.0), dtype=float)  # a 6x6 grid
    model = Model.from_retina(eye, config, column_positions_deg=cols)  # 64 cells (32 sites) each
    idx = model.cell_index.numpy()
    cells = np.asarray(eye.positions_deg, dtype=float)
    polarity = np.asarray(eye.cells["polarity"])
    _, raw = cKDTree(cells).query(cols, k=64)
    np.testing.assert_array_equal(np.sort(idx, axis=1), np.sort(raw, axis=1))  # a permutation
    # ON slots first, then OFF slots, in every column
    assert np.all(polarity[idx[:, :32]] == "on") and np.all(polarity[idx[:, 32:]] == "off")
    layouts = _slot_layouts(idx, cells, cols, polarity)
    assert layouts.most_common(1)[0][1] >= 16  # the 4x4 interior columns agree slot by slot
    assert _slot_layouts(raw, cells, cols, polarity).most_common(1)[0][1] < 16
    # plain positions (no polarity): ON/OFF at one place keep their cell-index order (ON first),
    # still one layout for the interior columns
    plain = Model(config, cells, column_positions_deg=cols)
    assert _slot_layouts(plain.cell_index.numpy(), cells, cols, polarity).most_common(1)[0][1] >= 16
    with pytest.raises(ValueError, match="cell_polarity"):
        Model(config, cells, column_positions_deg=cols, cell_polarity=polarity[:10])


def test_lattice_seed_moves_the_columns_and_seed_does_not():
    """The foveated column lattice follows lattice_seed only: a new initialisation seed keeps
    the columns (and so each column's cells) where they were."""
    import retina as retina_mod

    eye = retina_mod.Retina.foveated(
        n_cells=400, fov_deg=8.0, image_shape=(48, 48), pixels_per_deg=5.0
    )
    base = Model.from_retina(eye, small_config(n_columns=36, k_cells=8, seed=0))
    reseeded = Model.from_retina(eye, small_config(n_columns=36, k_cells=8, seed=5))
    moved = Model.from_retina(eye, small_config(n_columns=36, k_cells=8, lattice_seed=5))
    torch.testing.assert_close(base.positions_deg, reseeded.positions_deg)
    assert torch.equal(base.cell_index, reseeded.cell_index)
    assert not torch.allclose(base.encoder.layers[0].weight, reseeded.encoder.layers[0].weight)
    assert not torch.allclose(base.positions_deg, moved.positions_deg)


def test_model_config_round_trips_and_validates():
    cfg = small_config(dynamics=DynamicsConfig(tau_ms=40.0, dt_ms=4.0))
    assert ModelConfig.from_toml(cfg.to_toml()) == cfg
    with pytest.raises(ValueError, match="dynamics.dt_ms"):
        ModelConfig.from_dict({"dynamics": {"tau_ms": 5.0, "dt_ms": 5.5}})


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(dim=0), "dim"),
        (dict(dim=(4, 8)), "list of n_levels=3 integers"),
        (dict(dim=(4, 0, 6)), r"dim\[1\]"),
        (dict(n_levels=0), "n_levels"),
        (dict(n_columns=1), "n_columns"),
        (dict(hidden=(4, 0)), r"hidden\[1\]"),
        (dict(neighbour_k=24), r"neighbour_k must be an integer in \[1, 23\]"),
        (dict(k_cells=0), "k_cells"),
        (dict(neighbour_growth=0.5), "neighbour_growth"),
        (dict(long_range_k=30), "long_range_k"),
        (dict(activation="softsign"), "activation"),
        (dict(position_encoding="learned"), "position_encoding"),
        (dict(lattice_seed=-1), "lattice_seed"),
        (
            dict(dynamics=DynamicsConfig(w_bottom_up=0.0, w_lateral=0.0, w_previous=0.0)),
            "top level",
        ),
    ],
)
def test_bad_model_configs_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        small_config(**kwargs)


def test_levels_may_have_their_own_sizes():
    """dim = [4, 8, 6]: nets map between the levels' own sizes; the state is padded to 8 and
    the padding stays exactly zero in the state, the trajectory and every term."""
    model = build(small_config(dim=(4, 8, 6)))
    assert model.level_dims == (4, 8, 6) and model.dim == 8 and model.ragged
    p = model.config.position_dim
    assert model.encoder.layers[-1].weight.shape == (24, 12, 4)
    assert [net.layers[0].weight.shape[1:] for net in model.bottom_up] == [(4, 12), (8, 12)]
    assert [net.layers[-1].weight.shape[2] for net in model.bottom_up] == [8, 6]
    assert [net.layers[0].weight.shape[1] for net in model.top_down] == [8 + p, 6 + p]
    assert [net.layers[-1].weight.shape[2] for net in model.top_down] == [4, 8]
    r = responses(model)
    out = model.settle(r, return_trajectory=True)
    n = model.config.dynamics.n_steps
    assert out.state.shape == (2, 24, 3, 8) and out.trajectory.shape == (n + 1, 2, 24, 3, 8)
    for lv, d in enumerate(model.level_dims):
        for name in ("trajectory", "bottom_up", "top_down", "lateral", "consensus"):
            assert torch.count_nonzero(getattr(out, name)[..., lv, d:]) == 0, (name, lv)
        assert torch.count_nonzero(out.state[..., lv, :d]) > 0
    # the terms are the nets applied to the levels' own entries
    x0 = out.trajectory[0]
    _, terms = model.step(x0, r)
    torch.testing.assert_close(terms.bottom_up[:, :, 2, :6], model.bottom_up[1](x0[:, :, 1]))
    torch.testing.assert_close(
        terms.top_down[:, :, 0, :4], model.top_down[0](x0[:, :, 1], model.position_features)
    )
    # garbage in the padding of a given state is ignored and cleared by the first step
    dirty = x0.clone()
    dirty[:, :, 0, 4:] = 5.0
    new_dirty, _ = model.step(dirty, r)
    new_clean, _ = model.step(x0, r)
    torch.testing.assert_close(new_dirty, new_clean)
    # gradients reach every net; the config round-trips through TOML
    out.state.square().sum().backward()
    assert all(prm.grad is not None for prm in model.parameters())
    assert ModelConfig.from_toml(model.config.to_toml()) == model.config
    assert ModelConfig.from_toml("dim = [4, 8, 6]\nn_levels = 3").level_dims == (4, 8, 6)
    assert small_config(dim=8).level_dims == (8, 8, 8) and not build().ragged


def test_bad_model_arguments():
    with pytest.raises(ValueError, match=r"k_cells must be in \[1, 400\]"):
        Model(small_config(k_cells=401), cell_grid(), column_positions_deg=random_columns(24))
    with pytest.raises(ValueError, match="n_columns=24 does not match"):
        Model(small_config(), cell_grid(), column_positions_deg=random_columns(20))
    model = build()
    with pytest.raises(ValueError, match="responses must have shape"):
        model.settle(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="state must have shape"):
        model.step(torch.zeros(2, 24, 3, 9), responses(model))


# ---------------------------------------------------------------------------- islands
ISLAND_CENTRES = np.array([[-4.0, 0.0], [4.0, 0.0]])
ISLAND_RADIUS = 3.0


def island_margin(x: torch.Tensor, in_a: np.ndarray, in_b: np.ndarray) -> tuple[float, float]:
    """Mean cosine similarity within objects and between them, for embeddings ``x [C, D]``."""
    x = torch.nn.functional.normalize(x, dim=-1)
    s = x @ x.T

    def mean_off_diagonal(m):
        n = m.shape[0]
        return (m.sum() - m.diag().sum()) / (n * (n - 1))

    a, b = torch.from_numpy(in_a), torch.from_numpy(in_b)
    within = 0.5 * (mean_off_diagonal(s[a][:, a]) + mean_off_diagonal(s[b][:, b]))
    return float(within), float(s[a][:, b].mean())


def islands_run(w_lateral: float, beta: float):
    """Two discs (bright left, dark right) seen by 144 columns with noisy, unshared weights.

    Every net is the same function plus independent per-column noise (``tie_columns_``,
    noise_std=0.5 of the init scale), so the bottom-up opinions of columns on one object only
    weakly agree: a column-specific preprocessing, as in the seed. Returns (initial, settled)
    (within, between) similarity at the top level.
    """
    g = np.linspace(-7.75, 7.75, 32)
    cells = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    gc = np.linspace(-7.5, 7.5, 12)
    cols = np.stack(np.meshgrid(gc, gc), -1).reshape(-1, 2)
    image = np.zeros(len(cells))
    for centre, value in zip(ISLAND_CENTRES, (1.0, -1.0), strict=True):
        image[np.linalg.norm(cells - centre, axis=1) < ISLAND_RADIUS] = value
    in_a = np.linalg.norm(cols - ISLAND_CENTRES[0], axis=1) < ISLAND_RADIUS - 0.6
    in_b = np.linalg.norm(cols - ISLAND_CENTRES[1], axis=1) < ISLAND_RADIUS - 0.6
    config = ModelConfig(
        n_columns=len(cols),
        n_levels=3,
        dim=16,
        hidden=(32,),
        k_cells=8,
        neighbour_k=6,
        activation="tanh",
        seed=0,
        dynamics=DynamicsConfig(n_steps=40, w_lateral=w_lateral, beta=beta),
    )
    model = Model(config, cells, column_positions_deg=cols)
    tie_columns_(model, noise_std=0.5, generator=gen(1))
    assert_unshared(model, check_values=True)
    with torch.no_grad():
        out = model.settle(torch.tensor(image, dtype=torch.float32)[None], return_trajectory=True)
    top = config.n_levels - 1
    initial = island_margin(out.trajectory[0, 0, :, top], in_a, in_b)
    settled = island_margin(out.state[0, :, top], in_a, in_b)
    return initial, settled


def test_islands_of_agreement_form_with_lateral_attention():
    """Measured (seed 0): top-level within/between cosine after settling
    lateral on (w_lateral=2, beta=2): 0.343 / -0.325 (margin 0.67);
    control w_lateral=0: 0.034 / -0.067 (margin 0.10); initial bottom-up state: margin 0.11;
    beta=0 (plain neighbour mean): margin 0.66 -- the objects are far apart, so similarity
    weighting is not what keeps them separate here."""
    (w0, b0), (w_on, b_on) = islands_run(w_lateral=2.0, beta=2.0)
    _, (w_off, b_off) = islands_run(w_lateral=0.0, beta=2.0)
    margin_on, margin_off, margin_init = w_on - b_on, w_off - b_off, w0 - b0
    assert w_on > b_on + 0.5
    assert margin_on > margin_off + 0.4
    assert margin_on > margin_init + 0.4


def test_input_mask_weights_match_the_consensus_formula():
    """Under an input_mask a hidden column's level-0 consensus renormalises the other three
    terms; a visible column keeps all four (the general dynamics.consensus with [B, C, 4, L])."""
    from neurosim.dynamics import consensus

    model = build(small_config(dynamics=DynamicsConfig(w_bottom_up=2.0, w_lateral=0.5)))
    r = responses(model)
    hidden = torch.zeros(2, 24, dtype=torch.bool)
    hidden[0, :5] = True
    x0 = model.initial_state(r)
    _, terms = model.step(x0, r, input_mask=~hidden)
    w = model.term_weights.expand(2, 24, 4, 3).clone()
    w[..., 0, 0] = w[..., 0, 0] * (~hidden).float()
    want = consensus(
        {
            "bottom_up": terms.bottom_up,
            "top_down": terms.top_down,
            "lateral": terms.lateral,
            "previous": x0,
        },
        w,
    )
    torch.testing.assert_close(terms.consensus, want)
    # only the bottom-up term: a hidden column would have nothing to relax towards
    only_bu = build(
        small_config(dynamics=DynamicsConfig(w_top_down=0.0, w_lateral=0.0, w_previous=0.0))
    )
    only_bu.step(x0, r, input_mask=torch.ones(2, 24, dtype=torch.bool))  # all visible: fine
    with pytest.raises(ValueError, match="with an input_mask, w_top_down"):
        only_bu.step(x0, r, input_mask=~hidden)


def test_changing_term_weights_in_place_takes_effect():
    """The step reads the consensus weights once and caches them; an in-place change of the
    buffer (a new version) is picked up at the next step."""
    model = build()
    r = responses(model)
    x0 = model.initial_state(r)
    before, _ = model.step(x0, r)
    with torch.no_grad():
        model.term_weights[2] = 0.0  # no lateral term any more
    after, terms = model.step(x0, r)
    w = model.term_weights
    want = w[0, :, None] * terms.bottom_up + w[1, :, None] * terms.top_down + w[3, :, None] * x0
    want = want / w.sum(0)[:, None]
    torch.testing.assert_close(terms.consensus, want)
    assert not torch.allclose(before, after)
    model.term_weights = torch.ones(4, 3)  # a new buffer: every term again, top-down too
    _, terms = model.step(x0, r)
    want = (terms.bottom_up + terms.top_down + terms.lateral + x0) / 4
    torch.testing.assert_close(terms.consensus, want)


def test_record_spec_keeps_what_was_asked_every_k_steps():
    model = build()
    r = responses(model)
    full = model.settle(r, n_steps=6, return_trajectory=True)
    out = model.settle(r, n_steps=6, record=("state", "consensus"), every=2)
    assert out.recorded_steps == (2, 4, 6)
    assert out.trajectory.shape == (4, 2, 24, 3, 8)  # initial state + 3 recorded
    torch.testing.assert_close(out.trajectory, full.trajectory[[0, 2, 4, 6]])
    torch.testing.assert_close(out.consensus, full.consensus[[1, 3, 5]])
    # not recorded: the last step only
    assert out.bottom_up.shape == (1, 2, 24, 3, 8)
    torch.testing.assert_close(out.bottom_up[0], full.bottom_up[-1])
    torch.testing.assert_close(out.state, full.state)
    none = model.settle(r, n_steps=6)
    assert none.trajectory is None and none.recorded_steps == (1, 2, 3, 4, 5, 6)
    with pytest.raises(ValueError, match="record must be one of"):
        model.settle(r, record=("states",))
    with pytest.raises(ValueError, match="every must be an integer >= 1"):
        model.settle(r, record=("state",), every=0)


def test_settled_carries_the_last_steps_attention_weights():
    from neurosim.attention import lateral_attention

    model = build()
    r = responses(model)
    out = model.settle(r, n_steps=3, record=("state",))
    prev = out.trajectory[-2]
    for lv, nb in enumerate(model.neighbours):
        _, want = lateral_attention(prev[:, :, lv], nb.index, out.betas[-1], return_weights=True)
        torch.testing.assert_close(out.attention[lv], want)
        assert out.attention[lv].shape == (2, 24, nb.k)


@pytest.mark.parametrize("integrator", ["euler", "exponential"])
def test_layer_normalised_sheet_keeps_every_state_in_the_unit_rms_ball(integrator):
    """With normalised net outputs every term is unit-RMS or a convex combination of states, so
    no state can grow, whatever the weights or the input scale (even at dt = tau)."""
    dyn = DynamicsConfig(tau_ms=10.0, dt_ms=10.0, integrator=integrator, beta=50.0, n_steps=8)
    model = build(small_config(normalize="layer", dynamics=dyn))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(30.0)  # huge weights: raw outputs would explode
    r = 100.0 * responses(model)
    with torch.no_grad():
        out = model.settle(r, record=("state",))
    rms = out.trajectory.square().mean(dim=-1).sqrt()  # [T, B, C, L]
    assert float(rms.max()) <= 1.0 + 1e-5
    assert float(rms[0].min()) > 0.99  # the bottom-up start is exactly unit RMS
    raw = build(small_config(dynamics=dyn))
    with torch.no_grad():
        for p in raw.parameters():
            p.mul_(30.0)
    with torch.no_grad():
        raw_rms = raw.settle(r).state.square().mean(-1).sqrt()
    assert not bool((raw_rms <= 10.0).all())  # the raw sheet explodes (huge or not finite)


def test_glom_discrete_update_is_x_becomes_the_consensus():
    model = build(small_config(dynamics=DynamicsConfig(tau_ms=10.0, dt_ms=10.0, n_steps=2)))
    out = model.settle(responses(model), return_trajectory=True)
    torch.testing.assert_close(out.trajectory[1], out.consensus[0])
    torch.testing.assert_close(out.trajectory[2], out.consensus[1])


def test_clamped_levels_stay_put_and_drive_the_others():
    model = build()
    r = responses(model)
    code = torch.zeros(2, 24, 8)
    code[0, :, 3] = 1.0
    code[1, :, 5] = 1.0
    out = model.settle(r, n_steps=4, record=("state",), clamp={2: code})
    for t in range(out.trajectory.shape[0]):
        torch.testing.assert_close(out.trajectory[t, :, :, 2], code)
    free = model.settle(r, n_steps=4)
    assert not torch.allclose(free.state[:, :, 1], out.state[:, :, 1])  # top-down from the code
    with pytest.raises(ValueError, match=r"clamp\[2\] must have shape \[2, 24, 8\]"):
        model.settle(r, clamp={2: code[:, :3]})


def test_input_normalisation_divides_each_nets_input_by_its_rms():
    model = build(small_config(normalize="input"))
    x = torch.randn(2, 24, 8)
    scaled = model._in(3.0 * x)
    torch.testing.assert_close(scaled, model._in(x), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(scaled.square().mean(-1), torch.ones(2, 24), rtol=1e-4, atol=1e-4)
    # the nets' outputs are not normalised: goodness (their sum of squares) is free to learn
    out = model.settle(responses(model), n_steps=2).state
    assert not torch.allclose(out.square().mean(-1), torch.ones_like(out[..., 0]))
