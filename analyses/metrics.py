"""Metrics: accuracy with confidence intervals, islands of agreement, column similarity, collapse.

Every function takes numpy arrays or torch tensors (converted with ``.detach().cpu()``) and
computes in float64. Shapes below use ``B`` images, ``C`` columns, ``D`` embedding dims,
``S`` stimuli, ``K`` digits per canvas.

Formulas and sources:

- accuracy: ``mean(pred == label)``, ``pred = argmax_k logits[..., k]`` when given logits.
- intervals over seeds (:mod:`analyses.intervals`, re-exported here): the Student-t interval
  of a mean clipped to the measure's range (:func:`confidence_interval`), and the gap closed
  with a paired-bootstrap interval (:func:`gap_closed_interval`).
- adjusted Rand index (Hubert & Arabie 1985, *J. Classification* 2:193; as in
  ``sklearn.metrics.adjusted_rand_score``): ``(RI - E[RI]) / (max RI - E[RI])``; 1 for identical
  partitions, about 0 for independent ones.
- cosine similarity ``cos(u, v) = <u, v> / (|u| |v|)`` (0 when either vector is zero).
- mean pairwise cosine of ``C`` vectors without a ``C x C`` loop:
  ``2/(C(C-1)) sum_{i<j} <û_i, û_j> = (|sum_i û_i|^2 - sum_i |û_i|^2) / (C (C - 1))``
  with ``û = u / |u|`` (the Gram-sum identity; exact, O(C F) time and memory).
- Pearson correlation of two vectors = cosine of the vectors minus their means.
- embedding variance (a collapse measure, cf. the variance term of VICReg, Bardes et al. 2022):
  ``mean over non-batch entries of (1/B) sum_b (e_b - mean_b e_b)^2``; 0 when every image gets
  the same embedding.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from analyses.intervals import (
    ACCURACY_BOUNDS,
    ARI_BOUNDS,
    COSINE_BOUNDS,
    ConfidenceInterval,
    GapClosed,
    confidence_interval,
    gap_closed_interval,
    interval_description,
    mean_ci_text,
)

__all__ = [
    "accuracy",
    "ACCURACY_BOUNDS",
    "ARI_BOUNDS",
    "COSINE_BOUNDS",
    "ConfidenceInterval",
    "confidence_interval",
    "interval_description",
    "mean_ci_text",
    "GapClosed",
    "gap_closed_interval",
    "mask_labels_at",
    "batched_kmeans",
    "islands_ari",
    "within_between_cosine",
    "matched_cosine_gap",
    "mean_pairwise_cosine",
    "functional_similarity",
    "weight_similarity",
    "embedding_variance",
]

_EPS = 1e-12


def _np(x: Any, name: str = "array") -> np.ndarray:
    """numpy float64 view of an array-like or torch tensor."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a numeric array; got {type(x).__name__}") from None


def _np_int(x: Any, name: str) -> np.ndarray:
    """numpy int64 array of integer-valued input (floats that are whole numbers accepted)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        return arr.astype(np.int64)
    raise ValueError(f"{name} must hold integers; got dtype {arr.dtype}")


# --------------------------------------------------------------------------------------------
# accuracy


def accuracy(logits_or_pred: Any, labels: Any) -> float:
    """Fraction of correct predictions.

    Args:
        logits_or_pred: ``[..., N, n_classes]`` scores (argmax over the last axis is the
            prediction) or ``[..., N]`` predicted class indices (same shape as ``labels``).
        labels: ``[..., N]`` integer class labels.

    Returns:
        ``mean(pred == labels)`` over all entries, in [0, 1].
    """
    y = _np_int(labels, "labels")
    if hasattr(logits_or_pred, "detach"):
        logits_or_pred = logits_or_pred.detach().cpu().numpy()
    p = np.asarray(logits_or_pred)
    if p.ndim == y.ndim + 1 and p.shape[:-1] == y.shape:
        pred = np.argmax(p, axis=-1)
    elif p.shape == y.shape:
        pred = _np_int(p, "logits_or_pred")
    else:
        raise ValueError(
            f"logits_or_pred must have shape {y.shape} (predictions) or {y.shape} + (n_classes,) "
            f"(logits) to match labels; got {p.shape}"
        )
    if y.size == 0:
        raise ValueError("labels must not be empty")
    return float(np.mean(pred == y))


# --------------------------------------------------------------------------------------------
# islands of agreement


def mask_labels_at(masks: Any, column_px: Any) -> np.ndarray:
    """Which digit covers each column's position: 0 = background, k + 1 = digit k.

    The nearest pixel of each position is looked up (``round(row), round(col)``); positions
    outside the canvas are background. Where masks overlap the lowest digit index wins.

    Args:
        masks: ``[K, H, W]`` or ``[B, K, H, W]`` bool (``CanvasDataset.masks``).
        column_px: ``[C, 2]`` column positions ``(row, col)`` in canvas pixels (array-index
            coordinates, as ``CanvasDataset.centres_px``), or ``[B, C, 2]`` per image.

    Returns:
        ``[C]`` or ``[B, C]`` int64 labels in 0..K.
    """
    if hasattr(masks, "detach"):
        masks = masks.detach().cpu().numpy()
    m = np.asarray(masks).astype(bool)
    single = m.ndim == 3
    if single:
        m = m[None]
    if m.ndim != 4:
        raise ValueError(f"masks must be [K, H, W] or [B, K, H, W]; got shape {m.shape}")
    pos = _np(column_px, "column_px")
    if pos.shape[-1] != 2 or pos.ndim not in (2, 3):
        raise ValueError(f"column_px must be [C, 2] or [B, C, 2]; got shape {pos.shape}")
    b, k, h, w = m.shape
    if pos.ndim == 2:
        pos = np.broadcast_to(pos, (b, *pos.shape))
    elif pos.shape[0] != b:
        raise ValueError(f"column_px has {pos.shape[0]} images but masks {b}")
    idx = np.floor(pos + 0.5).astype(np.int64)
    inside = (idx[..., 0] >= 0) & (idx[..., 0] < h) & (idx[..., 1] >= 0) & (idx[..., 1] < w)
    r = idx[..., 0].clip(0, h - 1)
    c = idx[..., 1].clip(0, w - 1)
    hit = m[np.arange(b)[:, None], :, r, c]  # [B, C, K]
    labels = np.where(hit.any(axis=-1) & inside, np.argmax(hit, axis=-1) + 1, 0)
    return labels[0] if single else labels


def batched_kmeans(
    x: Any,
    n_clusters: int,
    *,
    valid: Any = None,
    n_init: int = 4,
    max_iter: int = 100,
    seed: int = 0,
) -> np.ndarray:
    """k-means of many small point sets (one set per image) with ``sklearn.cluster.KMeans``.

    Per image: Lloyd's algorithm (Lloyd 1982) from k-means++ seeds (Arthur & Vassilvitskii
    2007), ``n_init`` restarts, the one of lowest inertia kept; every image is fitted with
    ``random_state=seed``, so its clustering depends on its own points and the seed only, not
    on the rest of the batch. The fits run under ``threadpoolctl.threadpool_limits(1)``: on a
    shared machine BLAS/OpenMP threads spin-wait on these tiny problems (what once made a fit
    look like it took seconds). An image with fewer valid points than ``n_clusters`` is
    clustered into as many clusters as it has points; identical points (a collapsed state)
    end in one cluster (sklearn's warning that it found fewer distinct clusters is expected
    then and silenced).

    Args:
        x: ``[B, N, D]`` points.
        n_clusters: k >= 1.
        valid: ``[B, N]`` bool, points that take part (others get label -1); default all.
        n_init: restarts >= 1.
        max_iter: Lloyd iterations at most (>= 1).
        seed: ``random_state`` of every fit, an integer in [0, 2**31 - 1].

    Returns:
        ``[B, N]`` int64 cluster labels in 0..k-1 (-1 for invalid points).
    """
    import warnings

    import sklearn
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    from neurosim.config import check_int, check_seed

    pts = _np(x, "x")
    if pts.ndim != 3:
        raise ValueError(f"x must be [B, N, D]; got shape {pts.shape}")
    b, n, _ = pts.shape
    k = check_int("n_clusters", n_clusters, 1)
    check_int("n_init", n_init, 1)
    check_int("max_iter", max_iter, 1)
    check_seed("seed", seed)
    ok = np.ones((b, n), bool) if valid is None else np.asarray(valid, bool)
    if ok.shape != (b, n):
        raise ValueError(f"valid must have shape {(b, n)}; got {ok.shape}")
    labels = np.full((b, n), -1, np.int64)
    with (
        threadpool_limits(1),
        sklearn.config_context(skip_parameter_validation=True),
        warnings.catch_warnings(),
    ):
        warnings.filterwarnings("ignore", "Number of distinct clusters", ConvergenceWarning)
        for i in range(b):
            m = int(ok[i].sum())
            if m == 0:
                continue
            fit = KMeans(min(k, m), n_init=n_init, max_iter=max_iter, random_state=seed)
            labels[i, ok[i]] = fit.fit(pts[i, ok[i]]).labels_
    return labels


def islands_ari(
    embeddings: Any,
    column_px: Any,
    masks: Any,
    *,
    n_clusters: int | None = None,
    include_background: bool = True,
    normalize: bool = True,
    n_init: int = 4,
    seed: int = 0,
) -> float | np.ndarray:
    """Adjusted Rand index between a clustering of the columns' embeddings and the digit masks.

    Per image: the columns' settled embeddings of one level are (optionally) L2-normalised,
    clustered by k-means (:func:`batched_kmeans`: ``sklearn.cluster.KMeans``, seeded), and
    the cluster labels compared with the ground truth "which digit (or background) covers this
    column" (:func:`mask_labels_at`) by ``sklearn.metrics.adjusted_rand_score``. ARI = 1 when the
    islands are exactly the objects, about 0 for a clustering unrelated to them (e.g. collapsed
    embeddings, which k-means puts in one cluster).

    Args:
        embeddings: ``[C, D]`` or ``[B, C, D]`` embeddings of one level.
        column_px: ``[C, 2]`` (or ``[B, C, 2]``) column positions ``(row, col)`` in canvas pixels.
        masks: ``[K, H, W]`` (or ``[B, K, H, W]``) bool digit masks.
        n_clusters: k of k-means; default K + 1 (digits and background), or K when
            ``include_background`` is False.
        include_background: score all columns (True) or only those on a digit (False; then
            fewer than two such columns gives NaN).
        normalize: L2-normalise embeddings before clustering (islands are agreements of
            direction, as in the dot-product attention that forms them).
        n_init: k-means restarts.
        seed: k-means seed.

    Returns:
        a float for ``[C, D]`` input, else ``[B]`` float64.
    """
    from sklearn.metrics import adjusted_rand_score

    emb = _np(embeddings, "embeddings")
    single = emb.ndim == 2
    if single:
        emb = emb[None]
    if emb.ndim != 3:
        raise ValueError(f"embeddings must be [C, D] or [B, C, D]; got shape {emb.shape}")
    if hasattr(masks, "detach"):
        masks = masks.detach().cpu().numpy()
    m = np.asarray(masks)
    if single and m.ndim == 3:
        m = m[None]
    if m.ndim != 4 or m.shape[0] != emb.shape[0]:
        raise ValueError(
            f"masks must be [B, K, H, W] with B = {emb.shape[0]} (or [K, H, W] for one image); "
            f"got shape {m.shape}"
        )
    pos = _np(column_px, "column_px")
    if single and pos.ndim == 2:
        pos = pos[None]
    truth = mask_labels_at(m, pos)  # [B, C]
    if truth.shape != emb.shape[:2]:
        raise ValueError(
            f"column_px gives {truth.shape[1]} columns but embeddings have {emb.shape[1]}"
        )
    k_digits = m.shape[1]
    if n_clusters is None:
        n_clusters = k_digits + 1 if include_background else k_digits
    from neurosim.config import check_int

    n_clusters = check_int("n_clusters", n_clusters, 1)
    if normalize:
        emb = _unit(emb)
    keep = np.ones(truth.shape, bool) if include_background else truth > 0
    k = int(min(n_clusters, emb.shape[1]))
    pred = batched_kmeans(emb, k, valid=keep, n_init=n_init, seed=seed)
    out = np.full(emb.shape[0], np.nan)
    for i in range(emb.shape[0]):  # loop over images for the score only (cheap)
        if keep[i].sum() >= 2:
            out[i] = adjusted_rand_score(truth[i, keep[i]], pred[i, keep[i]])
    return float(out[0]) if single else out


def matched_cosine_gap(
    embeddings: np.ndarray, labels: np.ndarray, column_px: np.ndarray, *, bin_px: float
) -> float:
    """Within- minus between-object cosine of column pairs *at matched distances*.

    The two digits of a canvas lie at different places, so any embedding that varies smoothly
    with position (a map of places, not of objects) has a higher cosine within a digit than
    between digits. This control compares only pairs at similar distances: pairs of columns on
    a digit (label > 0) are binned by their distance in canvas pixels (bins of ``bin_px``); in
    every (image, bin) holding both same-digit and different-digit pairs the gap ``mean cos
    (same) - mean cos (different)`` is taken, and the gaps are averaged with weights ``min(n
    same, n different)``. About 0 for a map of places; > 0 when columns agree by object.

    Args:
        embeddings: ``[B, C, D]``.
        labels: ``[B, C]`` (0 = background, ignored; k > 0 = digit k).
        column_px: ``[C, 2]`` positions in canvas pixels.
        bin_px: distance bin width (> 0).

    Returns:
        the weighted mean gap (NaN if no bin holds both kinds of pair).
    """
    e = np.asarray(embeddings, dtype=np.float64)
    lab = np.asarray(labels)
    u = e / np.maximum(np.linalg.norm(e, axis=-1, keepdims=True), 1e-12)
    gram = np.einsum("bcd,bed->bce", u, u)  # [B, C, C]
    pos = np.asarray(column_px, dtype=np.float64)
    dist = np.linalg.norm(pos[:, None] - pos[None], axis=-1)  # [C, C]
    n_bins = int(np.floor(dist.max() / bin_px)) + 1
    bins = np.floor(dist / bin_px).astype(np.int64)
    b, c = lab.shape
    upper = np.triu(np.ones((c, c), bool), k=1)
    on = lab > 0
    pair = on[:, :, None] & on[:, None, :] & upper[None]
    same = lab[:, :, None] == lab[:, None, :]
    key = np.arange(b)[:, None, None] * n_bins + bins[None]  # [B, C, C]
    size = b * n_bins
    sums, counts = [], []
    for sel in (pair & same, pair & ~same):
        sums.append(np.bincount(key[sel], weights=gram[sel], minlength=size))
        counts.append(np.bincount(key[sel], minlength=size))
    ok = (counts[0] > 0) & (counts[1] > 0)
    if not ok.any():
        return float("nan")
    gap = sums[0][ok] / counts[0][ok] - sums[1][ok] / counts[1][ok]
    weight = np.minimum(counts[0][ok], counts[1][ok])
    return float(np.sum(gap * weight) / np.sum(weight))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), _EPS)


def within_between_cosine(
    embeddings: Any, labels: Any, *, ignore_label: int | None = None
) -> tuple[float | np.ndarray, float | np.ndarray]:
    """Mean cosine similarity of column pairs on the same object vs on different objects.

    ``within = mean_{i != j, l_i = l_j} cos(e_i, e_j)``, ``between = mean_{l_i != l_j} cos(e_i,
    e_j)``, per image, over ordered pairs of distinct columns. Islands of agreement show as
    within >> between. NaN where an image has no pair of that kind. Vectorised through the
    ``[B, C, C]`` cosine matrix (memory O(B C^2): pass fewer images per call for large C).

    Args:
        embeddings: ``[C, D]`` or ``[B, C, D]``.
        labels: ``[C]`` or ``[B, C]`` integer object labels (e.g. :func:`mask_labels_at`).
        ignore_label: columns with this label (e.g. 0 = background) are left out of all pairs.

    Returns:
        ``(within, between)``: floats for ``[C, D]`` input, else ``[B]`` arrays each.
    """
    emb = _np(embeddings, "embeddings")
    lab = _np_int(labels, "labels")
    single = emb.ndim == 2
    if single:
        emb, lab = emb[None], lab[None]
    if emb.ndim != 3 or lab.shape != emb.shape[:2]:
        raise ValueError(
            f"embeddings [B, C, D] and labels [B, C] must match; got {emb.shape} and {lab.shape}"
        )
    u = _unit(emb)
    gram = np.einsum("bcd,bed->bce", u, u)
    valid = np.ones(lab.shape, bool) if ignore_label is None else lab != ignore_label
    pair = valid[:, :, None] & valid[:, None, :] & ~np.eye(lab.shape[1], dtype=bool)[None]
    same = lab[:, :, None] == lab[:, None, :]
    results = []
    for sel in (pair & same, pair & ~same):
        count = sel.sum(axis=(1, 2))
        total = np.where(sel, gram, 0.0).sum(axis=(1, 2))
        results.append(np.where(count > 0, total / np.maximum(count, 1), np.nan))
    if single:
        return float(results[0][0]), float(results[1][0])
    return results[0], results[1]


# --------------------------------------------------------------------------------------------
# column similarity


def mean_pairwise_cosine(vectors: Any, *, centre: bool = False, pairwise: bool = False) -> Any:
    """Mean cosine similarity over all pairs of distinct rows, by the Gram-sum identity.

    ``2 / (C (C - 1)) * sum_{i < j} cos(v_i, v_j) = (|sum_i û_i|^2 - sum_i |û_i|^2) / (C (C - 1))``
    with ``û_i = v_i / |v_i|`` (zero rows count as similarity 0). With ``centre=True`` each row
    has its mean subtracted first, giving the mean pairwise Pearson correlation.

    Args:
        vectors: ``[..., C, F]``, C >= 2.
        centre: subtract each row's mean (correlation instead of cosine).
        pairwise: return the full ``[..., C, C]`` cosine matrix instead of the mean
            (O(C^2) memory; for plots).

    Returns:
        ``[...]`` mean (a float for 2-d input), or the ``[..., C, C]`` matrix when ``pairwise``.
    """
    v = _np(vectors, "vectors")
    if v.ndim < 2 or v.shape[-2] < 2:
        raise ValueError(f"vectors must be [..., C, F] with C >= 2; got shape {v.shape}")
    if centre:
        v = v - v.mean(axis=-1, keepdims=True)
    u = _unit(v)
    if pairwise:
        return np.einsum("...cf,...ef->...ce", u, u)
    c = v.shape[-2]
    total = np.sum(u.sum(axis=-2) ** 2, axis=-1)
    diag = np.sum(u**2, axis=(-2, -1))
    out = (total - diag) / (c * (c - 1))
    return float(out) if out.ndim == 0 else out


_MEASURES = ("cosine", "correlation")


def functional_similarity(outputs: Any, *, measure: str = "cosine") -> Any:
    """How alike the columns are as functions: similarity of their responses to the same stimuli.

    Each column's responses to the S stimuli (the same visual stimulus presented at each
    column's own place) are flattened to one vector ``r_c`` of length ``S * D``; the result is
    the mean over column pairs of ``cos(r_i, r_j)`` (``measure="cosine"``) or of the Pearson
    correlation (``"correlation"``), via :func:`mean_pairwise_cosine` (no loop over pairs).
    1 for identical columns; about 0 for independent random ones (cosine of zero-mean outputs).

    Args:
        outputs: ``[C, S, D]`` (or ``[..., C, S, D]``) responses of C columns to S stimuli.
        measure: ``"cosine"`` or ``"correlation"``.

    Returns:
        a float (or ``[...]``) in [-1, 1].
    """
    if measure not in _MEASURES:
        raise ValueError(f"measure must be one of {list(_MEASURES)}; got {measure!r}")
    out = _np(outputs, "outputs")
    if out.ndim < 3:
        raise ValueError(f"outputs must be [C, S, D]; got shape {out.shape}")
    flat = out.reshape(*out.shape[:-2], out.shape[-2] * out.shape[-1])
    return mean_pairwise_cosine(flat, centre=measure == "correlation")


def weight_similarity(weight: Any, *, measure: str = "cosine") -> float:
    """How alike the columns are as weights: mean pairwise cosine of flattened per-column weights.

    ``weight[c]`` (``[d_in, d_out]``) is flattened to ``w_c``; the result is the mean over
    column pairs of ``cos(w_i, w_j)`` (or Pearson correlation), computed by the Gram-sum
    identity (:func:`mean_pairwise_cosine`). 1 when the columns are tied (a weight-shared
    layer); about 0 for independent random initialisations. Note: hidden units of a column
    MLP may be permuted between columns without changing the function, so weight similarity
    beyond the first layer can be low for functionally identical columns; compare with
    :func:`functional_similarity`.

    Args:
        weight: ``[C, d_in, d_out]`` unshared weights (``ColumnLinear`` layout), or ``[C, F]``.
        measure: ``"cosine"`` or ``"correlation"``.

    Returns:
        float in [-1, 1].
    """
    if measure not in _MEASURES:
        raise ValueError(f"measure must be one of {list(_MEASURES)}; got {measure!r}")
    w = _np(weight, "weight")
    if w.ndim < 2:
        raise ValueError(f"weight must be [C, d_in, d_out] or [C, F]; got shape {w.shape}")
    return float(mean_pairwise_cosine(w.reshape(w.shape[0], -1), centre=measure == "correlation"))


# --------------------------------------------------------------------------------------------
# collapse


def embedding_variance(
    embeddings: Any, *, keep_axis: int | None = None, normalize: bool = False
) -> Any:
    """Variance of embeddings across images: a collapse measure (0 = all images alike).

    ``mean over entries of (1/B) sum_b (e_b - mean_b e_b)^2``, the population variance along
    the batch axis 0, averaged over every other axis except ``keep_axis``.

    Args:
        embeddings: ``[B, ...]``, e.g. the state ``[B, C, L, D]``; B >= 2.
        keep_axis: an axis of ``embeddings`` (not 0) to keep, e.g. 2 for per-level values.
        normalize: L2-normalise along the last axis first (so a shrinking scale is not
            mistaken for collapse).

    Returns:
        a float, or ``[embeddings.shape[keep_axis]]`` when ``keep_axis`` is given.
    """
    e = _np(embeddings, "embeddings")
    if e.ndim < 1 or e.shape[0] < 2:
        raise ValueError(f"embeddings must be [B, ...] with B >= 2; got shape {e.shape}")
    if normalize:
        if e.ndim < 2:
            raise ValueError("normalize=True needs embeddings with a feature axis")
        e = _unit(e)
    var = e.var(axis=0)  # [...]
    if keep_axis is None:
        return float(var.mean())
    from neurosim.config import check_int

    keep_axis = check_int("keep_axis", keep_axis)
    ax = keep_axis % e.ndim if -e.ndim <= keep_axis < e.ndim else -1
    if ax < 1:
        raise ValueError(
            f"keep_axis must be in [1, {e.ndim - 1}] (not the batch axis); got {keep_axis}"
        )
    var = np.moveaxis(var, ax - 1, 0)
    return var.reshape(var.shape[0], -1).mean(axis=1)
