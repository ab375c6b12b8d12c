"""Tests of analyses.baselines: parameter budgets, unshared weights, tied columns, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analyses.baselines import (
    FF_KINDS,
    MODEL_KINDS,
    BaselineConfig,
    ColumnClassifier,
    ConvClassifier,
    build_model,
    build_retina,
    count_parameters,
    image_logits,
    make_loss_fn,
    objective_for,
    retina_inputs,
    train_and_evaluate,
)
from neurosim.columns import ColumnLinear, WeightSharingError, assert_unshared, tie_columns_
from neurosim.objectives import ObjectiveConfig

CFG = BaselineConfig.quick(
    steps=30,
    batch_size=16,
    lr=1e-2,
    objective=ObjectiveConfig.local_codistillation(warmup_fraction=0.2, ramp_fraction=0.2),
)


@pytest.fixture(scope="module", params=["uniform", "foveated"])
def retina(request):
    return build_retina(request.param, n_cells=128, canvas_px=16, pixels_per_deg=2.0, seed=0)


@pytest.fixture(scope="module")
def data(retina):
    from analyses.tasks import canvas_split, digits_split

    split = digits_split(seed=0)
    canv = canvas_split(split, canvas_px=16, digit_px=8, n_train=32, n_test=32, seed=0)
    train = retina_inputs(retina, canv.train.images, canv.train.labels)
    test = retina_inputs(
        retina, canv.test.images, canv.test.labels, scale=(train.scale, train.image_scale)
    )
    return train, test


def test_inputs_shapes_and_scale(retina, data):
    train, test = data
    assert train.responses.shape == (32, retina.n_cells)
    assert train.images.shape == (32, 16, 16)
    assert train.labels.dtype == torch.long
    assert float(train.responses.std()) == pytest.approx(1.0, rel=1e-3)
    assert test.scale == train.scale and test.image_scale == train.image_scale
    sub = train.subset(np.array([3, 1]))
    assert len(sub) == 2 and torch.equal(sub.labels, train.labels[[3, 1]])


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_every_kind_builds_and_unshared_ones_are_unshared(kind, retina, data):
    model = build_model(kind, retina, CFG, seed=0)
    x = data[0].images if kind == "cnn" else data[0].responses
    logits = model(x[:5])
    n_places = logits.shape[1]
    assert logits.shape == (5, n_places, 10)
    assert image_logits(model, x[:5]).shape == (5, 10)
    if kind == "cnn":
        assert isinstance(model, ConvClassifier)
        assert abs(n_places - CFG.n_columns) <= CFG.n_columns // 2
    else:
        assert isinstance(model, ColumnClassifier)
        assert n_places == CFG.n_columns
    if kind in ("cnn", "shared-columns"):
        with pytest.raises(WeightSharingError):
            assert_unshared(model)
    else:
        assert_unshared(model, check_values=True)


def test_parameter_counts_same_budget_per_column(retina):
    counts = {k: count_parameters(build_model(k, retina, CFG, seed=0)) for k in MODEL_KINDS}
    shared_total, shared_per = counts["shared-columns"]
    assert shared_total == shared_per
    for kind in ("lc-backprop", "local", "codistill", "lc-backprop+codistill"):
        total, per = counts[kind]
        # every unshared column owns exactly the shared model's parameter set
        assert per == shared_total
        assert total == shared_total * CFG.n_columns
    cnn_total, cnn_per = counts["cnn"]
    assert cnn_total == cnn_per
    # the CNN's per-place budget is of the same order (a pixel patch in place of the cells,
    # a 3x3 kernel in place of lateral attention, no top-down nets)
    assert 0.25 < cnn_per / shared_total < 4.0


def test_tied_columns_reproduce_the_shared_model(retina, data):
    shared = build_model("shared-columns", retina, CFG, seed=3)
    unshared = build_model("lc-backprop", retina, CFG, seed=5)
    x = data[0].responses[:6]
    assert not torch.allclose(shared(x), unshared(x))
    shared_layers = [m for m in shared.modules() if isinstance(m, ColumnLinear)]
    unshared_layers = [m for m in unshared.modules() if isinstance(m, ColumnLinear)]
    assert len(shared_layers) == len(unshared_layers)
    with torch.no_grad():
        for s, u in zip(shared_layers, unshared_layers, strict=True):
            assert s.shared and not u.shared
            u.weight[0].copy_(s.weight[0])
            u.bias[0].copy_(s.bias[0])
    tie_columns_(unshared, source_column=0)
    assert_unshared(unshared)  # tied values, separate storage
    torch.testing.assert_close(unshared(x), shared(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_each_kind_learns_a_tiny_batch(kind, retina, data):
    """Loss on a fixed batch of 16 images falls over 30 steps (training works for every kind;
    the FF kinds' FF term)."""
    train = data[0].subset(np.arange(16))
    model = build_model(kind, retina, CFG, seed=1)
    loss_fn = make_loss_fn(kind, CFG)
    x = train.images if kind == "cnn" else train.responses
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for step in range(30):
        terms = loss_fn(model, (x, train.labels), step)
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
        losses.append(float(terms["ff" if kind in FF_KINDS else "label"][0]))
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:3])
    if kind in ("codistill", "lc-backprop+codistill", "ff+codistill"):
        assert {"consensus", "neighbour", "codistillation_weight"} <= set(terms)
        assert float(terms["codistillation_weight"][0]) == 1.0  # past warm-up and ramp
    else:
        assert "consensus" not in terms and "neighbour" not in terms


def test_train_and_evaluate_returns_scores(retina, data):
    train, test = data
    cfg = CFG.updated({"steps": 5})
    res = train_and_evaluate("codistill", retina, train, {"a": test, "b": test}, cfg, seed=0)
    assert 0.0 <= res.accuracy <= 1.0
    assert res.accuracies["a"] == res.accuracies["b"] == res.accuracy
    assert res.history.sizes["step"] == 5
    assert res.n_parameters == count_parameters(res.model)[0]
    assert np.isfinite(res.final_loss) and res.train_seconds > 0
    assert np.isfinite(res.final_loss_change)


@pytest.mark.parametrize(
    ("field", "value"),
    [("steps", 0), ("batch_size", 1), ("lateral_kernel", 2), ("readout", "x")],
)
def test_bad_config_names_field(field, value):
    with pytest.raises(ValueError, match=field):
        BaselineConfig(**{field: value})


def test_one_vocabulary_nested_tables_and_moved_keys():
    """The sheet is [baseline.model] (a ModelConfig), the rule [baseline.objective]; an old flat
    key fails naming its new table."""
    text = """
steps = 50
[model]
n_columns = 25
[model.dynamics]
dt_ms = 5.0
[objective]
w_neighbour = 0.5
"""
    cfg = BaselineConfig.from_toml(text)
    assert cfg.model.n_columns == 25 and cfg.model.dynamics.dt_ms == 5.0
    assert cfg.objective.w_neighbour == 0.5 and cfg.steps == 50
    assert BaselineConfig.from_toml(cfg.to_toml()) == cfg
    for key, table in (
        ("n_columns", r"\[model\]"),
        ("tau_ms", r"\[model.dynamics\]"),
        ("w_consensus", r"\[objective\]"),
        ("backprop_label_loss", r"label in the \[objective\]"),
    ):
        with pytest.raises(ValueError, match=f"{key} has moved: .*{table}"):
            BaselineConfig.from_dict({key: 1})
        with pytest.raises(ValueError, match=f"{key} has moved"):
            BaselineConfig().updated({key: 1})
    with pytest.raises(ValueError, match=r"model.dynamics.dt_ms must be in \(0, tau_ms=20\]"):
        BaselineConfig.from_toml("[model.dynamics]\ndt_ms = 25.0")


def test_bad_kind_names_argument(retina):
    with pytest.raises(ValueError, match="kind"):
        build_model("mlp", retina, CFG, seed=0)


def test_columns_belong_to_the_retina_not_to_the_seed():
    """Every model and seed on one retina gets the same columns reading the same cells in the
    same (Model's canonical) order; only ``lattice_seed`` moves the foveated lattice."""
    retina = build_retina("foveated", n_cells=128, canvas_px=16, pixels_per_deg=2.0)
    a = build_model("codistill", retina, CFG, seed=0).sheet
    b = build_model("shared-columns", retina, CFG, seed=7).sheet
    torch.testing.assert_close(a.positions_deg, b.positions_deg)
    assert torch.equal(a.cell_index, b.cell_index)
    assert a.config.lattice_seed == b.config.lattice_seed == CFG.model.lattice_seed
    moved_cfg = CFG.updated({"model": {"lattice_seed": 3}})
    moved = build_model("codistill", retina, moved_cfg, seed=0).sheet
    assert not torch.allclose(a.positions_deg, moved.positions_deg)


def test_readout_of_levels_with_their_own_sizes(retina, data):
    """A sheet with dim = [4, 6]: the readout reads 4 + 6 features (no padding), the top 6, or
    the 4 below the top."""
    from neurosim.model import Model

    mcfg = CFG.model_config(shared=False, seed=0).updated({"dim": [4, 6]})
    sheet = Model.from_retina(retina, mcfg)
    x = data[0].responses[:8]
    state = sheet.settle(x).state
    for levels, r in (("all_levels", 10), ("top_level", 6), ("below_top", 4)):
        clf = ColumnClassifier(sheet, readout_levels=levels, generator=torch.Generator())
        assert clf.readout.weight.shape == (CFG.n_columns, r, 10)
        feats = clf.features(state)
        assert feats.shape == (8, CFG.n_columns, r)
        if levels != "below_top":
            torch.testing.assert_close(feats[..., -6:], state[:, :, 1, :6])
        if levels != "top_level":
            torch.testing.assert_close(feats[..., :4], state[:, :, 0, :4])
        assert_unshared(clf)
    one_level = Model.from_retina(retina, mcfg.updated({"n_levels": 1, "dim": 4}))
    with pytest.raises(ValueError, match="below_top.*n_levels >= 2"):
        ColumnClassifier(one_level, readout_levels="below_top")


def test_every_kind_takes_one_size_per_level(retina, data):
    """dim = [6, 10] reaches every kind: the CNN's stages have 6 and 10 channels, the sheets'
    levels 6 and 10 entries, and all read out 16 features per place."""
    cfg = CFG.updated({"model": {"dim": [6, 10]}})
    assert cfg.level_dims == (6, 10) and cfg.readout_dim == 16
    assert BaselineConfig.from_toml(cfg.to_toml()) == cfg
    x = data[0]
    for kind in MODEL_KINDS:
        model = build_model(kind, retina, cfg, seed=0)
        if kind == "cnn":
            assert [stage[-1].out_channels for stage in model.levels] == [6, 10]
            assert model.levels[1][0].in_channels == 6
            assert model.readout.in_channels == 16
            logits = model(x.images[:4])
        else:  # the FF kinds have a label level of 10 on top, which the readout skips
            want = (6, 10, 10) if kind in FF_KINDS else (6, 10)
            assert model.sheet.level_dims == want
            assert model.readout.weight.shape[1] == 16
            logits, _ = model.column_logits(x.responses[:4])
        assert logits.shape[0] == 4 and logits.shape[-1] == 10
    with pytest.raises(ValueError, match="list of n_levels=2"):
        CFG.updated({"model": {"dim": [6, 10, 4]}})


def test_ff_kinds_differ_by_exactly_the_codistillation_terms(retina, data):
    """ff and ff+codistill: the same sheet (the configured levels plus a label level of 10,
    input normalisation), the same FF rule; their companions differ only in w_consensus and
    w_neighbour, and both lack the label term FF replaces."""
    import dataclasses

    from neurosim.forward_forward import ForwardForward

    ff, ffc = (objective_for(k, CFG.objective) for k in FF_KINDS)
    differ = [
        f.name
        for f in dataclasses.fields(ObjectiveConfig)
        if getattr(ff, f.name) != getattr(ffc, f.name)
    ]
    assert differ == ["w_consensus", "w_neighbour"]
    assert ff.label == ffc.label == "none" and ff.locality == "local"
    assert ffc.w_consensus == CFG.objective.w_consensus > 0
    a, b = (build_model(k, retina, CFG, seed=2) for k in FF_KINDS)
    assert a.sheet.config == b.sheet.config
    assert a.sheet.config.normalize == "input" and a.sheet.level_dims[-1] == 10
    assert a.readout_levels == "below_top"
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    fa, fb = (make_loss_fn(k, CFG) for k in FF_KINDS)
    assert isinstance(fa, ForwardForward) and fa.companion is None
    assert set(fb.companion.config.active_terms) == {"consensus", "neighbour"}
    cfg = CFG.updated({"forward_forward": {"positive_goodness": "low", "shortlist": 3}})
    assert BaselineConfig.from_toml(cfg.to_toml()) == cfg
    with pytest.raises(ValueError, match="forward_forward.shortlist"):
        CFG.updated({"forward_forward": {"shortlist": -1}})


def test_lazy_render_gives_the_render_only_when_read(retina, data):
    """render="lazy": nothing is rendered until the cnn reads the images; a subset renders its
    whole pool once; the images equal an eager render up to float rounding."""
    from analyses.tasks import canvas_split, digits_split

    canv = canvas_split(digits_split(seed=0), canvas_px=16, digit_px=8, n_train=40, seed=0)
    now = retina_inputs(retina, canv.train.images, canv.train.labels)
    lazy = retina_inputs(
        retina,
        canv.train.images,
        canv.train.labels,
        render="lazy",
        scale=(now.scale, now.image_scale),
    )
    part = lazy.subset(np.arange(5, 15))
    assert lazy.images is None and part.images is None
    torch.testing.assert_close(part.for_model("cnn"), now.images[5:15], rtol=1e-4, atol=1e-5)
    assert lazy.images is not None  # the pool was rendered once, for its subsets too
    torch.testing.assert_close(part.for_model("local"), now.responses[5:15])
    never = retina_inputs(retina, canv.train.images, canv.train.labels, render=False)
    with pytest.raises(ValueError, match="render=True"):
        never.for_model("cnn")
