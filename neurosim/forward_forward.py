"""Forward-Forward on the column sheet: a second local learning rule beside co-distillation.

The Forward-Forward talk (Hinton, 00:07-00:29; Hinton 2022, arXiv:2212.13345). Every layer
is trained on its own to tell positive data (a real image with its correct label) from negative
data (the same image with a wrong label), and nothing is propagated backwards:

goodness (00:08:11)
    ``G = sum_j y_j**2``, the sum of the squared activities of a layer — here of one level of one
    column, ``[..., dim[l]] -> [...]`` (:func:`goodness`).
probability of positive (00:08:39)
    ``p(positive) = sigma(s * (G - theta))`` with ``s = +1`` when positive data should have *high*
    goodness and ``s = -1`` for the predictive-coding variant in which positive data should have
    *low* activity (00:25:09: "it works better"; ``positive_goodness="low"``). The threshold is
    ``theta_l = threshold * dim[l]`` (``threshold`` per unit, so levels of other sizes compare).
    The loss of a layer is the logistic loss ``softplus(-s(G+ - theta)) + softplus(s(G- - theta))``
    (:func:`ff_loss`).
length normalisation (00:09:23)
    a layer's input is divided by its length (:func:`length_normalise`, the RMS, as
    ``ModelConfig(normalize="input")`` does for every bottom-up and top-down net of the sheet), so
    the next layer cannot read the goodness of the one below off its length.
labels as input (00:11:25, 00:24:38)
    a one-of-N code (``label_value`` for the label, 0 elsewhere; the talk uses 5): in the
    recurrent net the top level is clamped to it (``Model.settle(clamp={top: code})``), so the top
    level's ``dim`` must be at least the number of classes (the code is zero-padded). The neutral
    label (every class ``label_value / K``, 00:12:23) is clamped when the model is asked what it
    thinks: the softmax readout.
hard negatives (00:14:05, 00:28:04)
    a linear softmax classifier of the hidden activities (the sheet's per-column readout,
    trained on detached features under the neutral label, so it never trains the sheet) proposes
    the wrong labels: a negative label is drawn from its softmax over the wrong classes (never
    the true one; :func:`negative_labels`). ``negatives="uniform"`` draws them uniformly.
recurrent settling, local in time (00:24:47, 00:25:57)
    the sheet settles for ``dynamics.n_steps`` steps (8 in the talk) with ``detach_inputs=True``,
    and the loss is collected from the first step on: each step's state depends on parameters
    only through the column's own nets at that step.
classification (00:26:27, 00:13:26)
    run the sheet with every label clamped and pick the one whose total goodness (summed over the
    hidden levels and columns, averaged over the steps) is most positive
    (:func:`goodness_scores`, :func:`classify`); with ``shortlist = k`` the softmax readout
    proposes its top ``k`` labels and goodness decides among them.

Locality: the FF loss of column ``c`` at level ``l`` reaches only the nets that produce level ``l``
of column ``c`` — the encoder (``l = 0``) or the bottom-up net into ``l``, and the top-down net
into ``l`` (tested per column and level). The readout's term reaches only the column's readout.

:class:`ForwardForward` has the interface of :class:`neurosim.objectives.Objective` (``settle``,
``column_terms``, ``terms``, ``__call__`` = the :class:`~neurosim.train.Trainer`'s loss function)
and may carry a *companion* :class:`~neurosim.objectives.ObjectiveConfig` whose terms (consensus
and neighbour co-distillation, contrastive, fill-in; ``label="none"``) are computed on the
neutral-label settling and added: ``ff+codistill`` of :mod:`analyses.baselines`.

Where this deviates from the talk: the talk's layers are ReLU units; a level of the sheet is the
rate-dynamics state, a convex combination of its nets' (linear) outputs, the lateral average and
its previous value, so its "activities" may be negative (goodness is still their sum of squares).
The neutral-label settling that feeds the readout and proposes hard negatives is one more
settling per step; the talk does not say how the recurrent net's softmax was fed. The sheet
settles for its dynamics' ``n_steps`` (12 by default), not the talk's 8; the learning rate decays
to zero on a cosine schedule (the talk says only that it decays to zero). Measured: on flat digits
the rule comes close to backprop, on the column sheet it stays at chance
(docs/measurements/forward_forward/README.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F

from neurosim.config import Config, check_choice, check_int, check_range
from neurosim.objectives import (
    _RAMPED,
    IGNORE_LABEL,
    Objective,
    ObjectiveConfig,
    _label_terms,
    check_run,
)
from neurosim.readout import image_logits

__all__ = [
    "ForwardForwardConfig",
    "ForwardForward",
    "FFSettled",
    "goodness",
    "length_normalise",
    "positive_logit",
    "ff_loss",
    "label_code",
    "neutral_code",
    "negative_labels",
    "goodness_scores",
    "classify",
    "FF_TERMS",
]

#: the terms of the rule itself (a companion objective adds its own)
FF_TERMS = ("ff", "readout")
#: largest short list
MAX_SHORTLIST = 10_000
_SEED_MIX = 1_000_003
_NEGATIVE_SEED = 424_242


@dataclasses.dataclass(frozen=True, kw_only=True)
class ForwardForwardConfig(Config):
    """The Forward-Forward rule's settings (see the module doc).

    Attributes:
        positive_goodness: ``"high"`` (positive data should have a large sum of squares,
            00:08:11) or ``"low"`` (small, the predictive-coding variant, 00:25:09).
        threshold: ``theta`` per unit: level ``l`` is positive when its goodness exceeds
            ``threshold * dim[l]`` (``"high"``), in [0, 1e6].
        label_value: the active entry of the one-of-N label code (the talk uses 5; 00:11:33), in
            (0, 1e3]. The sheet's nets read the code length-normalised, so this only matters for
            nets that read it raw.
        negatives: ``"hard"`` (wrong labels drawn from the softmax readout's predictions,
            00:14:05) or ``"uniform"`` (any wrong label alike).
        w_ff: weight of the FF term (>= 0).
        w_readout: weight of the softmax readout's cross-entropy (>= 0); it trains the readout
            only (its features are detached).
        readout_label: the readout's label term: ``"image"`` (the image's logits, the mean of
            the columns', with the error broadcast to every column as in
            :mod:`neurosim.objectives`) or ``"column"`` (each column's own cross-entropy).
        shortlist: classification: 0 runs every label; ``k >= 1`` runs only the readout's top
            ``k`` labels (00:13:26), in [0, 10000] (capped at the number of classes).
    """

    positive_goodness: Literal["high", "low"] = "high"
    threshold: float = 1.0
    label_value: float = 5.0
    negatives: Literal["hard", "uniform"] = "hard"
    w_ff: float = 1.0
    w_readout: float = 1.0
    readout_label: Literal["image", "column"] = "image"
    shortlist: int = 0

    def __post_init__(self) -> None:
        check_choice("positive_goodness", self.positive_goodness, ("high", "low"))
        check_range("threshold", self.threshold, 0.0, 1e6)
        check_range("label_value", self.label_value, 0.0, 1e3, lo_inclusive=False)
        check_choice("negatives", self.negatives, ("hard", "uniform"))
        check_range("w_ff", self.w_ff, 0.0, 1e6)
        check_range("w_readout", self.w_readout, 0.0, 1e6)
        check_choice("readout_label", self.readout_label, ("image", "column"))
        check_int("shortlist", self.shortlist, 0, MAX_SHORTLIST)

    @property
    def sign(self) -> float:
        """``s``: +1 when positive data should have high goodness, -1 when low."""
        return 1.0 if self.positive_goodness == "high" else -1.0


# ------------------------------------------------------------------------------ the pieces


def goodness(x: torch.Tensor) -> torch.Tensor:
    """The goodness of a layer: the sum of its squared activities, ``[..., d] -> [...]``."""
    return x.square().sum(dim=-1)


def length_normalise(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``x / RMS(x)`` over the last axis, ``[..., d] -> [..., d]`` (unit root-mean-square: the
    length of the vector becomes ``sqrt(d)``; the same formula as ``Model``'s
    ``normalize="input"``)."""
    return x * torch.rsqrt(x.square().mean(dim=-1, keepdim=True) + eps)


def positive_logit(g: torch.Tensor, threshold: float | torch.Tensor, sign: float = 1.0):
    """``logit p(positive) = sign * (g - threshold)`` (elementwise; ``threshold`` broadcasts)."""
    return sign * (g - threshold)


def ff_loss(
    g_positive: torch.Tensor,
    g_negative: torch.Tensor,
    threshold: float | torch.Tensor,
    sign: float = 1.0,
) -> torch.Tensor:
    """The logistic FF loss, elementwise: ``-log p(pos | positive) - log(1 - p(pos | negative))``
    = ``softplus(-s(G+ - theta)) + softplus(s(G- - theta))``; shapes broadcast."""
    return F.softplus(-positive_logit(g_positive, threshold, sign)) + F.softplus(
        positive_logit(g_negative, threshold, sign)
    )


def label_code(labels: torch.Tensor, n_classes: int, dim: int, value: float) -> torch.Tensor:
    """One-of-N codes ``[..., dim]`` of ``labels [...]``: ``value`` at the label, 0 elsewhere
    (entries ``n_classes .. dim - 1`` are padding, always 0)."""
    check_int("n_classes", n_classes, 2)
    check_int("dim", dim, n_classes)
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
        raise ValueError(f"labels must be in [0, {n_classes - 1}] (n_classes={n_classes})")
    return F.one_hot(labels.long(), dim).to(torch.float32) * value


def neutral_code(
    shape: Sequence[int], n_classes: int, dim: int, value: float, *, device=None
) -> torch.Tensor:
    """The neutral label ``[*shape, dim]``: every class ``value / n_classes`` (as active in sum
    as one label), padding 0 (00:12:23)."""
    check_int("n_classes", n_classes, 2)
    check_int("dim", dim, n_classes)
    code = torch.zeros(*shape, dim, device=device)
    code[..., :n_classes] = value / n_classes
    return code


def negative_labels(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    mode: str = "hard",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One wrong label per image, never the true one.

    Args:
        logits: ``[B, K]`` the model's own predictions (the softmax readout's logits).
        labels: ``[B]`` true labels; :data:`~neurosim.objectives.IGNORE_LABEL` (unlabelled)
            draws as if the label were 0 (the caller leaves those images out of the loss).
        mode: ``"hard"``: from ``softmax(logits)`` renormalised over the wrong classes (a likely
            wrong class more often, 00:14:40); ``"uniform"``: every wrong class alike.
        generator: CPU ``torch.Generator`` of the draw (the draw uses ``B`` multinomial samples
            whatever the logits, so two runs with the same generator state draw alike).

    Returns:
        ``[B]`` int64 on ``logits``' device.
    """
    check_choice("mode", mode, ("hard", "uniform"))
    if logits.dim() != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(
            f"logits must be [B, K] and labels [B]; got {tuple(logits.shape)} and "
            f"{tuple(labels.shape)}"
        )
    k = logits.shape[1]
    y = torch.where(labels == IGNORE_LABEL, 0, labels).long().to(logits.device)
    if mode == "uniform":
        z = torch.zeros_like(logits, dtype=torch.float32)
    else:
        z = logits.detach().float()
    wrong = ~F.one_hot(y, k).bool()
    z = z.masked_fill(~wrong, float("-inf"))
    p = torch.softmax(z, dim=-1)
    # a class whose probability underflows to 0 everywhere but the true one: fall back to uniform
    p = torch.where(p.sum(dim=-1, keepdim=True) > 0, p, wrong.float())
    draw = torch.multinomial(p.cpu(), 1, generator=generator).squeeze(1)
    return draw.to(logits.device)


# ------------------------------------------------------------------------------ the sheet


class FFSettled(NamedTuple):
    """What :meth:`ForwardForward.settle` returns.

    Attributes:
        neutral: the settling under the neutral label (:class:`~neurosim.settled.Settled`):
            the readout's input; with a companion objective its terms are computed on it (then
            it carries gradients and the companion's records and fill-in mask), else it was run
            without gradients.
        states: ``[T, 2B, R*C, L, D]`` the states after steps ``1 .. T`` of the positive
            (images ``0 .. B-1``, true labels clamped) and negative (``B .. 2B-1``, wrong labels)
            settlings, run together in local mode.
        negative_labels: ``[B, R]`` the wrong labels clamped in the negative settling.
        readout_logits: ``[B, R*C, K]`` the per-column readout's logits of the detached neutral
            state (they carry gradients to the readout only).
    """

    neutral: Any
    states: torch.Tensor
    negative_labels: torch.Tensor
    readout_logits: torch.Tensor


def _top(sheet) -> tuple[int, int]:
    """``(top level index, its dim)``."""
    return sheet.n_levels - 1, sheet.level_dims[-1]


def _check_sheet(model) -> None:
    sheet = getattr(model, "sheet", None)
    if sheet is None or not hasattr(sheet, "settle"):
        raise ValueError(
            "Forward-Forward needs a column classifier (a model with .sheet, a neurosim Model)"
        )
    k = int(model.n_classes)
    if sheet.n_levels < 2:
        raise ValueError(
            f"Forward-Forward needs a sheet of n_levels >= 2 (hidden levels under a label level); "
            f"got {sheet.n_levels}"
        )
    if sheet.level_dims[-1] < k:
        raise ValueError(
            f"the top level's dim must be >= the number of classes ({k}) to hold the label "
            f"code; got dim[-1] = {sheet.level_dims[-1]}"
        )


def _per_column(codes: torch.Tensor, columns_per_replica: int) -> torch.Tensor:
    """``[N, R, d]`` per-replica codes -> ``[N, R*C, d]`` (every column of a replica alike)."""
    return codes.repeat_interleave(columns_per_replica, dim=1)


def _thresholds(sheet, config: ForwardForwardConfig, device) -> torch.Tensor:
    """``[L - 1]`` the threshold of every hidden level, ``threshold * dim[l]``."""
    dims = torch.tensor(sheet.level_dims[:-1], dtype=torch.float32, device=device)
    return config.threshold * dims


def _hidden_goodness(sheet, states: torch.Tensor) -> torch.Tensor:
    """``[..., L, D] -> [..., L - 1]``: goodness of every level but the (clamped) top; padding
    entries of smaller levels are zero and add nothing."""
    return goodness(states[..., : sheet.n_levels - 1, :])


def _settle_with(model, x: torch.Tensor, codes: torch.Tensor, *, record: bool, local: bool):
    """Settle ``model.sheet`` on ``x`` (``[N, n]`` or frames ``[T, N, n]``) with the top level
    clamped to ``codes [N, R*C, d_top]``."""
    sheet = model.sheet
    top, _ = _top(sheet)
    return sheet.settle(
        x, record=("state",) if record else (), detach_inputs=local, clamp={top: codes}
    )


def _batch_axis(x: torch.Tensor) -> int:
    return 1 if x.dim() == 3 else 0


class ForwardForward:
    """Forward-Forward (the module doc) for a run of ``total_steps`` steps.

    Args:
        config: :class:`ForwardForwardConfig`.
        total_steps: length of the training run (for the companion's warm-up and ramp).
        seeds: one seed per replica for the negative labels' draws: replica ``r`` at step ``s``
            draws from a generator seeded by ``(seeds[r], s)``, as the model trained alone with
            that seed would.
        companion: optional :class:`~neurosim.objectives.ObjectiveConfig` whose terms are added,
            computed on the neutral-label settling; it must be local and have ``label="none"``
            (FF is the label term). None or no active term: FF alone.

    The model is a :class:`~neurosim.readout.ColumnClassifier` (stacked replicas allowed) whose
    sheet's top level holds the label (``dim[-1] >= n_classes``); its readout should read the
    levels below (``readout_levels="below_top"``; with ``"all_levels"`` it also reads the neutral
    code, a constant).
    """

    def __init__(
        self,
        config: ForwardForwardConfig,
        *,
        total_steps: int,
        seeds: Sequence[int] = (0,),
        companion: ObjectiveConfig | None = None,
    ) -> None:
        if not isinstance(config, ForwardForwardConfig):
            raise ValueError(f"config must be a ForwardForwardConfig; got {type(config).__name__}")
        self.config = config
        self.total_steps, self.seeds = check_run(total_steps, seeds)
        self.companion = None
        if companion is not None:
            if not isinstance(companion, ObjectiveConfig):
                raise ValueError(
                    f"companion must be an ObjectiveConfig; got {type(companion).__name__}"
                )
            if companion.label != "none":
                raise ValueError(
                    f'companion.label must be "none" (Forward-Forward is the label term); '
                    f"got {companion.label!r}"
                )
            if companion.locality != "local":
                raise ValueError(f'companion.locality must be "local"; got {companion.locality!r}')
            if companion.active_terms:
                self.companion = Objective(companion, total_steps=total_steps, seeds=self.seeds)

    # ------------------------------------------------------------------ inputs
    def _generator(self, r: int, step: int) -> torch.Generator:
        seed = (self.seeds[r] * _SEED_MIX + _NEGATIVE_SEED + int(step)) % (2**63 - 1)
        return torch.Generator().manual_seed(seed)

    def _negatives(self, model, logits: torch.Tensor, y: torch.Tensor, step: int):
        """``[B, R]`` wrong labels from the image logits of ``logits [B, R*C, K]``."""
        n_rep = model.sheet.n_replicas
        if len(self.seeds) != n_rep:
            raise ValueError(
                f"the objective has {len(self.seeds)} seeds for a model of {n_rep} replicas"
            )
        z = image_logits(logits.detach(), n_rep)  # [B, R, K]
        return torch.stack(
            [
                negative_labels(
                    z[:, r],
                    y[:, r],
                    mode=self.config.negatives,
                    generator=self._generator(r, step),
                )
                for r in range(n_rep)
            ],
            dim=1,
        )

    # ------------------------------------------------------------------ the three steps
    def settle(self, model, batch, step: int = 0) -> FFSettled:
        """The neutral settling (readout, negatives, companion terms), then the positive and
        negative settlings together (local in time, states of every step recorded)."""
        _check_sheet(model)
        x, y, _ = Objective._split(model, batch)
        sheet = model.sheet
        cfg = self.config
        k = int(model.n_classes)
        top, d_top = _top(sheet)
        axis = _batch_axis(x)
        b = x.shape[axis]
        per = sheet.columns_per_replica
        neutral_codes = neutral_code(
            (b, sheet.n_columns), k, d_top, cfg.label_value, device=x.device
        )
        if self.companion is not None:
            neutral = self.companion.settle(model, batch, step, clamp={top: neutral_codes})
        else:
            with torch.no_grad():
                neutral = _settle_with(model, x, neutral_codes, record=False, local=True)
        logits = model.logits(neutral.state.detach())
        neg = self._negatives(model, logits, y, step)
        safe = torch.where(y == IGNORE_LABEL, 0, y)
        codes = torch.cat(
            [
                _per_column(label_code(safe, k, d_top, cfg.label_value), per),
                _per_column(label_code(neg, k, d_top, cfg.label_value), per),
            ]
        ).to(x.device)
        x2 = torch.cat([x, x], dim=axis)
        contrast = _settle_with(model, x2, codes, record=True, local=True)
        return FFSettled(neutral, contrast.trajectory[1:], neg, logits)

    def level_terms(self, model, settled: FFSettled, batch) -> torch.Tensor:
        """The FF loss of every column and hidden level, ``[R*C, L - 1]``: the logistic loss of
        the positive and the negative settling, averaged over the steps and the labelled images
        of the column's replica (0 where a replica has none)."""
        _, y, _ = Objective._split(model, batch)
        sheet = model.sheet
        g = _hidden_goodness(sheet, settled.states)  # [T, 2B, R*C, L-1]
        b = y.shape[0]
        theta = _thresholds(sheet, self.config, g.device)
        loss = ff_loss(g[:, :b], g[:, b:], theta, self.config.sign).mean(dim=0)  # [B, RC, L-1]
        known = (y != IGNORE_LABEL).to(loss.dtype).to(loss.device)  # [B, R]
        w = _per_column(known[..., None], sheet.columns_per_replica)[..., 0]  # [B, R*C]
        return (loss * w[..., None]).sum(dim=0) / w.sum(dim=0).clamp_min(1.0)[:, None]

    def column_terms(self, model, settled: FFSettled, batch, step: int = 0):
        """Every active term per column, unweighted: ``{term: [R*C]}``: ``ff`` (the mean of
        :meth:`level_terms` over the hidden levels), ``readout`` (the softmax readout's label
        term on the detached neutral state) and the companion's terms."""
        cfg = self.config
        _, y, w_obj = Objective._split(model, batch)
        n_rep = model.sheet.n_replicas
        out: dict[str, torch.Tensor] = {}
        if cfg.w_ff > 0:
            out["ff"] = self.level_terms(model, settled, batch).mean(dim=1)
        if cfg.w_readout > 0:
            out["readout"] = _label_terms(
                cfg.readout_label, settled.readout_logits, y, w_obj, n_rep
            )
        if self.companion is not None:
            out.update(self.companion.column_terms(model, settled.neutral, batch, step))
        return out

    def terms(self, model, settled: FFSettled, batch, step: int = 0) -> dict[str, torch.Tensor]:
        """Every active term per replica ``[R]`` (unweighted), the mean goodness of the positive
        and negative settlings (``goodness_positive``, ``goodness_negative``, per unit: the sum
        of squares over the hidden levels divided by their size), ``codistillation_weight`` (the
        companion's ramp, 0 without one), ``replica_loss`` ``[R]`` and ``loss`` (their sum)."""
        cols = self.column_terms(model, settled, batch, step)
        n_rep = model.sheet.n_replicas
        ramp = self.companion.codistillation_weight(step) if self.companion is not None else 0.0
        out: dict[str, torch.Tensor] = {}
        total = None
        for term, value in cols.items():
            per_replica = value.view(n_rep, -1).mean(dim=1)
            if term in FF_TERMS:
                weight = float(getattr(self.config, f"w_{term}"))
            else:
                weight = self.companion.config.weight(term) * (ramp if term in _RAMPED else 1.0)
            part = per_replica * weight
            total = part if total is None else total + part
            out[term] = per_replica.detach()
        if total is None:
            raise ValueError("the objective has no active term (every weight is 0)")
        with torch.no_grad():
            _, y, _ = Objective._split(model, batch)
            b = y.shape[0]
            units = float(sum(model.sheet.level_dims[:-1]))
            g = _hidden_goodness(model.sheet, settled.states).sum(dim=-1) / units  # [T, 2B, RC]
            g = g.mean(dim=0).view(2 * b, n_rep, -1).mean(dim=2)  # [2B, R]
            out["goodness_positive"] = g[:b].mean(dim=0)
            out["goodness_negative"] = g[b:].mean(dim=0)
        out["codistillation_weight"] = torch.full((n_rep,), ramp)
        out["replica_loss"] = total.detach()
        out["loss"] = total.sum()
        return out

    def __call__(self, model, batch, step: int = 0) -> dict[str, torch.Tensor]:
        """:meth:`terms` of :meth:`settle`: the :class:`~neurosim.train.Trainer`'s loss
        function ``loss_fn(model, batch, step)``."""
        return self.terms(model, self.settle(model, batch, step), batch, step)


# ------------------------------------------------------------------------------ classifying


@torch.no_grad()
def goodness_scores(
    model, inputs: torch.Tensor, candidates: torch.Tensor, config: ForwardForwardConfig
) -> torch.Tensor:
    """How positive each candidate label makes each image: ``[B, R, k]``.

    Args:
        model: a column classifier (see :class:`ForwardForward`), stacked or not.
        inputs: what ``model.sheet.settle`` reads, ``[B, R*n]`` (or frames ``[T, B, R*n]``).
        candidates: ``[B, R, k]`` labels to try (each replica its own).
        config: the rule (its ``positive_goodness`` and ``label_value``).

    Returns:
        ``s * G`` with ``G`` the goodness summed over the hidden levels and the replica's
        columns and averaged over the settling's steps (1 .. T), for the sheet settled with each
        candidate clamped; the best label has the largest score.
    """
    _check_sheet(model)
    sheet = model.sheet
    k_cls = int(model.n_classes)
    _, d_top = _top(sheet)
    axis = _batch_axis(inputs)
    b = inputs.shape[axis]
    n_rep, per = sheet.n_replicas, sheet.columns_per_replica
    if candidates.dim() != 3 or tuple(candidates.shape[:2]) != (b, n_rep):
        raise ValueError(
            f"candidates must have shape [{b}, {n_rep}, k]; got {tuple(candidates.shape)}"
        )
    k = candidates.shape[2]
    # candidate j of image i is batch entry j * B + i
    x = torch.cat([inputs] * k, dim=axis)
    labels = candidates.permute(2, 0, 1).reshape(k * b, n_rep)
    codes = _per_column(label_code(labels, k_cls, d_top, config.label_value), per)
    settled = _settle_with(model, x, codes.to(inputs.device), record=True, local=True)
    g = _hidden_goodness(sheet, settled.trajectory[1:]).sum(dim=-1).mean(dim=0)  # [kB, R*C]
    g = g.view(k, b, n_rep, per).sum(dim=3)  # [k, B, R]
    return config.sign * g.permute(1, 2, 0)


@torch.no_grad()
def classify(
    model,
    inputs: torch.Tensor,
    config: ForwardForwardConfig,
    *,
    shortlist: int | None = None,
) -> torch.Tensor:
    """Forward-Forward's answer for every image and replica, ``[B, R]`` int64.

    Every label is run (:func:`goodness_scores`) unless ``shortlist`` (default
    ``config.shortlist``) is ``k`` in ``[1, n_classes)``: then the softmax readout, under the
    neutral label, proposes its top ``k`` labels and goodness decides among them (``k = 1`` is
    the readout's own answer).
    """
    _check_sheet(model)
    sheet = model.sheet
    k_cls = int(model.n_classes)
    top, d_top = _top(sheet)
    k = config.shortlist if shortlist is None else shortlist
    check_int("shortlist", k, 0, MAX_SHORTLIST)
    b = inputs.shape[_batch_axis(inputs)]
    n_rep = sheet.n_replicas
    if k == 0 or k >= k_cls:
        cand = torch.arange(k_cls, device=inputs.device).expand(b, n_rep, k_cls)
    else:
        codes = neutral_code((b, sheet.n_columns), k_cls, d_top, config.label_value)
        neutral = _settle_with(model, inputs, codes.to(inputs.device), record=False, local=True)
        z = image_logits(model.logits(neutral.state), n_rep)  # [B, R, K]
        cand = z.topk(k, dim=-1).indices
        if k == 1:
            return cand[..., 0]
    scores = goodness_scores(model, inputs, cand, config)
    return cand.gather(2, scores.argmax(dim=-1, keepdim=True))[..., 0]
