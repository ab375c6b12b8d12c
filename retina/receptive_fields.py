"""Receptive fields: sizes that grow with local spacing, ON/OFF difference-of-Gaussians kernels.

A cell's receptive field is a difference of two concentric Gaussians (Rodieck 1965; Enroth-Cugell
& Robson 1966)::

    k(p) = G(p; sigma_c) / Z_c  -  surround_weight * G(p; sigma_s) / Z_s      (ON cell)

with the OFF cell at the same site ``-k``. ``Z_c`` and ``Z_s`` are the sums of each Gaussian over
the pixels it covers (integrated over each pixel's area with ``erf``, truncated at
``truncate`` sigmas and at the image border), so on the discrete pixel grid the centre sums to
exactly 1 and the surround to exactly ``surround_weight``: a uniform field of value ``v`` drives
an ON cell to ``(1 - surround_weight) v``, and a balanced cell (``surround_weight=1``) to zero.

Sizes: the centre sigma is ``center_sigma_per_spacing`` times the local spacing of the lattice
(so fields grow with eccentricity exactly as the sampling does); the surround is
scaled after Croner & Kaplan: surround/centre radius ratio 6.7 and integrated surround/centre
sensitivity ratio 0.55, the means for parvocellular (P, midget) cells of Croner & Kaplan (1995),
"Receptive fields of P and M ganglion cells across the primate retina", Vision Res 35:7-24.

Cost: a surround 6.7 times wider than its centre covers ~45 times more pixels. :func:`dog_operator`
therefore draws each Gaussian on the coarsest 2^L-fold block-averaged copy of the image on which
its sigma is still at least ``coarse_sigma_px`` coarse pixels; the operator is the sum over levels
``M_L @ P_L`` (``P_L`` block averaging), which keeps every row's exact sums above and applies with
~10x fewer nonzeros than the full-resolution matrix (see ``benchmarks/bench_retina.py``).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree
from scipy.special import erf

__all__ = [
    "CK95_SURROUND_RADIUS_RATIO",
    "CK95_SURROUND_WEIGHT_RATIO",
    "local_spacing_deg",
    "gaussian_rows",
    "block_average",
    "dog_operator",
    "materialize",
]

#: Croner & Kaplan (1995) P cells: surround radius / centre radius (Gaussian radii, mean)
CK95_SURROUND_RADIUS_RATIO = 6.7
#: Croner & Kaplan (1995) P cells: integrated surround / centre sensitivity (Ks rs^2 / Kc rc^2)
CK95_SURROUND_WEIGHT_RATIO = 0.55


def local_spacing_deg(positions_deg: np.ndarray, *, k: int = 3, smooth: int = 6) -> np.ndarray:
    """Local lattice spacing at each site.

    The mean distance to the ``k`` nearest other sites (equal to the grid step on square and
    hexagonal lattices), then averaged over the site and its ``smooth`` nearest neighbours to
    remove jitter.

    Args:
        positions_deg: ``[n_sites, 2]`` ``(x_deg, y_deg)``, at least 2 sites.
        k: nearest neighbours whose distances are averaged.
        smooth: neighbours over which the raw spacing is then averaged.

    Returns:
        ``[n_sites]`` deg.
    """
    pos = np.asarray(positions_deg, dtype=float)
    n = len(pos)
    if n < 2:
        raise ValueError(f"positions_deg must hold at least 2 sites; got {n}")
    tree = cKDTree(pos)
    kk = min(k + 1, n)
    dist, _ = tree.query(pos, k=kk)
    raw = dist[:, 1:].mean(axis=1)
    ks = min(smooth + 1, n)
    _, idx = tree.query(pos, k=ks)
    return raw[idx].mean(axis=1)


def _pixel_gauss_1d(coord_px: np.ndarray, centre_px: np.ndarray, sigma_px: np.ndarray):
    """Integral of a unit 1-d Gaussian over pixels ``[c - 0.5, c + 0.5]``; broadcasts."""
    s = sigma_px * math.sqrt(2.0)
    return 0.5 * (erf((coord_px + 0.5 - centre_px) / s) - erf((coord_px - 0.5 - centre_px) / s))


def block_average(image_shape: tuple[int, int], factor: int) -> sp.csr_matrix:
    """Averaging of ``factor x factor`` pixel blocks.

    Blocks cut by the image border average the pixels they hold, so every row sums to 1.

    Args:
        image_shape: ``(H, W)`` px.
        factor: block side, px (``1`` is the identity).

    Returns:
        CSR ``[Hc * Wc, H * W]`` (row-major pixels), ``Hc = ceil(H / factor)``,
        ``Wc = ceil(W / factor)``.
    """
    H, W = image_shape
    rows_f = np.arange(H) // factor
    cols_f = np.arange(W) // factor
    Wc = -(-W // factor)
    Hc = -(-H // factor)
    coarse = (rows_f[:, None] * Wc + cols_f[None, :]).ravel()
    counts = np.bincount(coarse, minlength=Hc * Wc).astype(float)
    return sp.csr_matrix((1.0 / counts[coarse], (coarse, np.arange(H * W))), shape=(Hc * Wc, H * W))


def gaussian_rows(
    centres_px: np.ndarray,
    sigma_px: np.ndarray,
    image_shape: tuple[int, int],
    weight,
    *,
    truncate: float = 2.0,
    chunk_pixels: int = 4_000_000,
) -> sp.csr_matrix:
    """One normalised 2-d Gaussian per row.

    Each Gaussian is integrated over pixel areas (``erf``), cut to a disc of ``truncate``
    sigmas (at least 1 px) and to the image, and scaled so that its row sums exactly to
    ``weight``. Built vectorised over cells grouped by window size.

    Args:
        centres_px: ``[n, 2]`` as ``(col, row)`` in pixel units (note the order: x first),
            pixel ``(c, r)`` covering ``[c - 0.5, c + 0.5] x [r - 0.5, r + 0.5]``.
        sigma_px: ``[n]`` sigmas, px.
        image_shape: ``(H, W)`` px.
        weight: each row's sum, a scalar or ``[n]``.
        truncate: cut radius in sigmas.
        chunk_pixels: window pixels built at once (memory bound).

    Returns:
        CSR ``[n, H * W]`` (row-major pixels).

    Raises:
        ValueError: when a Gaussian lies entirely outside the image.
    """
    H, W = image_shape
    c = np.asarray(centres_px, dtype=float).reshape(-1, 2)
    sig = np.asarray(sigma_px, dtype=float).reshape(-1)
    n = len(c)
    wts = np.broadcast_to(np.asarray(weight, dtype=float), (n,))
    radius = np.maximum(truncate * sig, 1.0)
    half = np.ceil(radius + 1.0).astype(int)
    # group by window half-width rounded up on a coarse ladder (bounded padding waste)
    ladder = np.unique(np.ceil(1.15 ** np.arange(0, 120)).astype(int))
    group_half = ladder[np.searchsorted(ladder, half)]
    rows_all, cols_all, vals_all = [], [], []
    for g in np.unique(group_half):
        members = np.flatnonzero(group_half == g)
        offs = np.arange(-g, g + 1)
        k = len(offs)
        per_chunk = max(1, chunk_pixels // (k * k))
        for start in range(0, len(members), per_chunk):
            m = members[start : start + per_chunk]
            px = np.rint(c[m, 0]).astype(int)[:, None] + offs[None, :]  # [m, k] columns
            py = np.rint(c[m, 1]).astype(int)[:, None] + offs[None, :]  # [m, k] rows
            inside = ((py >= 0) & (py < H))[:, :, None] & ((px >= 0) & (px < W))[:, None, :]
            d2 = ((py - c[m, 1:2]) ** 2)[:, :, None] + ((px - c[m, 0:1]) ** 2)[:, None, :]
            gx = _pixel_gauss_1d(px, c[m, 0:1], sig[m, None])
            gy = _pixel_gauss_1d(py, c[m, 1:2], sig[m, None])
            g2 = gy[:, :, None] * gx[:, None, :]
            g2 = np.where(inside & (d2 <= radius[m, None, None] ** 2), g2, 0.0)
            total = g2.sum(axis=(1, 2), keepdims=True)
            if np.any(total <= 0):
                raise ValueError("a receptive field lies entirely outside the image")
            g2 = g2 * (wts[m, None, None] / total)
            cell, iy, ix = np.nonzero(g2)
            rows_all.append(m[cell])
            cols_all.append(py[cell, iy] * W + px[cell, ix])
            vals_all.append(g2[cell, iy, ix])
    op = sp.csr_matrix(
        (np.concatenate(vals_all), (np.concatenate(rows_all), np.concatenate(cols_all))),
        shape=(n, H * W),
    )
    op.sum_duplicates()
    op.sort_indices()
    return op


def _level(sigma_px: np.ndarray, coarse_sigma_px: float | None, max_level: int) -> np.ndarray:
    if coarse_sigma_px is None:
        return np.zeros(len(sigma_px), dtype=int)
    lev = np.floor(np.log2(np.maximum(sigma_px / coarse_sigma_px, 1.0))).astype(int)
    return np.clip(lev, 0, max_level)


def dog_operator(
    centres_px: np.ndarray,
    sigma_center_px: np.ndarray,
    sigma_surround_px: np.ndarray,
    surround_weight: float,
    image_shape: tuple[int, int],
    *,
    truncate: float = 2.0,
    coarse_sigma_px: float | None = 2.0,
) -> list[tuple[int, sp.csr_matrix | None, sp.csr_matrix]]:
    """The ON difference-of-Gaussians operator of ``n`` sites, as a multi-scale sum.

    Each Gaussian (centre of weight +1, surround of weight ``-surround_weight``) is drawn on
    the coarsest grid, factor ``2^L``, on which its sigma is still ``>= coarse_sigma_px``
    coarse pixels (``None``: every Gaussian at full resolution), so a wide surround costs as
    many nonzeros as a narrow one; because block averages sum to 1, every row of the operator
    still sums exactly to ``1 - surround_weight``.

    Args:
        centres_px: ``[n, 2]`` ``(col, row)`` px, as in :func:`gaussian_rows`.
        sigma_center_px: ``[n]`` centre sigmas, px.
        sigma_surround_px: ``[n]`` surround sigmas, px.
        surround_weight: integrated surround / centre sensitivity.
        image_shape: ``(H, W)`` px.
        truncate: cut radius in sigmas.
        coarse_sigma_px: the coarsest grid's smallest sigma, coarse px (or None).

    Returns:
        levels ``[(factor, P, M), ...]`` with the operator ``A = sum over levels of M @ P``
        (``P = None`` is the identity at factor 1): ``P`` is :func:`block_average` by
        ``factor`` (``[Hc*Wc, H*W]``) and ``M`` is CSR ``[n, Hc*Wc]``.
    """
    H, W = image_shape
    c = np.asarray(centres_px, dtype=float)
    sc = np.asarray(sigma_center_px, dtype=float)
    ss = np.asarray(sigma_surround_px, dtype=float)
    n = len(c)
    max_level = max(0, int(np.floor(np.log2(max(min(H, W) / 4, 1)))))
    parts = []  # (level, row indices, centres, sigmas, weights)
    for sig, wt in ((sc, 1.0), (ss, -float(surround_weight))):
        if wt == 0.0:
            continue
        lev = _level(sig, coarse_sigma_px, max_level)
        for L in np.unique(lev):
            idx = np.flatnonzero(lev == L)
            parts.append((int(L), idx, sig, wt))
    levels = []
    for L in sorted({p[0] for p in parts}):
        f = 2**L
        shape_c = (-(-H // f), -(-W // f))
        M = sp.csr_matrix((n, shape_c[0] * shape_c[1]))
        for level, idx, sig, wt in parts:
            if level != L:
                continue
            cc = (c[idx] - (f - 1) / 2.0) / f
            rows = gaussian_rows(cc, sig[idx] / f, shape_c, wt, truncate=truncate)
            select = sp.csr_matrix(
                (np.ones(len(idx)), (idx, np.arange(len(idx)))), shape=(n, len(idx))
            )
            M = M + select @ rows
        M = M.tocsr()
        M.sum_duplicates()
        M.sort_indices()
        levels.append((f, None if f == 1 else block_average(image_shape, f), M))
    return levels


def materialize(levels, image_shape: tuple[int, int]) -> sp.csr_matrix:
    """The single matrix equal to the multi-scale sum of :func:`dog_operator`.

    Args:
        levels: ``[(factor, P, M), ...]`` of :func:`dog_operator`.
        image_shape: ``(H, W)`` px.

    Returns:
        CSR ``[n, H * W]``.
    """
    total = None
    for _, P, M in levels:
        term = M if P is None else (M @ P)
        total = term if total is None else total + term
    total = total.tocsr()
    total.sum_duplicates()
    total.sort_indices()
    return total
