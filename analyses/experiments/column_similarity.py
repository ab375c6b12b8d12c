"""Column similarity: after training, how alike have the unshared columns become?

The distillation talk (00:29-00:34): co-distillation should make columns that share no weights
compute similar functions, because each learns to agree with what its neighbours say -- the
benefit of weight sharing without the sharing. This experiment measures how alike the columns of
each model are, as functions and as weights.

Models (per seed and retina; trained as in :mod:`analyses.baselines`, on single-digit
canvases, same :class:`BaselineConfig` and budget as the flagship):

``untrained``       the unshared column model at its initialisation (the floor);
``shared-columns``  one set of weights for every column (the ceiling of weight similarity, 1 by
                    construction; its functional similarity is the ceiling the retina allows:
                    even tied columns read different cells, and on the foveated retina a
                    column's cells cover more degrees in the periphery);
``lc-backprop``     unshared columns, end-to-end backprop, no co-distillation;
``codistill``       unshared columns, local co-distillation.

**As functions** (:func:`analyses.metrics.functional_similarity`): ``n_stimuli`` held-out digits
(class-balanced) are each pasted *centred on every column's position* (the column's place in
canvas pixels, :func:`analyses.column_models.column_positions_px`; digits that reach past
the canvas edge are cropped), so column ``c`` sees stimulus ``s`` at its own place. The model
settles on each of these ``C x S`` canvases and column ``c``'s own outputs are kept, giving
``[C, S, D]`` per output:

``encoder``     the level-0 bottom-up encoder alone (cells -> level 0, no settling): the
                column's own network, untouched by its neighbours;
``level_l``     the settled embedding of level ``l``;
``logits``      the column's own readout of the settled state (class logits).

Two measures: ``cosine`` -- the mean pairwise cosine of the columns' flattened responses
(as in :func:`~analyses.metrics.functional_similarity`); ``centred`` -- the same after
subtracting each column's mean response over the stimuli, so that only the stimulus-driven part
counts (a constant offset shared by all columns, e.g. a bias, or a collapsed output, would make
``cosine`` high for any stimulus). Also ``class_agreement``: the probability that two columns
predict the same class for the same stimulus, and ``centred_accuracy``: how often a column's own
readout names the digit centred on it.

**As weights** (:func:`analyses.metrics.weight_similarity`): the mean pairwise cosine of the
columns' flattened weights, for every :class:`~neurosim.columns.ColumnLinear` layer (the shared
model's one weight counts once per column, so 1). Hidden units may be permuted between columns
without changing the function, so weights can stay dissimilar while functions converge.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import xarray as xr

from analyses.baselines import BaselineConfig
from analyses.column_models import check_canvas_config
from analyses.metrics import (
    ACCURACY_BOUNDS,
    COSINE_BOUNDS,
    gap_closed_interval,
    interval_description,
    mean_ci_text,
)
from neurosim.config import Config, check_int

__all__ = [
    "Config",
    "run",
    "figures",
    "summary",
    "RESULT_FILE",
    "MODELS",
    "MEASURES",
    "centred_canvases",
    "column_outputs",
    "layer_weight_similarity",
]

RESULT_FILE = "results.nc"

#: models this experiment can compare
MODELS = ("untrained", "shared-columns", "lc-backprop", "codistill", "lc-backprop+codistill")
#: labels of the ``measure`` dimension
MEASURES = ("cosine", "centred")
#: each measure's range: its ``valid_min`` / ``valid_max`` attributes, the intervals' bounds
BOUNDS = {
    "functional_similarity": COSINE_BOUNDS,
    "weight_similarity": COSINE_BOUNDS,
    "class_agreement": ACCURACY_BOUNDS,
    "centred_accuracy": ACCURACY_BOUNDS,
    "accuracy": ACCURACY_BOUNDS,
}
#: the intervals of the summary and the figure (also the results' ``ci_method`` attribute)
CI_METHOD = (
    "95 % Student-t CI of the mean over seeds, clipped to the variable's [valid_min, "
    "valid_max] (analyses.metrics.confidence_interval); none with fewer than 2 seeds"
)
#: the interval of the fraction of the shared-columns ceiling (``gap_method`` attribute)
_GAP_CI = (
    "95 % paired bootstrap CI over seeds, 10000 resamples; '-' where the ceiling's 95 % t CI "
    "includes 0"
)
#: width of a table cell
_W = 25


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(Config):
    """Settings of the column-similarity experiment (defaults: the full run).

    Attributes:
        seed: first seed; seeds ``seed .. seed + n_seeds - 1``.
        n_seeds: repetitions (>= 1).
        models: labels among :data:`MODELS`.
        retinas: ``uniform`` and/or ``foveated``.
        canvas_px: side of the square canvas (px).
        digit_px: side of a scaled digit (px).
        n_cells: retina cells (ON + OFF), the same for both retinas.
        pixels_per_deg: image scale handed to the retina.
        n_train: single-digit training canvases (<= 1258).
        n_accuracy: single-digit test canvases for the models' accuracy (<= 539).
        n_stimuli: held-out digits presented at every column's place (class-balanced, <= 539).
        baseline: the models' architecture and training budget (TOML table ``[baseline]``).
    """

    seed: int = 0
    n_seeds: int = 3
    models: tuple[str, ...] = ("untrained", "shared-columns", "lc-backprop", "codistill")
    retinas: tuple[str, ...] = ("uniform", "foveated")
    canvas_px: int = 24
    digit_px: int = 12
    n_cells: int = 288
    pixels_per_deg: float = 2.0
    n_train: int = 1258
    n_accuracy: int = 539
    n_stimuli: int = 20
    baseline: BaselineConfig = dataclasses.field(default_factory=BaselineConfig)

    def __post_init__(self) -> None:
        check_canvas_config(self, MODELS, self.digit_px)
        check_int("n_stimuli", self.n_stimuli, 1, 539)

    @classmethod
    def quick(cls) -> Config:
        """The test-suite size: tiny sheets, a few training steps, both retinas, two seeds."""
        return cls(
            n_seeds=2,
            canvas_px=20,
            digit_px=8,
            n_cells=64,
            n_train=64,
            n_accuracy=32,
            n_stimuli=4,
            baseline=BaselineConfig.quick(),
        )


# ------------------------------------------------------------------------ pieces


def centred_canvases(patches: np.ndarray, centres_px: np.ndarray, canvas_px: int) -> np.ndarray:
    """Every patch pasted centred on every position: ``[C, S, H, W]`` canvases.

    Args:
        patches: ``[S, d, d]`` scaled digits in [0, 1].
        centres_px: ``[C, 2]`` ``(row, col)`` centres in canvas pixels; the patch's top-left
            pixel is ``round(centre - (d - 1) / 2)`` (the convention of
            :mod:`analyses.tasks`: a box with top-left ``r0`` has its centre at
            ``r0 + (d - 1) / 2``).
        canvas_px: side ``H = W`` of the canvas.

    Returns:
        ``[C, S, H, W]`` float32; the parts of a patch outside the canvas are cropped.
    """
    p = np.asarray(patches, dtype=np.float32)
    if p.ndim != 3 or p.shape[1] != p.shape[2]:
        raise ValueError(f"patches must be [S, d, d]; got shape {p.shape}")
    centres = np.asarray(centres_px, dtype=np.float64)
    if centres.ndim != 2 or centres.shape[1] != 2:
        raise ValueError(f"centres_px must be [C, 2]; got shape {centres.shape}")
    h = check_int("canvas_px", canvas_px, 1)
    s, d = p.shape[0], p.shape[1]
    top = np.floor(centres - (d - 1) / 2.0 + 0.5).astype(np.int64).clip(-d, h)  # [C, 2]
    big = np.zeros((centres.shape[0], s, h + 2 * d, h + 2 * d), np.float32)
    span = np.arange(d)
    rr = (top[:, 0, None] + d + span)[:, None, :, None]  # [C, 1, d, 1]
    cc = (top[:, 1, None] + d + span)[:, None, None, :]  # [C, 1, 1, d]
    ci = np.arange(centres.shape[0])[:, None, None, None]
    si = np.arange(s)[None, :, None, None]
    big[ci, si, rr, cc] = p[None]
    return big[:, :, d : d + h, d : d + h]


def column_outputs(model, responses, n_stimuli: int, *, batch_size: int = 256) -> dict:
    """Each column's own outputs when stimulus ``s`` sits at its place.

    Args:
        model: a :class:`analyses.baselines.ColumnClassifier` (eval mode).
        responses: ``[C * S, n_cells]`` retina responses of :func:`centred_canvases` flattened
            in ``(column, stimulus)`` order.
        n_stimuli: ``S``.
        batch_size: canvases per settle.

    Returns:
        ``{"encoder": [C, S, dim[0]], "level_0": ..., "level_{L-1}": [C, S, dim[L-1]],
        "logits": [C, S, K]}`` numpy float64 arrays (each level without padding): row ``c``
        holds column ``c``'s outputs only.
    """
    import torch

    sheet = model.sheet
    c = sheet.n_columns
    if responses.shape[0] != c * n_stimuli:
        raise ValueError(
            f"responses must have C * S = {c * n_stimuli} rows; got {responses.shape[0]}"
        )
    own = torch.arange(c, device=responses.device).repeat_interleave(n_stimuli)  # [C S]
    parts: dict[str, list] = {}
    with torch.no_grad():
        for lo in range(0, responses.shape[0], batch_size):
            x = responses[lo : lo + batch_size]
            rows = torch.arange(x.shape[0], device=x.device)
            col = own[lo : lo + batch_size]
            x0 = sheet.initial_state(x)  # one bottom-up pass, reused as settle's start
            if sheet.config.init == "bottom_up":
                enc = sheet.level(x0, 0)  # [b, C, dim[0]]: the encoder's reading
            else:
                enc = sheet.encode(x)
            state = sheet.settle(x, initial_state=x0).state  # [b, C, L, D]
            logits = model.readout(model.features(state))  # [b, C, K]
            out = {"encoder": enc[rows, col]}
            for lv in range(sheet.n_levels):
                out[f"level_{lv}"] = sheet.level(state, lv)[rows, col]
            out["logits"] = logits[rows, col]
            for k, v in out.items():
                parts.setdefault(k, []).append(v.cpu().numpy().astype(np.float64))
    return {k: np.concatenate(v).reshape(c, n_stimuli, -1) for k, v in parts.items()}


def layer_weight_similarity(model) -> dict[str, float]:
    """``{layer name: weight_similarity}`` for every ColumnLinear layer of ``model``.

    Names drop the ``sheet.`` prefix and ``layers.``: ``encoder.0``, ``bottom_up.0.1``,
    ``top_down.0.0``, ``readout``. A shared layer's single weight is repeated for every column
    (tied columns: similarity 1).
    """
    from analyses.metrics import weight_similarity
    from neurosim.columns import ColumnLinear

    n = model.sheet.n_columns
    out = {}
    for name, mod in model.named_modules():
        if not isinstance(mod, ColumnLinear):
            continue
        w = mod.weight.detach().cpu()
        if w.shape[0] == 1:
            w = w.expand(n, *w.shape[1:])
        label = name.removeprefix("sheet.").replace("layers.", "")
        out[label] = weight_similarity(w.numpy(), measure="cosine")
    return out


_ATTRS = {
    "functional_similarity": (
        "1",
        "mean pairwise similarity of the columns' outputs to the same stimulus at their place",
    ),
    "weight_similarity": ("1", "mean pairwise cosine of the columns' weights of a layer"),
    "class_agreement": (
        "1",
        "probability that two columns predict the same class for the same stimulus",
    ),
    "centred_accuracy": (
        "1",
        "fraction of (column, stimulus) where the column's own readout names the digit on it",
    ),
    "accuracy": ("1", "test accuracy on held-out single-digit canvases (image logits)"),
}


def _stimulus_patches(split, config: Config, seed: int):
    """The seed's class-balanced held-out digits: ``(patches [S, d, d], labels [S])``, each
    scaled exactly as on the canvases (a canvas of the digit's own size)."""
    from analyses.tasks import make_canvas_dataset, stratified_subset

    stim_idx = np.sort(stratified_subset(split.y_test, config.n_stimuli, seed=seed))
    labels = split.y_test[stim_idx]
    patches = make_canvas_dataset(
        split.x_test[stim_idx], labels, canvas_px=config.digit_px, digit_px=config.digit_px
    ).images
    return patches, labels


def _output_scores(
    outs: dict, outputs: list[str], stim_labels: np.ndarray
) -> tuple[np.ndarray, float, float]:
    """From :func:`column_outputs`: the functional similarity ``[output, measure]`` (outputs in
    the order of ``outputs``; measures ``cosine`` and ``centred``), the class agreement and the
    centred accuracy (``stim_labels [S]``)."""
    from analyses.metrics import functional_similarity

    func = np.full((len(outputs), len(MEASURES)), np.nan)
    for oi, r in enumerate(outs[name] for name in outputs):
        func[oi, 0] = functional_similarity(r, measure="cosine")
        func[oi, 1] = functional_similarity(r - r.mean(axis=1, keepdims=True), measure="cosine")
    pred = outs["logits"].argmax(axis=-1)  # [C, S]
    n_cols = pred.shape[0]
    counts = (pred[..., None] == np.arange(outs["logits"].shape[-1])).sum(axis=0)
    agree = float(((counts**2).sum(axis=-1) - n_cols).mean() / (n_cols * (n_cols - 1)))
    return func, agree, float((pred == stim_labels[None, :]).mean())


def _score_retina(config: Config, rkind: str, seed: int, canvases, stimuli, device):
    """Train every model of one seed and retina and score it: yields, per model, ``(accuracy,
    functional similarity [output, measure], class agreement, centred accuracy, {layer:
    weight similarity})``.

    ``canvases`` are the seed's ``(training, accuracy)`` single-digit canvases, ``stimuli`` its
    ``(patches [S, d, d], labels [S])``; every model of the seed shares the column places, so
    the ``C x S`` centred canvases and their responses are built once.
    """
    from analyses.column_models import (
        column_inputs,
        column_models,
        column_positions_px,
        retina_and_inputs,
    )

    bcfg = config.baseline
    outputs = ["encoder", *(f"level_{lv}" for lv in range(bcfg.n_levels)), "logits"]
    patches, stim_labels = stimuli
    retina, train, acc_set = retina_and_inputs(config, rkind, seed, *canvases)
    responses = None
    for _label, model, acc in column_models(
        list(config.models), retina, train, acc_set, bcfg, seed=seed, device=device
    ):
        if responses is None:
            pos_px = column_positions_px(retina, model.sheet.positions_deg)
            canv = centred_canvases(patches, pos_px, config.canvas_px)  # [C, S, H, W]
            c, s = canv.shape[:2]
            responses = column_inputs(
                retina,
                canv.reshape(c * s, *canv.shape[2:]),
                np.tile(stim_labels, c),
                scale=train.scale,
            ).responses.to(device)
        outs = column_outputs(model, responses, config.n_stimuli, batch_size=bcfg.eval_batch_size)
        yield (acc, *_output_scores(outs, outputs, stim_labels), layer_weight_similarity(model))
        del model


def run(config: Config, *, device="cpu", quiet: bool = False) -> xr.Dataset:
    """Train the models and measure how alike their columns are; see the module docstring.

    Returns:
        Dataset with ``functional_similarity [model, retina, seed, output, measure]``,
        ``weight_similarity [model, retina, seed, layer]``, ``class_agreement``,
        ``centred_accuracy``, ``accuracy [model, retina, seed]``.
    """
    from analyses.column_models import single_digit_canvases
    from analyses.progress import Progress
    from analyses.tasks import digits_split
    from neurosim.config import check_device

    if not isinstance(config, Config):
        raise ValueError(f"config must be a column-similarity Config; got {type(config).__name__}")
    device = check_device(device)
    split = digits_split(seed=0)
    seeds = [config.seed + i for i in range(config.n_seeds)]
    models, retinas = list(config.models), list(config.retinas)
    outputs = ["encoder", *(f"level_{lv}" for lv in range(config.baseline.n_levels)), "logits"]
    shape = (len(models), len(retinas), len(seeds))
    func = np.full((*shape, len(outputs), len(MEASURES)), np.nan)
    agree, centred_acc, accuracy = (np.full(shape, np.nan) for _ in range(3))
    weights: dict[tuple[int, int, int], dict[str, float]] = {}
    total = len(seeds) * len(retinas) * len(models)
    with Progress(total, desc="column-similarity", unit="models", quiet=quiet) as bar:
        for si, seed in enumerate(seeds):
            canvases = single_digit_canvases(split, config, seed)
            stimuli = _stimulus_patches(split, config, seed)
            for ri, rkind in enumerate(retinas):
                scored = _score_retina(config, rkind, seed, canvases, stimuli, device)
                for mi, (acc, fs, ag, ca, ws) in enumerate(scored):
                    accuracy[mi, ri, si], func[mi, ri, si] = acc, fs
                    agree[mi, ri, si], centred_acc[mi, ri, si] = ag, ca
                    weights[(mi, ri, si)] = ws
                    bar.update(f"{rkind} seed={seed} {models[mi]}", score=f"accuracy {acc:.3f}")
    layers = list(next(iter(weights.values())))
    wsim = np.full((*shape, len(layers)), np.nan)
    for (mi, ri, si), ws in weights.items():
        wsim[mi, ri, si] = [ws[name] for name in layers]
    arrays = {
        "functional_similarity": func,
        "weight_similarity": wsim,
        "class_agreement": agree,
        "centred_accuracy": centred_acc,
        "accuracy": accuracy,
    }
    coords = {"model": models, "retina": retinas, "seed": seeds, "output": outputs}
    return _dataset(config, arrays, {**coords, "layer": layers})


def _dataset(config: Config, arrays: dict[str, np.ndarray], coords: dict) -> xr.Dataset:
    """The results of :func:`run` from its arrays (``[model, retina, seed, ...]``)."""
    extra = {"functional_similarity": ("output", "measure"), "weight_similarity": ("layer",)}
    mrs = ("model", "retina", "seed")
    data = {}
    for name, values in arrays.items():
        lo, hi = BOUNDS[name]
        attrs = {"units": _ATTRS[name][0], "long_name": _ATTRS[name][1], "valid_min": lo}
        data[name] = ((*mrs, *extra.get(name, ())), values, {**attrs, "valid_max": hi})
    ds = xr.Dataset(data, coords={**coords, "measure": list(MEASURES)})
    ds.attrs.update(
        title="how alike the columns are, as functions and as weights",
        training_data="single-digit canvases",
        stimuli="held-out digits centred on every column's position (cropped at the edges)",
        n_train=config.n_train,
        n_accuracy=config.n_accuracy,
        n_stimuli=config.n_stimuli,
        canvas_px=config.canvas_px,
        digit_px=config.digit_px,
        n_cells=config.n_cells,
        pixels_per_deg=config.pixels_per_deg,
        n_columns=config.baseline.n_columns,
        steps=config.baseline.steps,
        ci_method=CI_METHOD,
        gap_method="fraction of the shared-columns ceiling (summary): " + _GAP_CI,
    )
    return ds


# ------------------------------------------------------------------------ reporting


def _ci(values, name: str) -> str:
    """``mean [low, high]`` over seeds, within the measure's range (:data:`BOUNDS`)."""
    return mean_ci_text(values, bounds=BOUNDS[name], kind=False)


def _rows(ds: xr.Dataset, name: str, cols: list[str], dim: str, **sel) -> list[str]:
    """One row per retina and model of ``ds[name]``, a column per label of ``dim``."""
    lines = [f"{'retina':<9}{'model':<23}" + "".join(f"{c:>{_W}}" for c in cols)]
    for r in ds["retina"].values.tolist():
        for m in ds["model"].values.tolist():
            v = ds[name].sel(retina=r, model=m, **sel)
            lines.append(
                f"{r:<9}{m:<23}" + "".join(f"{_ci(v.sel({dim: c}), name):>{_W}}" for c in cols)
            )
    return lines


def _ceiling_rows(ds: xr.Dataset, outputs: list[str]) -> list[str]:
    """Per retina and trained model, the fraction of the shared-columns ceiling of the centred
    functional similarity, ``m / shared`` of the seed means (:func:`gap_closed_interval` with
    control 0), with its paired-bootstrap interval; ``-`` where the ceiling is noise."""
    models = [m for m in ds["model"].values.tolist() if m not in ("shared-columns", "untrained")]
    lines = [f"{'retina':<9}{'model':<23}" + "".join(f"{o:>{_W}}" for o in outputs)]
    notes = []
    for r in ds["retina"].values.tolist():
        fs = ds["functional_similarity"].sel(retina=r, measure="centred")
        for m in models:
            gap = gap_closed_interval(
                fs.sel(model=m), 0.0, fs.sel(model="shared-columns"), axis="seed"
            )
            cells = []
            for o in outputs:
                g = gap.value.sel(output=o)
                if np.isfinite(g):
                    lo, hi = float(gap.low.sel(output=o)), float(gap.high.sel(output=o))
                    cells.append(f"{float(g):+.3f} [{lo:+.3f}, {hi:+.3f}]")
                else:
                    cells.append("-")
                    note = f"  - {r} {o}: {gap.reason.sel(output=o).item()}"
                    if note not in notes:
                        notes.append(note)
            lines.append(f"{r:<9}{m:<23}" + "".join(f"{c:>{_W}}" for c in cells))
    return lines + notes


def summary(ds: xr.Dataset) -> str:
    """Per retina and model: accuracy, class agreement and centred accuracy; functional
    similarity (centred and raw) per output; the fraction of the shared-columns ceiling; and
    weight similarity per layer. Means over seeds with 95 % t intervals clipped to each
    measure's range; the ceiling fraction with a paired-bootstrap interval."""
    outputs = ds["output"].values.tolist()
    layers = ds["layer"].values.tolist()
    n_seeds = ds.sizes["seed"]
    lines = [
        f"column similarity: {int(ds.attrs['n_stimuli'])} held-out digits centred on each of "
        f"{int(ds.attrs['n_columns'])} columns, models trained {int(ds.attrs['steps'])} steps "
        f"on single-digit canvases, {n_seeds} seed(s)",
        f"mean [{interval_description(n_seeds)}, clipped to the measure's range: similarities "
        "[-1, 1], accuracies and agreement [0, 1]]",
        "accuracy: single-digit test accuracy (image logits; chance 0.1); class_agree: P(two "
        "columns name the same class); col_accuracy: a column's own readout on the digit "
        "centred on it (chance 0.1):",
    ]
    names = ("accuracy", "class_agreement", "centred_accuracy")
    heads = ("accuracy", "class_agree", "col_accuracy")
    lines.append(f"{'retina':<9}{'model':<23}" + "".join(f"{h:>{_W}}" for h in heads))
    for r in ds["retina"].values.tolist():
        for m in ds["model"].values.tolist():
            sel = dict(retina=r, model=m)
            lines.append(
                f"{r:<9}{m:<23}" + "".join(f"{_ci(ds[n].sel(sel), n):>{_W}}" for n in names)
            )
    lines.append(
        "functional similarity, measure 'centred' (each column's mean response over stimuli "
        "removed):"
    )
    lines += _rows(ds, "functional_similarity", outputs, "output", measure="centred")
    if "shared-columns" in ds["model"].values.tolist():
        lines.append(
            "fraction of the shared-columns ceiling (centred functional similarity, "
            f"model / shared-columns of the seed means; {_GAP_CI}):"
        )
        lines += _ceiling_rows(ds, outputs)
    lines.append("functional similarity, measure 'cosine' (raw):")
    lines += _rows(ds, "functional_similarity", outputs, "output", measure="cosine")
    lines.append("weight similarity (mean pairwise cosine of the columns' weights) per layer:")
    models = ds["model"].values.tolist()
    lines.append(f"{'retina':<9}{'layer':<23}" + "".join(f"{m:>{_W}}" for m in models))
    for r in ds["retina"].values.tolist():
        for n in layers:
            w = ds["weight_similarity"].sel(retina=r, layer=n)
            lines.append(
                f"{r:<9}{n:<23}"
                + "".join(f"{_ci(w.sel(model=m), 'weight_similarity'):>{_W}}" for m in models)
            )
    return "\n".join(lines)


def figures(ds: xr.Dataset, out_dir: str | Path) -> list[Path]:
    """``column_similarity``: top row, functional similarity (centred) per output; bottom row,
    weight similarity per layer; a column per retina, a bar per model (mean over seeds, 95 % t
    CI clipped to [-1, 1]); 0 marks independent columns, 1 identical ones."""
    import matplotlib.pyplot as plt

    from analyses.figures import STYLE, new_figure, save_figure
    from analyses.interval_bars import error_bar_text, model_bars, set_ticks

    models = ds["model"].values.tolist()
    retinas = ds["retina"].values.tolist()
    panels = (
        ("functional_similarity", "output", {"measure": "centred"}, "functional similarity"),
        ("weight_similarity", "layer", {}, "weight similarity"),
    )
    with plt.rc_context(STYLE):  # the package style for every text drawn, not only the axes
        fig, axes = new_figure(2, len(retinas), width_in=3.6 * len(retinas), height_in=5.4)
        for row, (var, xdim, extra, ylabel) in enumerate(panels):
            for ri, r in enumerate(retinas):
                ax = axes[row, ri]
                vals = {
                    m: ds[var].sel(retina=r, model=m, **extra).transpose(xdim, "seed")
                    for m in models
                }
                model_bars(ax, vals, bounds=BOUNDS[var])
                ax.axhline(0.0, color="0.0", linewidth=0.6, label="independent columns (0)")
                set_ticks(ax, ds[xdim].values.tolist(), rotation=30)
                ax.set_ylabel(ylabel)
                ax.set_ylim(min(-0.1, ax.get_ylim()[0]), 1.05)
                ax.set_title(f"{r} retina", fontsize=8)
        handles, labels = axes[0, 0].get_legend_handles_labels()
        order = [labels.index(m) for m in models] + [labels.index("independent columns (0)")]
        fig.legend(
            [handles[i] for i in order],
            [labels[i] for i in order],
            loc="outside lower center",
            ncols=len(order),
            fontsize=6,
            frameon=False,
        )
        fig.suptitle(error_bar_text(ds.sizes["seed"], COSINE_BOUNDS), fontsize=7)
        return save_figure(fig, out_dir, "column_similarity")
