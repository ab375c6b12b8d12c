"""The render of :meth:`retina.Retina.render`: the smoothest image that reproduces the responses.

The minimiser of ``sum_i w_i (a_i . x - r_i)^2 + lam |grad x|^2`` over images ``x``, with
``a_i`` the rows of the ON operator ``A``, ``w_i = 1 / |a_i|^2`` and ``lam`` the regularisation
(Tikhonov regularisation with a first-difference prior), i.e. the solution of the normal
equations ``(A^T W A + Q) x = A^T W r`` with ``Q = lam (Dx^T Dx + Dy^T Dy)`` (Neumann border),
solved for a batch of images at once: directly (a Cholesky factor of the ``[H*W, H*W]``
normal matrix, built once per retina) for images of at most :data:`DIRECT_MAX_PX` pixels, by
Jacobi-preconditioned conjugate gradients (Hestenes & Stiefel 1952) for larger ones. ``A`` is
applied in the multi-scale form of :func:`retina.receptive_fields.dog_operator`; only the
normal matrix of a small image is ever materialised.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.linalg as sl
import scipy.sparse as sp

__all__ = ["DIRECT_MAX_PX", "RenderSystem", "render_system", "solve_render"]

#: images of at most this many pixels are rendered by a direct solve (the normal matrix is
#: ``DIRECT_MAX_PX**2`` float64 numbers: 42 MB at the limit, 48 x 48 px); the 24-px canvases of
#: the canvas tasks render 20-40x faster than by conjugate gradients, to the same solution
#: (within the gradients' 1e-6 tolerance).
DIRECT_MAX_PX = 2304


class RenderSystem(NamedTuple):
    """What the solver needs besides the operator, built once per retina.

    Attributes:
        weight: ``[n_sites]`` row weights ``1 / |a_i|^2``.
        prior: CSR ``[H*W, H*W]`` smoothness prior ``Q``.
        inv_diag: ``[H*W]`` Jacobi preconditioner ``1 / diag(A^T W A + Q)``.
        transposed: ``[(P^T, M^T), ...]`` the transposed levels (``P^T`` None at factor 1).
        cholesky: ``scipy.linalg.cho_factor`` of the normal matrix ``A^T W A + Q`` for an image
            of at most :data:`DIRECT_MAX_PX` pixels (None: solved by conjugate gradients).
    """

    weight: np.ndarray
    prior: sp.csr_matrix
    inv_diag: np.ndarray
    transposed: list
    cholesky: tuple | None = None


def render_system(levels, n_sites: int, image_shape: tuple[int, int], regularization: float):
    """Row weights, the prior ``Q`` and a Jacobi preconditioner of the render's equations.

    Row norms and the diagonal of ``A^T W A`` are computed level by level from the multi-scale
    form (ignoring centre x surround cross terms between different levels, a small correction
    that only changes the weighting and the preconditioner).

    Args:
        levels: ``[(factor, P, M), ...]`` of :func:`retina.receptive_fields.dog_operator`.
        n_sites: rows of the ON operator.
        image_shape: ``(H, W)`` px.
        regularization: ``lam``, the weight of the smoothness prior.

    Returns:
        :class:`RenderSystem`.
    """
    H, W = image_shape
    norm2 = np.zeros(n_sites)
    for f, _, M in levels:
        norm2 += np.asarray(M.multiply(M).sum(axis=1)).ravel() / f**2
    weight = 1.0 / norm2
    diag = np.zeros(H * W)
    for f, P, M in levels:
        coarse = np.asarray(M.multiply(M).T @ weight).ravel()
        diag += coarse if P is None else (P.T @ coarse) / f**2
    idx = np.arange(H * W).reshape(H, W)
    # first differences along rows and columns -> Q = Dx^T Dx + Dy^T Dy (Neumann)
    pairs = [(idx[:, :-1].ravel(), idx[:, 1:].ravel()), (idx[:-1].ravel(), idx[1:].ravel())]
    a = np.concatenate([p[0] for p in pairs])
    b = np.concatenate([p[1] for p in pairs])
    m = len(a)
    rows = np.r_[np.arange(m), np.arange(m)]
    D = sp.csr_matrix((np.r_[-np.ones(m), np.ones(m)], (rows, np.r_[a, b])), shape=(m, H * W))
    Q = (regularization * (D.T @ D)).tocsr()
    transposed = [(None if P is None else P.T.tocsr(), M.T.tocsr()) for _, P, M in levels]
    system = RenderSystem(weight, Q, 1.0 / (diag + Q.diagonal()), transposed)
    if H * W <= DIRECT_MAX_PX:
        system = system._replace(cholesky=_normal_factor(system, [(P, M) for _, P, M in levels]))
    return system


def _normal_factor(system: RenderSystem, levels) -> tuple | None:
    """Cholesky factor of ``A^T W A + Q`` (assembled column by column from the operator), or
    None where it is not numerically positive definite (then conjugate gradients solve it)."""
    _, _, apply = _operators(system, levels)
    n = system.inv_diag.shape[0]
    normal = apply(np.eye(n))
    try:
        return sl.cho_factor(0.5 * (normal + normal.T), lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        return None


def _operators(system: RenderSystem, levels):
    """``(adjoint, forward, apply)``: ``A^T y``, ``A x`` and ``(A^T W A + Q) x`` on ``[., b]``."""
    weight, Q, transposed = system.weight, system.prior, system.transposed

    def adjoint(y):  # A^T y, [n_sites, b] -> [H*W, b]
        out = None
        for PT, MT in transposed:
            term = MT @ y if PT is None else PT @ (MT @ y)
            out = term if out is None else out + term
        return out

    def forward(x):  # A x, [H*W, b] -> [n_sites, b]
        out = None
        for P, M in levels:
            term = M @ (x if P is None else P @ x)
            out = term if out is None else out + term
        return out

    def apply(x):
        return adjoint(weight[:, None] * forward(x)) + Q @ x

    return adjoint, forward, apply


def solve_render(system: RenderSystem, levels, r_site: np.ndarray, n_iter: int) -> np.ndarray:
    """Solve ``(A^T W A + Q) x = A^T W r`` for a batch: with the system's Cholesky factor where
    it has one, else by batched preconditioned conjugate gradients.

    Args:
        system: :func:`render_system` of the retina.
        levels: ``[(P, M), ...]`` the operator's levels in float64 (``P`` None at factor 1).
        r_site: ``[n_sites, b]`` ON responses of ``b`` images.
        n_iter: conjugate-gradient iterations at most; each image also stops at a relative
            residual of 1e-6 (unused by the direct solve, which is exact).

    Returns:
        ``[H*W, b]`` float64 images (row-major pixels).
    """
    adjoint, _, apply = _operators(system, levels)
    rhs = adjoint(system.weight[:, None] * r_site)
    if system.cholesky is not None:
        return sl.cho_solve(system.cholesky, rhs, check_finite=False)
    inv_diag = system.inv_diag
    x = np.zeros_like(rhs)
    res = rhs.copy()
    z = inv_diag[:, None] * res
    p = z.copy()
    rz = (res * z).sum(axis=0)
    stop = 1e-6 * np.maximum(np.linalg.norm(rhs, axis=0), 1e-300)
    for _ in range(n_iter):
        if np.all(np.linalg.norm(res, axis=0) <= stop):
            break
        ap = apply(p)
        denom = (p * ap).sum(axis=0)
        alpha = np.divide(rz, denom, out=np.zeros_like(rz), where=denom > 0)
        x += alpha * p
        res -= alpha * ap
        z = inv_diag[:, None] * res
        rz_new = (res * z).sum(axis=0)
        beta = np.divide(rz_new, rz, out=np.zeros_like(rz), where=rz > 0)
        p = z + beta * p
        rz = rz_new
    return x
