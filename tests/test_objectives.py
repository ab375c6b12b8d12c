"""Objectives: every term local by construction, the image label term, replicas, controls."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from analyses.baselines import (
    MODEL_KINDS,
    BaselineConfig,
    Job,
    build_model,
    build_retina,
    objective_for,
    retina_inputs,
    train_and_evaluate,
    train_jobs,
)
from neurosim.objectives import IGNORE_LABEL, Batch, Objective, ObjectiveConfig

#: every term alone (label "none" unless the term is a label term)
ALONE = {
    "label-image": dict(label="image"),
    "label-column": dict(label="column"),
    "label-object": dict(label="object"),
    "consensus-cosine": dict(label="none", w_consensus=1.0, consensus_loss="cosine"),
    "consensus-mse": dict(label="none", w_consensus=1.0, consensus_loss="mse"),
    "neighbour": dict(label="none", w_neighbour=1.0),
    "neighbour-confidence": dict(label="none", w_neighbour=1.0, neighbour_confidence=True),
    "contrastive": dict(label="none", w_contrastive=1.0),
    "fill-in": dict(label="none", w_fill_in=1.0),
}


@pytest.fixture(scope="module", params=["uniform", "foveated"])
def retina(request):
    return build_retina(request.param, n_cells=128, canvas_px=16, pixels_per_deg=2.0, seed=0)


@pytest.fixture(scope="module")
def data(retina):
    from analyses.tasks import canvas_split, digits_split

    canv = canvas_split(digits_split(seed=0), canvas_px=16, digit_px=8, n_train=48, seed=0)
    return retina_inputs(retina, canv.train.images, canv.train.labels, render=False)


def _classifier(retina, *, fill_in=False, seed=0):
    from neurosim.model import Model
    from neurosim.readout import ColumnClassifier

    cfg = BaselineConfig.quick().model_config(shared=False, seed=seed)
    sheet = Model.from_retina(retina, cfg)
    return ColumnClassifier(sheet, fill_in=fill_in, generator=torch.Generator().manual_seed(seed))


def _batch(model, data, n=6):
    resp = data.responses[:n]
    labels = data.labels[:n].clone()
    labels[1] = IGNORE_LABEL  # an unlabelled image among labelled ones
    weights = torch.rand(n, model.sheet.n_columns, generator=torch.Generator().manual_seed(2))
    return Batch(resp, labels, weights)


def _grads(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {
        n: (torch.zeros_like(p) if p.grad is None else p.grad) for n, p in model.named_parameters()
    }


@pytest.mark.parametrize("term", list(ALONE))
def test_every_term_alone_is_local(term, retina, data):
    """local: the gradient of column c's loss is exactly zero on every parameter of every other
    column (and not zero on its own); bptt: it crosses columns."""
    fields = ALONE[term]
    model = _classifier(retina, fill_in="w_fill_in" in fields)
    c = 5
    for locality in ("local", "bptt"):
        objective = Objective(
            ObjectiveConfig(locality=locality, **fields), total_steps=10, seeds=(0,)
        )
        batch = _batch(model, data)
        settled = objective.settle(model, batch, step=3)
        cols = objective.column_terms(model, settled, batch, step=3)
        assert list(cols) == [term.split("-")[0].replace("fill", "fill_in")], cols.keys()
        value = next(iter(cols.values()))
        assert value.shape == (model.sheet.n_columns,)
        grads = _grads(model, value[c])
        own = sum(float(g[c].abs().sum()) for g in grads.values())
        others = sum(float(torch.cat([g[:c], g[c + 1 :]]).abs().sum()) for g in grads.values())
        for name, g in grads.items():
            assert g.shape[0] == model.sheet.n_columns, name  # every parameter is per column
        assert own > 0, (term, locality)
        if locality == "local":
            assert others == 0.0, term
        else:
            assert others > 0, term


def test_image_label_term_is_the_image_cross_entropy(retina, data):
    """The mean of the column values is the cross-entropy of the image's logits and has its
    gradient; unlabelled images are left out."""
    model = _classifier(retina)
    objective = Objective(ObjectiveConfig(label="image"), total_steps=1)
    batch = _batch(model, data)
    settled = objective.settle(model, batch)
    value = objective.column_terms(model, settled, batch)["label"]
    logits = model.logits(settled.state)
    keep = batch.labels != IGNORE_LABEL
    ce = F.cross_entropy(logits.mean(dim=1)[keep], batch.labels[keep])
    torch.testing.assert_close(value.mean(), ce)
    g_value = torch.autograd.grad(value.mean(), list(model.parameters()), retain_graph=True)
    g_ce = torch.autograd.grad(ce, list(model.parameters()))
    for a, b in zip(g_value, g_ce, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_object_label_weights_the_columns_that_see_the_object(retina, data):
    model = _classifier(retina)
    objective = Objective(ObjectiveConfig(label="object"), total_steps=1)
    b = _batch(model, data)
    w = torch.zeros_like(b.object_weights)
    w[:, 3] = 1.0  # only column 3 sees the object
    batch = Batch(b.responses, b.labels, w)
    settled = objective.settle(model, batch)
    value = objective.column_terms(model, settled, batch)["label"]
    logits = model.logits(settled.state)
    keep = batch.labels != IGNORE_LABEL
    want = F.cross_entropy(logits[keep, 3], batch.labels[keep])
    torch.testing.assert_close(value.mean(), want)
    assert float(value[4].detach()) == 0.0


def test_contrastive_default_positives_are_detached():
    """The library function is local by default: column 0's loss leaves the others alone."""
    from neurosim.learning import contrastive_loss

    e = torch.randn(4, 5, 3, requires_grad=True)
    loss = contrastive_loss(e, 0.5, per_column=True)[0]
    (g,) = torch.autograd.grad(loss, [e])
    assert float(g[:, 1:].abs().sum()) == 0.0 and float(g[:, 0].abs().sum()) > 0
    loss = contrastive_loss(e, 0.5, per_column=True, detach_positives=False)[0]
    (g,) = torch.autograd.grad(loss, [e])
    assert float(g[:, 1:].abs().sum()) > 0


def test_codistill_and_its_control_differ_by_exactly_the_codistillation_terms():
    cfg = BaselineConfig()
    local, codistill = (
        objective_for("local", cfg.objective),
        objective_for("codistill", cfg.objective),
    )
    differ = [
        f.name
        for f in dataclasses.fields(ObjectiveConfig)
        if getattr(local, f.name) != getattr(codistill, f.name)
    ]
    assert differ == ["w_consensus", "w_neighbour"]
    assert dataclasses.replace(codistill, w_consensus=0.0, w_neighbour=0.0) == local
    # with the temporal term on, it is a co-distillation term too: local has it off
    video = dataclasses.replace(cfg.objective, w_temporal=1.0)
    local_v, codistill_v = objective_for("local", video), objective_for("codistill", video)
    assert local_v.w_temporal == 0.0 and codistill_v.w_temporal == 1.0
    assert not local_v.learns_from_video and codistill_v.learns_from_video
    lc = objective_for("lc-backprop", cfg.objective)
    differ = [
        f.name
        for f in dataclasses.fields(ObjectiveConfig)
        if getattr(local, f.name) != getattr(lc, f.name)
    ]
    assert differ == ["locality"]


def test_zeroing_the_codistillation_terms_gives_the_controls_loss(retina, data):
    model = build_model("codistill", retina, BaselineConfig.quick(), seed=0)
    cfg = BaselineConfig.quick().objective
    batch = Batch(data.responses[:8], data.labels[:8])
    codistill = Objective(objective_for("codistill", cfg), total_steps=10)
    control = Objective(objective_for("local", cfg), total_steps=10)
    full = codistill(model, batch, step=9)
    ctrl = control(model, batch, step=9)
    assert float(full["loss"].detach()) != float(ctrl["loss"].detach())
    rest = (
        full["loss"]
        - cfg.w_consensus * full["consensus"][0]
        - cfg.w_neighbour * full["codistillation_weight"][0] * full["neighbour"][0]
    )
    torch.testing.assert_close(rest, ctrl["loss"])


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_replica_trained_with_others_equals_the_model_trained_alone(kind, retina):
    """Three models (seeds 3, 4, 5; 40, 48, 56 training canvases; unlabelled data too) trained
    as one stacked computation end where each ends alone. Tolerance: the batched kernels sum in
    another order; after 8 Adam steps at lr 1e-2 the largest difference seen is 3e-5 (a
    top-down weight whose gradient is near zero, where Adam's normalisation magnifies
    rounding)."""
    from analyses.tasks import canvas_split, digits_split

    canv = canvas_split(
        digits_split(seed=0), canvas_px=16, digit_px=8, n_train=72, n_test=16, seed=0
    )
    train = retina_inputs(retina, canv.train.images, canv.train.labels)
    test = retina_inputs(
        retina, canv.test.images, canv.test.labels, scale=(train.scale, train.image_scale)
    )
    objective = dataclasses.replace(
        BaselineConfig.quick().objective, w_fill_in=0.5, w_contrastive=0.1, warmup_fraction=0.2
    )
    cfg = BaselineConfig.quick(steps=8, batch_size=8, unlabelled_batch_size=4, objective=objective)
    unl = train.subset(range(56, 72))
    jobs = [
        Job(retina, train.subset(range(40 + 8 * i)), {"test": test}, seed=3 + i, unlabelled=unl)
        for i in range(3)
    ]
    together = train_jobs(kind, jobs, cfg)
    for job, got in zip(jobs, together, strict=True):
        alone = train_and_evaluate(
            kind, retina, job.train, job.tests, cfg, seed=job.seed, unlabelled=unl
        )
        for (n1, p1), (n2, p2) in zip(
            got.model.named_parameters(), alone.model.named_parameters(), strict=True
        ):
            assert n1 == n2
            torch.testing.assert_close(p1, p2, rtol=1e-3, atol=2e-4, msg=f"{kind} {n1}")
        assert got.accuracy == alone.accuracy
        torch.testing.assert_close(
            torch.as_tensor(got.history["replica_loss"].values),
            torch.as_tensor(alone.history["replica_loss"].values),
            rtol=1e-4,
            atol=1e-5,
        )


def test_confidence_readout_weighs_columns_by_their_confidence(retina, data):
    """image_readout="confidence": the image's logits are the confidence-weighted mean of the
    columns' (no mask), the label term's mean is that image's cross-entropy, and it is still
    local."""
    from neurosim.readout import confidence_weights

    model = _classifier(retina)
    model.image_readout = "confidence"
    objective = Objective(ObjectiveConfig(label="image"), total_steps=1)
    batch = _batch(model, data)
    settled = objective.settle(model, batch)
    value = objective.column_terms(model, settled, batch)["label"]
    logits = model.logits(settled.state)
    w = confidence_weights(logits.detach())
    z = (w[..., None] * logits).sum(1) / w.sum(1, keepdim=True)
    torch.testing.assert_close(model.image_logits(logits)[:, 0], z)
    keep = batch.labels != IGNORE_LABEL
    torch.testing.assert_close(value.mean(), F.cross_entropy(z[keep], batch.labels[keep]))
    grads = _grads(model, value[5])
    assert sum(float(torch.cat([g[:5], g[6:]]).abs().sum()) for g in grads.values()) == 0.0
    one_hot = torch.full((1, 2, 10), -1e4)
    one_hot[0, 0, 3] = 1e4
    torch.testing.assert_close(confidence_weights(one_hot), torch.tensor([[1.0, 0.0]]))


def test_settle_holds_clamped_levels(retina, data):
    """``Objective.settle(clamp=)`` reaches the sheet: the clamped level is the given code in
    the final state, and the rest of the settling changes with it."""
    model = _classifier(retina)
    objective = Objective(ObjectiveConfig(label="image"), total_steps=1)
    batch = _batch(model, data)
    top = model.sheet.n_levels - 1
    code = torch.zeros(6, model.sheet.n_columns, model.sheet.level_dims[top])
    code[..., 0] = 5.0
    free = objective.settle(model, batch)
    held = objective.settle(model, batch, clamp={top: code})
    torch.testing.assert_close(model.sheet.level(held.state, top), code)
    assert not torch.allclose(model.sheet.level(free.state, top), code)
    assert not torch.allclose(model.sheet.level(free.state, 0), model.sheet.level(held.state, 0))


def test_seeds_are_integers_not_truncated():
    """A float seed was silently truncated by int(); numpy integers stay accepted."""
    import numpy as np

    from neurosim.objectives import check_run

    assert check_run(10, [np.int64(3), 4]) == (10, (3, 4))
    for bad in (1.5, True, "2"):
        with pytest.raises(ValueError, match=r"^seeds\[0\] must be an integer in \[0, "):
            check_run(10, [bad])
    with pytest.raises(ValueError, match="seeds must hold one seed per replica"):
        check_run(10, [])
