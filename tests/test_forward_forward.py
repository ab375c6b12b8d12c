"""Forward-Forward: goodness, normalisation and codes by hand, hard negatives, locality per
column and level, replicas, classification by goodness."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from analyses.baselines import BaselineConfig, build_retina, retina_inputs
from neurosim.forward_forward import (
    ForwardForward,
    ForwardForwardConfig,
    classify,
    ff_loss,
    goodness,
    goodness_scores,
    label_code,
    length_normalise,
    negative_labels,
    neutral_code,
)
from neurosim.model import Model
from neurosim.objectives import IGNORE_LABEL, Batch, ObjectiveConfig
from neurosim.readout import ColumnClassifier

#: the co-distillation terms of ff+codistill, every one on
COMPANION = ObjectiveConfig(
    locality="local", label="none", w_consensus=1.0, w_neighbour=1.0, warmup_fraction=0.0
)


@pytest.fixture(scope="module", params=["uniform", "foveated"])
def retina(request):
    return build_retina(request.param, n_cells=128, canvas_px=16, pixels_per_deg=2.0, seed=0)


@pytest.fixture(scope="module")
def data(retina):
    from analyses.tasks import canvas_split, digits_split

    canv = canvas_split(digits_split(seed=0), canvas_px=16, digit_px=8, n_train=48, seed=0)
    return retina_inputs(retina, canv.train.images, canv.train.labels, render=False)


def _sheet_config(seed=0, **overrides):
    """The quick sheet with a label level of 10 on top and input normalisation."""
    cfg = BaselineConfig.quick().model_config(shared=False, seed=seed)
    fields = dict(n_levels=3, dim=(8, 8, 10), normalize="input")
    fields.update(overrides)
    return dataclasses.replace(cfg, **fields)


def _classifier(retina, seed=0, **overrides):
    sheet = Model.from_retina(retina, _sheet_config(seed, **overrides))
    gen = torch.Generator().manual_seed(seed)
    return ColumnClassifier(sheet, readout_levels="below_top", generator=gen)


def _batch(data, n=6):
    labels = data.labels[:n].clone()
    labels[1] = IGNORE_LABEL  # an unlabelled image among labelled ones
    return Batch(data.responses[:n], labels)


def _grads(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward(retain_graph=True)
    return {
        n: (torch.zeros_like(p) if p.grad is None else p.grad.clone())
        for n, p in model.named_parameters()
    }


# ------------------------------------------------------------------------------ by hand


def test_goodness_and_length_normalisation_by_hand():
    x = torch.tensor([[3.0, 4.0], [1.0, 2.0]])
    torch.testing.assert_close(goodness(x), torch.tensor([25.0, 5.0]))
    # RMS of (3, 4) is sqrt(12.5); of (1, 2) sqrt(2.5)
    want = torch.tensor([[3.0, 4.0]]) / math.sqrt(12.5)
    torch.testing.assert_close(length_normalise(x[:1]), want)
    torch.testing.assert_close(goodness(length_normalise(x)), torch.tensor([2.0, 2.0]))
    # the normalisation is blind to the scale: the next layer cannot read the goodness
    torch.testing.assert_close(length_normalise(7.0 * x), length_normalise(x))


def test_the_sheets_input_normalisation_is_length_normalisation(retina):
    sheet = Model.from_retina(retina, _sheet_config())
    x = torch.randn(3, 5, 8) * 4.0
    torch.testing.assert_close(sheet._in(x), length_normalise(x))


def test_ff_loss_by_hand():
    gp, gn, theta = torch.tensor(3.0), torch.tensor(1.0), 2.0
    # high: p(pos | positive) = sigma(1), p(pos | negative) = sigma(-1)
    want = 2.0 * math.log1p(math.exp(-1.0))
    assert float(ff_loss(gp, gn, theta)) == pytest.approx(want)
    # low: the roles swap, both terms are -log sigma(-1)
    assert float(ff_loss(gp, gn, theta, -1.0)) == pytest.approx(2.0 * math.log1p(math.e))
    assert float(ff_loss(gn, gp, theta, -1.0)) == pytest.approx(want)


def test_label_and_neutral_codes_by_hand():
    code = label_code(torch.tensor([2, 0]), 3, 5, 5.0)
    torch.testing.assert_close(code, torch.tensor([[0, 0, 5, 0, 0], [5, 0, 0, 0, 0.0]]))
    neutral = neutral_code((2,), 3, 5, 6.0)
    torch.testing.assert_close(neutral, torch.tensor([[2, 2, 2, 0, 0.0]] * 2))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\]"):
        label_code(torch.tensor([3]), 3, 5, 1.0)
    with pytest.raises(ValueError, match=r"dim must be an integer >= 3"):
        label_code(torch.tensor([1]), 3, 2, 1.0)


# ------------------------------------------------------------------------------ negatives


def test_hard_negatives_are_never_the_true_label_and_follow_the_softmax():
    n, k = 20_000, 4
    labels = torch.arange(n) % k
    logits = torch.tensor([4.0, 2.0, 0.0, 1.0]).expand(n, k).clone()
    logits[torch.arange(n), labels] += 10.0  # the model is sure of the true label
    neg = negative_labels(logits, labels, generator=torch.Generator().manual_seed(0))
    assert neg.shape == (n,) and neg.dtype == torch.int64
    assert not bool((neg == labels).any())
    # images whose label is 0: wrong classes 1, 2, 3 in proportion exp(2) : exp(0) : exp(1)
    picked = neg[labels == 0]
    freq = torch.bincount(picked, minlength=k).float() / len(picked)
    p = torch.tensor([0.0, math.exp(2), 1.0, math.exp(1)])
    torch.testing.assert_close(freq, p / p.sum(), atol=0.02, rtol=0)
    uni = negative_labels(logits, labels, mode="uniform", generator=torch.Generator())
    assert not bool((uni == labels).any())
    freq = torch.bincount(uni[labels == 0], minlength=k).float() / int((labels == 0).sum())
    torch.testing.assert_close(freq, torch.tensor([0, 1, 1, 1]) / 3.0, atol=0.02, rtol=0)


def test_negatives_are_reproducible_and_handle_unlabelled_and_certain_models():
    logits = torch.full((6, 3), -1e30)
    logits[:, 0] = 0.0  # all mass on class 0: the wrong classes underflow to 0
    labels = torch.tensor([0, 0, 1, IGNORE_LABEL, 2, 0])
    a = negative_labels(logits, labels, generator=torch.Generator().manual_seed(5))
    b = negative_labels(logits, labels, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert not bool((a == torch.where(labels == IGNORE_LABEL, 0, labels)).any())
    with pytest.raises(ValueError, match="mode"):
        negative_labels(logits, labels, mode="easy")


# ------------------------------------------------------------------------------ locality


def _producers(sheet, lv: int) -> list[str]:
    """Name prefixes of the nets that produce level ``lv``."""
    first = "sheet.encoder." if lv == 0 else f"sheet.bottom_up.{lv - 1}."
    return [first, f"sheet.top_down.{lv}."]


@pytest.mark.parametrize("sign", ["high", "low"])
def test_ff_term_of_a_column_and_level_reaches_only_that_columns_level_nets(sign, retina, data):
    """The FF loss of column c at level l has a nonzero gradient on column c's encoder /
    bottom-up net into l and its top-down net into l, and exactly zero on every other column,
    every other net and the readout."""
    model = _classifier(retina)
    objective = ForwardForward(
        ForwardForwardConfig(positive_goodness=sign), total_steps=10, seeds=(0,)
    )
    batch = _batch(data)
    settled = objective.settle(model, batch, step=2)
    levels = objective.level_terms(model, settled, batch)
    assert levels.shape == (model.sheet.n_columns, model.sheet.n_levels - 1)
    c = 5
    for lv in range(levels.shape[1]):
        grads = _grads(model, levels[c, lv])
        mine = _producers(model.sheet, lv)
        for name, g in grads.items():
            assert g.shape[0] == model.sheet.n_columns, name
            others = float(torch.cat([g[:c], g[c + 1 :]]).abs().sum())
            assert others == 0.0, (lv, name)
            own = float(g[c].abs().sum())
            if any(name.startswith(p) for p in mine):
                assert own > 0, (lv, name)
            else:
                assert own == 0.0, (lv, name)


def test_every_term_of_ff_and_codistill_is_local(retina, data):
    """ff, readout and the companion's co-distillation terms: column c's value reaches only
    column c's parameters (the readout term only its readout)."""
    model = _classifier(retina)
    objective = ForwardForward(
        ForwardForwardConfig(), total_steps=10, seeds=(0,), companion=COMPANION
    )
    batch = _batch(data)
    settled = objective.settle(model, batch, step=9)
    cols = objective.column_terms(model, settled, batch, step=9)
    assert set(cols) == {"ff", "readout", "consensus", "neighbour"}
    c = 3
    for term, value in cols.items():
        assert value.shape == (model.sheet.n_columns,), term
        grads = _grads(model, value[c])
        own = sum(float(g[c].abs().sum()) for g in grads.values())
        others = sum(float(torch.cat([g[:c], g[c + 1 :]]).abs().sum()) for g in grads.values())
        assert own > 0 and others == 0.0, term
        if term == "readout":
            assert all(float(g.abs().sum()) == 0 for n, g in grads.items() if "readout" not in n)


# ------------------------------------------------------------------------------ the objective


def test_terms_weights_and_companion_checks(retina, data):
    model = _classifier(retina)
    batch = _batch(data)
    objective = ForwardForward(ForwardForwardConfig(w_readout=0.5), total_steps=10)
    out = objective(model, batch, step=0)
    assert set(out) >= {"ff", "readout", "goodness_positive", "goodness_negative", "loss"}
    torch.testing.assert_close(out["loss"].detach(), out["ff"][0] + 0.5 * out["readout"][0])
    torch.testing.assert_close(out["replica_loss"], out["loss"].detach()[None])
    assert float(out["codistillation_weight"][0]) == 0.0
    # a companion without active terms is no companion
    assert (
        ForwardForward(
            ForwardForwardConfig(), total_steps=1, companion=ObjectiveConfig(label="none")
        ).companion
        is None
    )
    with pytest.raises(ValueError, match='companion.label must be "none"'):
        ForwardForward(ForwardForwardConfig(), total_steps=1, companion=ObjectiveConfig())
    with pytest.raises(ValueError, match='companion.locality must be "local"'):
        ForwardForward(
            ForwardForwardConfig(),
            total_steps=1,
            companion=dataclasses.replace(COMPANION, locality="bptt"),
        )


def test_the_top_level_must_hold_the_label(retina, data):
    model = _classifier(retina, dim=(8, 8, 6))
    with pytest.raises(ValueError, match=r"top level's dim must be >= the number of classes"):
        ForwardForward(ForwardForwardConfig(), total_steps=1)(model, _batch(data))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("positive_goodness", "medium"),
        ("threshold", -1.0),
        ("label_value", 0.0),
        ("negatives", "easy"),
        ("w_ff", -1.0),
        ("readout_label", "object"),
        ("shortlist", -1),
        ("shortlist", 2.0),
    ],
)
def test_bad_config_names_field(field, value):
    with pytest.raises(ValueError, match=field):
        ForwardForwardConfig(**{field: value})
    cfg = ForwardForwardConfig(positive_goodness="low", shortlist=3)
    assert ForwardForwardConfig.from_toml(cfg.to_toml()) == cfg


def test_a_replica_gets_the_terms_it_gets_alone(retina, data):
    """Two models stacked: each replica's terms (and negatives) are those of the model alone
    with its seed, on its own images."""
    models = [_classifier(retina, seed=s) for s in (3, 4)]
    stacked = ColumnClassifier.stack(models)
    x = data.responses[:6]
    x2 = data.responses[6:12]
    y = torch.stack([data.labels[:6], data.labels[6:12]], dim=1)
    together = ForwardForward(
        ForwardForwardConfig(), total_steps=5, seeds=(3, 4), companion=COMPANION
    )
    got = together(stacked, Batch(torch.stack([x, x2], dim=1), y), step=2)
    for r, (m, xr) in enumerate(zip(models, (x, x2), strict=True)):
        alone = ForwardForward(
            ForwardForwardConfig(), total_steps=5, seeds=((3, 4)[r],), companion=COMPANION
        )
        want = alone(m, Batch(xr, y[:, r]), step=2)
        for term in ("ff", "readout", "consensus", "neighbour", "goodness_positive"):
            torch.testing.assert_close(got[term][r], want[term][0], rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------ classifying


def test_classification_by_goodness_and_short_list(retina, data):
    model = _classifier(retina)
    x = data.responses[:5]
    cfg = ForwardForwardConfig()
    cand = torch.arange(10).expand(5, 1, 10)
    scores = goodness_scores(model, x, cand, cfg)
    assert scores.shape == (5, 1, 10)
    # by hand: clamp label 3 and sum the hidden levels' goodness over columns, mean over steps
    top = model.sheet.n_levels - 1
    code = label_code(torch.full((5, model.sheet.n_columns), 3), 10, 10, cfg.label_value)
    traj = model.sheet.settle(x, record=("state",), detach_inputs=True, clamp={top: code})
    g = goodness(traj.trajectory[1:, :, :, :top]).sum(dim=(2, 3)).mean(dim=0)
    torch.testing.assert_close(scores[:, 0, 3], g)
    full = classify(model, x, cfg)
    torch.testing.assert_close(full, scores.argmax(dim=-1))
    assert torch.equal(classify(model, x, cfg, shortlist=10), full)
    # low goodness: the label with the smallest goodness wins
    low = dataclasses.replace(cfg, positive_goodness="low")
    assert torch.equal(classify(model, x, low), scores.argmin(dim=-1))
    # a short list of one is the softmax readout's answer under the neutral label
    neutral = neutral_code((5, model.sheet.n_columns), 10, 10, cfg.label_value)
    state = model.sheet.settle(x, detach_inputs=True, clamp={top: neutral}).state
    readout = model.logits(state).mean(dim=1).argmax(dim=-1)
    assert torch.equal(classify(model, x, cfg, shortlist=1)[:, 0], readout)
    # a short list of k: the answer is among the readout's top k
    top3 = model.logits(state).mean(dim=1).topk(3, dim=-1).indices
    got = classify(model, x, cfg, shortlist=3)[:, 0]
    assert bool((top3 == got[:, None]).any(dim=1).all())
    with pytest.raises(ValueError, match="candidates must have shape"):
        goodness_scores(model, x, cand[:3], cfg)
