"""Tests of the learning rules in neurosim.learning, each on its own."""

from __future__ import annotations

import math

import pytest
import torch

from neurosim import collapse as C
from neurosim import learning as L


def test_soft_target_loss_matches_hand_computed_value():
    # Two classes, T = 2. Teacher logits (2, 0) -> p = softmax((1, 0)) = (e/(e+1), 1/(e+1)).
    # Student logits (0, 0) -> q = (1/2, 1/2). KL = sum p log(p/q); loss = T^2 * KL.
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[2.0, 0.0]])
    e = math.e
    p1, p2 = e / (e + 1), 1 / (e + 1)
    expected = 4.0 * (p1 * math.log(p1 / 0.5) + p2 * math.log(p2 / 0.5))
    got = L.soft_target_loss(student, teacher, 2.0)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.44378, abs=1e-4)  # 4 * 0.11094


def test_soft_target_loss_zero_when_equal_and_teacher_detached():
    z = torch.randn(5, 10, generator=torch.Generator().manual_seed(0))
    teacher = z.clone().requires_grad_(True)
    student = z.clone().requires_grad_(True)
    loss = L.soft_target_loss(student, teacher, 3.0)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    (loss + (student * 0.1).sum()).backward()
    assert teacher.grad is None
    assert student.grad is not None


def test_soft_target_gradient_scale_is_t_squared_invariant():
    # Hinton et al. 2015: for large T, dL/dz ~ (z_s - z_t) / (K) independent of T thanks to T^2.
    g = torch.Generator().manual_seed(1)
    zs = (torch.randn(1, 10, generator=g) * 0.1).requires_grad_(True)
    zt = torch.randn(1, 10, generator=g) * 0.1
    grads = []
    for t in (20.0, 40.0):
        zs.grad = None
        L.soft_target_loss(zs, zt, t).backward()
        grads.append(zs.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], rtol=0.02, atol=1e-5)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), True])
def test_bad_temperature_raises(bad):
    with pytest.raises(ValueError, match="temperature"):
        L.soft_target_loss(torch.zeros(1, 3), torch.zeros(1, 3), bad)


def test_soft_target_shape_mismatch_raises():
    with pytest.raises(ValueError, match="teacher_logits"):
        L.soft_target_loss(torch.zeros(2, 3), torch.zeros(2, 4), 1.0)


def test_locality_flag():
    assert L.detach_inputs_for("local") is True
    assert L.detach_inputs_for("bptt") is False
    with pytest.raises(ValueError, match="locality"):
        L.detach_inputs_for("global")


def test_consensus_loss_value_and_detached_target():
    bu = torch.zeros(1, 2, 3, 4, requires_grad=True)
    td = torch.zeros(1, 2, 3, 4, requires_grad=True)
    cons = torch.ones(1, 2, 3, 4, requires_grad=True)
    loss = L.consensus_codistillation_loss(bu, td, cons)
    # bottom-up MSE = 1; top-down MSE over levels 0, 1 (top level has no top-down net) = 1
    assert loss.item() == pytest.approx(2.0)
    loss.backward()
    assert cons.grad is None
    assert torch.all(td.grad[..., 2, :] == 0)  # top level ignored
    assert torch.all(td.grad[..., :2, :] != 0)


def test_consensus_loss_top_level_value_ignored_and_mask():
    cons = torch.zeros(2, 3, 2, 5)
    bu = torch.zeros_like(cons)
    td = torch.zeros_like(cons)
    td[..., 1, :] = 100.0  # whatever the model stores at the top level does not count
    assert L.consensus_codistillation_loss(bu, td, cons).item() == 0.0
    bu[:, 0] = 3.0  # only column 0 wrong
    mask = torch.tensor([False, True, True])
    assert L.consensus_codistillation_loss(bu, td, cons, mask=mask).item() == 0.0
    assert L.consensus_codistillation_loss(bu, None, cons).item() == pytest.approx(3.0)
    single = torch.zeros(2, 3, 1, 5)
    assert L.consensus_codistillation_loss(single + 1, single, single).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="bottom_up"):
        L.consensus_codistillation_loss(bu[..., :4], td, cons)
    with pytest.raises(ValueError, match="mask"):
        L.consensus_codistillation_loss(bu, td, cons, mask=torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="top_down_levels"):
        L.consensus_codistillation_loss(bu, td, cons, top_down_levels=torch.ones(3))


def test_consensus_loss_time_leading_dim():
    g = torch.Generator().manual_seed(0)
    cons = torch.randn(4, 2, 3, 2, 5, generator=g)  # [T, B, C, L, D]
    bu = cons.clone()
    td = cons.clone()
    assert L.consensus_codistillation_loss(bu, td, cons).item() == pytest.approx(0.0)


def test_fill_in_mask_counts_and_seed():
    m1 = L.draw_fill_in_mask(6, 10, 0.3, generator=torch.Generator().manual_seed(3))
    m2 = L.draw_fill_in_mask(6, 10, 0.3, generator=torch.Generator().manual_seed(3))
    m3 = L.draw_fill_in_mask(6, 10, 0.3, generator=torch.Generator().manual_seed(4))
    assert m1.dtype == torch.bool and m1.shape == (6, 10)
    assert torch.equal(m1, m2)
    assert not torch.equal(m1, m3)
    assert torch.all(m1.sum(dim=1) == 3)
    assert torch.all(L.draw_fill_in_mask(2, 3, 0.01, generator=torch.Generator()).sum(1) == 1)
    assert torch.all(L.draw_fill_in_mask(2, 3, 0.99, generator=torch.Generator()).sum(1) == 2)
    with pytest.raises(ValueError, match="fraction"):
        L.draw_fill_in_mask(2, 3, 1.0, generator=torch.Generator())
    with pytest.raises(ValueError, match="n_columns"):
        L.draw_fill_in_mask(2, 1, 0.5, generator=torch.Generator())


def test_fill_in_loss_only_hidden_columns():
    x = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
    hidden = torch.tensor([[True, False, False], [False, False, True]])
    hid = L.hide_column_inputs(x, hidden)
    assert torch.all(hid[0, 0] == 0) and torch.all(hid[1, 2] == 0)
    assert torch.equal(hid[0, 1], x[0, 1])
    pred = x.clone()
    pred[0, 1] += 5.0  # visible column wrong: no cost
    assert L.fill_in_loss(pred, x, hidden).item() == 0.0
    pred[0, 0] += 2.0  # hidden column wrong by 2 over 4 of 8 hidden entries
    assert L.fill_in_loss(pred, x, hidden).item() == pytest.approx(4.0 * 4 / 8)
    none = torch.zeros(2, 3, dtype=torch.bool)
    assert L.fill_in_loss(pred, x, none).item() == 0.0
    with pytest.raises(ValueError, match="hidden"):
        L.fill_in_loss(pred, x, hidden[:, :2])


def test_contrastive_loss_collapse_costs_log_batch():
    batch = 8
    collapsed = torch.ones(batch, 4, 6)
    got = L.contrastive_loss(collapsed, 0.5)
    assert got.item() == pytest.approx(math.log(batch), rel=1e-5)
    # distinct, well separated images: loss far below chance
    eye = torch.eye(batch).unsqueeze(1).expand(batch, 4, batch).contiguous()
    assert L.contrastive_loss(eye, 0.1).item() < 0.01
    flat = L.contrastive_loss(torch.eye(batch), 0.1)
    assert flat.item() < 0.01
    assert L.contrastive_loss(torch.ones(batch, 3), 0.1).item() == pytest.approx(math.log(batch))
    two_views = L.contrastive_loss(torch.eye(batch), 0.1, positives=torch.eye(batch))
    assert two_views.item() < 0.01
    with pytest.raises(ValueError, match="embeddings"):
        L.contrastive_loss(torch.ones(batch), 0.1)
    with pytest.raises(ValueError, match="batch"):
        L.contrastive_loss(torch.ones(1, 3), 0.1)


def test_collapse_report_per_level():
    g = torch.Generator().manual_seed(0)
    state = torch.randn(32, 5, 3, 8, generator=g)
    state[:, :, 1] = 0.7  # level 1 collapsed: same vector for every image
    var = C.collapse_report(state)
    assert var.shape == (3,)
    assert var[1].item() == 0.0
    assert var[0].item() == pytest.approx(1.0, abs=0.15)
    rel = C.collapse_report(state, relative=True)
    assert rel[1].item() == 0.0 and 0.8 < rel[2].item() <= 1.0
    with pytest.raises(ValueError, match="state"):
        C.collapse_report(state[0])


def test_smaller_levels_padding_is_left_out_of_the_means():
    """With level_dims, a level zero-padded to the state width is averaged over its own entries:
    the result equals the one computed on the unpadded level alone."""
    g = torch.Generator().manual_seed(0)
    dims = (3, 8)
    state = torch.randn(16, 5, 2, 8, generator=g)
    state[:, :, 0, 3:] = 0.0
    var = C.collapse_report(state, level_dims=dims)
    torch.testing.assert_close(var[0], C.collapse_report(state[:, :, :1, :3])[0])
    torch.testing.assert_close(var[1], C.collapse_report(state[:, :, 1:])[0])
    rel = C.collapse_report(state, relative=True, level_dims=dims)
    torch.testing.assert_close(rel[0], C.collapse_report(state[:, :, :1, :3], relative=True)[0])
    bu, td, cons = (torch.randn(4, 5, 2, 8, generator=g) for _ in range(3))
    for t in (bu, td, cons):
        t[:, :, 0, 3:] = 0.0
    mask = torch.rand(4, 5, generator=g) > 0.3
    got = L.consensus_codistillation_loss(bu, td, cons, mask=mask, level_dims=dims)
    m = mask[..., None].float()
    want = ((bu - cons) ** 2).sum(-1).mul(m).sum() / (m.sum() * sum(dims))
    want = want + ((td - cons)[:, :, 0] ** 2).sum(-1).mul(mask).sum() / (mask.sum() * dims[0])
    torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match=r"level_dims must list 2 sizes.*in \[1, 8\]"):
        C.collapse_report(state, level_dims=(3, 9))


def test_contrastive_training_prevents_collapse_on_small_task():
    """A consensus-only objective collapses; adding the contrastive term keeps variance.

    Each of 4 columns sees its own random mixture of a shared 6-d image latent plus
    as much independent noise; every column has
    an unshared affine encoder. Regressing each column on the detached cross-column consensus
    alone is solved by the trivial constant code (collapse); InfoNCE keeps images apart.
    """
    g = torch.Generator().manual_seed(0)
    z = torch.randn(64, 6, generator=g)
    mix = torch.randn(4, 6, 6, generator=g)
    x = torch.einsum("bi,cij->bcj", z, mix) + 1.0 * torch.randn(64, 4, 6, generator=g)

    def train(contrastive_weight: float) -> torch.Tensor:
        gen = torch.Generator().manual_seed(1)
        w = (torch.randn(4, 6, 8, generator=gen) * 0.3).requires_grad_(True)
        b = torch.randn(4, 8, generator=gen).requires_grad_(True)
        opt = torch.optim.Adam([w, b], lr=0.03)
        for _ in range(300):
            e = torch.einsum("bci,cio->bco", x, w) + b  # per-column unshared encoders
            consensus = e.mean(dim=1, keepdim=True).expand_as(e)
            mse = ((e - consensus.detach()) ** 2).mean()
            loss = mse
            if contrastive_weight:
                loss = loss + contrastive_weight * L.contrastive_loss(e, 0.2)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            e = torch.einsum("bci,cio->bco", x, w) + b
        return C.collapse_report(e.unsqueeze(2), relative=True)[0], mse.item()

    collapsed, _ = train(0.0)
    kept, disagreement = train(1.0)
    assert collapsed.item() < 1e-3  # measured 2e-8
    assert kept.item() > 0.5  # measured 0.99
    assert disagreement < 0.05  # and the columns still agree (measured 0.009)


def test_neighbour_soft_targets_weighted_average():
    logits = torch.tensor([[[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]])  # [B=1, C=3, K=2]
    index = torch.tensor([[1, 2], [0, 2], [0, 1]])
    weights = torch.tensor([[[1.0, 0.0], [0.5, 0.5], [0.25, 0.75]]])
    target = L.neighbour_soft_targets(logits, index, weights, 1.0)
    p = torch.softmax(logits[0], dim=-1)
    torch.testing.assert_close(target[0, 0], p[1])
    torch.testing.assert_close(target[0, 1], 0.5 * p[0] + 0.5 * p[2])
    torch.testing.assert_close(target[0, 2], 0.25 * p[0] + 0.75 * p[1])
    uniform = L.neighbour_soft_targets(logits, index, None, 1.0)
    torch.testing.assert_close(uniform[0, 0], 0.5 * (p[1] + p[2]))


def test_neighbour_codistillation_loss_value_and_gradient_only_to_student():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 5, 3, generator=g, requires_grad=True)
    index = torch.tensor([[1, 2], [2, 3], [3, 4], [4, 0], [0, 1]])
    weights = torch.softmax(torch.randn(4, 5, 2, generator=g), dim=-1).requires_grad_(True)
    t = 2.5
    loss = L.neighbour_codistillation_loss(logits, index, weights, t)
    with torch.no_grad():
        p = torch.softmax(logits / t, dim=-1)
        target = (weights.unsqueeze(-1) * p[:, index]).sum(dim=2)
        log_q = torch.log_softmax(logits / t, dim=-1)
        expected = t * t * (target * (target.log() - log_q)).sum(-1).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # Gradient w.r.t. column 0's logits comes only from column 0's own term: perturbing the
    # teacher columns' logits inside the target has no gradient path.
    loss.backward()
    assert weights.grad is None
    single = logits.detach().clone().requires_grad_(True)
    only_c0 = L.distillation_kl(single[:, 0], target[:, 0], t) / 5
    only_c0.backward()
    torch.testing.assert_close(logits.grad[:, 0], single.grad[:, 0])


def test_neighbour_codistillation_bad_inputs():
    logits = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError, match="neighbour_index"):
        L.neighbour_codistillation_loss(logits, torch.tensor([[1], [2]]), None, 1.0)
    with pytest.raises(ValueError, match="neighbour_index"):
        L.neighbour_codistillation_loss(logits, torch.tensor([[1], [2], [3]]), None, 1.0)
    with pytest.raises(ValueError, match="attention_weights"):
        L.neighbour_codistillation_loss(
            logits, torch.tensor([[1], [2], [0]]), torch.ones(2, 3, 2), 1.0
        )


def test_codistillation_weight_schedule():
    assert L.codistillation_weight(0, 10, 5) == 0.0
    assert L.codistillation_weight(9, 10, 5) == 0.0
    assert L.codistillation_weight(10, 10, 5) == pytest.approx(0.2)
    assert L.codistillation_weight(14, 10, 5) == pytest.approx(1.0)
    assert L.codistillation_weight(100, 10, 5) == 1.0
    assert L.codistillation_weight(10, 10, 0) == 1.0
    with pytest.raises(ValueError, match="warmup_steps"):
        L.codistillation_weight(1, -1, 0)


# ---------------------------------------------------------------------- locality on the real model
def _tiny_model():
    import numpy as np

    from neurosim.model import Model, ModelConfig

    rng = np.random.default_rng(0)
    cells = rng.uniform(-2.0, 2.0, size=(48, 2))
    g = np.linspace(-1.5, 1.5, 3)
    columns = np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)  # 9 columns
    config = ModelConfig(
        n_columns=9, n_levels=3, dim=4, hidden=(6,), k_cells=4, neighbour_k=3, seed=0
    )
    model = Model(config, cells, column_positions_deg=columns)
    responses = torch.randn(5, 48, generator=torch.Generator().manual_seed(1))
    return model, responses


def _column_loss_grads(model, responses, locality, column):
    settled = model.settle(responses, n_steps=3, detach_inputs=L.detach_inputs_for(locality))
    mask = torch.zeros(model.n_columns)
    mask[column] = 1.0
    loss = L.consensus_codistillation_loss(
        settled.bottom_up,
        settled.top_down,
        settled.consensus,
        mask=mask,
        top_down_levels=model.has_top_down,
    )
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {
        name: (torch.zeros_like(p) if p.grad is None else p.grad)
        for name, p in model.named_parameters()
    }


def test_locality_local_mode_gradient_stays_in_the_column():
    """local: d(loss of column c) / d(parameters of any other column) is exactly zero."""
    from neurosim.columns import assert_unshared

    model, responses = _tiny_model()
    assert_unshared(model)
    c = 4
    grads = _column_loss_grads(model, responses, "local", c)
    own = 0.0
    for name, g in grads.items():
        assert g.shape[0] == model.n_columns, name  # every parameter is per column
        others = torch.cat([g[:c], g[c + 1 :]])
        assert torch.count_nonzero(others) == 0, name
        own += float(g[c].abs().sum())
    assert own > 0  # the column's own nets do learn


def test_locality_bptt_mode_gradient_crosses_columns():
    model, responses = _tiny_model()
    c = 4
    grads = _column_loss_grads(model, responses, "bptt", c)
    crossed = sum(float(torch.cat([g[:c], g[c + 1 :]]).abs().sum()) for g in grads.values())
    assert crossed > 0


def test_locality_local_mode_no_gradient_across_time():
    """local: the last step's loss does not reach earlier states; bptt: it does."""
    model, responses = _tiny_model()
    for locality, reaches in (("local", False), ("bptt", True)):
        start = model.initial_state(responses).detach().requires_grad_(True)
        settled = model.settle(
            responses,
            n_steps=3,
            detach_inputs=L.detach_inputs_for(locality),
            initial_state=start,
        )
        loss = L.consensus_codistillation_loss(
            settled.bottom_up, settled.top_down, settled.consensus
        )
        (g,) = torch.autograd.grad(loss, [start], allow_unused=True)
        assert (g is not None and float(g.abs().sum()) > 0) == reaches, locality


def test_cosine_consensus_error_is_one_minus_torchs_cosine_similarity():
    """The cosine term's own formula equals ``1 - F.cosine_similarity`` (eps 1e-8), zero
    vectors included, per column and for the scalar, with and without top-down levels."""
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(3)
    bu, td, c = (torch.randn(2, 3, 5, 3, 4, generator=gen, dtype=torch.float64) for _ in range(3))
    bu[0, 0, 0, 0] = 0.0  # a zero prediction: the eps floor
    c[1, 1, 1, 1] = 0.0
    levels = torch.tensor([True, True, False])
    err_bu = 1 - F.cosine_similarity(bu, c, dim=-1, eps=1e-8)  # [T, B, C, L]
    err_td = (1 - F.cosine_similarity(td, c, dim=-1, eps=1e-8))[..., :2]
    want_cols = err_bu.mean(dim=(0, 1, 3)) + err_td.mean(dim=(0, 1, 3))
    got_cols = L.consensus_codistillation_loss(bu, td, c, loss="cosine", per_column=True)
    torch.testing.assert_close(got_cols, want_cols, rtol=1e-12, atol=1e-12)
    got = L.consensus_codistillation_loss(bu, td, c, top_down_levels=levels, loss="cosine")
    torch.testing.assert_close(got, err_bu.mean() + err_td.mean(), rtol=1e-12, atol=1e-12)
