"""Replicas: stacked models settle like the models alone, give themselves back, clip alone."""

import numpy as np
import pytest
import torch

from neurosim.columns import ColumnLinear, assert_unshared
from neurosim.model import Model, ModelConfig
from neurosim.replicas import clip_grad_norm_per_replica_, replica_grad_norms, stack_models


def cells(seed, n=200, half=5.0):
    return np.random.default_rng(seed).uniform(-half, half, size=(n, 2))


def model(seed, *, shared=False, radius=0.0, cell_seed=None, **kw):
    cfg = ModelConfig(
        n_columns=12,
        n_levels=2,
        dim=(4, 6),
        hidden=(5,),
        k_cells=6,
        neighbour_k=3,
        neighbour_radius_deg=radius,
        shared=shared,
        seed=seed,
        **kw,
    )
    pos = np.random.default_rng(100 + seed).uniform(-5, 5, size=(12, 2))
    c = cells(seed if cell_seed is None else cell_seed)
    return Model(cfg, c, column_positions_deg=pos)


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("radius", [0.0, 3.0])
def test_stacked_models_settle_each_as_alone(shared, radius):
    """Each replica reads its own cells and neighbours: its state equals the model alone."""
    models = [model(s, shared=shared, radius=radius) for s in (0, 1, 2)]
    stacked = stack_models(models)
    assert stacked.n_replicas == 3 and stacked.n_columns == 36 and stacked.n_cells == 600
    if not shared:
        assert_unshared(stacked, check_values=True)
    g = torch.Generator().manual_seed(0)
    x = [torch.randn(4, 200, generator=g) for _ in models]
    out = stacked.settle(torch.cat(x, dim=1), n_steps=3, record=("state",))
    for r, m in enumerate(models):
        alone = m.settle(x[r], n_steps=3, record=("state",))
        got = out.trajectory[:, :, r * 12 : (r + 1) * 12]
        torch.testing.assert_close(got, alone.trajectory, rtol=1e-5, atol=1e-6)


def test_replica_gives_the_model_back():
    models = [model(s, normalize="layer") for s in (3, 4)]
    stacked = stack_models(models)
    for r, m in enumerate(models):
        back = stacked.replica(r)
        assert back.config == m.config and back.n_replicas == 1
        for (n1, p1), (n2, p2) in zip(
            back.state_dict().items(), m.state_dict().items(), strict=True
        ):
            assert n1 == n2
            torch.testing.assert_close(p1, p2)
        x = torch.randn(2, 200)
        torch.testing.assert_close(back.settle(x).state, m.settle(x).state)


def test_stacking_refuses_other_architectures():
    with pytest.raises(ValueError, match="architecture"):
        stack_models([model(0), model(1, n_frequencies=2)])
    with pytest.raises(ValueError, match="at least one"):
        stack_models([])


def test_gradients_do_not_cross_replicas_and_clip_per_replica():
    models = [model(s) for s in (0, 1)]
    stacked = stack_models(models)
    x = torch.randn(3, 400)
    state = stacked.settle(x, n_steps=2).state
    # a loss on replica 1 only: replica 0's parameters get exactly zero gradient
    state[:, 12:].square().sum().backward()
    for p in stacked.parameters():
        g = p.grad.view(2, -1)
        assert float(g[0].abs().max()) == 0.0
    norms = replica_grad_norms(stacked.parameters(), 2)
    assert float(norms[0]) == 0.0 and float(norms[1]) > 0
    before = [p.grad.clone() for p in stacked.parameters()]
    out = clip_grad_norm_per_replica_(stacked.parameters(), 2, float(norms[1]) / 4)
    torch.testing.assert_close(out, norms)
    after = replica_grad_norms(stacked.parameters(), 2)
    assert float(after[1]) == pytest.approx(float(norms[1]) / 4, rel=1e-4)
    for b, p in zip(before, stacked.parameters(), strict=True):
        torch.testing.assert_close(p.grad.view(2, -1)[1], b.view(2, -1)[1] / 4, rtol=1e-4, atol=0)


def test_one_replica_clip_equals_torch():
    layer = ColumnLinear(4, 3, 2, generator=torch.Generator().manual_seed(0))
    twin = ColumnLinear(4, 3, 2, generator=torch.Generator().manual_seed(0))
    x = torch.randn(5, 4, 3)
    for m in (layer, twin):
        m(x).pow(2).sum().backward()
    clip_grad_norm_per_replica_(layer.parameters(), 1, 0.1)
    torch.nn.utils.clip_grad_norm_(twin.parameters(), 0.1)
    for a, b in zip(layer.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad)
