"""``Retina``: the sparse linear operator image -> cell responses, built once, applied to batches.

Geometry. Positions are in degrees of visual angle relative to fixation (+x right, +y up). The
image has shape ``(H, W)``; pixel coordinates are ``[row, col]`` with row 0 at the top and col 0
at the left, pixel ``(row, col)`` covering ``[row - 0.5, row + 0.5] x [col - 0.5, col + 0.5]``.
Fixation sits at ``fixation_px = (x_px, y_px) = (col, row)`` (default the image centre
``((W-1)/2, (H-1)/2)``), and a point ``(x_deg, y_deg)`` lies at
``row = fix_y - y_deg * pixels_per_deg``, ``col = fix_x + x_deg * pixels_per_deg`` (image rows
grow downwards): :meth:`Retina.deg_to_px` and :meth:`Retina.px_to_deg`. The field of view is the
square ``|x_deg|, |y_deg| <= fov_deg / 2`` around fixation: ``fov_deg`` is its side, in degrees.

Cells. Every lattice site holds one ON and one OFF cell, so ``n_cells = 2 * n_sites`` and
``n_cells`` must be even. Cells ``0 .. n_sites-1`` are the ON cells of sites ``0 .. n_sites-1``;
cells ``n_sites .. n_cells-1`` are the OFF cells of the same sites in the same order (duplicate
positions). Responses are linear (no rectification): an OFF cell's kernel is the negated ON
kernel, so its response is the negated ON response. The ON kernel is the difference of
Gaussians of :mod:`retina.receptive_fields`.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import scipy.sparse as sp
import xarray as xr

from retina._checks import (
    KINDS,
    MIN_CELLS,
    check_geometry,
    check_int,
    check_receptive_fields,
    check_seed,
    largest_fov_deg,
)
from retina.gray import to_gray
from retina.lattice import foveated_lattice, uniform_lattice
from retina.receptive_fields import (
    CK95_SURROUND_RADIUS_RATIO,
    CK95_SURROUND_WEIGHT_RATIO,
    dog_operator,
    local_spacing_deg,
    materialize,
)
from retina.render import RenderSystem, render_system, solve_render

__all__ = ["Retina", "MIN_CELLS"]


def _is_torch(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def _torch_csr(op: sp.csr_matrix, device, dtype):
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        return torch.sparse_csr_tensor(
            torch.from_numpy(op.indptr.astype(np.int64)),
            torch.from_numpy(op.indices.astype(np.int64)),
            torch.from_numpy(op.data).to(dtype),
            size=op.shape,
            check_invariants=False,
        ).to(device)


def _points(values, name: str, what: str) -> np.ndarray:
    """``[..., 2]`` float64 numpy copy of point coordinates (numpy or torch)."""
    if _is_torch(values):
        values = values.detach().cpu().numpy()
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a numeric [..., 2] array of {what}") from None
    if arr.ndim < 1 or arr.shape[-1] != 2:
        raise ValueError(f"{name} must be [..., 2] {what}; got shape {arr.shape}")
    return arr


class Retina:
    """A retina over an image: cell positions, DoG receptive fields and the sparse operator.

    Build with :meth:`uniform` or :meth:`foveated` (or directly from site positions). Apply with
    ``retina(images)``: ``[batch, H, W]`` or ``[H, W]`` numpy arrays or torch tensors ->
    ``[batch, n_cells]`` (or ``[n_cells]``) of the same kind; torch results stay on the input's
    device with its floating dtype. Colour ``[batch, H, W, 3]`` only with ``color=True``.
    Geometry (module docstring): :meth:`deg_to_px`, :meth:`px_to_deg`,
    :meth:`eccentricity_map_deg`; responses as labelled arrays: :meth:`to_dataarray`.

    Attributes:
        kind: ``"uniform"``, ``"foveated"`` or ``"custom"``.
        n_sites: lattice sites.
        n_cells: ``2 * n_sites`` (an ON and an OFF cell per site).
        fov_deg: side of the square field of view around fixation, deg.
        image_shape: ``(H, W)`` of the images, px.
        pixels_per_deg: image scale, px/deg.
        fixation_px: ``(x_px, y_px) = (col, row)`` of fixation in the image.
        positions_deg: ``[n_cells, 2]`` ``(x_deg, y_deg)`` of every cell (ON cells, then OFF).
        site_positions_deg: ``[n_sites, 2]`` ``(x_deg, y_deg)``.
        spacing_deg: ``[n_sites]`` local lattice spacing, deg.
        sigma_center_deg: ``[n_sites]`` centre Gaussian sigma, deg.
        sigma_surround_deg: ``[n_sites]`` surround Gaussian sigma, deg.
        cells: xarray Dataset over dim ``cell`` (coords ``x_deg``, ``y_deg``, ``ecc_deg``,
            ``polarity``, ``sigma_center_deg``, ``sigma_surround_deg``, ``spacing_deg``,
            ``site``).
        levels: the ON operator in multi-scale form ``[(factor, P, M)]``, ``A = sum M @ P``
            (:func:`retina.receptive_fields.dog_operator`), built once.
        operator: scipy.sparse CSR ``[n_cells, H * W]`` (row-major pixels), materialised from
            ``levels`` on first use.
    """

    def __init__(
        self,
        site_positions_deg: np.ndarray,
        *,
        fov_deg: float,
        image_shape: tuple[int, int],
        pixels_per_deg: float,
        fixation_px: tuple[float, float] | None = None,
        kind: str = "custom",
        center_sigma_per_spacing: float = 0.5,
        surround_radius_ratio: float = CK95_SURROUND_RADIUS_RATIO,
        surround_weight: float = CK95_SURROUND_WEIGHT_RATIO,
        truncate: float = 2.0,
        coarse_sigma_px: float | None = 2.0,
        render_regularization: float = 1e-2,
        render_iterations: int = 300,
    ):
        """A retina with one ON and one OFF cell at each of the given sites.

        Args:
            site_positions_deg: ``[n_sites, 2]`` ``(x_deg, y_deg)`` of the sites relative to
                fixation (+x right, +y up), inside the field ``|x|, |y| <= fov_deg / 2``;
                ``n_sites >= 4`` (``MIN_CELLS / 2``).
            fov_deg: side of the square field of view centred on fixation, deg (> 0); it must
                fit in the image around fixation (:meth:`largest_fov_deg`).
            image_shape: ``(H, W)`` of the images the retina reads, px (each >= 2).
            pixels_per_deg: image scale, px/deg (> 0).
            fixation_px: ``(x_px, y_px) = (col, row)`` of fixation in the image (inside it);
                default the image centre ``((W - 1) / 2, (H - 1) / 2)``.
            kind: a label, ``"uniform"``, ``"foveated"`` or ``"custom"`` (set by the
                constructors :meth:`uniform` and :meth:`foveated`).
            center_sigma_per_spacing: centre Gaussian sigma in units of the local lattice
                spacing, in [0.05, 5].
            surround_radius_ratio: surround sigma / centre sigma, in [1, 20] (Croner & Kaplan
                1995 P cells: 6.7).
            surround_weight: integrated surround / centre sensitivity, in [0, 1] (Croner &
                Kaplan 1995: 0.55; 1 = a balanced cell that ignores a uniform field).
            truncate: kernels are cut at this many sigmas, in [1, 6].
            coarse_sigma_px: a Gaussian is drawn on the coarsest block-averaged image on which
                its sigma is still this many coarse pixels, in [0.5, 100]; None draws every
                Gaussian at full resolution (:func:`retina.receptive_fields.dog_operator`).
            render_regularization: weight of the smoothness prior of :meth:`render`, in
                [1e-12, 1].
            render_iterations: default conjugate-gradient iterations of :meth:`render` (>= 1).

        Raises:
            ValueError: naming the bad argument and its allowed range.
        """
        self._set_sites(site_positions_deg, fov_deg, image_shape, pixels_per_deg, fixation_px, kind)
        check_receptive_fields(
            center_sigma_per_spacing,
            surround_radius_ratio,
            surround_weight,
            truncate,
            coarse_sigma_px,
            render_regularization,
            render_iterations,
        )
        self.surround_weight = float(surround_weight)
        self.render_regularization = float(render_regularization)
        self.render_iterations = int(render_iterations)
        self.spacing_deg = local_spacing_deg(self.site_positions_deg)
        self.sigma_center_deg = center_sigma_per_spacing * self.spacing_deg
        self.sigma_surround_deg = surround_radius_ratio * self.sigma_center_deg
        #: the ON operator as a multi-scale sum [(factor, P, M)]: A = sum M @ P (applied form)
        self.levels = self._dog_levels(pixels_per_deg, truncate, coarse_sigma_px)
        self.cells = self._cells_dataset()
        self._torch_ops: dict[tuple[str, Any], Any] = {}
        self._np_levels: dict[np.dtype, Any] = {}
        self._render_factor = None

    def _set_sites(
        self, site_positions_deg, fov_deg, image_shape, pixels_per_deg, fixation_px, kind: str
    ) -> None:
        """Check and set the sites (and cell positions), the image geometry and ``kind``."""
        sites = np.asarray(site_positions_deg, dtype=float)
        if sites.ndim != 2 or sites.shape[1] != 2:
            raise ValueError(
                f"site_positions_deg must be [n_sites, 2]; got shape {tuple(sites.shape)}"
            )
        if not np.isfinite(sites).all():
            raise ValueError("site_positions_deg must be finite")
        self.image_shape, self.fixation_px = check_geometry(
            2 * len(sites), fov_deg, image_shape, pixels_per_deg, fixation_px
        )
        if np.abs(sites).max() > fov_deg / 2 * (1 + 1e-9):
            raise ValueError(f"site_positions_deg must lie within +-fov_deg/2 = {fov_deg / 2:g}")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {list(KINDS)}; got {kind!r}")
        self.kind = kind
        self.fov_deg = float(fov_deg)
        self.pixels_per_deg = float(pixels_per_deg)
        self.site_positions_deg = sites
        self.n_sites = len(sites)
        self.n_cells = 2 * self.n_sites
        self.positions_deg = np.concatenate([sites, sites])

    def _dog_levels(
        self, pixels_per_deg, truncate: float, coarse_sigma_px: float | None
    ) -> list[tuple[int, sp.csr_matrix | None, sp.csr_matrix]]:
        """The ON operator of the sites' DoG fields as a multi-scale sum ``[(factor, P, M)]``."""
        # dog_operator takes (col, row)
        centres_px = self.deg_to_px(self.site_positions_deg)[:, ::-1]
        return dog_operator(
            centres_px,
            self.sigma_center_deg * pixels_per_deg,
            self.sigma_surround_deg * pixels_per_deg,
            self.surround_weight,
            self.image_shape,
            truncate=truncate,
            coarse_sigma_px=coarse_sigma_px,
        )

    @functools.cached_property
    def site_operator(self) -> sp.csr_matrix:
        """The ON operator as one CSR ``[n_sites, H*W]`` (materialised on first use, cached)."""
        return materialize(self.levels, self.image_shape)

    @functools.cached_property
    def operator(self) -> sp.csr_matrix:
        """All cells, CSR ``[n_cells, H*W]``: ON rows then the negated (OFF) rows; equal to what
        ``__call__`` applies (materialised from the multi-scale form on first use, cached)."""
        return sp.vstack([self.site_operator, -self.site_operator], format="csr")

    @property
    def applied_nnz(self) -> int:
        """Nonzeros touched per image by ``__call__`` (the multi-scale form, ON rows only)."""
        return int(sum(M.nnz + (0 if P is None else P.nnz) for _, P, M in self.levels))

    @staticmethod
    def largest_fov_deg(
        image_shape: tuple[int, int],
        pixels_per_deg: float,
        fixation_px: tuple[float, float] | None = None,
    ) -> float:
        """Side (deg) of the largest square field of view around fixation inside the image.

        ``2 * min(distance from fixation to the four image edges) / pixels_per_deg``, the
        edges lying half a pixel outside the outer pixel centres; ``min(H, W) /
        pixels_per_deg`` for the default (centred) fixation.

        Args:
            image_shape: ``(H, W)`` px.
            pixels_per_deg: image scale, px/deg (> 0).
            fixation_px: ``(x_px, y_px)`` of fixation; default the image centre.

        Returns:
            the largest ``fov_deg`` a retina over this image can have, deg.
        """
        return largest_fov_deg(image_shape, pixels_per_deg, fixation_px)

    # ---------------------------------------------------------------- geometry
    def deg_to_px(self, xy_deg) -> np.ndarray:
        """Visual-field positions -> image pixel coordinates.

        ``row = fix_y - y_deg * pixels_per_deg``, ``col = fix_x + x_deg * pixels_per_deg`` with
        ``(fix_x, fix_y) = fixation_px`` (+y is up, image rows grow downwards; the module
        docstring has the conventions).

        Args:
            xy_deg: ``[..., 2]`` ``(x_deg, y_deg)`` relative to fixation, deg (numpy or torch).

        Returns:
            ``[..., 2]`` float64 ``(row, col)`` in pixels (array-index coordinates; pixel
            ``(r, c)`` has its centre at ``(r, c)``).
        """
        xy = _points(xy_deg, "xy_deg", "(x_deg, y_deg)")
        fx, fy = self.fixation_px
        ppd = self.pixels_per_deg
        return np.stack([fy - xy[..., 1] * ppd, fx + xy[..., 0] * ppd], axis=-1)

    def px_to_deg(self, rowcol_px) -> np.ndarray:
        """Image pixel coordinates -> visual-field positions; the inverse of :meth:`deg_to_px`.

        Args:
            rowcol_px: ``[..., 2]`` ``(row, col)`` in pixels (numpy or torch).

        Returns:
            ``[..., 2]`` float64 ``(x_deg, y_deg)`` relative to fixation (+x right, +y up), deg.
        """
        rc = _points(rowcol_px, "rowcol_px", "(row, col)")
        fx, fy = self.fixation_px
        ppd = self.pixels_per_deg
        return np.stack([(rc[..., 1] - fx) / ppd, (fy - rc[..., 0]) / ppd], axis=-1)

    def eccentricity_map_deg(self) -> np.ndarray:
        """Eccentricity of every pixel centre, ``[H, W]`` float64 deg.

        ``hypot(col - fix_x, row - fix_y) / pixels_per_deg``: the distance from fixation of
        pixel ``[row, col]``, e.g. to select the pixels near fixation (``ecc < 2``) or inside
        the field of view.
        """
        rows, cols = np.mgrid[: self.image_shape[0], : self.image_shape[1]]
        fx, fy = self.fixation_px
        return np.hypot(cols - fx, rows - fy) / self.pixels_per_deg

    def to_dataarray(self, responses) -> xr.DataArray:
        """Responses as a labelled array with each cell's place and polarity.

        Args:
            responses: ``[batch, n_cells]`` (or ``[n_cells]``) cell responses, e.g.
                ``retina(images)`` (numpy or torch).

        Returns:
            ``xarray.DataArray`` named ``response`` with dims ``(stimulus, cell)`` (or
            ``(cell,)``), float64, and coords ``stimulus`` (0 .. batch-1), ``cell``,
            ``x_deg``, ``y_deg``, ``ecc_deg`` (deg) and ``polarity`` (``"on"``/``"off"``) on
            ``cell``, as in :attr:`cells`.
        """
        if _is_torch(responses):
            responses = responses.detach().cpu().numpy()
        resp = np.asarray(responses, dtype=np.float64)
        if resp.ndim not in (1, 2) or resp.shape[-1] != self.n_cells:
            raise ValueError(
                f"responses must be [batch, n_cells] or [n_cells] with n_cells = "
                f"{self.n_cells}; got shape {resp.shape}"
            )
        coords = {name: self.cells[name] for name in ("cell", "x_deg", "y_deg", "ecc_deg")}
        coords["polarity"] = self.cells["polarity"]
        dims: tuple[str, ...] = ("cell",)
        if resp.ndim == 2:
            dims = ("stimulus", "cell")
            coords["stimulus"] = ("stimulus", np.arange(resp.shape[0]))
        return xr.DataArray(
            resp,
            dims=dims,
            coords=coords,
            name="response",
            attrs={"units": "1", "long_name": "linear DoG cell response (pixel units)"},
        )

    # ---------------------------------------------------------------- constructors
    @classmethod
    def uniform(
        cls,
        *,
        n_cells: int,
        fov_deg: float,
        image_shape: tuple[int, int],
        pixels_per_deg: float,
        fixation_px: tuple[float, float] | None = None,
        seed: int = 0,
        lattice: str = "square",
        center_sigma_per_spacing: float = 0.5,
        surround_radius_ratio: float = CK95_SURROUND_RADIUS_RATIO,
        surround_weight: float = CK95_SURROUND_WEIGHT_RATIO,
        truncate: float = 2.0,
        coarse_sigma_px: float | None = 2.0,
        render_regularization: float = 1e-2,
        render_iterations: int = 300,
    ) -> Retina:
        """A retina on a regular grid of ``n_cells / 2`` sites (:func:`retina.uniform_lattice`).

        Args:
            n_cells: cells, an even integer in ``[MIN_CELLS, 2 * (fov_deg * pixels_per_deg)^2]``
                (an ON and an OFF cell per site, at most one site per pixel of the field).
            fov_deg: side of the square field of view centred on fixation, deg (> 0; it must
                fit in the image, :meth:`largest_fov_deg`).
            image_shape: ``(H, W)`` of the images, px.
            pixels_per_deg: image scale, px/deg (> 0).
            fixation_px: ``(x_px, y_px) = (col, row)`` of fixation; default the image centre.
            seed: an integer in ``[0, MAX_SEED]``, unused (the grid is deterministic); kept so
                that both constructors take the same arguments.
            lattice: ``"square"`` or ``"hex"``.
            center_sigma_per_spacing, surround_radius_ratio, surround_weight, truncate,
                coarse_sigma_px, render_regularization, render_iterations: the receptive
                fields and the render, as in :class:`Retina`.

        Returns:
            the retina, ``kind == "uniform"``.

        Raises:
            ValueError: naming the bad argument and its allowed range.
        """
        rf = dict(
            center_sigma_per_spacing=center_sigma_per_spacing,
            surround_radius_ratio=surround_radius_ratio,
            surround_weight=surround_weight,
            truncate=truncate,
            coarse_sigma_px=coarse_sigma_px,
            render_regularization=render_regularization,
            render_iterations=render_iterations,
        )
        check_geometry(n_cells, fov_deg, image_shape, pixels_per_deg, fixation_px)
        check_seed(seed)
        if lattice not in ("square", "hex"):
            raise ValueError(f"lattice must be one of ['square', 'hex']; got {lattice!r}")
        check_receptive_fields(**rf)
        sites = uniform_lattice(n_cells // 2, fov_deg, kind=lattice)
        return cls(
            sites,
            fov_deg=fov_deg,
            image_shape=image_shape,
            pixels_per_deg=pixels_per_deg,
            fixation_px=fixation_px,
            kind="uniform",
            **rf,
        )

    @classmethod
    def foveated(
        cls,
        *,
        n_cells: int,
        fov_deg: float,
        image_shape: tuple[int, int],
        pixels_per_deg: float,
        fixation_px: tuple[float, float] | None = None,
        seed: int = 0,
        log_polar: bool = False,
        meridian: str = "temporal",
        center_sigma_per_spacing: float = 0.5,
        surround_radius_ratio: float = CK95_SURROUND_RADIUS_RATIO,
        surround_weight: float = CK95_SURROUND_WEIGHT_RATIO,
        truncate: float = 2.0,
        coarse_sigma_px: float | None = 2.0,
        render_regularization: float = 1e-2,
        render_iterations: int = 300,
    ) -> Retina:
        """A retina whose site density follows Watson (2014) (:func:`retina.foveated_lattice`).

        Args:
            n_cells: cells, an even integer in ``[MIN_CELLS, 2 * (fov_deg * pixels_per_deg)^2]``
                (an ON and an OFF cell per site, at most one site per pixel of the field).
            fov_deg: side of the square field of view centred on fixation, deg (> 0; it must
                fit in the image, :meth:`largest_fov_deg`).
            image_shape: ``(H, W)`` of the images, px.
            pixels_per_deg: image scale, px/deg (> 0).
            fixation_px: ``(x_px, y_px) = (col, row)`` of fixation; default the image centre.
            seed: seed of the lattice, an integer in ``[0, MAX_SEED]``.
            log_polar: concentric rings instead of the relaxed (CVT) lattice.
            meridian: Watson's meridian whose density is used (:func:`retina.watson_density`).
            center_sigma_per_spacing, surround_radius_ratio, surround_weight, truncate,
                coarse_sigma_px, render_regularization, render_iterations: the receptive
                fields and the render, as in :class:`Retina`.

        Returns:
            the retina, ``kind == "foveated"``.

        Raises:
            ValueError: naming the bad argument and its allowed range.
        """
        rf = dict(
            center_sigma_per_spacing=center_sigma_per_spacing,
            surround_radius_ratio=surround_radius_ratio,
            surround_weight=surround_weight,
            truncate=truncate,
            coarse_sigma_px=coarse_sigma_px,
            render_regularization=render_regularization,
            render_iterations=render_iterations,
        )
        check_geometry(n_cells, fov_deg, image_shape, pixels_per_deg, fixation_px)
        check_seed(seed)
        if not isinstance(log_polar, (bool, np.bool_)):
            raise ValueError(f"log_polar must be True or False; got {log_polar!r}")
        check_receptive_fields(**rf)
        sites = foveated_lattice(
            n_cells // 2, fov_deg, seed=seed, log_polar=bool(log_polar), meridian=meridian
        )
        return cls(
            sites,
            fov_deg=fov_deg,
            image_shape=image_shape,
            pixels_per_deg=pixels_per_deg,
            fixation_px=fixation_px,
            kind="foveated",
            **rf,
        )

    # ---------------------------------------------------------------- description
    # ---------------------------------------------------------------- description
    def _cells_dataset(self) -> xr.Dataset:
        pos = self.positions_deg
        two = lambda a: np.concatenate([a, a])  # noqa: E731
        polarity = np.array(["on"] * self.n_sites + ["off"] * self.n_sites)
        coords = {
            "cell": ("cell", np.arange(self.n_cells)),
            "x_deg": ("cell", pos[:, 0], {"units": "deg", "long_name": "x, right of fixation"}),
            "y_deg": ("cell", pos[:, 1], {"units": "deg", "long_name": "y, above fixation"}),
            "ecc_deg": (
                "cell",
                np.hypot(pos[:, 0], pos[:, 1]),
                {"units": "deg", "long_name": "eccentricity"},
            ),
            "polarity": ("cell", polarity, {"long_name": "ON or OFF centre"}),
            "site": ("cell", two(np.arange(self.n_sites)), {"long_name": "lattice site index"}),
            "sigma_center_deg": (
                "cell",
                two(self.sigma_center_deg),
                {"units": "deg", "long_name": "centre Gaussian sigma"},
            ),
            "sigma_surround_deg": (
                "cell",
                two(self.sigma_surround_deg),
                {"units": "deg", "long_name": "surround Gaussian sigma"},
            ),
            "spacing_deg": (
                "cell",
                two(self.spacing_deg),
                {"units": "deg", "long_name": "local lattice spacing"},
            ),
        }
        return xr.Dataset(
            coords=coords,
            attrs={
                "kind": self.kind,
                "fov_deg": self.fov_deg,
                "pixels_per_deg": self.pixels_per_deg,
                "surround_weight": self.surround_weight,
            },
        )

    def __repr__(self) -> str:
        return (
            f"Retina(kind={self.kind!r}, n_cells={self.n_cells}, fov_deg={self.fov_deg:g}, "
            f"image_shape={self.image_shape}, pixels_per_deg={self.pixels_per_deg:g})"
        )

    # ---------------------------------------------------------------- application
    def _check_images(self, images, color: bool):
        shape = tuple(images.shape)
        if color:
            if len(shape) not in (3, 4) or shape[-1] != 3:
                raise ValueError(
                    f"images with color=True must be [batch, H, W, 3] or [H, W, 3]; got {shape}"
                )
            images = to_gray(images)
            shape = tuple(images.shape)
        if len(shape) not in (2, 3) or shape[-2:] != self.image_shape:
            hint = " (colour images need color=True)" if shape[-1:] == (3,) else ""
            raise ValueError(
                f"images must be [batch, H, W] or [H, W] with (H, W) = {self.image_shape}; "
                f"got shape {shape}{hint}"
            )
        return images, len(shape) == 2

    def __call__(self, images, *, color: bool = False):
        """Cell responses to images.

        Args:
            images: ``[batch, H, W]`` or ``[H, W]`` (numpy or torch), finite; with
                ``color=True`` RGB ``[batch, H, W, 3]`` or ``[H, W, 3]``.
            color: convert RGB to gray with :func:`to_gray` first.

        Returns:
            ``[batch, n_cells]`` (``[n_cells]`` for one image) of the input's kind: numpy
            float32 stays float32 (other numpy dtypes give float64); torch stays on its device
            with its floating dtype.

        Raises:
            ValueError: for a wrong shape or NaN or infinite pixels.
        """
        if _is_torch(images):
            return self._call_torch(images, color)
        arr = np.asarray(images)
        if arr.dtype.kind not in "fiub":
            raise ValueError(f"images must be a numeric array; got dtype {arr.dtype}")
        if arr.dtype.kind != "f":
            arr = arr.astype(np.float64)
        arr, single = self._check_images(arr, color)
        if not np.isfinite(arr).all():
            raise ValueError("images must be finite: found NaN or inf pixels")
        flat = np.ascontiguousarray(arr.reshape(-1, self.image_shape[0] * self.image_shape[1]).T)
        on = None
        for P, M in self._numpy_levels(flat.dtype):
            term = M @ (flat if P is None else P @ flat)
            on = term if on is None else on + term
        on = on.T
        out = np.concatenate([on, -on], axis=1).astype(arr.dtype, copy=False)
        return out[0] if single else out

    def _numpy_levels(self, dtype):
        """The multi-scale operator ``[(P, M)]`` with values in ``dtype`` (float64 or float32),
        cached, so float32 images are not upcast."""
        dtype = np.dtype(np.float32 if dtype == np.float32 else np.float64)
        if dtype not in self._np_levels:
            self._np_levels[dtype] = [
                (None if P is None else P.astype(dtype), M.astype(dtype)) for _, P, M in self.levels
            ]
        return self._np_levels[dtype]

    def torch_levels(self, device=None, dtype=None):
        """The multi-scale ON operator as torch sparse CSR tensors, cached per device and dtype.

        Args:
            device: torch device (default CPU).
            dtype: torch floating dtype (default float32).

        Returns:
            ``[(P, M), ...]``, ``P`` None at full resolution (see :attr:`levels`).
        """
        import torch

        device = torch.device("cpu" if device is None else device)
        dtype = torch.float32 if dtype is None else dtype
        key = (str(device), dtype)
        if key not in self._torch_ops:
            self._torch_ops[key] = [
                (None if P is None else _torch_csr(P, device, dtype), _torch_csr(M, device, dtype))
                for _, P, M in self.levels
            ]
        return self._torch_ops[key]

    def _call_torch(self, images, color: bool):
        import torch

        if not images.is_floating_point():
            images = images.to(torch.float32)
        images, single = self._check_images(images, color)
        if not bool(torch.isfinite(images).all()):
            raise ValueError("images must be finite: found NaN or inf pixels")
        flat = images.reshape(-1, self.image_shape[0] * self.image_shape[1]).T.contiguous()
        on = None
        for P, M in self.torch_levels(images.device, images.dtype):
            term = M @ (flat if P is None else P @ flat)
            on = term if on is None else on + term
        on = on.T
        out = torch.cat([on, -on], dim=1)
        return out[0] if single else out

    # ---------------------------------------------------------------- rendering
    def render(self, responses, *, n_iter: int | None = None):
        """Map responses back to images.

        The smoothest image that reproduces the responses: the minimiser of
        ``sum_i (a_i . x - r_i)^2 / |a_i|^2 + lam |grad x|^2`` (Tikhonov regularisation with a
        first-difference prior), with ``a_i`` the ON site operator's rows, ``r`` the ON response
        estimated from both polarities ``(r_on - r_off) / 2`` and
        ``lam = render_regularization``. Each cell's equation is weighted by its kernel's norm
        so small foveal and large peripheral fields count alike; where cells are sparse the
        prior interpolates smoothly between them. All images of the batch are solved at once:
        exactly (a Cholesky factor built once per retina) for images of at most
        :data:`retina.render.DIRECT_MAX_PX` pixels, else by Jacobi-preconditioned conjugate
        gradients for at most ``n_iter`` (default ``render_iterations``) iterations or a relative
        residual of 1e-6.

        Args:
            responses: ``[batch, n_cells]`` or ``[n_cells]``, finite (numpy or torch).
            n_iter: conjugate-gradient iterations at most (>= 1; default
                ``render_iterations``; images small enough for the direct solve need none).

        Returns:
            ``[batch, H, W]`` (``[H, W]`` for ``[n_cells]``): numpy in -> numpy out; torch
            in -> torch out on the input's device and dtype (computed on the CPU in float64).
        """
        is_torch = _is_torch(responses)
        if is_torch:
            device, dtype = responses.device, responses.dtype
            resp = responses.detach().cpu().double().numpy()
        else:
            resp = np.asarray(responses, dtype=float)
        single = resp.ndim == 1
        if resp.ndim not in (1, 2) or resp.shape[-1] != self.n_cells:
            raise ValueError(
                f"responses must be [batch, n_cells] or [n_cells] with n_cells = "
                f"{self.n_cells}; got shape {resp.shape}"
            )
        if not np.isfinite(resp).all():
            raise ValueError("responses must be finite: found NaN or inf")
        n_iter = check_int("n_iter", self.render_iterations if n_iter is None else n_iter, 1)
        resp = resp.reshape(-1, self.n_cells)
        r_site = 0.5 * (resp[:, : self.n_sites] - resp[:, self.n_sites :])
        img = self._solve_render(r_site.T, n_iter).T.reshape(-1, *self.image_shape)
        if single:
            img = img[0]
        if is_torch:
            import torch

            return torch.from_numpy(np.ascontiguousarray(img)).to(device=device, dtype=dtype)
        return img

    def _render_system(self) -> RenderSystem:
        """The render's normal equations (:func:`retina.render.render_system`), cached."""
        if self._render_factor is None:
            self._render_factor = render_system(
                self.levels, self.n_sites, self.image_shape, self.render_regularization
            )
        return self._render_factor

    def _solve_render(self, r_site: np.ndarray, n_iter: int) -> np.ndarray:
        """``[H*W, b]`` images reproducing ON responses ``r_site [n_sites, b]``."""
        return solve_render(self._render_system(), self._numpy_levels(np.float64), r_site, n_iter)
