"""The column models of the canvas experiments, and what they share.

The ``islands`` and ``column-similarity`` experiments train the flagship's column models
(:mod:`analyses.baselines`, same :class:`~analyses.baselines.BaselineConfig` and budget) on
canvases holding one digit, then probe them on other canvases. This module holds what both do
the same way:

- :func:`check_canvas_config`: validation of the fields their configs share;
- :func:`single_digit_canvases`: the training and accuracy canvases of a seed;
- :func:`retina_and_inputs`, :func:`column_inputs`: the seed's retina and its responses
  (without the CNN's rendering, which the column models never read);
- :func:`column_positions_px`: where each column sits on the canvas, in pixels;
- :func:`column_models`: every requested model, trained (or ``untrained``), with its accuracy.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from analyses.baselines import BaselineConfig
from neurosim.config import check_choice, check_int, check_range, check_seed

__all__ = [
    "check_canvas_config",
    "single_digit_canvases",
    "retina_and_inputs",
    "column_inputs",
    "column_positions_px",
    "column_models",
]


def _check_labels(name: str, values: Sequence[str], allowed: Sequence[str]) -> None:
    if not isinstance(values, tuple) or len(values) == 0:
        raise ValueError(f"{name} must be a non-empty list of {list(allowed)}; got {values!r}")
    for i, v in enumerate(values):
        check_choice(f"{name}[{i}]", v, allowed)
    if len(set(values)) != len(values):
        raise ValueError(f"{name} must not repeat a label; got {list(values)}")


def check_canvas_config(config: Any, models: Sequence[str], min_canvas_px: int) -> None:
    """The fields the canvas experiments (islands and column-similarity) share: seeds, model
    and retina labels, canvas and digit sizes, the retina, the data sizes and the baseline.

    Args:
        config: an experiment config with fields ``seed``, ``n_seeds``, ``models``,
            ``retinas``, ``digit_px``, ``canvas_px``, ``baseline``, ``n_cells``,
            ``pixels_per_deg``, ``n_train`` and ``n_accuracy``.
        models: the model labels the experiment can score.
        min_canvas_px: the smallest canvas side the experiment allows, px.

    Raises:
        ValueError: naming the bad field and its allowed range.
    """
    check_seed("seed", config.seed)
    check_int("n_seeds", config.n_seeds, 1, 100)
    _check_labels("models", config.models, models)
    _check_labels("retinas", config.retinas, ("uniform", "foveated"))
    check_int("digit_px", config.digit_px, 1, 256)
    check_int("canvas_px", config.canvas_px, min_canvas_px, 1024)
    if not isinstance(config.baseline, BaselineConfig):
        raise ValueError(f"baseline must be a BaselineConfig; got {config.baseline!r}")
    # at most an ON and an OFF cell per pixel of the canvas
    check_int("n_cells", config.n_cells, 2 * config.baseline.k_cells, 2 * config.canvas_px**2)
    check_range("pixels_per_deg", config.pixels_per_deg, 0.0, 1e3, lo_inclusive=False)
    check_int("n_train", config.n_train, 1, 1258)
    check_int("n_accuracy", config.n_accuracy, 1, 539)


def column_inputs(retina, images: np.ndarray, labels: np.ndarray, *, scale=None):
    """:class:`analyses.baselines.RetinaInputs` for the column models only.

    The same responses as :func:`analyses.baselines.retina_inputs` (divided by the training
    pool's standard deviation), but without ``retina.render`` (the CNN's input, about 10 s per
    retina for 1258 canvases on the development machine): ``images`` is an empty
    ``[N, 0]`` tensor, which the column kinds never read.

    Args:
        retina: a :class:`retina.Retina`.
        images: ``[N, H, W]`` canvases in [0, 1].
        labels: ``[N]`` class labels (or any ``[N]`` integers).
        scale: the training pool's ``RetinaInputs.scale`` (None: from these images).
    """
    import torch

    from analyses.baselines import RetinaInputs

    resp = np.asarray(retina(np.asarray(images, dtype=np.float32)), dtype=np.float64)
    s = (float(resp.std()) or 1.0) if scale is None else float(scale)
    if not s > 0:
        raise ValueError(f"scale must be > 0; got {scale!r}")
    n = resp.shape[0]
    return RetinaInputs(
        responses=torch.as_tensor(resp / s, dtype=torch.float32),
        images=torch.zeros(n, 0),
        labels=torch.as_tensor(np.asarray(labels), dtype=torch.long),
        scale=s,
        image_scale=1.0,
    )


def single_digit_canvases(split, config, seed: int):
    """Single-digit training and accuracy canvases of one seed: ``(train, accuracy)``.

    Shared by ``islands`` and ``column-similarity`` (their configs both have ``canvas_px``,
    ``digit_px``, ``n_train`` and ``n_accuracy``); accuracy canvases use ``seed + 10_000``.
    """
    from analyses.tasks import make_canvas_dataset

    common = {"canvas_px": config.canvas_px, "digit_px": config.digit_px, "n_digits": 1}
    train = make_canvas_dataset(
        split.x_train, split.y_train, n_images=config.n_train, seed=seed, **common
    )
    accuracy = make_canvas_dataset(
        split.x_test, split.y_test, n_images=config.n_accuracy, seed=seed + 10_000, **common
    )
    return train, accuracy


def retina_and_inputs(config, retina_kind: str, seed: int, train_cv, acc_cv):
    """The seed's retina and the column inputs of both canvas sets: ``(retina, train, acc)``.

    The accuracy set is scaled like the training set.
    """
    from analyses.baselines import build_retina

    retina = build_retina(
        retina_kind,
        n_cells=config.n_cells,
        canvas_px=config.canvas_px,
        pixels_per_deg=config.pixels_per_deg,
        seed=seed,
    )
    train = column_inputs(retina, train_cv.images, train_cv.labels)
    acc_set = column_inputs(retina, acc_cv.images, acc_cv.labels, scale=train.scale)
    return retina, train, acc_set


def column_positions_px(retina, positions_deg) -> np.ndarray:
    """Column positions ``[C, 2]`` ``(x_deg, y_deg)`` -> canvas pixels ``[C, 2]`` ``(row, col)``.

    The retina's own mapping, :meth:`retina.Retina.deg_to_px` (+y is up, image rows grow
    downwards); ``positions_deg`` may be a torch tensor (e.g. ``model.sheet.positions_deg``).
    """
    if hasattr(positions_deg, "detach"):
        positions_deg = positions_deg.detach().cpu().numpy()
    pos = np.asarray(positions_deg, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 2:
        raise ValueError(f"positions_deg must be [C, 2] (x_deg, y_deg); got shape {pos.shape}")
    return retina.deg_to_px(pos)


def column_models(
    models: Sequence[str],
    retina,
    train,
    test,
    config: BaselineConfig,
    *,
    seed: int,
    device="cpu",
) -> Iterator[tuple[str, object, float]]:
    """``(label, ColumnClassifier in eval mode, test accuracy)`` for every label of ``models``.

    ``untrained``: :func:`analyses.baselines.build_model` of ``lc-backprop`` (identical to the
    initial ``codistill`` model of the same seed), scored without training. The other labels:
    :func:`analyses.baselines.train_and_evaluate` with ``config`` and ``seed``.
    """
    from analyses.baselines import build_model, evaluate, train_and_evaluate

    for label in models:
        if label == "untrained":
            model = build_model("lc-backprop", retina, config, seed=seed, device=device)
            model.eval()
            acc = evaluate(
                model, "lc-backprop", test, batch_size=config.eval_batch_size, device=device
            )
        else:
            trained = train_and_evaluate(
                label, retina, train, test, config, seed=seed, device=device, quiet=True
            )
            model, acc = trained.model, trained.accuracy
            model.eval()
        yield label, model, float(acc)
