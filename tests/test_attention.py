"""Lateral attention over neighbours, and the neighbour sets it uses."""

import numpy as np
import pytest
import torch

from neurosim.attention import lateral_attention
from neurosim.neighbours import level_neighbours, neighbour_index, widened_k


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def positions(n=50, seed=0):
    return np.random.default_rng(seed).uniform(-5, 5, size=(n, 2))


def dense_reference(x, index, beta, mask=None):
    """Loop reference: softmax over each column's neighbours, computed one column at a time."""
    b, c, d = x.shape
    out = torch.empty_like(x)
    for i in range(c):
        nb = index[i] if mask is None else index[i][mask[i]]
        e = x[:, nb]  # [B, k, D]
        w = torch.softmax(beta * torch.einsum("bd,bkd->bk", x[:, i], e), dim=-1)
        out[:, i] = torch.einsum("bk,bkd->bd", w, e)
    return out


def test_weights_sum_to_one_and_match_a_per_column_reference():
    nb = neighbour_index(positions(), k=7)
    x = torch.randn(3, 50, 16, generator=gen())
    lat, w = lateral_attention(x, nb.index, 0.7, return_weights=True)
    assert lat.shape == (3, 50, 16) and w.shape == (3, 50, 7)
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 50))
    assert bool((w >= 0).all())
    torch.testing.assert_close(lat, dense_reference(x, nb.index, 0.7))


def test_beta_zero_is_the_plain_neighbour_mean():
    nb = neighbour_index(positions(), k=5)
    x = torch.randn(2, 50, 4, generator=gen(1))
    lat = lateral_attention(x, nb.index, 0.0)
    torch.testing.assert_close(lat, x[:, nb.index].mean(dim=2))


@pytest.mark.parametrize("beta", [1e3, 1e8, 1e25])
def test_large_beta_is_finite_and_tends_to_the_most_similar_neighbour(beta):
    nb = neighbour_index(positions(), k=6)
    x = torch.randn(2, 50, 8, generator=gen(2)) * 10
    lat, w = lateral_attention(x, nb.index, beta, return_weights=True)
    assert torch.isfinite(lat).all() and torch.isfinite(w).all()
    scores = torch.einsum("bcd,bckd->bck", x, x[:, nb.index])
    best = (
        x[:, nb.index].gather(2, scores.argmax(-1)[..., None, None].expand(-1, -1, 1, 8)).squeeze(2)
    )
    torch.testing.assert_close(lat, best)


def test_large_beta_gradient_is_finite():
    nb = neighbour_index(positions(), k=6)
    x = (torch.randn(2, 50, 8, generator=gen(3)) * 10).requires_grad_(True)
    lateral_attention(x, nb.index, 1e12).square().sum().backward()
    assert torch.isfinite(x.grad).all()


def test_masked_neighbours_are_ignored_and_empty_rows_are_neutral():
    pos = np.array([[0.0, 0.0], [0.5, 0.0], [0.0, 0.6], [10.0, 10.0]])
    nb = neighbour_index(pos, radius_deg=1.0)
    assert nb.mask is not None
    assert nb.mask.sum(1).tolist() == [2, 2, 2, 0]
    x = torch.randn(2, 4, 3, generator=gen(4))
    lat, w = lateral_attention(x, nb.index, 2.0, mask=nb.mask, return_weights=True)
    torch.testing.assert_close(w[:, :3].sum(-1), torch.ones(2, 3))
    assert torch.count_nonzero(w[:, 3]) == 0
    torch.testing.assert_close(lat[:, 3], x[:, 3])  # no neighbour: the column's own embedding
    ref = dense_reference(x[:, :3], torch.tensor([[1, 2], [0, 2], [0, 1]]), 2.0)
    torch.testing.assert_close(lat[:, :3], ref)


def test_relabelling_columns_permutes_the_attention():
    pos = positions(40, seed=3)
    x = torch.randn(2, 40, 5, generator=gen(5))
    perm = np.random.default_rng(1).permutation(40)
    a = lateral_attention(x, neighbour_index(pos, k=6).index, 1.5)
    b = lateral_attention(x[:, perm], neighbour_index(pos[perm], k=6).index, 1.5)
    torch.testing.assert_close(b, a[:, perm])


def test_knn_excludes_self_and_takes_the_nearest():
    pos = positions(30, seed=4)
    nb = neighbour_index(pos, k=4)
    idx = nb.index.numpy()
    assert idx.shape == (30, 4) and nb.mask is None
    assert not (idx == np.arange(30)[:, None]).any()
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    expected = np.sort(np.argsort(d, axis=1)[:, :4], axis=1)
    assert np.array_equal(np.sort(idx, axis=1), expected)


def test_duplicate_positions_still_exclude_self():
    pos = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    idx = neighbour_index(pos, k=2).index.numpy()
    assert not (idx == np.arange(4)[:, None]).any()


def test_neighbourhoods_widen_with_level_and_long_range_links_are_seeded():
    pos = positions(200, seed=5)
    nbs = level_neighbours(pos, 4, k=6, growth=1.5, n_long_range=3, long_range_from_level=2, seed=7)
    assert [nb.k for nb in nbs] == [6, 9, 14 + 3, 20 + 3]
    assert widened_k(6, 1.5, 4, 200) == (6, 9, 14, 20)
    again = level_neighbours(pos, 4, k=6, n_long_range=3, long_range_from_level=2, seed=7)
    assert torch.equal(nbs[3].index, again[3].index)
    other = level_neighbours(pos, 4, k=6, n_long_range=3, long_range_from_level=2, seed=8)
    assert not torch.equal(nbs[3].index[:, -3:], other[3].index[:, -3:])
    for nb in nbs[2:]:
        idx = nb.index.numpy()
        assert not (idx == np.arange(200)[:, None]).any()
        assert all(len(set(row)) == len(row) for row in idx.tolist())
    # long-range links reach further than the local ones
    local = nbs[3].index[:, :20].numpy()
    far = nbs[3].index[:, 20:].numpy()
    dist = lambda j: np.linalg.norm(pos[j] - pos[:, None], axis=-1).mean()  # noqa: E731
    assert dist(far) > 2 * dist(local)
    # widening is capped at n_columns - 1
    assert [nb.k for nb in level_neighbours(pos[:10], 3, k=5, growth=2.0)] == [5, 9, 9]


def test_radius_neighbourhoods_widen_with_level():
    pos = positions(100, seed=6)
    nbs = level_neighbours(pos, 3, radius_deg=1.0, growth=2.0)
    counts = [float(nb.mask.sum(1).float().mean()) for nb in nbs]
    assert counts[0] < counts[1] < counts[2]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(k=50), r"k must be an integer in \[1, 49\]"),
        (dict(k=0), "k must be"),
        (dict(), "exactly one of k or radius_deg"),
        (dict(radius_deg=-1.0), "radius_deg"),
        (dict(k=40, n_long_range=20), "n_long_range"),
    ],
)
def test_bad_neighbour_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        neighbour_index(positions(), **kwargs)


def test_bad_attention_arguments():
    x = torch.zeros(1, 5, 2)
    idx = torch.zeros(5, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="beta"):
        lateral_attention(x, idx, -1.0)
    with pytest.raises(ValueError, match="index"):
        lateral_attention(x, idx[:4], 1.0)
    with pytest.raises(ValueError, match=r"k >= 1"):
        lateral_attention(x, idx[:, :0], 1.0)
    with pytest.raises(ValueError, match=r"index values must be in \[0, 4\]"):
        lateral_attention(x, idx + 5, 1.0)
    with pytest.raises(ValueError, match=r"index values must be in \[0, 4\]"):
        lateral_attention(x, idx - 1, 1.0)
    with pytest.raises(ValueError, match="int64 or int32"):
        lateral_attention(x, idx.float(), 1.0)
    with pytest.raises(ValueError, match="positions_deg"):
        neighbour_index(np.zeros((5, 3)), k=1)


@pytest.mark.parametrize("masked", [False, True])
def test_hand_written_backward_matches_autograd(masked):
    pos = np.concatenate([positions(12, seed=8), [[40.0, 40.0]]])  # the last column is isolated
    nb = neighbour_index(pos, radius_deg=4.0) if masked else neighbour_index(pos, k=4)
    x = torch.randn(2, 13, 3, dtype=torch.float64, generator=gen(9), requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda v: lateral_attention(v, nb.index, 1.3, mask=nb.mask, return_weights=True), (x,)
    )
    # and against plain autograd through the per-column loop reference
    g = torch.randn(2, 13, 3, dtype=torch.float64, generator=gen(10))
    (grad,) = torch.autograd.grad((lateral_attention(x, nb.index, 1.3, mask=nb.mask) * g).sum(), x)
    ref_out = dense_reference(x, nb.index, 1.3, nb.mask)
    if masked:
        ref_out = torch.where(nb.mask.any(1)[None, :, None], ref_out, x)
    (ref,) = torch.autograd.grad((ref_out * g).sum(), x)
    torch.testing.assert_close(grad, ref)


def test_irregular_graph_gradient_matches_autograd_through_the_loop():
    """Repeated neighbours, columns nobody attends to and a strided input (a level of a state
    ``[B, C, L, D]``): the sparse forward and the transposed-graph backward still agree with
    plain autograd through the per-column loop."""
    idx = torch.tensor([[1, 1, 2], [0, 2, 2], [1, 0, 1], [0, 1, 2], [2, 2, 2], [0, 0, 1]])
    state = torch.randn(2, 6, 3, 4, dtype=torch.float64, generator=gen(11), requires_grad=True)
    x = state[:, :, 1]
    g = torch.randn(2, 6, 4, dtype=torch.float64, generator=gen(12))
    out = lateral_attention(x, idx, 0.8)
    torch.testing.assert_close(out, dense_reference(x, idx, 0.8))
    (grad,) = torch.autograd.grad((out * g).sum(), state)
    (ref,) = torch.autograd.grad((dense_reference(x, idx, 0.8) * g).sum(), state)
    torch.testing.assert_close(grad, ref)
    assert torch.autograd.gradcheck(
        lambda v: lateral_attention(v, idx, 0.8, return_weights=True),
        (x.detach().clone().requires_grad_(True),),
    )


def test_graph_patterns_are_built_once_per_index_and_batch():
    """The CSR patterns are reused across calls with the same index and batch size, rebuilt
    for another batch size or after an in-place change of the index, and the results agree."""
    from neurosim import attention as A

    gen = torch.Generator().manual_seed(0)
    index = torch.randint(0, 10, (10, 3), generator=gen)
    index[:, 0] = (torch.arange(10) + 1) % 10
    x = torch.randn(4, 10, 5, generator=gen, requires_grad=True)
    first = A.lateral_attention(x, index, 1.0)
    g1 = A._graph(index, 4)
    assert A._graph(index, 4) is g1
    again = A.lateral_attention(x, index, 1.0)
    torch.testing.assert_close(first, again)
    again.sum().backward()
    assert g1._transposed is not None and A._graph(index, 4)._transposed is g1._transposed
    assert A._graph(index, 2) is not g1
    before = A.lateral_attention(x, index, 1.0)
    index[:, 1] = (torch.arange(10) + 2) % 10
    assert A._graph(index, 4) is not g1
    after = A.lateral_attention(x, index, 1.0)
    assert not torch.allclose(before, after)
    fresh = A.lateral_attention(x, index.clone(), 1.0)
    torch.testing.assert_close(after, fresh)
