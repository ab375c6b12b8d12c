"""Islands of agreement: do the settled embeddings of the columns group by object?

The distillation talk (00:29-00:34) and GLOM (Hinton 2021, arXiv:2102.12627, sec. 2): nearby
columns that agree pull each other together through lateral attention, so after settling the
columns on one object should share an embedding (an *island*), different from the island of
another object.

Protocol (per seed, per retina, per model):

1. **Training data: single-digit canvases.** The models are the flagship's column models
   (:mod:`analyses.baselines`), trained exactly as there (same :class:`BaselineConfig`, same
   budget) on canvases holding *one* digit at a random place, labelled by that digit. Reason:
   the models' objective is one label per image (the image's logits, or every column's own
   logits for ``codistill``); a two-digit canvas has no single label, and training on it would
   change the task being compared. Islands are then tested as an *emergent* property on a
   scene the models never saw: two digits at once.
2. **Test data: held-out two-digit canvases** (``make_canvas_dataset(..., n_digits=2)`` on the
   test split: digits never seen in training, non-overlapping boxes, each digit's pixel mask).
3. Each model settles on them (``model.sheet.settle``), giving the state ``[B, C, L, D]``.
   Three **dynamics** are scored:

   ``settled``     the model's own dynamics (``n_steps`` Euler steps);
   ``no-lateral``  the same model settled with the lateral term's weight set to 0 (a control:
                   no attention between columns, the consensus is bottom-up, top-down and the
                   previous state only);
   ``bottom-up``   the initial state, one bottom-up pass (no settling at all).

4. Ground truth per column: the digit whose mask covers the column's position
   (:func:`analyses.metrics.mask_labels_at`; 0 = background, 1 / 2 = first / second digit).
   Column positions ``(x_deg, y_deg)`` map to canvas pixels through the retina's fixation and
   scale (:mod:`retina.sampler`): ``col = fix_x + x_deg * pixels_per_deg``,
   ``row = fix_y - y_deg * pixels_per_deg``. The masks are the digit's ink above threshold,
   thin next to the column spacing (about 4 px), so they are dilated by ``mask_dilation_px``
   pixels (``scipy.ndimage.binary_dilation``) before the look-up: a column whose receptive
   field sits on a stroke's edge counts as on the digit.
5. Per level: the **adjusted Rand index** (Hubert & Arabie 1985) between a k-means clustering
   of the L2-normalised embeddings and the ground truth (:func:`analyses.metrics.islands_ari`),
   both over all columns (``ari``: 3 clusters, digit 1 / digit 2 / background;
   ``ari_unnormalized``: the same without the L2 normalisation -- background columns get
   near-zero embeddings whose *direction* is noise, which normalisation blows up) and over the
   columns on a digit only (``ari_objects``: 2 clusters, digit 1 vs digit 2); and the mean
   **cosine similarity** of column pairs on the same digit vs on different digits
   (:func:`analyses.metrics.within_between_cosine`, background left out). Each is averaged over
   the test canvases.
6. Controls for *place*: the two digits lie at different places, so an embedding that merely
   varies smoothly with position would also separate them. ``ari_position_only`` /
   ``ari_objects_position_only`` cluster the column positions alone (the score a pure map of
   places gets), and ``cos_gap_matched`` (:func:`analyses.metrics.matched_cosine_gap`)
   compares same-digit and different-digit pairs *at the same distance* (about 0 for a map of
   places).

Controls: the ``untrained`` model (the unshared column model at its initialisation; the
``lc-backprop`` and ``codistill`` models start from exactly these weights for the same seed), and
the ``no-lateral`` / ``bottom-up`` dynamics above.

The pieces shared with the ``column-similarity`` experiment (canvases, retina inputs without
the CNN's rendering, column positions in pixels, the models) are in :mod:`analyses.column_models`
and re-exported here; the scores are in :mod:`analyses.metrics`.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import xarray as xr

from analyses.baselines import BaselineConfig
from analyses.column_models import (
    check_canvas_config,
    column_inputs,
    column_models,
    column_positions_px,
    retina_and_inputs,
    single_digit_canvases,
)
from analyses.experiments.islands_figures import figures, pca_rgb
from analyses.metrics import (
    ACCURACY_BOUNDS,
    ARI_BOUNDS,
    COSINE_BOUNDS,
    interval_description,
    matched_cosine_gap,
    mean_ci_text,
)
from neurosim.config import Config, check_int, check_range

__all__ = [
    "Config",
    "run",
    "figures",
    "summary",
    "RESULT_FILE",
    "COLUMN_MODELS",
    "DYNAMICS",
    "column_inputs",
    "column_positions_px",
    "column_models",
    "pca_rgb",
    "matched_cosine_gap",
]

RESULT_FILE = "results.nc"

#: models this experiment can score (``untrained`` = the unshared column model at init)
COLUMN_MODELS = ("untrained", "shared-columns", "lc-backprop", "codistill", "lc-backprop+codistill")
#: labels of the ``dynamics`` dimension
DYNAMICS = ("settled", "no-lateral", "bottom-up")
#: index of the lateral term in ``Model.term_weights`` (order of :data:`neurosim.dynamics.TERMS`)
_LATERAL = 2


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(Config):
    """Settings of the islands experiment (defaults: the full run, a few minutes on 2 CPUs).

    Attributes:
        seed: first seed; seeds ``seed .. seed + n_seeds - 1`` (initialisation, data order,
            retina jitter, test canvases of that seed, k-means).
        n_seeds: repetitions (>= 1).
        models: model labels among :data:`COLUMN_MODELS` (``untrained`` is the control).
        retinas: ``uniform`` and/or ``foveated``.
        canvas_px: side of the square canvas (px); two digits must fit side by side.
        digit_px: side of a scaled digit (px).
        n_cells: retina cells (ON + OFF), the same for both retinas.
        pixels_per_deg: image scale handed to the retina.
        n_train: single-digit training canvases (<= 1258, the sklearn digits' training split).
        n_test: two-digit test canvases (held-out digits).
        n_accuracy: single-digit test canvases for the models' accuracy (<= 539).
        mask_dilation_px: dilation of the digit masks before the column look-up (px, >= 0).
        kmeans_restarts: k-means restarts per image (>= 1).
        distance_bin_px: distance bins of :func:`matched_cosine_gap` (px, > 0).
        baseline: the models' architecture and training budget (the flagship's
            :class:`analyses.baselines.BaselineConfig`; a TOML table ``[baseline]``).
    """

    seed: int = 0
    n_seeds: int = 2
    models: tuple[str, ...] = ("untrained", "lc-backprop", "codistill")
    retinas: tuple[str, ...] = ("uniform", "foveated")
    canvas_px: int = 28
    digit_px: int = 12
    n_cells: int = 288
    pixels_per_deg: float = 2.0
    n_train: int = 1258
    n_test: int = 64
    n_accuracy: int = 539
    mask_dilation_px: int = 1
    kmeans_restarts: int = 3
    distance_bin_px: float = 2.0
    baseline: BaselineConfig = dataclasses.field(default_factory=BaselineConfig)

    def __post_init__(self) -> None:
        # two digits side by side must fit on the canvas
        check_canvas_config(self, COLUMN_MODELS, 2 * self.digit_px)
        check_int("n_test", self.n_test, 1, 100_000)
        check_int("mask_dilation_px", self.mask_dilation_px, 0, 8)
        check_int("kmeans_restarts", self.kmeans_restarts, 1, 100)
        check_range("distance_bin_px", self.distance_bin_px, 0.0, 1e3, lo_inclusive=False)

    @classmethod
    def quick(cls) -> Config:
        """The test-suite size: tiny sheets, a few training steps, both retinas, two seeds."""
        return cls(
            n_seeds=2,
            canvas_px=20,
            digit_px=8,
            n_cells=64,
            pixels_per_deg=2.0,
            n_train=64,
            n_test=6,
            n_accuracy=32,
            kmeans_restarts=2,
            baseline=BaselineConfig.quick(),
        )


# ------------------------------------------------------------------------ the experiment


def _dilate(masks: np.ndarray, px: int) -> np.ndarray:
    """Dilate ``[N, K, H, W]`` masks by ``px`` pixels in the image plane (cross element)."""
    if px == 0:
        return masks
    from scipy.ndimage import binary_dilation, generate_binary_structure

    plane = generate_binary_structure(2, 1)
    structure = np.zeros((1, 1, 3, 3), bool)
    structure[0, 0] = plane
    return binary_dilation(masks, structure=structure, iterations=px)


def _states(model, responses, *, dynamics: str):
    """``[B, C, L, D]`` numpy states of ``model`` (a ColumnClassifier) under ``dynamics``."""
    import torch

    sheet = model.sheet
    with torch.no_grad():
        if dynamics == "bottom-up":
            return sheet.initial_state(responses).cpu().numpy()
        if dynamics == "no-lateral":
            sheet = copy.deepcopy(sheet)
            sheet.term_weights[_LATERAL].zero_()
        return sheet.settle(responses).state.cpu().numpy()


def _finite_mean(values) -> float:
    """Mean of the finite entries (NaN where none), e.g. over the test canvases."""
    v = np.atleast_1d(np.asarray(values, dtype=np.float64))
    fin = np.isfinite(v)
    return float(v[fin].mean()) if fin.any() else float("nan")


def _pick_example(labels: np.ndarray) -> int:
    """The test canvas whose smaller digit covers the most columns (``labels [B, C]``)."""
    counts = np.stack([(labels == k).sum(axis=1) for k in (1, 2)], axis=1)
    return int(np.argmax(counts.min(axis=1)))


#: long names of the column coordinates, which are those of the first seed
_FIRST_NAMES = {
    "x_deg": "column x, right of fixation (first seed)",
    "y_deg": "column y, above fixation (first seed)",
    "ecc_deg": "column eccentricity (first seed)",
    "row_px": "column position, canvas row (first seed)",
    "col_px": "column position, canvas column (first seed)",
}

_ATTRS = {
    "ari": (
        "1",
        "adjusted Rand index, k-means of a level's embeddings vs digit 1 / digit 2 / background",
    ),
    "ari_unnormalized": (
        "1",
        "adjusted Rand index as ari, k-means of the embeddings without L2 normalisation",
    ),
    "ari_objects": (
        "1",
        "adjusted Rand index over the columns on a digit, k-means (k=2) vs digit 1 / digit 2",
    ),
    "cos_within": ("1", "mean cosine similarity of column pairs on the same digit"),
    "cos_between": ("1", "mean cosine similarity of column pairs on different digits"),
    "cos_gap_matched": (
        "1",
        "within- minus between-digit cosine of column pairs at matched distances",
    ),
    "ari_position_only": (
        "1",
        "reference: adjusted Rand index of a k-means of the column positions (k=3, all columns)",
    ),
    "ari_objects_position_only": (
        "1",
        "reference: adjusted Rand index of a k-means of the positions of the digit columns (k=2)",
    ),
    "accuracy": ("1", "test accuracy on held-out single-digit canvases (image logits)"),
    "n_digit_columns": ("1", "mean number of columns on a digit per two-digit test canvas"),
}


#: each measure's range: its ``valid_min`` / ``valid_max`` attributes, the intervals' bounds
BOUNDS = {
    "ari": ARI_BOUNDS,
    "ari_unnormalized": ARI_BOUNDS,
    "ari_objects": ARI_BOUNDS,
    "cos_within": COSINE_BOUNDS,
    "cos_between": COSINE_BOUNDS,
    "cos_gap_matched": (-2.0, 2.0),  # a difference of two cosines
    "ari_position_only": ARI_BOUNDS,
    "ari_objects_position_only": ARI_BOUNDS,
    "accuracy": ACCURACY_BOUNDS,
}

#: the intervals of the summary and the figures (also the results' ``ci_method`` attribute)
CI_METHOD = (
    "95 % Student-t CI of the mean over seeds, clipped to the variable's [valid_min, "
    "valid_max] (analyses.metrics.confidence_interval); none with fewer than 2 seeds"
)

#: the per-level scores of the embeddings, ``[model, retina, dynamics, level, seed]``
SCORES = (
    "ari",
    "ari_unnormalized",
    "ari_objects",
    "cos_within",
    "cos_between",
    "cos_gap_matched",
)


class _Results:
    """The arrays :func:`run` fills, NaN until scored; one example canvas of the first seed."""

    def __init__(self, config: Config):
        bcfg = config.baseline
        self.models, self.retinas = list(config.models), list(config.retinas)
        self.seeds = [config.seed + i for i in range(config.n_seeds)]
        m, r, s = len(self.models), len(self.retinas), len(self.seeds)
        n_lv, c = bcfg.n_levels, bcfg.n_columns
        self.scores = {k: np.full((m, r, len(DYNAMICS), n_lv, s), np.nan) for k in SCORES}
        self.accuracy = np.full((m, r, s), np.nan)
        self.n_digit_cols = np.full((r, s), np.nan)
        self.ari_pos = np.full((2, r, s), np.nan)  # all columns (k=3), digit columns (k=2)
        self.ex_emb = np.full((m, r, n_lv, c, max(bcfg.level_dims)), np.nan)
        self.ex_label = np.zeros((r, c), np.int64)
        self.ex_pos_deg = np.zeros((r, c, 2))
        self.ex_pos_px = np.zeros((r, c, 2))
        self.ex_image = None
        self.example = None  # index of the example canvas among the first seed's test canvases


def _two_digit_canvases(split, config: Config, seed: int):
    """The seed's held-out two-digit test canvases (``make_canvas_dataset``, seed + 20_000)."""
    from analyses.tasks import make_canvas_dataset

    return make_canvas_dataset(
        split.x_test,
        split.y_test,
        canvas_px=config.canvas_px,
        digit_px=config.digit_px,
        n_digits=2,
        n_images=config.n_test,
        seed=seed + 20_000,
    )


def _position_ari(pos_px, masks, config: Config, seed: int) -> list[float]:
    """The place-only reference: ARI of a k-means of the column positions ``[C, 2]`` (px),
    over all columns (k=3) and over the digit columns (k=2), averaged over the canvases."""
    import sklearn

    from analyses.metrics import islands_ari

    where = np.broadcast_to(pos_px, (len(masks), *pos_px.shape))
    out = []
    with sklearn.config_context(skip_parameter_validation=True):
        for bg in (True, False):
            val = islands_ari(
                where,
                pos_px,
                masks,
                include_background=bg,
                normalize=False,
                n_init=config.kmeans_restarts,
                seed=seed,
            )
            out.append(np.nanmean(val) if np.isfinite(val).any() else np.nan)
    return out


def _level_scores(emb, pos_px, masks, truth, config: Config, seed: int) -> dict[str, float]:
    """The :data:`SCORES` of one level's embeddings ``[B, C, D]``, averaged over the canvases.

    ``pos_px [C, 2]`` column positions (px), ``masks [B, 2, H, W]`` (dilated), ``truth
    [B, C]`` the digit under each column (0 = background).
    """
    import sklearn

    from analyses.metrics import islands_ari, within_between_cosine

    common = dict(n_init=config.kmeans_restarts, seed=seed)
    # sklearn's per-call argument validation costs more than the score
    with sklearn.config_context(skip_parameter_validation=True):
        ari = islands_ari(emb, pos_px, masks, **common)
        ari_raw = islands_ari(emb, pos_px, masks, normalize=False, **common)
        ari_obj = islands_ari(emb, pos_px, masks, include_background=False, **common)
    within, between = within_between_cosine(emb, truth, ignore_label=0)
    gap = matched_cosine_gap(emb, truth, pos_px, bin_px=config.distance_bin_px)
    values = (ari, ari_raw, ari_obj, within, between, gap)
    return {k: _finite_mean(v) for k, v in zip(SCORES, values, strict=True)}


def _score_seed(res: _Results, si: int, split, config: Config, device, bar) -> None:
    """Train and score every retina x model of seed ``res.seeds[si]`` into ``res``."""
    from analyses.metrics import mask_labels_at

    seed = res.seeds[si]
    bcfg = config.baseline
    train_cv, acc_cv = single_digit_canvases(split, config, seed)
    two = _two_digit_canvases(split, config, seed)
    masks = _dilate(two.masks, config.mask_dilation_px)
    for ri, rkind in enumerate(res.retinas):
        retina, train, acc_set = retina_and_inputs(config, rkind, seed, train_cv, acc_cv)
        test2 = column_inputs(retina, two.images, two.labels[:, 0], scale=train.scale)
        responses = test2.responses.to(device)
        for mi, (_label, model, acc) in enumerate(
            column_models(res.models, retina, train, acc_set, bcfg, seed=seed, device=device)
        ):
            res.accuracy[mi, ri, si] = acc
            pos_deg = model.sheet.positions_deg.detach().cpu().numpy().astype(np.float64)
            pos_px = column_positions_px(retina, pos_deg)
            truth = mask_labels_at(masks, pos_px)  # [B, C]
            res.n_digit_cols[ri, si] = float((truth > 0).sum(axis=1).mean())
            if si == 0 and res.example is None:
                res.example = _pick_example(truth)
            if mi == 0:  # reference: k-means of the columns' positions alone
                res.ari_pos[:, ri, si] = _position_ari(pos_px, masks, config, seed)
            for di, dyn in enumerate(DYNAMICS):
                state = _states(model, responses, dynamics=dyn)  # [B, C, L, D]
                for lv in range(bcfg.n_levels):
                    scores = _level_scores(state[:, :, lv], pos_px, masks, truth, config, seed)
                    for key, val in scores.items():
                        res.scores[key][mi, ri, di, lv, si] = val
                if si == 0 and dyn == "settled":
                    res.ex_emb[mi, ri] = state[res.example].transpose(1, 0, 2)  # [L, C, D]
            if si == 0:
                res.ex_label[ri] = truth[res.example]
                res.ex_pos_deg[ri] = pos_deg
                res.ex_pos_px[ri] = pos_px
            del model
            bar.update(f"{rkind} seed={seed} {res.models[mi]}", score=f"accuracy {acc:.3f}")
    if si == 0:
        res.ex_image = two.images[res.example]


def _var(name: str, dims: tuple[str, ...], values) -> tuple:
    """A data variable ``(dims, values, attrs)``: the units and long name of :data:`_ATTRS`,
    and the range of :data:`BOUNDS` as ``valid_min`` / ``valid_max`` (CF attributes)."""
    attrs = {"units": _ATTRS[name][0], "long_name": _ATTRS[name][1]}
    if name in BOUNDS:
        attrs.update(valid_min=BOUNDS[name][0], valid_max=BOUNDS[name][1])
    return (dims, values, attrs)


def _dataset(res: _Results, config: Config) -> xr.Dataset:
    """The results Dataset of :func:`run` from the filled arrays."""
    bcfg = config.baseline
    c = bcfg.n_columns
    dims5 = ("model", "retina", "dynamics", "level", "seed")
    data_vars = {k: _var(k, dims5, v) for k, v in res.scores.items()}
    data_vars["accuracy"] = _var("accuracy", ("model", "retina", "seed"), res.accuracy)
    data_vars["n_digit_columns"] = _var("n_digit_columns", ("retina", "seed"), res.n_digit_cols)
    for j, name in enumerate(("ari_position_only", "ari_objects_position_only")):
        data_vars[name] = _var(name, ("retina", "seed"), res.ari_pos[j])
    data_vars["example_image"] = (
        ("row", "col"),
        np.asarray(res.ex_image, dtype=np.float64),
        {"units": "1", "long_name": "example two-digit test canvas (first seed), in [0, 1]"},
    )
    data_vars["example_embedding"] = (
        ("model", "retina", "level", "column", "dim"),
        res.ex_emb,
        {"units": "1", "long_name": "settled embeddings of the example canvas (first seed)"},
    )
    data_vars["example_label"] = (
        ("retina", "column"),
        res.ex_label,
        {"units": "1", "long_name": "example canvas: 0 background, 1 / 2 digit under the column"},
    )
    pos_deg, pos_px = res.ex_pos_deg, res.ex_pos_px
    rc = ("retina", "column")
    coords = {
        "model": res.models,
        "retina": res.retinas,
        "dynamics": list(DYNAMICS),
        "level": np.arange(bcfg.n_levels),
        "seed": res.seeds,
        "column": np.arange(c),
        "dim": np.arange(max(bcfg.level_dims)),
        "row": np.arange(config.canvas_px),
        "col": np.arange(config.canvas_px),
        "x_deg": (rc, pos_deg[..., 0], {"units": "deg", "long_name": _FIRST_NAMES["x_deg"]}),
        "y_deg": (rc, pos_deg[..., 1], {"units": "deg", "long_name": _FIRST_NAMES["y_deg"]}),
        "ecc_deg": (
            rc,
            np.hypot(pos_deg[..., 0], pos_deg[..., 1]),
            {"units": "deg", "long_name": _FIRST_NAMES["ecc_deg"]},
        ),
        "row_px": (rc, pos_px[..., 0], {"units": "px", "long_name": _FIRST_NAMES["row_px"]}),
        "col_px": (rc, pos_px[..., 1], {"units": "px", "long_name": _FIRST_NAMES["col_px"]}),
    }
    ds = xr.Dataset(data_vars, coords=coords)
    ds["level"].attrs.update(units="1", long_name="level of the part-whole hierarchy (0 = lowest)")
    ds.attrs.update(
        title="islands of agreement on two-digit canvases",
        training_data="single-digit canvases (one label per image); tested on two-digit canvases",
        n_train=config.n_train,
        n_test=config.n_test,
        n_accuracy=config.n_accuracy,
        canvas_px=config.canvas_px,
        digit_px=config.digit_px,
        n_cells=config.n_cells,
        pixels_per_deg=config.pixels_per_deg,
        mask_dilation_px=config.mask_dilation_px,
        n_columns=c,
        steps=bcfg.steps,
        ci_method=CI_METHOD,
    )
    return ds


def run(config: Config, *, device="cpu", quiet: bool = False) -> xr.Dataset:
    """Train (or not) the column models and score their islands; see the module docstring.

    Returns:
        Dataset with ``ari``, ``ari_unnormalized``, ``ari_objects``, ``cos_within``,
        ``cos_between``, ``cos_gap_matched`` ``[model, retina, dynamics, level, seed]``,
        ``accuracy [model, retina, seed]``, ``n_digit_columns``, ``ari_position_only``,
        ``ari_objects_position_only`` ``[retina, seed]``, and one example canvas of the first seed:
        ``example_image [row, col]``, ``example_embedding [model, retina, level, column, dim]``
        (settled), ``example_label [retina, column]`` and column coords ``x_deg``, ``y_deg``,
        ``ecc_deg``, ``row_px``, ``col_px`` on ``(retina, column)``.
    """
    from analyses.progress import Progress
    from analyses.tasks import digits_split
    from neurosim.config import check_device

    if not isinstance(config, Config):
        raise ValueError(f"config must be an islands Config; got {type(config).__name__}")
    device = check_device(device)
    split = digits_split(seed=0)
    res = _Results(config)
    total = len(res.seeds) * len(res.retinas) * len(res.models)
    with Progress(total, desc="islands", unit="models", quiet=quiet) as bar:
        for si in range(len(res.seeds)):
            _score_seed(res, si, split, config, device, bar)
    return _dataset(res, config)


# ------------------------------------------------------------------------ reporting


def _table(ds: xr.Dataset, names: tuple[str, ...], heads: tuple[str, ...]) -> list[str]:
    """One row per retina, model, dynamics and level: mean [95 % CI] of each variable."""
    width = 25
    lines = [
        f"{'retina':<9}{'model':<23}{'dynamics':<11}{'lvl':>3}"
        + "".join(f"{h:>{width}}" for h in heads)
    ]
    for r in ds["retina"].values.tolist():
        for m in ds["model"].values.tolist():
            for d in ds["dynamics"].values.tolist():
                for lv in ds["level"].values.tolist():
                    sel = dict(retina=r, model=m, dynamics=d, level=lv)
                    lines.append(
                        f"{r:<9}{m:<23}{d:<11}{lv:>3}"
                        + "".join(f"{_ci(ds, k, sel):>{width}}" for k in names)
                    )
    return lines


def _ci(ds: xr.Dataset, name: str, sel: dict) -> str:
    """``mean [low, high]`` of ``ds[name]`` at ``sel`` over seeds, within the variable's range."""
    return mean_ci_text(ds[name].sel(sel), bounds=BOUNDS.get(name), kind=False)


def summary(ds: xr.Dataset) -> str:
    """Per retina, model, dynamics and level: ARI, ARI on the digits, within/between cosine.

    Values are means over seeds and their 95 % Student-t intervals clipped to each measure's
    range (:func:`analyses.metrics.confidence_interval`; none with fewer than 2 seeds).
    """
    n_seeds = ds.sizes["seed"]
    lines = [
        f"islands of agreement: {int(ds.attrs['n_test'])} held-out two-digit canvases, "
        f"{int(ds.attrs['n_columns'])} columns, trained on single-digit canvases "
        f"({int(ds.attrs['steps'])} steps), {n_seeds} seed(s)",
        f"mean [{interval_description(n_seeds)}, clipped to the measure's range: ARI and "
        "cosine [-1, 1], gap [-2, 2], accuracy [0, 1]]",
        "ari: k-means (k=3) of L2-normalised embeddings vs digit1/digit2/background; ari_raw: "
        "the same without normalisation; ari_obj: digit columns only (k=2, normalised);",
        "cos: mean cosine within/between digits; gap_matched: within - between at matched "
        "distances (0 for a map of places)",
    ]
    lines += _table(ds, ("ari", "ari_unnormalized", "ari_objects"), ("ari", "ari_raw", "ari_obj"))
    lines += _table(
        ds,
        ("cos_within", "cos_between", "cos_gap_matched"),
        ("cos_within", "cos_between", "gap_matched"),
    )
    lines.append("single-digit test accuracy (image logits; chance 0.1):")
    for r in ds["retina"].values.tolist():
        lines.append(
            f"  {r:<9}"
            + "  ".join(
                f"{m} {_ci(ds, 'accuracy', dict(retina=r, model=m))}"
                for m in ds["model"].values.tolist()
            )
        )
    for r in ds["retina"].values.tolist():
        lines.append(
            f"  reference, k-means of the column positions alone ({r}): "
            f"ari {_ci(ds, 'ari_position_only', dict(retina=r))}, "
            f"ari_obj {_ci(ds, 'ari_objects_position_only', dict(retina=r))}"
        )
    cols = ", ".join(
        f"{r} {float(ds['n_digit_columns'].sel(retina=r).mean()):.1f}"
        for r in ds["retina"].values.tolist()
    )
    lines.append(
        f"columns on a digit per canvas (of {int(ds.attrs['n_columns'])}, masks dilated by "
        f"{int(ds.attrs['mask_dilation_px'])} px): {cols}"
    )
    return "\n".join(lines)
