"""The learning rules as objectives: local co-distillation, its label-only control, end to end.

An objective is what a script trains a column sheet with. It is configured by a frozen
:class:`ObjectiveConfig` and used in three steps, or in one as the loss function of
:class:`~neurosim.train.Trainer`::

    objective = Objective(ObjectiveConfig.local_codistillation(), total_steps=1000)
    settled = objective.settle(classifier, batch, step)        # the right locality, fill-in mask
    terms = objective.terms(classifier, settled, batch, step)  # every term, and "loss"
    terms = objective(classifier, batch, step)                 # both at once

``classifier`` is a :class:`~neurosim.readout.ColumnClassifier` (a column sheet with per-column
readouts; stacked replicas allowed), ``batch`` a :class:`Batch` (or a tuple in its field order):
retina responses, labels (``IGNORE_LABEL`` = unlabelled) and optionally how much of the object
each column's input holds.

The terms (each per column first, :meth:`Objective.column_terms`; a replica's term is the mean
of its columns' values):

``label``
    ``"image"``: the image's label error broadcast to every column — the cross-entropy of the
    image's logits (the mean of its columns' logits), whose gradient reaches each column as
    ``(softmax(z_image) - y) / C`` on its own logits: every column learns from one global error
    signal but only through its own nets. ``"column"``: each column's own cross-entropy.
    ``"object"``: each column's own cross-entropy, weighted by how much of the object its input
    holds (``Batch.object_weights``). ``"none"``: no labels (unlabelled training).
``consensus``
    consensus co-distillation (the distillation talk, 00:29-00:34; GLOM sec. 3): every column's
    bottom-up and top-down predictions regressed on the detached consensus of their level at
    every step, which holds the neighbours' opinions
    (:func:`~neurosim.learning.consensus_codistillation_loss`, ``"cosine"`` (scale-free, the
    default) or ``"mse"``).
``neighbour``
    output co-distillation: each column's soft prediction towards the detached soft
    predictions of its neighbours, weighted by the settled lateral attention
    (``Settled.attention``) and optionally by the teachers' confidence.
``contrastive``
    InfoNCE anti-collapse per level: a column's embedding picks the detached mean embedding of
    the other columns of its image out of those of the other images (GLOM sec. 9.3).
``fill_in``
    hide some columns' input; their settled level-0 embedding must predict it through the
    classifier's per-column decoder (GLOM sec. 3.3).
``temporal``
    co-distillation through time, on unlabelled videos (``Batch.video``): after each frame the
    column's own soft prediction of its state, detached and weighted by its confidence, is the
    target of its prediction of its state after the next frame. The state persists (its
    previous-state term) and takes in its neighbours (lateral attention), so a column newly
    covered by a moving object learns from what the sheet made of it a frame ago
    (``temporal_teacher="local"``, the mechanism). ``"broadcast"`` is an upper bound that is not
    local: the image-level prediction on the first frame, from the columns that see the object
    (``Batch.video_weights``), teaches every column that sees it on the last frame. On videos
    the consensus and neighbour terms apply too (``video_consensus``, ``video_neighbour``).

Output co-distillation (``neighbour``) is off while the columns "learn a bit separately" (the
first ``warmup_fraction`` of the steps; the distillation talk, 00:28) and then ramps up over
``ramp_fraction`` (:func:`~neurosim.learning.codistillation_weight`). Consensus co-distillation
is how the sheet's nets learn their part in the settling and runs from the start (GLOM sec. 3).

Locality: with ``locality="local"`` the sheet is settled with ``detach_inputs=True`` and every
target above is detached, so the loss of column ``c`` — every term alone — reaches only column
``c``'s own parameters (tested for each term on both retinas). ``locality="bptt"`` trains end
to end through the settling: :meth:`ObjectiveConfig.end_to_end` is the ``lc-backprop`` rule.
The same objective trains any model with per-place logits (the CNN) when no term needs a
settled sheet.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F

from neurosim import learning
from neurosim.config import Config, check_choice, check_int, check_range, check_seed
from neurosim.readout import image_logits
from neurosim.softmax import cross_entropy, log_softmax, softmax

__all__ = [
    "IGNORE_LABEL",
    "LABEL_MODES",
    "TERMS",
    "Batch",
    "ObjectiveConfig",
    "Objective",
]

#: the label of an unlabelled image
IGNORE_LABEL = -1
#: the label terms
LABEL_MODES = ("image", "column", "object", "none")
#: every term an objective can hold, in the order of its results
TERMS = ("label", "consensus", "neighbour", "contrastive", "fill_in", "temporal")
#: the terms computed on videos too, and their names there
VIDEO_TERMS = {"consensus": "video_consensus", "neighbour": "video_neighbour"}
#: the terms scaled by the warm-up and ramp
_RAMPED = ("neighbour", "video_neighbour", "temporal")
_SEED_MIX = 1_000_003


class Batch(NamedTuple):
    """One training batch.

    Attributes:
        responses: retina responses ``[B, n_cells]``; a stacked model (``R`` replicas) reads
            ``[B, R, cells_per_replica]`` (each replica its own images); a video
            ``[B, R, T, cells_per_replica]`` (frame t drives step t).
        labels: ``[B]`` or ``[B, R]`` class labels, :data:`IGNORE_LABEL` for unlabelled images.
        object_weights: optional ``[B, C]`` / ``[B, R, C]``, how much of the object each column's
            input holds (for ``label="object"``); not needed otherwise.
        video: optional unlabelled videos ``[V, F, n_cells]`` / ``[V, R, F, cells_per_replica]``
            (``F`` frames, each held ``steps_per_frame`` steps): the temporal term and the
            co-distillation terms also learn from them.
        video_weights: optional ``[V, F, C]`` / ``[V, R, F, C]``, how much of the moving object
            each column's input holds at each frame (only the ``"broadcast"`` teacher reads it).
    """

    responses: torch.Tensor
    labels: torch.Tensor
    object_weights: torch.Tensor | None = None
    video: torch.Tensor | None = None
    video_weights: torch.Tensor | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class ObjectiveConfig(Config):
    """The rule's terms and weights.

    Attributes:
        locality: ``"local"`` (no gradient across columns or steps) or ``"bptt"`` (end to end).
        label: the label term, one of :data:`LABEL_MODES`.
        w_label: its weight (>= 0).
        w_consensus: weight of consensus co-distillation (>= 0).
        consensus_loss: ``"cosine"`` (scale-free) or ``"mse"``.
        w_neighbour: weight of output co-distillation between neighbours (>= 0).
        temperature: ``T`` of the neighbours' soft targets (> 0).
        neighbour_confidence: weigh each teacher by its confidence ``1 - H / log K``.
        neighbour_level: the level whose neighbours and attention weights teach (-1 = top).
        w_contrastive: weight of the anti-collapse InfoNCE term (>= 0).
        contrastive_temperature: its temperature (> 0).
        w_fill_in: weight of the fill-in term (>= 0; the classifier needs a decoder).
        fill_in_fraction: fraction of columns whose input is hidden, in (0, 1).
        w_temporal: weight of temporal co-distillation on videos (>= 0).
        temporal_teacher: ``"local"`` (each column's own previous opinion) or ``"broadcast"``
            (the image-level first-frame prediction; an upper bound, not local).
        steps_per_frame: settling steps each video frame is held for (>= 1).
        warmup_fraction: fraction of the steps before output co-distillation starts, [0, 1).
        ramp_fraction: fraction of the steps over which it ramps up to ``w_neighbour``, [0, 1].
    """

    locality: Literal["local", "bptt"] = "local"
    label: Literal["image", "column", "object", "none"] = "image"
    w_label: float = 1.0
    w_consensus: float = 0.0
    consensus_loss: Literal["mse", "cosine"] = "cosine"
    w_neighbour: float = 0.0
    temperature: float = 2.0
    neighbour_confidence: bool = False
    neighbour_level: int = -1
    w_contrastive: float = 0.0
    contrastive_temperature: float = 0.5
    w_fill_in: float = 0.0
    fill_in_fraction: float = 0.25
    w_temporal: float = 0.0
    temporal_teacher: Literal["local", "broadcast"] = "local"
    steps_per_frame: int = 2
    warmup_fraction: float = 0.3
    ramp_fraction: float = 0.2

    def __post_init__(self) -> None:
        check_choice("locality", self.locality, learning.LOCALITIES)
        check_choice("label", self.label, LABEL_MODES)
        check_choice("consensus_loss", self.consensus_loss, ("mse", "cosine"))
        for name in (
            "w_label",
            "w_consensus",
            "w_neighbour",
            "w_contrastive",
            "w_fill_in",
            "w_temporal",
        ):
            check_range(name, getattr(self, name), 0.0, 1e6)
        check_choice("temporal_teacher", self.temporal_teacher, ("local", "broadcast"))
        check_int("steps_per_frame", self.steps_per_frame, 1, 100)
        check_range("temperature", self.temperature, 0.0, 100.0, lo_inclusive=False)
        check_range(
            "contrastive_temperature", self.contrastive_temperature, 0.0, 100.0, lo_inclusive=False
        )
        check_int("neighbour_level", self.neighbour_level, -64, 63)
        check_range(
            "fill_in_fraction",
            self.fill_in_fraction,
            0.0,
            1.0,
            lo_inclusive=False,
            hi_inclusive=False,
        )
        check_range("warmup_fraction", self.warmup_fraction, 0.0, 1.0, hi_inclusive=False)
        check_range("ramp_fraction", self.ramp_fraction, 0.0, 1.0)

    @classmethod
    def local_codistillation(cls, **overrides: Any) -> ObjectiveConfig:
        """The local rule: the image-level label error plus scale-free consensus and neighbour
        co-distillation (``overrides`` change any field)."""
        fields = dict(locality="local", label="image", w_consensus=0.1, w_neighbour=1.0)
        fields.update(overrides)
        return cls(**fields)

    @classmethod
    def local_control(cls, **overrides: Any) -> ObjectiveConfig:
        """:meth:`local_codistillation` with the co-distillation terms off: its control."""
        return dataclasses.replace(
            cls.local_codistillation(**overrides), w_consensus=0.0, w_neighbour=0.0, w_temporal=0.0
        )

    @classmethod
    def end_to_end(cls, **overrides: Any) -> ObjectiveConfig:
        """Backpropagation through the settling with the image's label only (lc-backprop)."""
        fields = dict(locality="bptt", label="image")
        fields.update(overrides)
        return cls(**fields)

    def weight(self, term: str) -> float:
        """The (full) weight of ``term`` (a video term has the weight of its static one)."""
        return float(getattr(self, f"w_{term.removeprefix('video_')}"))

    @property
    def active_terms(self) -> tuple[str, ...]:
        """The terms with a nonzero weight (the label term only with labels)."""
        out = []
        for term in TERMS:
            if term == "label" and self.label == "none":
                continue
            if self.weight(term) > 0:
                out.append(term)
        return tuple(out)

    @property
    def learns_from_video(self) -> bool:
        """Whether any active term reads unlabelled videos."""
        return any(self.weight(t) > 0 for t in ("consensus", "neighbour", "temporal"))

    @property
    def needs_settled_sheet(self) -> bool:
        """False when only label terms are active (any model with per-place logits will do)."""
        return any(t != "label" for t in self.active_terms) or self.locality == "local"


def check_run(total_steps: int, seeds: Sequence[int]) -> tuple[int, tuple[int, ...]]:
    """``(total_steps, seeds)`` of an objective, checked: ``total_steps >= 1``, one seed per
    replica, each in ``[0, MAX_SEED]``."""
    steps = check_int("total_steps", total_steps, 1)
    # numpy integers become ints; anything else (1.5, "3", True) is refused by check_seed, not
    # truncated by int()
    out = tuple(
        int(s) if isinstance(s, numbers.Integral) and not isinstance(s, bool) else s for s in seeds
    )
    if not out:
        raise ValueError("seeds must hold one seed per replica")
    for i, s in enumerate(out):
        check_seed(f"seeds[{i}]", s)
    return steps, out


class Objective:
    """The configured rule (see the module doc) for a run of ``total_steps`` steps.

    Args:
        config: :class:`ObjectiveConfig`.
        total_steps: length of the training run (for the warm-up and ramp).
        seeds: one seed per replica for the objective's own random draws (the fill-in masks):
            replica ``r`` at step ``s`` draws from a generator seeded by ``(seeds[r], s)``, so a
            replica draws what the same model trained alone with that seed would.
    """

    def __init__(
        self, config: ObjectiveConfig, *, total_steps: int, seeds: Sequence[int] = (0,)
    ) -> None:
        if not isinstance(config, ObjectiveConfig):
            raise ValueError(f"config must be an ObjectiveConfig; got {type(config).__name__}")
        self.config = config
        self.total_steps, self.seeds = check_run(total_steps, seeds)
        self.warmup = int(round(config.warmup_fraction * total_steps))
        self.ramp = int(round(config.ramp_fraction * total_steps))

    # ------------------------------------------------------------------ inputs
    def codistillation_weight(self, step: int) -> float:
        """The ramp factor of output co-distillation at ``step`` (0 during the warm-up)."""
        return learning.codistillation_weight(int(step), self.warmup, self.ramp)

    @staticmethod
    def _split(model, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(the model's input, labels [B, R], object weights [B, R*C] or None)``.

        A column classifier reads ``[B, R*n]`` (or frames ``[T, B, R*n]`` of a video); any other
        model (the CNN) gets the responses with their replica axis, ``[B, R, ...]``.
        """
        b = _as_batch(batch)
        r = int(getattr(model, "n_replicas", 1))
        x, y, w = b.responses, b.labels, b.object_weights
        if y.dim() == 1:
            x, y = x.unsqueeze(1), y.unsqueeze(1)
            w = None if w is None else w.unsqueeze(1)
        if y.dim() != 2 or y.shape[1] != r:
            raise ValueError(f"labels must be [B] or [B, R={r}]; got {tuple(b.labels.shape)}")
        if x.shape[:2] != y.shape:
            raise ValueError(
                f"responses must be [B, R, ...] with [B, R] = {tuple(y.shape)}; "
                f"got {tuple(b.responses.shape)}"
            )
        w = None if w is None else w.flatten(1)
        if not hasattr(model, "sheet"):
            return x, y, w
        if x.dim() == 4:  # video [B, R, T, n] -> frames [T, B, R*n]
            return x.permute(2, 0, 1, 3).flatten(2), y, w
        return x.flatten(1), y, w

    def _fill_in_mask(self, model, batch_size: int, step: int, device) -> torch.Tensor:
        """``[B, R*C]`` bool, True = hidden, drawn per replica from ``(seeds[r], step)``."""
        sheet = model.sheet
        if len(self.seeds) != sheet.n_replicas:
            raise ValueError(
                f"the objective has {len(self.seeds)} seeds for a model of {sheet.n_replicas} "
                "replicas"
            )
        masks = []
        for seed in self.seeds:
            gen = torch.Generator().manual_seed((seed * _SEED_MIX + int(step)) % (2**63 - 1))
            masks.append(
                learning.draw_fill_in_mask(
                    batch_size,
                    sheet.columns_per_replica,
                    self.config.fill_in_fraction,
                    generator=gen,
                )
            )
        return torch.cat(masks, dim=1).to(device)

    # ------------------------------------------------------------------ the three steps
    def settle(self, model, batch, step: int = 0, *, clamp=None):
        """Settle ``model.sheet`` on the batch as the rule needs: local or end to end, with the
        fill-in mask applied, recording every step's terms when the consensus term is on.
        ``clamp`` (``{level: [B, R*C, dim[level]]}``, see :meth:`neurosim.model.Model.settle`)
        holds levels fixed, e.g. Forward-Forward's label level
        (:mod:`neurosim.forward_forward`). Returns :class:`~neurosim.settled.Settled` (its
        ``input_mask`` is the visible columns)."""
        x, _, _ = self._split(model, batch)
        cfg = self.config
        mask = None
        if cfg.w_fill_in > 0:
            if getattr(model, "decoder", None) is None:
                raise ValueError("w_fill_in > 0 needs a classifier built with fill_in=True")
            batch_size = x.shape[1] if x.dim() == 3 else x.shape[0]
            mask = ~self._fill_in_mask(model, batch_size, step, x.device)
        record = ("bottom_up", "top_down", "consensus") if cfg.w_consensus > 0 else ()
        return model.sheet.settle(
            x,
            record=record,
            detach_inputs=learning.detach_inputs_for(cfg.locality),
            input_mask=mask,
            clamp=clamp,
        )

    def _video(self, model, batch) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """``(frames [F, V, R*n], object weights [V, F, R*C] or None)`` of the batch's videos."""
        b = _as_batch(batch)
        if b.video is None:
            return None
        v, w = b.video, b.video_weights
        if v.dim() == 3:  # [V, F, n]: one model
            v = v.unsqueeze(1)
            w = None if w is None else w.unsqueeze(1)
        r = int(getattr(model, "n_replicas", 1))
        if v.dim() != 4 or v.shape[1] != r:
            raise ValueError(
                f"video must be [V, F, n] or [V, R={r}, F, n]; got {tuple(b.video.shape)}"
            )
        frames = v.permute(2, 0, 1, 3).flatten(2)  # [F, V, R*n]
        if w is not None:
            w = w.permute(0, 2, 1, 3).flatten(2)  # [V, F, R*C]
        return frames, w

    def settle_video(self, model, batch, step: int = 0):
        """Settle ``model.sheet`` on the batch's videos (each frame held ``steps_per_frame``
        steps, the rule's locality), recording the state at the end of every frame and the
        terms of every step when the consensus term is on; None without videos."""
        video = self._video(model, batch)
        if video is None:
            return None
        frames, _ = video
        spf = self.config.steps_per_frame
        held = frames.repeat_interleave(spf, dim=0)  # [F * spf, V, R*n]
        record = ("state", "bottom_up", "top_down", "consensus")
        if self.config.w_consensus == 0:
            record = ("state",)
        return model.sheet.settle(
            held,
            n_steps=held.shape[0],
            record=record,
            every=spf if record == ("state",) else 1,
            detach_inputs=learning.detach_inputs_for(self.config.locality),
        )

    def _frame_states(self, settled, spf: int) -> torch.Tensor:
        """``[F + 1, V, C, L, D]``: the initial state and the state after every frame."""
        traj = settled.trajectory
        if (
            len(settled.recorded_steps) == traj.shape[0] - 1
            and settled.recorded_steps[:1] == (1,)
            and spf > 1
        ):
            return traj[::spf]
        return traj

    def _consensus_term(self, sheet, settled) -> torch.Tensor:
        """Consensus co-distillation per column ``[R*C]`` over the recorded steps."""
        return learning.consensus_codistillation_loss(
            settled.bottom_up,
            settled.top_down,
            settled.consensus,
            top_down_levels=sheet.has_top_down,
            level_dims=sheet.level_dims if sheet.ragged else None,
            loss=self.config.consensus_loss,
            per_column=True,
        )

    def _neighbour_term(self, sheet, settled, logits: torch.Tensor) -> torch.Tensor:
        """Output co-distillation per column ``[R*C]``, teachers weighted by the settled
        attention of ``neighbour_level``."""
        cfg = self.config
        lv = cfg.neighbour_level % sheet.n_levels
        nb = sheet.neighbours[lv]
        return learning.neighbour_codistillation_loss(
            logits,
            nb.index,
            settled.attention[lv].detach(),
            cfg.temperature,
            confidence=cfg.neighbour_confidence,
            mask=nb.mask,
            per_column=True,
        )

    def video_terms(self, model, settled, batch, step: int = 0) -> dict[str, torch.Tensor]:
        """The active terms on the batch's videos, per column ``{term: [R*C]}``: ``temporal``,
        ``video_consensus``, ``video_neighbour`` (see the module doc)."""
        cfg = self.config
        out: dict[str, torch.Tensor] = {}
        if settled is None:
            return out
        sheet = model.sheet
        if cfg.w_consensus > 0:
            out["video_consensus"] = self._consensus_term(sheet, settled)
        logits = model.logits(settled.state)
        if cfg.w_neighbour > 0:
            out["video_neighbour"] = self._neighbour_term(sheet, settled, logits)
        if cfg.w_temporal > 0:
            states = self._frame_states(settled, cfg.steps_per_frame)
            _, weights = self._video(model, batch)
            out["temporal"] = _temporal_terms(
                model, states, cfg.temperature, cfg.temporal_teacher, weights
            )
        return out

    def column_terms(self, model, settled, batch, step: int = 0) -> dict[str, torch.Tensor]:
        """Every active term per column, unweighted: ``{term: [R*C]}`` (a replica's term is the
        mean of its columns' values). ``settled`` from :meth:`settle`, or None for a model that
        is not a column sheet (per-place logits from ``model(inputs)``; label terms only)."""
        cfg = self.config
        x, y, w_obj = self._split(model, batch)
        if settled is None:
            if cfg.needs_settled_sheet:
                raise ValueError("this objective needs a settled column sheet (settled=None)")
            logits = model(x)
        else:
            logits = model.logits(settled.state)
        out: dict[str, torch.Tensor] = {}
        n_rep = int(getattr(model, "n_replicas", 1))
        if "label" in cfg.active_terms:
            weights = None
            if getattr(model, "image_readout", "mean") == "confidence":
                from neurosim.readout import confidence_weights

                weights = confidence_weights(logits.detach())
            out["label"] = _label_terms(cfg.label, logits, y, w_obj, n_rep, weights)
        if settled is None:
            return out
        sheet = model.sheet
        if "consensus" in cfg.active_terms:
            out["consensus"] = self._consensus_term(sheet, settled)
        if "neighbour" in cfg.active_terms:
            out["neighbour"] = self._neighbour_term(sheet, settled, logits)
        if "contrastive" in cfg.active_terms:
            out["contrastive"] = torch.stack(
                [
                    learning.contrastive_loss(
                        sheet.level(settled.state, lv),
                        cfg.contrastive_temperature,
                        detach_positives=cfg.locality == "local",
                        groups=sheet.n_replicas,
                        per_column=True,
                    )
                    for lv in range(sheet.n_levels)
                ]
            ).mean(dim=0)
        if "fill_in" in cfg.active_terms:
            frame = x[0] if x.dim() == 3 else x
            hidden = ~settled.input_mask
            out["fill_in"] = learning.fill_in_loss(
                model.decoder(sheet.level(settled.state, 0)),
                sheet.column_inputs(frame),
                hidden,
                per_column=True,
            )
        return out

    def terms(
        self, model, settled, batch, step: int = 0, video_settled=None
    ) -> dict[str, torch.Tensor]:
        """Every active term per replica ``[R]`` (unweighted), ``codistillation_weight`` (the
        ramp factor now), ``replica_loss`` (each replica's weighted sum of its terms, ``[R]``)
        and ``loss``: their sum over replicas (each replica's gradient is its own loss's)."""
        cols = self.column_terms(model, settled, batch, step)
        if video_settled is not None:
            cols.update(self.video_terms(model, video_settled, batch, step))
        n_rep = int(getattr(model, "n_replicas", 1))
        ramp = self.codistillation_weight(step)
        out: dict[str, torch.Tensor] = {}
        total = None
        for term, value in cols.items():
            per_replica = value.view(n_rep, -1).mean(dim=1)
            weight = self.config.weight(term) * (ramp if term in _RAMPED else 1.0)
            part = per_replica * weight
            total = part if total is None else total + part
            out[term] = per_replica.detach()
        if total is None:
            raise ValueError("the objective has no active term (every weight is 0)")
        out["codistillation_weight"] = torch.full((n_rep,), ramp)
        out["replica_loss"] = total.detach()
        out["loss"] = total.sum()
        return out

    def __call__(self, model, batch, step: int = 0) -> dict[str, torch.Tensor]:
        """:meth:`terms` of :meth:`settle`: the :class:`~neurosim.train.Trainer`'s loss
        function ``loss_fn(model, batch, step)``."""
        settled = self.settle(model, batch, step) if self.config.needs_settled_sheet else None
        video = None
        if _as_batch(batch).video is not None and self.config.learns_from_video:
            video = self.settle_video(model, batch, step)
        return self.terms(model, settled, batch, step, video_settled=video)


def _label_terms(
    mode: str,
    logits: torch.Tensor,
    labels: torch.Tensor,
    object_weights: torch.Tensor | None,
    n_replicas: int,
    image_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """The label term per column ``[R*C]`` (see the module doc); unlabelled images are left out.

    ``"image"``: column ``c``'s value is ``C * <e_b, z_bc> / C`` averaged over the labelled
    images with ``e_b = softmax(z_image) - y`` detached, shifted by a detached constant so that
    a replica's mean over columns is the cross-entropy of its image logits: the gradient of
    that mean is exactly the gradient of the image-level cross-entropy, and column ``c``'s own
    value reaches only column ``c``'s logits.
    """
    b, c_total, k = logits.shape
    per = c_total // n_replicas
    y = labels.to(logits.device)
    known = y != IGNORE_LABEL  # [B, R]
    n_known = known.sum(dim=0).clamp_min(1).to(logits.dtype)  # [R]
    safe = torch.where(known, y, 0)
    if mode == "image":
        # the image's logits: a weighted mean of its columns' with weights a [B, R, C] (detached)
        if image_weights is None:
            a = logits.new_full((b, n_replicas, per), 1.0 / per)
        else:
            w = image_weights.to(logits.dtype).view(b, n_replicas, per)
            total = w.sum(dim=2, keepdim=True)
            a = torch.where(total > 0, w / total.clamp_min(1e-12), 1.0 / per)
        z = image_logits(logits, n_replicas, a.reshape(b, -1))  # [B, R, K]
        ce = cross_entropy(z, safe)  # [B, R]
        ce_mean = (ce * known).sum(dim=0) / n_known  # [R]
        err = (softmax(z) - F.one_hot(safe, k).to(z.dtype)).detach()  # [B, R, K]
        err = err * known[..., None]
        zc = logits.view(b, n_replicas, per, k) * a[..., None]  # the image's share of each
        s = torch.einsum("brk,brck->rc", err, zc) / n_known[:, None]  # [R, C]
        value = per * s + (ce_mean - s.sum(dim=1)).detach()[:, None]
        return value.reshape(-1)
    y_col = safe.repeat_interleave(per, dim=1)  # [B, R*C]
    ce = cross_entropy(logits, y_col)  # [B, R*C]
    w = known.repeat_interleave(per, dim=1).to(logits.dtype)
    if mode == "object":
        if object_weights is None:
            raise ValueError('label="object" needs Batch.object_weights')
        w = w * object_weights.to(w.dtype).clamp_min(0.0)
        total = w.view(b, n_replicas, per).sum(dim=(0, 2)).clamp_min(1e-12)  # [R]
        return (ce * w).sum(dim=0) * per / total.repeat_interleave(per)
    return (ce * w).sum(dim=0) / w.sum(dim=0).clamp_min(1.0)


def _as_batch(batch) -> Batch:
    """A :class:`Batch` from a Batch, a tuple in its field order or a mapping of its fields."""
    if isinstance(batch, Batch):
        return batch
    if isinstance(batch, dict):
        unknown = set(batch) - set(Batch._fields)
        if unknown:
            raise ValueError(
                f"batch keys must be among {list(Batch._fields)}; got {sorted(unknown)}"
            )
        return Batch(**batch)
    return Batch(*batch)


def _temporal_terms(
    model,
    states: torch.Tensor,
    temperature: float,
    teacher: str,
    object_weights: torch.Tensor | None,
) -> torch.Tensor:
    """Temporal co-distillation per column ``[R*C]`` from the frame-end states
    ``[F + 1, V, C, L, D]`` (see the module doc): ``T**2`` times the confidence-weighted KL of
    each student to its detached teacher, averaged over videos and frames."""
    t = float(temperature)
    n_frames = states.shape[0] - 1
    if n_frames < 2:
        raise ValueError("the temporal term needs videos of at least 2 frames")
    logits = torch.stack([model.logits(states[f]) for f in range(1, n_frames + 1)])  # [F, V, C, K]
    log_q = log_softmax(logits / t)
    if teacher == "local":
        p = softmax(logits[:-1].detach() / t)  # frame f teaches frame f + 1
        conf = learning.teacher_confidence(p)
        kl = (torch.xlogy(p, p) - p * log_q[1:]).sum(dim=-1)  # [F - 1, V, C]
        return (conf * kl).mean(dim=(0, 1)) * (t * t)
    if object_weights is None:
        raise ValueError('temporal_teacher="broadcast" needs Batch.video_weights')
    n_rep = int(getattr(model, "n_replicas", 1))
    w_first = object_weights[:, 0]  # [V, R*C]: who sees the object on the first frame
    w_last = object_weights[:, -1]  # who sees it on the last
    z = image_logits(logits[0].detach(), n_rep, w_first)  # [V, R, K]
    p = softmax(z / t)
    conf = learning.teacher_confidence(p)  # [V, R]
    per = logits.shape[2] // n_rep
    p_col = p.repeat_interleave(per, dim=1)  # [V, R*C, K]
    kl = (torch.xlogy(p_col, p_col) - p_col * log_q[-1]).sum(dim=-1)  # [V, R*C]
    w = w_last.to(kl.dtype) * conf.repeat_interleave(per, dim=1)
    return (w * kl).mean(dim=0) * (t * t)
