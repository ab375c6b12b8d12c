"""The short-axis softmax family equals torch's functions, values and gradients."""

import pytest
import torch
import torch.nn.functional as F

from neurosim import softmax as S


@pytest.mark.parametrize("k", [2, 4, 6, 10, 15, 16, 32])
@pytest.mark.parametrize("scale", [1.0, 80.0])
def test_softmax_log_softmax_and_cross_entropy_equal_torchs(k, scale):
    gen = torch.Generator().manual_seed(k)
    x = (torch.randn(5, 7, k, generator=gen, dtype=torch.float64) * scale).requires_grad_(True)
    y = torch.randint(0, k, (5, 7), generator=gen)
    g = torch.randn(5, 7, k, generator=gen, dtype=torch.float64)
    pairs = [
        (S.softmax(x), torch.softmax(x, dim=-1)),
        (S.log_softmax(x), F.log_softmax(x, dim=-1)),
        (
            S.cross_entropy(x, y)[..., None].expand(5, 7, k),
            F.cross_entropy(x.reshape(-1, k), y.reshape(-1), reduction="none")
            .view(5, 7)[..., None]
            .expand(5, 7, k),
        ),
    ]
    for ours, theirs in pairs:
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
        (ga,) = torch.autograd.grad((ours * g).sum(), x)
        (gb,) = torch.autograd.grad((theirs * g).sum(), x)
        torch.testing.assert_close(ga, gb, rtol=1e-10, atol=1e-12)


def test_float32_rows_sum_to_one_and_stay_finite_for_huge_logits():
    x = torch.tensor([[1e30, 0.0, -1e30, 3.0]])
    p = S.softmax(x)
    assert torch.isfinite(p).all() and float(p.sum()) == pytest.approx(1.0)
    assert torch.isfinite(S.log_softmax(x)[0, :2]).all()
    assert float(S.cross_entropy(x, torch.tensor([0]))) == pytest.approx(0.0)
