"""Where retinal cells sit: uniform grids and foveated lattices in degrees of visual angle.

All positions are ``[n_sites, 2]`` arrays of ``(x_deg, y_deg)`` relative to fixation (+x right,
+y up), inside the square field of view ``|x|, |y| <= fov_deg / 2`` centred on fixation.

The foveated lattice follows the midget retinal ganglion cell (RGC) receptive-field density of
Watson (2014), "A formula for human retinal ganglion cell receptive field density as a function
of visual field location", J Vis 14(7):15. Meridian convention: Watson's meridians are named in
the *visual field*; by default we use the **temporal visual-field meridian** (k = 1, the best
sampled one, which maps onto the nasal retina) and make the density isotropic, i.e. a function of
eccentricity alone. ``meridian=`` selects another one or the mean of the four.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

from retina._checks import MAX_SEED, check_int, check_number

__all__ = [
    "MAX_SEED",
    "WATSON_MERIDIANS",
    "watson_density",
    "watson_rgc_density",
    "midget_fraction",
    "uniform_lattice",
    "foveated_lattice",
    "nearest_neighbour_distance_deg",
    "foveated_site_density",
    "foveated_spacing_deg",
]

#: Watson (2014) Table 1: meridian -> (a_k, r2_k [deg], re_k [deg]) of eq. 4 (visual field names)
WATSON_MERIDIANS: dict[str, tuple[float, float, float]] = {
    "temporal": (0.9851, 1.058, 22.14),
    "superior": (0.9935, 1.035, 16.35),
    "nasal": (0.9729, 1.084, 7.633),
    "inferior": (0.996, 0.9932, 12.13),
}
#: Watson (2014) eq. 2-4: total RGC receptive-field density at the foveal centre, cells/deg^2
#: (= 2 * peak cone density 14,804.6 deg^-2, one ON and one OFF midget cell per foveal cone)
WATSON_DGF0 = 33163.2
#: Watson (2014) eq. 7: midget fraction f0 = 1/1.12 at the centre, falling off with r_m = 41.03 deg
WATSON_F0 = 1.0 / 1.12
WATSON_RM_DEG = 41.03


def _check_meridian(meridian: str) -> None:
    allowed = [*WATSON_MERIDIANS, "mean"]
    if meridian not in allowed:
        raise ValueError(f"meridian must be one of {allowed}; got {meridian!r}")


def watson_rgc_density(ecc_deg, *, meridian: str = "temporal") -> np.ndarray:
    """Total RGC receptive-field density at eccentricity ``ecc_deg``.

    Watson (2014) eq. 4: ``d_gf(r, k) = d_gf(0) [a_k (1 + r/r2_k)^-2 + (1 - a_k) exp(-r/re_k)]``.

    Args:
        ecc_deg: eccentricities, deg (any shape; the sign is ignored).
        meridian: one of :data:`WATSON_MERIDIANS` (visual-field names), or ``"mean"`` for the
            mean of the four meridians' densities.

    Returns:
        cells/deg^2, the shape of ``ecc_deg``.
    """
    _check_meridian(meridian)
    r = np.abs(np.asarray(ecc_deg, dtype=float))
    names = list(WATSON_MERIDIANS) if meridian == "mean" else [meridian]
    total = np.zeros_like(r)
    for name in names:
        a, r2, re = WATSON_MERIDIANS[name]
        total = total + a * (1.0 + r / r2) ** -2 + (1.0 - a) * np.exp(-r / re)
    return WATSON_DGF0 * total / len(names)


def midget_fraction(ecc_deg) -> np.ndarray:
    """Fraction of RGCs that are midget cells, Watson (2014) eq. 7: ``f0 / (1 + r / r_m)``.

    Args:
        ecc_deg: eccentricities, deg (any shape; the sign is ignored).

    Returns:
        the fraction in (0, 1], the shape of ``ecc_deg``.
    """
    r = np.abs(np.asarray(ecc_deg, dtype=float))
    return WATSON_F0 / (1.0 + r / WATSON_RM_DEG)


def watson_density(ecc_deg, *, meridian: str = "temporal") -> np.ndarray:
    """Midget RGC receptive-field density (ON + OFF) at eccentricity ``ecc_deg``.

    Watson (2014) eq. 8: ``d_mf(r, k) = f_m(r) d_gf(r, k)``; 29,608 cells/deg^2 at the centre and
    about 170 cells/deg^2 at 20 deg on the temporal meridian.

    Args:
        ecc_deg: eccentricities, deg (any shape; the sign is ignored).
        meridian: as in :func:`watson_rgc_density`.

    Returns:
        cells/deg^2, the shape of ``ecc_deg``.
    """
    return midget_fraction(ecc_deg) * watson_rgc_density(ecc_deg, meridian=meridian)


def _check_lattice_args(n_sites, fov_deg) -> None:
    check_int("n_sites", n_sites, 1)
    check_number("fov_deg", fov_deg, 0.0, None, lo_inclusive=False)


def _rows_layout(n_sites: int, n_rows: int) -> np.ndarray:
    """How many sites each of ``n_rows`` rows holds, as even as possible, summing to n_sites."""
    base, extra = divmod(n_sites, n_rows)
    counts = np.full(n_rows, base, dtype=int)
    if extra:
        # spread the longer rows evenly over the field (no crowding on one side)
        idx = np.floor((np.arange(extra) + 0.5) * n_rows / extra).astype(int)
        counts[idx] += 1
    return counts


def uniform_lattice(n_sites: int, fov_deg: float, *, kind: str = "square") -> np.ndarray:
    """Exactly ``n_sites`` positions on a regular grid covering the square field of view.

    ``kind="square"``: rows of equal spacing, ``round(sqrt(n_sites))`` rows; when ``n_sites`` is
    not a perfect square the rows hold ``floor`` or ``ceil`` of ``n_sites / n_rows`` sites, each
    row spread cell-centred over the full width. ``kind="hex"``: rows ``sqrt(3)/2`` of the
    in-row spacing apart, alternate rows shifted by a quarter spacing each way (a hexagonal
    lattice). Deterministic; the first row is the top one.

    Args:
        n_sites: sites (>= 1).
        fov_deg: side of the square field of view centred on fixation, deg (> 0).
        kind: ``"square"`` or ``"hex"``.

    Returns:
        ``[n_sites, 2]`` ``(x_deg, y_deg)`` inside ``|x|, |y| <= fov_deg / 2``.
    """
    _check_lattice_args(n_sites, fov_deg)
    if kind not in ("square", "hex"):
        raise ValueError(f"kind must be one of ['square', 'hex']; got {kind!r}")
    if kind == "square":
        n_rows = max(1, round(math.sqrt(n_sites)))
    else:
        spacing = math.sqrt(2.0 / (math.sqrt(3.0) * n_sites)) * fov_deg
        n_rows = max(1, min(n_sites, round(fov_deg / (spacing * math.sqrt(3.0) / 2.0))))
    counts = _rows_layout(n_sites, n_rows)
    ys = fov_deg * ((np.arange(n_rows) + 0.5) / n_rows - 0.5)
    out = np.empty((n_sites, 2))
    start = 0
    for row, (m, y) in enumerate(zip(counts, ys, strict=True)):
        x = fov_deg * ((np.arange(m) + 0.5) / m - 0.5)
        if kind == "hex" and m > 1:
            x = x + (0.25 if row % 2 else -0.25) * fov_deg / m
        out[start : start + m, 0] = x
        out[start : start + m, 1] = -y  # first row at the top (+y up)
        start += m
    return out


def nearest_neighbour_distance_deg(positions_deg: np.ndarray) -> np.ndarray:
    """Distance from each site to its nearest other site.

    Args:
        positions_deg: ``[n_sites, 2]`` ``(x_deg, y_deg)``.

    Returns:
        ``[n_sites]`` deg (inf for a single site).
    """
    positions_deg = np.asarray(positions_deg, dtype=float)
    if len(positions_deg) < 2:
        return np.full(len(positions_deg), np.inf)
    dist, _ = cKDTree(positions_deg).query(positions_deg, k=2)
    return dist[:, 1]


class _RadialDensity:
    """A radial density ``rho(r)`` restricted to the square ``|x|,|y| <= half``.

    Provides the expected site count in the square, the target spacing at a radius, and seeded
    sampling of points with probability proportional to ``rho`` inside the square.
    """

    def __init__(self, density, half_deg: float, n_sites: int, n_grid: int = 4096):
        self.density = density
        self.half = half_deg
        r_max = half_deg * math.sqrt(2.0)
        # radial grid dense near 0 where the density changes fastest
        self.r = r_max * np.linspace(0.0, 1.0, n_grid) ** 2
        rho = density(self.r)
        # arc length of the circle of radius r inside the square
        self.arc = _arc_in_square(self.r, half_deg)
        mass = np.concatenate([[0.0], np.cumsum(np.diff(self.r) * 0.5 * _mid(rho * self.arc))])
        self.mass_total = mass[-1]
        self.cdf = mass / mass[-1]
        #: scale turning the relative density into sites/deg^2 for n_sites sites in the square
        self.scale = n_sites / self.mass_total
        # proposal over the disc (rejection to the square): pdf(r) ~ rho(r) 2 pi r
        disc = np.concatenate([[0.0], np.cumsum(np.diff(self.r) * _mid(rho * 2 * np.pi * self.r))])
        self.disc_cdf = disc / disc[-1]

    def site_density(self, r) -> np.ndarray:
        """Target sites per deg^2 at radius r."""
        return self.scale * self.density(r)

    def spacing(self, r) -> np.ndarray:
        """Target spacing ``1 / sqrt(site density)`` (deg) at radius r."""
        return 1.0 / np.sqrt(self.site_density(r))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` points with density proportional to ``rho`` inside the square, ``[n, 2]``."""
        out = np.empty((0, 2))
        while len(out) < n:
            m = int(1.3 * (n - len(out))) + 16
            u = rng.random(m)
            r = np.interp(u, self.disc_cdf, self.r)
            theta = rng.random(m) * 2.0 * np.pi
            pts = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)
            keep = np.all(np.abs(pts) <= self.half, axis=1)
            out = np.concatenate([out, pts[keep]])
        return out[:n]


def _mid(a: np.ndarray) -> np.ndarray:
    return a[1:] + a[:-1]


def _arc_in_square(r: np.ndarray, half: float) -> np.ndarray:
    """Length of the circle of radius ``r`` inside the square ``|x|,|y| <= half``."""
    r = np.asarray(r, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.clip(half / np.where(r > 0, r, 1.0), -1.0, 1.0)
        # outside the inscribed circle: 8 arcs between the square's sides and the diagonals
        phi = np.arccos(ratio)  # angle cut away on each side of each axis
        arc = np.where(r <= half, 2 * np.pi * r, 2 * np.pi * r - 8 * phi * r)
    return np.clip(arc, 0.0, None)


def foveated_site_density(
    ecc_deg, n_sites: int, fov_deg: float, *, meridian: str = "temporal"
) -> np.ndarray:
    """Target site density of :func:`foveated_lattice`.

    Watson's density (:func:`watson_density`) scaled so that its integral over the square field
    ``|x|, |y| <= fov_deg / 2`` is ``n_sites``.

    Args:
        ecc_deg: eccentricities, deg (any shape).
        n_sites: sites of the lattice (>= 1).
        fov_deg: side of the square field of view centred on fixation, deg (> 0).
        meridian: as in :func:`watson_rgc_density`.

    Returns:
        sites/deg^2, the shape of ``ecc_deg``.
    """
    _check_lattice_args(n_sites, fov_deg)
    _check_meridian(meridian)
    dens = _RadialDensity(lambda r: watson_density(r, meridian=meridian), fov_deg / 2, n_sites)
    return dens.site_density(np.asarray(ecc_deg, dtype=float))


def foveated_spacing_deg(
    ecc_deg, n_sites: int, fov_deg: float, *, meridian: str = "temporal"
) -> np.ndarray:
    """Target local spacing ``1 / sqrt(site density)`` of :func:`foveated_lattice`.

    Args:
        ecc_deg, n_sites, fov_deg, meridian: as in :func:`foveated_site_density`.

    Returns:
        deg, the shape of ``ecc_deg``.
    """
    return 1.0 / np.sqrt(foveated_site_density(ecc_deg, n_sites, fov_deg, meridian=meridian))


def foveated_lattice(
    n_sites: int,
    fov_deg: float,
    *,
    seed: int = 0,
    log_polar: bool = False,
    meridian: str = "temporal",
    min_distance_frac: float = 0.4,
    jitter_frac: float = 0.1,
    n_iter: int = 30,
) -> np.ndarray:
    """Exactly ``n_sites`` off-grid positions whose density follows Watson (2014) midget RGCs.

    The site density is ``n_sites * watson_density(ecc) / integral over the square`` (the shape
    of Watson's eq. 8 on ``meridian``, isotropic; see the module docstring), so that exactly
    ``n_sites`` sites fill the square field ``|x|, |y| <= fov_deg / 2``.

    Placement (``log_polar=False``): a density-weighted centroidal Voronoi tessellation built by
    stochastic Lloyd iterations (Lloyd 1982; Du, Faber & Gunzburger 1999, SIAM Rev 41:637):
    sites start as a seeded random draw from the density and move to the weighted centroids of
    their Voronoi cells, estimated from fresh seeded samples each iteration. A 2-d CVT with
    weight ``w`` has site density ``~ w^(1/2)`` (Gersho 1979), so the weight is ``rho^2``
    (samples are drawn from ``rho`` and weighted by ``rho``).

    ``log_polar=True``: concentric rings, each ring one local spacing further out than the last,
    with as many evenly spaced sites as the annulus' expected count, each ring rotated by a
    seeded random phase (a log-polar grid in the periphery where the density falls ~ r^-2).

    Either way the sites are then jittered by ``jitter_frac`` of the local spacing (seeded) and
    pushed apart until no site is closer to its nearest neighbour than ``min_distance_frac`` of
    the local target spacing ``1 / sqrt(site density)``.

    Args:
        n_sites: sites (>= 1).
        fov_deg: side of the square field of view centred on fixation, deg (> 0).
        seed: seed of every random draw, an integer in ``[0, MAX_SEED]``.
        log_polar: rings instead of the relaxed (CVT) lattice.
        meridian: Watson's meridian, as in :func:`watson_rgc_density`.
        min_distance_frac: smallest nearest-neighbour distance, in local spacings, [0, 0.8).
        jitter_frac: jitter, in local spacings, [0, 0.5].
        n_iter: Lloyd iterations of the CVT (>= 0).

    Returns:
        ``[n_sites, 2]`` ``(x_deg, y_deg)`` inside ``|x|, |y| <= fov_deg / 2``.

    Raises:
        ValueError: naming the bad argument and its allowed range.
    """
    _check_lattice_args(n_sites, fov_deg)
    _check_meridian(meridian)
    check_int("seed", seed, 0, MAX_SEED)
    check_number("min_distance_frac", min_distance_frac, 0.0, 0.8, hi_inclusive=False)
    check_number("jitter_frac", jitter_frac, 0.0, 0.5)
    check_int("n_iter", n_iter, 0)
    rng = np.random.default_rng(seed)
    half = fov_deg / 2.0
    dens = _RadialDensity(lambda r: watson_density(r, meridian=meridian), half, n_sites)
    if log_polar:
        pts = _log_polar_sites(dens, n_sites, rng)
    else:
        pts = _cvt_sites(dens, n_sites, rng, n_iter)
    spacing = dens.spacing(np.hypot(pts[:, 0], pts[:, 1]))
    pts = pts + jitter_frac * spacing[:, None] * rng.normal(size=pts.shape) / math.sqrt(2)
    pts = np.clip(pts, -half, half)
    return _push_apart(pts, dens, min_distance_frac, half)


def _cvt_sites(
    dens: _RadialDensity, n_sites: int, rng, n_iter: int, samples_per_site: int = 20
) -> np.ndarray:
    sites = dens.sample(n_sites, rng)
    n_samples = samples_per_site * n_sites
    for _ in range(n_iter):
        samples = dens.sample(n_samples, rng)
        weight = dens.density(np.hypot(samples[:, 0], samples[:, 1]))
        _, idx = cKDTree(sites).query(samples)
        wsum = np.bincount(idx, weights=weight, minlength=n_sites)
        cx = np.bincount(idx, weights=weight * samples[:, 0], minlength=n_sites)
        cy = np.bincount(idx, weights=weight * samples[:, 1], minlength=n_sites)
        has = wsum > 0
        sites[has, 0] = cx[has] / wsum[has]
        sites[has, 1] = cy[has] / wsum[has]
    return sites


def _log_polar_sites(dens: _RadialDensity, n_sites: int, rng) -> np.ndarray:
    def rings(scale_factor: float):
        # annuli [b_k, b_k+1] one local spacing wide; each ring holds the annulus' expected
        # count of sites, at the annulus' mass-weighted mean radius
        radii, counts = [], []
        b = 0.0
        r_max = dens.half * math.sqrt(2.0)
        while b < r_max:
            step = float(dens.spacing(b)) / math.sqrt(scale_factor)
            step = float(dens.spacing(b + step / 2)) / math.sqrt(scale_factor)
            grid = np.linspace(b, b + step, 17)
            mass = dens.site_density(grid) * 2 * np.pi * grid
            expected = scale_factor * np.trapezoid(mass, grid)
            m = max(1, round(float(expected)))
            radii.append(
                0.0
                if (b == 0.0 and m == 1)
                else np.trapezoid(mass * grid, grid) / np.trapezoid(mass, grid)
            )
            counts.append(m)
            b += step
        return radii, counts

    def build(scale_factor: float, phases=None):
        radii, counts = rings(scale_factor)
        if phases is None:
            phases = rng.random(len(radii))
        pts = []
        for r, m, ph in zip(radii, counts, phases, strict=False):
            theta = 2 * np.pi * (np.arange(m) + ph) / m
            pts.append(np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1))
        pts = np.concatenate(pts)
        return pts[np.all(np.abs(pts) <= dens.half, axis=1)]

    phases = rng.random(100_000)
    lo, hi = 0.5, 2.0
    while len(build(hi, phases)) < n_sites:
        hi *= 1.5
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if len(build(mid, phases)) >= n_sites:
            hi = mid
        else:
            lo = mid
    pts = build(hi, phases)
    excess = len(pts) - n_sites
    if excess > 0:
        # drop the surplus from the outermost sites, chosen at random (seeded)
        order = np.argsort(-np.hypot(pts[:, 0], pts[:, 1]), kind="stable")
        pool = order[: max(4 * excess, excess)]
        drop = rng.choice(pool, size=excess, replace=False)
        pts = np.delete(pts, drop, axis=0)
    return pts


def _push_apart(pts, dens: _RadialDensity, min_frac: float, half: float, max_iter: int = 200):
    """Move sites closer than ``min_frac`` of the local spacing apart (symmetric, clipped)."""
    if min_frac <= 0 or len(pts) < 2:
        return pts
    pts = pts.copy()
    for _ in range(max_iter):
        spacing = dens.spacing(np.hypot(pts[:, 0], pts[:, 1]))
        dist, idx = cKDTree(pts).query(pts, k=2)
        d, j = dist[:, 1], idx[:, 1]
        need = np.minimum(spacing, spacing[j]) * min_frac
        bad = d < need
        if not bad.any():
            break
        i = np.flatnonzero(bad)
        vec = pts[i] - pts[j[i]]
        norm = np.hypot(vec[:, 0], vec[:, 1])
        zero = norm == 0
        vec[zero] = np.array([1.0, 0.0])
        norm[zero] = 1.0
        move = 0.5 * (need[i] * 1.05 - d[i])
        np.add.at(pts, i, vec / norm[:, None] * move[:, None])
        np.clip(pts, -half, half, out=pts)
    return pts
