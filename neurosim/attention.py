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

Implementation: the neighbour graph of a batch is a block-diagonal sparse matrix
``[B*C, B*C]`` with ``k`` entries per row (CSR). The scores are a sampled dense-dense product
(``torch.sparse.sampled_addmm``: ``<x_c, x_n>`` only at the graph's entries), the lateral term a
sparse-dense product (``weights @ x``), so the gathered neighbours ``[B, C, K, D]`` (the largest
tensor of a settling step) are never formed, in the forward or in the backward pass. The
backward pass is written by hand (:class:`_LateralAttention`); the gradient that reaches a column
as the key and value of its neighbours is a product with the transposed graph, whose CSR
pattern is a fixed permutation of the forward one (no scatter-add). Both patterns are built once
per neighbour index and batch size and reused by every later call (:func:`_graph`).
"""

from __future__ import annotations

import collections
import threading
import warnings

import torch
from torch.autograd.function import once_differentiable

from neurosim.softmax import softmax

__all__ = ["lateral_attention"]


_sparse_ready = False
_sparse_lock = threading.Lock()


def _prime_sparse() -> None:
    """Consume torch's one-time "sparse CSR support is in beta" UserWarning, once per process.

    torch emits it only for the first CSR tensor ever built (TORCH_WARN_ONCE), so building one
    tiny matrix here with that warning ignored keeps every later call silent without touching
    the global warning filters again (``warnings.catch_warnings`` is not thread-safe).
    """
    global _sparse_ready
    if _sparse_ready:
        return
    with _sparse_lock:
        if not _sparse_ready:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
                one = torch.ones(1, dtype=torch.long)
                torch.sparse_csr_tensor(
                    torch.arange(2), one - 1, one.float(), (1, 1), check_invariants=False
                )
            _sparse_ready = True


class _Graph:
    """CSR patterns of the block-diagonal neighbour matrix of a batch and of its transpose.

    Row ``b*C + c`` of the forward pattern holds columns ``b*C + index[c, :]`` (in the order of
    ``index``, so CSR values are the ``[B, C, K]`` tensors flattened). The transposed pattern
    lists, for each column ``n``, the entries ``(c, k)`` with ``index[c, k] == n`` (a stable
    argsort of ``index`` maps its entries to the forward ones). Indices are int32 when they fit
    (MKL's sparse BLAS takes them without a conversion copy).
    """

    def __init__(self, index: torch.Tensor, batch: int) -> None:
        c, k = index.shape
        dev = index.device
        self.n = n = batch * c
        self.itype = torch.int32 if n * k < 2**31 - 1 else torch.long
        self.index = index
        self.rows = torch.arange(batch, device=dev)[:, None]
        self.crow = (torch.arange(n + 1, device=dev) * k).to(self.itype)
        self.col = (self.rows * c + index.reshape(-1)[None]).reshape(-1).to(self.itype)
        self.shape = (batch, c, k)
        self._transposed: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def _transposed_pattern(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(crow_t, col_t, perm)``, built on first use (only the backward pass needs it)."""
        if self._transposed is None:
            b, c, k = self.shape
            rows = self.rows
            flat = self.index.reshape(-1)
            perm = torch.argsort(flat, stable=True)  # [C*K]: transposed entry -> forward entry
            counts = torch.bincount(flat, minlength=c)
            starts = torch.cumsum(counts, 0) - counts  # [C]: first transposed entry of a column
            crow_t = (rows * (c * k) + starts[None]).reshape(-1)
            crow_t = torch.cat([crow_t, crow_t.new_full((1,), b * c * k)]).to(self.itype)
            src_row = torch.div(perm, k, rounding_mode="floor")  # the column c of each entry
            col_t = (rows * c + src_row[None]).reshape(-1).to(self.itype)
            perm = (rows * (c * k) + perm[None]).reshape(-1)  # [B*C*K], int64
            self._transposed = (crow_t, col_t, perm)
        return self._transposed

    def _csr(self, crow, col, values):
        return torch.sparse_csr_tensor(crow, col, values, (self.n, self.n), check_invariants=False)

    def matrix(self, values: torch.Tensor) -> torch.Tensor:
        """Sparse ``[B*C, B*C]`` with ``values [B, C, K]`` on the forward pattern."""
        return self._csr(self.crow, self.col, values.reshape(-1))

    def transposed(self, values: torch.Tensor) -> torch.Tensor:
        """The transpose of :meth:`matrix` (``values [B, C, K]``), as a CSR matrix."""
        crow_t, col_t, perm = self._transposed_pattern()
        return self._csr(crow_t, col_t, values.reshape(-1).index_select(0, perm))

    def sampled_dot(self, a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``out[b, c, k] = <a[b, c], v[b, index[c, k]]>``; ``a, v [B*C, D]`` -> ``[B, C, K]``."""
        pattern = self.matrix(a.new_zeros(self.col.numel()))
        out = torch.sparse.sampled_addmm(pattern, a, v.t(), beta=0.0)
        return out.values().view(self.shape)


_GRAPHS: collections.OrderedDict[tuple[int, int, int], _Graph] = collections.OrderedDict()
_GRAPHS_MAX = 32


def _graph(index: torch.Tensor, batch: int) -> _Graph:
    """The :class:`_Graph` of ``index`` for a batch of ``batch``, built once and reused.

    A settling run calls the attention of every level at every step with the same neighbour
    index, so the CSR patterns (and the transposed one the backward pass needs) are built on
    the first call only. A cached graph holds its index, so the key's ``id`` cannot be reused by
    another tensor while it is cached; an in-place change of the index (a new ``_version``,
    torch's counter of in-place writes) builds a new graph. The counter, not a comparison of
    the values, because a comparison is a host sync per call on a GPU. At most ``_GRAPHS_MAX``
    graphs are kept (least recently used dropped).
    """
    key = (id(index), index._version, batch)
    with _sparse_lock:
        graph = _GRAPHS.get(key)
        if graph is not None and graph.index is index:
            _GRAPHS.move_to_end(key)
            return graph
    graph = _Graph(index, batch)
    with _sparse_lock:
        _GRAPHS[key] = graph
        while len(_GRAPHS) > _GRAPHS_MAX:
            _GRAPHS.popitem(last=False)
    return graph


def _weights(
    raw: torch.Tensor,
    beta: float,
    mask: torch.Tensor | None,
    has_any: torch.Tensor | None,
) -> torch.Tensor:
    """Attention weights ``[B, C, K]`` from the scores ``raw [B, C, K]`` (zero on masked
    entries and on empty rows)."""
    valid = None
    if mask is not None:
        valid = mask | ~has_any[:, None]
        raw = raw.masked_fill(~valid, float("-inf"))
    # (s - max) * beta <= 0: a huge beta cannot overflow; softmax is invariant to the shift.
    shifted = (raw - raw.amax(dim=-1, keepdim=True)) * beta
    if valid is not None:
        shifted = shifted.masked_fill(~valid, float("-inf"))
    weights = softmax(shifted)  # K is a handful of neighbours: neurosim.softmax's short path
    if mask is not None:
        weights = weights * mask
    return weights


class _LateralAttention(torch.autograd.Function):
    """lateral = sum_k softmax_k(beta <x_c, x_nk>) x_nk, with sparse products both ways."""

    @staticmethod
    def forward(ctx, x, index, mask, beta):  # noqa: D102
        b, c, d = x.shape
        has_any = None if mask is None else mask.any(dim=1)
        flat_x = x.reshape(b * c, d).contiguous()
        _prime_sparse()
        graph = _graph(index, b)
        weights = _weights(graph.sampled_dot(flat_x, flat_x), beta, mask, has_any)
        lateral = torch.zeros_like(flat_x).addmm_(graph.matrix(weights), flat_x).view(b, c, d)
        if has_any is not None:
            lateral = torch.where(has_any[None, :, None], lateral, x)
        ctx.save_for_backward(flat_x, weights, has_any)
        ctx.graph = graph
        ctx.beta = beta
        ctx.shape = (b, c, d)
        return lateral, weights

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_lateral, grad_weights):  # noqa: D102
        flat_x, weights, has_any = ctx.saved_tensors
        graph, beta = ctx.graph, ctx.beta
        b, c, d = ctx.shape
        g = grad_lateral
        if g is None:
            g = torch.zeros((b, c, d), dtype=flat_x.dtype, device=flat_x.device)
        g_rows = g * has_any[None, :, None] if has_any is not None else g
        flat_g = g_rows.reshape(b * c, d).contiguous()
        # d lateral / d weights, then through the softmax: g_raw = beta w (g_w - <w, g_w>)
        g_w = graph.sampled_dot(flat_g, flat_x)  # [B, C, K]
        if grad_weights is not None:
            g_w = g_w + grad_weights * (weights > 0)
        g_raw = beta * weights * (g_w - (weights * g_w).sum(dim=-1, keepdim=True))
        # x as the query: sum_k g_raw[k] x_nk; as key and value of its neighbours:
        # sum over the (c, k) that point at it of g_raw x_c + w g_c (the transposed graph).
        grad_x = torch.zeros_like(flat_x)
        grad_x.addmm_(graph.matrix(g_raw), flat_x)
        grad_x.addmm_(graph.transposed(g_raw), flat_x)
        grad_x.addmm_(graph.transposed(weights), flat_g)
        grad_x = grad_x.view(b, c, d)
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
    check_index: bool = True,
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
        check_index: verify that every index value lies in ``[0, C)`` (reads the index's range
            to the host: a device sync on a GPU). ``Model`` passes False for its own neighbour
            buffers, which are checked when they are built.

    Returns:
        ``lateral [B, C, D]``, and if ``return_weights`` the weights ``[B, C, K]`` (each row sums
        to one over the valid neighbours).
    """
    if x.dim() != 3:
        raise ValueError(f"x must have shape [batch, n_columns, dim]; got {tuple(x.shape)}")
    n_columns = x.shape[1]
    if index.dim() != 2 or index.shape[0] != n_columns or index.shape[1] < 1:
        raise ValueError(
            f"index must have shape [{n_columns}, k] with k >= 1; got {tuple(index.shape)}"
        )
    if index.dtype not in (torch.long, torch.int32):
        raise ValueError(f"index must be an int64 or int32 tensor; got {index.dtype}")
    if check_index:
        lo, hi = (int(v) for v in torch.aminmax(index))
        if lo < 0 or hi >= n_columns:
            raise ValueError(f"index values must be in [0, {n_columns - 1}]; got [{lo}, {hi}]")
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
