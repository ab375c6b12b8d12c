"""``neurosim run retina``: a uniform and a foveated retina with equal cell counts on a photo.

Builds both retinas over the same square field of view (same number of cells, one ON and one
OFF cell per site), samples a real photograph that ships with scikit-learn (offline), maps the
responses back to images with :meth:`retina.Retina.render`, and measures how well each render
matches the photo near fixation and in the periphery.

Writes ``retina.nc``: per-cell coordinates and receptive-field sizes of both lattices (dims
``retina`` = uniform/foveated and ``cell``; equal counts, so no padding), their responses, the
photo, both renders and the render errors; and figures ``retina_lattices``,
``retina_responses``, ``retina_renders``, ``retina_density`` (PNG and PDF).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Literal

import numpy as np
import xarray as xr

from neurosim.config import Config as _BaseConfig
from neurosim.config import check_choice, check_int, check_range

__all__ = ["Config", "run", "figures", "summary", "RESULT_FILE", "load_photo"]

RESULT_FILE = "retina.nc"
RETINAS = ("uniform", "foveated")
REGIONS = ("centre", "periphery")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(_BaseConfig):
    """Retina comparison. The field of view fills a square crop of the photo:
    ``pixels_per_deg = image_px / fov_deg``."""

    seed: int = 0
    #: cells per retina (even: one ON and one OFF cell per lattice site)
    n_cells: int = 4096
    #: side of the square field of view, deg
    fov_deg: float = 40.0
    #: side of the square image the photo is cropped and resampled to, px
    image_px: int = 400
    photo: Literal["china.jpg", "flower.jpg"] = "china.jpg"
    #: grid of the uniform retina
    uniform_lattice: Literal["square", "hex"] = "hex"
    #: arrangement of the foveated retina: relaxed (CVT) or log-polar rings
    log_polar: bool = False
    #: integrated surround / centre weight (Croner & Kaplan 1995: 0.55; 1.0 = balanced)
    surround_weight: float = 0.55
    #: render error regions: eccentricity below centre_deg / above periphery_deg
    centre_deg: float = 2.0
    periphery_deg: float = 10.0

    def __post_init__(self):
        check_int("image_px", self.image_px, 16, 427)
        check_range("fov_deg", self.fov_deg, 1.0, 180.0)
        max_cells = 2 * self.image_px**2
        check_int("n_cells", self.n_cells, 8, max_cells)
        if self.n_cells % 2:
            raise ValueError(
                f"n_cells must be an even integer in [8, {max_cells}] for image_px "
                f"{self.image_px}; got {self.n_cells}"
            )
        check_choice("photo", self.photo, ("china.jpg", "flower.jpg"))
        check_choice("uniform_lattice", self.uniform_lattice, ("square", "hex"))
        check_range("surround_weight", self.surround_weight, 0.0, 1.0)
        check_range("centre_deg", self.centre_deg, 0.0, self.fov_deg / 2, lo_inclusive=False)
        check_range("periphery_deg", self.periphery_deg, self.centre_deg, self.fov_deg / 2)

    @property
    def pixels_per_deg(self) -> float:
        return self.image_px / self.fov_deg

    @classmethod
    def quick(cls) -> Config:
        """Test-suite size: a few seconds."""
        return cls(n_cells=400, image_px=64, fov_deg=40.0)


def load_photo(name: str, size_px: int) -> np.ndarray:
    """The sklearn sample photo ``name`` as gray ``[size_px, size_px]`` in [0, 1].

    The central square crop, converted with BT.601 luma weights and resampled by area
    averaging (a Gaussian prefilter then linear interpolation).
    """
    from scipy.ndimage import gaussian_filter, zoom
    from sklearn.datasets import load_sample_image

    import retina

    rgb = load_sample_image(name).astype(np.float64) / 255.0
    gray = retina.to_gray(rgb)
    h, w = gray.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = gray[top : top + side, left : left + side]
    factor = size_px / side
    if factor < 1:
        crop = gaussian_filter(crop, sigma=0.5 / factor)
    out = zoom(crop, factor, order=1, grid_mode=True, mode="nearest")
    return np.clip(out[:size_px, :size_px], 0.0, 1.0)


#: per-cell variables of the results: name -> (units, long name)
_PER_CELL = {
    "x_deg": ("deg", "x, right of fixation"),
    "y_deg": ("deg", "y, above fixation"),
    "ecc_deg": ("deg", "eccentricity"),
    "polarity": ("1", "ON or OFF centre"),
    "sigma_center_deg": ("deg", "receptive-field centre Gaussian sigma"),
    "sigma_surround_deg": ("deg", "receptive-field surround Gaussian sigma"),
    "spacing_deg": ("deg", "local lattice spacing"),
}


def run(config: Config, *, device: str = "cpu", quiet: bool = False) -> xr.Dataset:
    """Build both retinas, sample the photo, render; return the Dataset described above."""
    import torch

    import retina
    from analyses.progress import Progress
    from neurosim.config import check_device

    device = check_device(device)
    photo = load_photo(config.photo, config.image_px)
    kw = dict(
        n_cells=config.n_cells,
        fov_deg=config.fov_deg,
        image_shape=photo.shape,
        pixels_per_deg=config.pixels_per_deg,
        seed=config.seed,
        surround_weight=config.surround_weight,
    )
    extra = {
        "uniform": {"lattice": config.uniform_lattice},
        "foveated": {"log_polar": config.log_polar},
    }
    cells, renders, build_s, nnz, rmse = [], [], [], [], []
    progress = Progress(len(RETINAS), desc="retina", unit="retinas", quiet=quiet)
    for kind in RETINAS:
        start = time.perf_counter()
        ret = getattr(retina.Retina, kind)(**kw, **extra[kind])
        build_s.append(time.perf_counter() - start)
        ecc = ret.eccentricity_map_deg()  # [H, W] deg; both retinas fixate the photo's centre
        masks = {
            "centre": ecc < config.centre_deg,
            "periphery": (ecc > config.periphery_deg) & (ecc <= config.fov_deg / 2),
        }
        image_t = torch.as_tensor(photo, dtype=torch.float32, device=device)
        resp = ret(image_t[None])[0].cpu().numpy().astype(np.float64)
        rend = ret.render(resp)
        # the responses labelled with their cells' places, plus the receptive-field sizes
        cells.append(ret.to_dataarray(resp).assign_coords(ret.cells.coords))
        renders.append(rend)
        nnz.append(ret.applied_nnz)
        rmse.append([float(np.sqrt(((rend - photo)[masks[r]] ** 2).mean())) for r in REGIONS])
        progress.update(kind, score=f"centre RMSE {rmse[-1][0]:.3f}")
    progress.close()
    return _dataset(config, photo, cells, renders, build_s, nnz, rmse)


def _dataset(config: Config, photo, cells, renders, build_s, nnz, rmse) -> xr.Dataset:
    """The results of :func:`run`: per retina, ``cells`` (a response DataArray ``[cell]`` of
    :meth:`retina.Retina.to_dataarray` with every per-cell coordinate), the render ``[row,
    col]``, build time, nonzeros and render errors ``[region]``."""
    rc = ("retina", "cell")
    data = {
        name: (rc, np.stack([c[name].values for c in cells]), {"units": u, "long_name": ln})
        for name, (u, ln) in _PER_CELL.items()
    }
    data["polarity"] = (rc, data["polarity"][1].astype(str), data["polarity"][2])
    data["response"] = (
        rc,
        np.stack([c.values for c in cells]),
        {"units": "1", "long_name": "linear DoG response to the photo (pixel units)"},
    )
    data["photo"] = (("row", "col"), photo, {"units": "1", "long_name": "gray photo in [0, 1]"})
    data["render"] = (
        ("retina", "row", "col"),
        np.stack(renders),
        {"units": "1", "long_name": "image rendered back from the responses"},
    )
    data["render_rmse"] = (
        ("retina", "region"),
        np.array(rmse),
        {"units": "1", "long_name": "RMS error of the render against the photo"},
    )
    data["operator_nnz"] = (
        ("retina",),
        np.array(nnz),
        {"units": "1", "long_name": "nonzeros applied per image (multi-scale ON operator)"},
    )
    data["build_s"] = (
        ("retina",),
        np.array(build_s),
        {"units": "s", "long_name": "time to build the retina and its operator"},
    )
    shape = photo.shape
    return xr.Dataset(
        data,
        coords={
            "retina": ("retina", list(RETINAS)),
            "cell": ("cell", np.arange(config.n_cells)),
            "region": ("region", list(REGIONS)),
            "row": ("row", np.arange(shape[0])),
            "col": ("col", np.arange(shape[1])),
        },
        attrs={
            "title": "uniform vs foveated retina with equal cell counts",
            "fov_deg": config.fov_deg,
            "pixels_per_deg": config.pixels_per_deg,
            "photo_name": config.photo,
            "centre_deg": config.centre_deg,
            "periphery_deg": config.periphery_deg,
            "density_source": "Watson (2014) J Vis 14(7):15, midget RGCs, temporal meridian",
            "rf_source": "Croner & Kaplan (1995) Vision Res 35:7-24, P cells",
        },
    )


def summary(ds: xr.Dataset) -> str:
    """Table: per retina, cells, nonzeros, render RMS error near fixation and in the periphery."""
    c, p = ds.attrs.get("centre_deg", "?"), ds.attrs.get("periphery_deg", "?")
    head = f"{'retina':<9} {'n_cells':>7} {'nnz':>9} {'build_s':>7} "
    head += f"{'rmse ecc<' + str(c):>13} {'rmse ecc>' + str(p):>14}"
    lines = [head]
    for k in ds.retina.values:
        row = ds.sel(retina=k)
        lines.append(
            f"{k!s:<9} {ds.sizes['cell']:>7} {int(row.operator_nnz):>9} "
            f"{float(row.build_s):>7.2f} {float(row.render_rmse.sel(region='centre')):>13.4f} "
            f"{float(row.render_rmse.sel(region='periphery')):>14.4f}"
        )
    return "\n".join(lines)


def figures(ds: xr.Dataset, out_dir) -> list[Path]:
    """Lattices with receptive-field sizes, responses, renders beside the photo, density."""
    import matplotlib.pyplot as plt

    from analyses.figures import STYLE

    out_dir = Path(out_dir)
    with plt.rc_context(STYLE):  # the package style for every text drawn, not only the axes
        return (
            _lattices_figure(ds, out_dir)
            + _responses_figure(ds, out_dir)
            + _renders_figure(ds, out_dir)
            + _density_figure(ds, out_dir)
        )


def _on_cells(ds: xr.Dataset, kind: str):
    """``(x_deg, y_deg, the retina's selection, ON mask)`` of one retina's ON cells."""
    sel = ds.sel(retina=kind)
    on = (sel.polarity == "on").values
    return sel.x_deg.values[on], sel.y_deg.values[on], sel, on


def _lattices_figure(ds: xr.Dataset, out_dir: Path) -> list[Path]:
    """Each ON site drawn as a circle of radius sigma_center; the central 8 deg below."""
    from matplotlib.collections import EllipseCollection

    from analyses.figures import new_figure, save_figure

    half = float(ds.attrs["fov_deg"]) / 2
    fig, axes = new_figure(2, 2, width_in=7.0, height_in=6.6)
    zoom = min(half, 4.0)
    for j, kind in enumerate(str(k) for k in ds.retina.values):
        x, y, sel, on = _on_cells(ds, kind)
        s = sel.sigma_center_deg.values[on]
        for i, lim in enumerate((half, zoom)):
            ax = axes[i, j]
            coll = EllipseCollection(
                2 * s,
                2 * s,
                np.zeros_like(s),
                units="xy",
                offsets=np.c_[x, y],
                offset_transform=ax.transData,
                facecolors="0.8",
                edgecolors="0.1",
                linewidths=0.3,
            )
            ax.add_collection(coll)
            ax.plot(x, y, ".", color="k", markersize=1.0)
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_aspect("equal")
            ax.set_xlabel("x (deg)")
            ax.set_ylabel("y (deg)")
            where = f"{int(on.sum())} sites" if i == 0 else f"central {2 * lim:g} deg"
            ax.set_title(f"{kind}: {where}")
    fig.suptitle("ON/OFF cell sites; circles: receptive-field centre sigma")
    return save_figure(fig, out_dir, "retina_lattices")


def _responses_figure(ds: xr.Dataset, out_dir: Path) -> list[Path]:
    """The ON cells' responses to the photo at their positions."""
    from analyses.figures import new_figure, save_figure

    half = float(ds.attrs["fov_deg"]) / 2
    fig, axes = new_figure(1, 2, width_in=7.0, height_in=3.4)
    vmax = max(float(np.abs(ds.response).max()), 1e-12)
    for j, kind in enumerate(str(k) for k in ds.retina.values):
        x, y, sel, on = _on_cells(ds, kind)
        ax = axes[0, j]
        sc = ax.scatter(
            x,
            y,
            c=sel.response.values[on],
            s=4,
            cmap="RdBu_r",
            vmin=-vmax,
            vmax=vmax,
            linewidths=0,
        )
        ax.set_xlim(-half, half)
        ax.set_ylim(-half, half)
        ax.set_aspect("equal")
        ax.set_xlabel("x (deg)")
        ax.set_ylabel("y (deg)")
        ax.set_title(f"{kind}: ON-cell responses")
    label = "linear ON response, pixel units (OFF = -ON)"
    fig.colorbar(sc, ax=axes[0, :].tolist(), shrink=0.8, label=label)
    return save_figure(fig, out_dir, "retina_responses")


def _renders_figure(ds: xr.Dataset, out_dir: Path) -> list[Path]:
    """The photo and both renders, with their errors near fixation and in the periphery."""
    from analyses.figures import new_figure, save_figure

    half = float(ds.attrs["fov_deg"]) / 2
    fig, axes = new_figure(1, 3, width_in=7.0, height_in=2.6)
    ext = (-half, half, -half, half)
    panels = [("photo", ds.photo.values, None)] + [
        (kind, ds.render.sel(retina=kind).values, ds.render_rmse.sel(retina=kind))
        for kind in (str(k) for k in ds.retina.values)
    ]
    for ax, (name, img, err) in zip(axes[0], panels, strict=True):
        ax.imshow(img, cmap="gray", vmin=0, vmax=1, extent=ext, interpolation="nearest")
        ax.set_title(name if err is None else f"{name} render")
        xlabel = "x (deg)"
        if err is not None:
            c_err = float(err.sel(region="centre"))
            p_err = float(err.sel(region="periphery"))
            xlabel += (
                f"\nRMSE {c_err:.3f} at ecc < {ds.attrs['centre_deg']:g} deg\n"
                f"RMSE {p_err:.3f} at ecc > {ds.attrs['periphery_deg']:g} deg"
            )
        ax.set_xlabel(xlabel)
    axes[0, 0].set_ylabel("y (deg)")
    return save_figure(fig, out_dir, "retina_renders")


#: annuli holding fewer sites than this are drawn open (their density is mostly counting noise)
_FEW_SITES = 5


def _density_figure(ds: xr.Dataset, out_dir: Path) -> list[Path]:
    """Site density against eccentricity vs the targets; centre sigma against eccentricity."""
    import retina
    from analyses.figures import cycle_styles, new_figure, save_figure

    half = float(ds.attrs["fov_deg"]) / 2
    kinds = [str(k) for k in ds.retina.values]
    fig, axes = new_figure(1, 2, width_in=7.0, height_in=3.2)
    n_sites = ds.sizes["cell"] // 2
    edges = np.geomspace(0.5, half, 12)
    mids = np.sqrt(edges[1:] * edges[:-1])
    styles = list(cycle_styles(3))
    r = np.linspace(edges[0], edges[-1], 200)
    dens_ax, sigma_ax = axes[0, 0], axes[0, 1]
    dens_ax.plot(
        r,
        retina.foveated_site_density(r, n_sites, 2 * half),
        color="0.5",
        linestyle="-",
        label="foveated target: Watson 2014 (scaled)",
    )
    dens_ax.axhline(
        n_sites / (2 * half) ** 2,
        color="0.5",
        linestyle=(0, (6, 2, 1, 2)),
        linewidth=0.8,
        label="uniform target: n_sites / fov_deg$^2$",
    )
    area = np.array(
        [
            np.trapezoid(_arc(rr, half), rr)
            for rr in (np.linspace(a, b, 100) for a, b in zip(edges[:-1], edges[1:], strict=True))
        ]
    )
    for style, kind in zip(styles[1:], kinds, strict=True):
        x, y, sel, on = _on_cells(ds, kind)
        ecc = np.hypot(x, y)
        counts, _ = np.histogram(ecc, edges)
        dens = np.where(counts > 0, counts / area, np.nan)
        dens_ax.plot(mids, dens, **{**style, "marker": "none"}, label=None)
        for few in (False, True):
            pick = (counts < _FEW_SITES) == few
            dens_ax.plot(
                mids[pick],
                dens[pick],
                linestyle="none",
                marker=style["marker"],
                color=style["color"],
                markerfacecolor="none" if few else style["color"],
                markersize=3,
                label=None if few else kind,
            )
        sigma_ax.plot(
            ecc,
            sel.sigma_center_deg.values[on],
            ".",
            color=style["color"],
            markersize=1.5,
        )
    dens_ax.plot(
        [],
        [],
        "o",
        color="0.3",
        markerfacecolor="none",
        markersize=3,
        label=f"open: < {_FEW_SITES} sites in the annulus",
    )
    dens_ax.set_xscale("log")
    dens_ax.set_yscale("log")
    _plain_log_ticks(dens_ax.xaxis)
    _plain_log_ticks(dens_ax.yaxis)
    dens_ax.set_xlabel("eccentricity (deg)")
    dens_ax.set_ylabel("sites / deg$^2$")
    dens_ax.set_title("site density")
    sigma_ax.set_xlabel("eccentricity (deg)")
    sigma_ax.set_ylabel("centre sigma (deg)")
    sigma_ax.set_title("receptive-field centre size (a dot per site, grays as left)")
    fig.legend(loc="outside lower center", ncols=3, fontsize=6, frameon=False)
    return save_figure(fig, out_dir, "retina_density")


def _plain_log_ticks(axis) -> None:
    """Ticks at 1, 2 and 5 times the powers of ten, labelled as plain numbers (0.5, 1, 2, 5,
    10, 20), not only at the decades."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _arc(r, half):
    from retina.lattice import _arc_in_square

    return _arc_in_square(r, half)
