"""Unshared per-column layers: equivalence to per-column loops, independence, assert_unshared."""

import pytest
import torch
from torch import nn

from neurosim.columns import (
    ColumnLinear,
    ColumnMLP,
    WeightSharingError,
    assert_unshared,
    tie_columns_,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_column_linear_matches_a_loop_over_columns():
    layer = ColumnLinear(5, 3, 4, generator=gen())
    with torch.no_grad():
        layer.bias.normal_(generator=gen(1))
    assert_unshared(layer, check_values=True)
    x = torch.randn(2, 5, 3, generator=gen(2))
    y = layer(x)
    assert y.shape == (2, 5, 4)
    for c in range(5):
        ref = x[:, c] @ layer.weight[c] + layer.bias[c]
        torch.testing.assert_close(y[:, c], ref)


def test_columns_are_initialised_independently_and_reproducibly():
    a = ColumnLinear(64, 8, 8, generator=gen(0))
    b = ColumnLinear(64, 8, 8, generator=gen(0))
    c = ColumnLinear(64, 8, 8, generator=gen(1))
    assert torch.equal(a.weight, b.weight)
    assert not torch.equal(a.weight, c.weight)
    w = a.weight.detach().reshape(64, -1)
    # No two columns are equal, and column weights are uncorrelated (independent draws).
    assert torch.unique(w, dim=0).shape[0] == 64
    corr = torch.corrcoef(w)
    off = corr[~torch.eye(64, dtype=torch.bool)]
    assert off.abs().max() < 0.5
    assert abs(float(off.mean())) < 0.05
    bound = 1 / 8**0.5
    assert float(w.abs().max()) <= bound


def test_column_mlp_matches_per_column_mlps():
    mlp = ColumnMLP(4, 3, (6, 5), 2, activation="tanh", generator=gen())
    assert_unshared(mlp, check_values=True)
    x = torch.randn(7, 4, 3, generator=gen(3))
    y = mlp(x)
    for c in range(4):
        h = x[:, c]
        for i, layer in enumerate(mlp.layers):
            h = h @ layer.weight[c] + layer.bias[c]
            if i < 2:
                h = torch.tanh(h)
        torch.testing.assert_close(y[:, c], h)


def test_extra_input_equals_concatenation():
    mlp = ColumnMLP(6, 5, (8,), 3, generator=gen())
    x = torch.randn(4, 6, 3, generator=gen(1))
    pos = torch.randn(6, 2, generator=gen(2))
    cat = torch.cat([x, pos.expand(4, -1, -1)], dim=-1)
    torch.testing.assert_close(mlp(x, pos), mlp(cat))
    shared = ColumnMLP(6, 5, (8,), 3, shared=True, generator=gen())
    torch.testing.assert_close(shared(x, pos), shared(cat))


def test_tied_columns_reproduce_the_shared_layer():
    shared = ColumnMLP(10, 4, (8,), 3, shared=True, generator=gen(5))
    unshared = ColumnMLP(10, 4, (8,), 3, generator=gen(6))
    with torch.no_grad():
        for s, u in zip(shared.layers, unshared.layers, strict=True):
            u.weight.copy_(s.weight.expand_as(u.weight))
            u.bias.copy_(s.bias.expand_as(u.bias))
    x = torch.randn(3, 10, 4, generator=gen(7))
    torch.testing.assert_close(unshared(x), shared(x))
    assert_unshared(unshared)  # storage is separate even though values are tied
    with pytest.raises(WeightSharingError, match="identical"):
        assert_unshared(unshared, check_values=True)


def test_tie_columns_copies_one_column_and_adds_independent_noise():
    mlp = ColumnMLP(8, 4, (5,), 3, generator=gen())
    tie_columns_(mlp, source_column=2)
    w = mlp.layers[0].weight
    assert torch.equal(w[0], w[7])
    tie_columns_(mlp, noise_std=0.1, generator=gen(1))
    assert not torch.equal(mlp.layers[0].weight[0], mlp.layers[0].weight[1])
    assert_unshared(mlp, check_values=True)
    with pytest.raises(ValueError, match="source_column"):
        tie_columns_(mlp, source_column=8)


def test_gradients_stay_in_their_column():
    layer = ColumnLinear(6, 3, 2, generator=gen())
    x = torch.randn(4, 6, 3, generator=gen(1))
    layer(x)[:, 2].sum().backward()
    g = layer.weight.grad
    assert g[2].abs().sum() > 0
    assert torch.count_nonzero(g[torch.arange(6) != 2]) == 0


def test_assert_unshared_refuses_a_shared_model_with_a_clear_message():
    mlp = ColumnMLP(5, 3, (4,), 2, shared=True, generator=gen())
    assert mlp.layers[0].weight.shape == (1, 3, 4)
    with pytest.raises(WeightSharingError, match="weight-shared.*shared=True"):
        assert_unshared(mlp)


def test_assert_unshared_catches_broadcast_weights():
    layer = ColumnLinear(5, 3, 4, generator=gen())
    layer.weight = nn.Parameter(torch.randn(1, 3, 4).expand(5, 3, 4))
    with pytest.raises(WeightSharingError, match="stride 0|same memory"):
        assert_unshared(layer)
    layer.weight = nn.Parameter(torch.randn(1, 3, 4))
    with pytest.raises(WeightSharingError, match="broadcast"):
        assert_unshared(layer)


def test_assert_unshared_catches_shared_storage_between_layers():
    a = ColumnLinear(4, 3, 3, generator=gen())
    b = ColumnLinear(4, 3, 3, generator=gen(1))
    b.weight = a.weight  # the same tensor in two layers
    with pytest.raises(WeightSharingError, match="shares storage"):
        assert_unshared(nn.ModuleList([a, b]))
    with pytest.raises(WeightSharingError, match="same module"):
        assert_unshared(nn.ModuleList([a, a]))


def test_assert_unshared_catches_plain_layers_applied_to_all_columns():
    model = nn.ModuleDict({"cols": ColumnLinear(4, 3, 3, generator=gen()), "lin": nn.Linear(3, 3)})
    with pytest.raises(WeightSharingError, match="not a per-column"):
        assert_unshared(model)
    with pytest.raises(WeightSharingError, match="no ColumnLinear"):
        assert_unshared(nn.Linear(2, 2))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(n_columns=0, d_in=2, d_out=2), "n_columns"),
        (dict(n_columns=2, d_in=0, d_out=2), "d_in"),
        (dict(n_columns=2, d_in=2, d_out=-1), "d_out"),
    ],
)
def test_bad_sizes_raise_naming_the_argument(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ColumnLinear(**kwargs)


def test_bad_mlp_arguments():
    with pytest.raises(ValueError, match="activation"):
        ColumnMLP(2, 2, (3,), 2, activation="sigmoidish")
    with pytest.raises(ValueError, match=r"hidden\[1\]"):
        ColumnMLP(2, 2, (3, 0), 2)
    with pytest.raises(ValueError, match="x must have shape"):
        ColumnLinear(3, 2, 2)(torch.zeros(1, 4, 2))
