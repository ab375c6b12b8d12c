"""Same-level lateral attention: each column averages its neighbours' embeddings.

GLOM (Hinton 2021, arXiv:2102.12627, sec. 2, "attention-weighted average of the embeddings at the
same level in nearby columns"): the embedding is its own query, key and value, so the weight that
column c gives neighbour n is

    w[c, n] = softmax_n(beta * <e_c, e_n>)          over the neighbour set N(c),
    lateral[c] = sum_n w[c, n] e_n.

Columns that already agree pull each other harder, which is what makes islands of agreement.
The neighbour set is a fixed index ``[n_columns, k]`` (see :mod:`neurosim.neighbours`), so the
cost is O(batch * n_columns * k * dim). A column does not attend to itself (its own state enters
the consensus separately). The scores are shifted by their row maximum before multiplying by
beta, so any finite beta, however large, gives finite weights (large beta tends to a hard argmax).

The backward pass is written by hand (:class:`_LateralAttention`): it recomputes the gathered
neighbours ``[B, C, K, D]`` instead of storing them, and forms their gradient in one fused
expression, which saves both the largest tensor of a settling step and the rank-1 batched
matmuls autograd would use.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

__all__ = ["lateral_attention"]


def _gather(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x [B, C, D]``, ``index [C, K]`` -> ``[B, C, K, D]`` (index_select: fast on CPU)."""
    b, c, d = x.shape
    return torch.index_select(x, 1, index.reshape(-1)).view(b, c, index.shape[1], d)


def _weights(
    x: torch.Tensor,
    neighbours: torch.Tensor,
    beta: float,
    mask: torch.Tensor | None,
    has_any: torch.Tensor | None,
) -> torch.Tensor:
    """Attention weights ``[B, C, K]`` (zero on masked entries and on empty rows)."""
    raw = torch.matmul(neighbours, x.unsqueeze(-1)).squeeze(-1)  # [B, C, K]
    valid = None
    if mask is not None:
        valid = mask | ~has_any[:, None]
        raw = raw.masked_fill(~valid, float("-inf"))
    # (s - max) * beta <= 0: a huge beta cannot overflow; softmax is invariant to the shift.
    shifted = (raw - raw.amax(dim=-1, keepdim=True)) * beta
    if valid is not None:
        shifted = shifted.masked_fill(~valid, float("-inf"))
    weights = torch.softmax(shifted, dim=-1)
    if mask is not None:
        weights = weights * mask
    return weights


class _LateralAttention(torch.autograd.Function):
    """lateral = sum_k softmax_k(beta <x_c, x_nk>) x_nk, with a memory-light backward."""

    @staticmethod
    def forward(ctx, x, index, mask, beta):  # noqa: D102
        has_any = None if mask is None else mask.any(dim=1)
        neighbours = _gather(x, index)
        weights = _weights(x, neighbours, beta, mask, has_any)
        lateral = torch.matmul(weights.unsqueeze(-2), neighbours).squeeze(-2)
        if has_any is not None:
            lateral = torch.where(has_any[None, :, None], lateral, x)
        ctx.save_for_backward(x, index, weights, has_any)
        ctx.beta = beta
        return lateral, weights

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_lateral, grad_weights):  # noqa: D102
        x, index, weights, has_any = ctx.saved_tensors
        beta = ctx.beta
        b, c, d = x.shape
        neighbours = _gather(x, index)  # recomputed, not stored
        g = grad_lateral
        if g is None:
            g = torch.zeros_like(x)
        if has_any is not None:
            g_rows = g * has_any[None, :, None]
        else:
            g_rows = g
        # d lateral / d weights, then through the softmax: g_raw = beta w (g_w - <w, g_w>)
        g_w = torch.matmul(neighbours, g_rows.unsqueeze(-1)).squeeze(-1)  # [B, C, K]
        if grad_weights is not None:
            g_w = g_w + grad_weights * (weights > 0)
        g_raw = beta * weights * (g_w - (weights * g_w).sum(dim=-1, keepdim=True))
        # x as the query: sum_k g_raw[k] x_nk
        grad_x = torch.matmul(g_raw.unsqueeze(-2), neighbours).squeeze(-2)
        # x as key and value of its neighbours: scatter g_raw x_c + w g_c back to each neighbour
        grad_nb = g_raw.unsqueeze(-1) * x.unsqueeze(2)
        grad_nb.addcmul_(weights.unsqueeze(-1), g_rows.unsqueeze(2))
        grad_x.index_add_(1, index.reshape(-1), grad_nb.view(b, -1, d))
        if has_any is not None:
            grad_x = grad_x + g * ~has_any[None, :, None]
        return grad_x, None, None, None


def lateral_attention(
    x: torch.Tensor,
    index: torch.Tensor,
    beta: float | torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    return_weights: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Attention-weighted average of the same level over each column's neighbours.

    Args:
        x: embeddings of one level, ``[B, C, D]``.
        index: neighbour indices, ``LongTensor [C, K]`` (values in ``[0, C)``).
        beta: inverse temperature, finite and >= 0 (a float or 0-d tensor; not learnable: no
            gradient flows to it).
        mask: optional ``BoolTensor [C, K]``; False entries are ignored. A row with no True
            entry returns the column's own embedding (a neutral lateral term) and zero weights.
        return_weights: also return the attention weights.

    Returns:
        ``lateral [B, C, D]``, and if ``return_weights`` the weights ``[B, C, K]`` (each row sums
        to one over the valid neighbours).
    """
    if x.dim() != 3:
        raise ValueError(f"x must have shape [batch, n_columns, dim]; got {tuple(x.shape)}")
    n_columns = x.shape[1]
    if index.dim() != 2 or index.shape[0] != n_columns:
        raise ValueError(f"index must have shape [{n_columns}, k]; got {tuple(index.shape)}")
    beta = float(beta)
    if not 0 <= beta < float("inf"):
        raise ValueError(f"beta must be in [0, inf) and finite; got {beta!r}")
    if mask is not None and mask.shape != index.shape:
        raise ValueError(
            f"mask must have the shape of index {tuple(index.shape)}; got {tuple(mask.shape)}"
        )
    lateral, weights = _LateralAttention.apply(x, index, mask, beta)
    if return_weights:
        return lateral, weights
    return lateral
