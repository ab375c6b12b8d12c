"""The models compared by the flagship experiment, and the functions that train and score them.

Every model kind sees the same retina, has the same topology (``n_levels`` levels of ``dim``
units at each of about ``n_columns`` places, the same hidden sizes), the same readout (a linear
map of the concatenated levels to class logits *at every place*, averaged over places into the
image's logits) and the same training budget (``steps`` Adam steps of ``batch_size`` images).
Each kind is one model and one objective of :mod:`neurosim.objectives`; a kind and its control
differ by exactly one thing:

``cnn``
    the weight-shared convolutional network (:class:`analyses.cnn.ConvClassifier`) on the
    retina's output rendered onto the pixel grid; trained end to end on the image's label.
``shared-columns``
    :class:`neurosim.model.Model` with ``shared=True``: one set of weights for every column, also
    on the foveated retina where the columns' inputs mean different things. End to end.
``lc-backprop``
    the same model with unshared columns, trained in the same way: backpropagation through the
    settling of the image's label, no co-distillation. The locally connected baseline (Bartunov
    et al. 2018; Pogodin, Mehta, Lillicrap & Latham 2021).
``local``
    the same unshared sheet trained by a local rule without co-distillation: settled with
    ``detach_inputs=True`` (no gradient across columns or time steps), the image's label error
    broadcast to every column (:meth:`ObjectiveConfig.local_control`). It differs from
    ``lc-backprop`` only in locality, and is the control of ``codistill``.
``codistill``
    ``local`` plus the co-distillation terms of ``[baseline.objective]`` (consensus and
    neighbour co-distillation after a warm-up; the distillation talk, 00:29-00:34): it differs
    from ``local`` only in those terms.
``lc-backprop+codistill``
    ``lc-backprop`` plus the same co-distillation terms (end to end).
``ff``
    the unshared sheet trained by Forward-Forward (:mod:`neurosim.forward_forward`; the
    Forward-Forward talk),
    the second local rule: the same levels plus a label level of ``N_CLASSES`` units on top
    (clamped to the label code), every net's input length-normalised (``normalize="input"``
    in place of the configured normalisation), the readout reading the levels below the label
    (``readout_levels="below_top"``: the same features as the other kinds' ``all_levels``)
    and trained on detached features; settings in ``[baseline.forward_forward]``. Scored by
    goodness (every label, or the readout's short list). It keeps the configured contrastive
    and fill-in terms, as ``local`` does.
``ff+codistill``
    ``ff`` plus the co-distillation terms of ``codistill`` (consensus and neighbour), computed
    on the sheet settled under the neutral label: it differs from ``ff`` only in those terms.

Training many models of one kind (seeds, training-set sizes, retinas) is one batched
computation: :func:`train_jobs` stacks them as replicas (:mod:`neurosim.replicas`) and trains
them together; each replica is the model it would be alone (tested).

Public API (used by every experiment that trains these models)::

    retina = build_retina("foveated", n_cells=288, canvas_px=24, pixels_per_deg=2.0, seed=0)
    train = retina_inputs(retina, canvases.images, canvases.labels)
    test = retina_inputs(retina, test_canvases.images, test_canvases.labels, scale=train.scale)
    trained = train_and_evaluate("codistill", retina, train, test, BaselineConfig(), seed=0)
    trained.accuracy, trained.n_parameters, trained.model        # the trained ColumnClassifier
    trained.model.sheet.settle(test.responses)                     # its settled embeddings

:func:`build_model` alone gives an untrained model (for "before training" comparisons).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from analyses.cnn import ConvClassifier
from analyses.inputs import RETINA_KINDS, RetinaInputs, build_retina, retina_inputs
from neurosim.columns import assert_unshared
from neurosim.config import Config, check_choice, check_int, check_range, check_seed
from neurosim.dynamics import DynamicsConfig
from neurosim.forward_forward import ForwardForwardConfig
from neurosim.model import ModelConfig
from neurosim.objectives import ObjectiveConfig
from neurosim.readout import IMAGE_READOUTS, READOUT_LEVELS, ColumnClassifier

__all__ = [
    "MODEL_KINDS",
    "DEFAULT_KINDS",
    "FF_KINDS",
    "RETINA_KINDS",
    "N_CLASSES",
    "BaselineConfig",
    "RetinaInputs",
    "TrainedModel",
    "Job",
    "ColumnClassifier",
    "ConvClassifier",
    "build_retina",
    "retina_inputs",
    "flagship_model",
    "objective_for",
    "build_model",
    "count_parameters",
    "image_logits",
    "evaluate",
    "train_jobs",
    "train_and_evaluate",
    "make_loss_fn",
]

#: the model labels, exactly as they appear in results files
MODEL_KINDS: tuple[str, ...] = (
    "cnn",
    "shared-columns",
    "lc-backprop",
    "local",
    "codistill",
    "lc-backprop+codistill",
    "ff",
    "ff+codistill",
)
#: the kinds trained by Forward-Forward (a label level on top, scored by goodness)
FF_KINDS: tuple[str, ...] = ("ff", "ff+codistill")
#: the kinds an experiment runs unless told otherwise
DEFAULT_KINDS: tuple[str, ...] = ("cnn", "shared-columns", "lc-backprop", "local", "codistill")
#: digit classes
N_CLASSES = 10
#: kinds trained by backpropagation through the settling (or through the CNN)
_END_TO_END = ("cnn", "shared-columns", "lc-backprop", "lc-backprop+codistill")

_OBJECTIVE_KEYS = (
    "temperature",
    "w_consensus",
    "w_neighbour",
    "w_contrastive",
    "contrastive_temperature",
    "warmup_fraction",
    "ramp_fraction",
)
_MODEL_KEYS = (
    "n_columns",
    "n_levels",
    "dim",
    "hidden",
    "activation",
    "k_cells",
    "neighbour_k",
    "neighbour_growth",
    "position_encoding",
    "lattice_seed",
)
_DYNAMICS_KEYS = (
    "n_steps",
    "tau_ms",
    "dt_ms",
    "beta",
    "w_bottom_up",
    "w_top_down",
    "w_lateral",
    "w_previous",
)


def flagship_model(**overrides: Any) -> ModelConfig:
    """The flagship's column sheet: 36 columns, 2 levels of 16 units, hidden 32, 64 cells per
    column, 4 neighbours, layer-normalised nets, 2 settling steps of dt = tau / 2
    (``overrides`` change any field)."""
    fields: dict[str, Any] = dict(
        n_columns=36,
        n_levels=2,
        dim=16,
        hidden=(32,),
        k_cells=64,
        neighbour_k=4,
        normalize="layer",
        dynamics=DynamicsConfig(tau_ms=20.0, dt_ms=10.0, n_steps=2),
    )
    fields.update(overrides)
    return ModelConfig(**fields)


def _default_objective() -> ObjectiveConfig:
    return ObjectiveConfig.local_codistillation()


@dataclasses.dataclass(frozen=True, kw_only=True)
class BaselineConfig(Config):
    """The models' architecture, objective and training budget, shared by all model kinds.

    Attributes:
        model: the column sheet (:class:`neurosim.model.ModelConfig`, TOML table
            ``[baseline.model]``, its dynamics ``[baseline.model.dynamics]``); the CNN follows its
            ``n_columns``, ``n_levels``, ``dim``, ``hidden`` and ``activation``. Its ``seed`` and
            ``shared`` are set per model kind and seed.
        objective: the rule's terms (:class:`neurosim.objectives.ObjectiveConfig`,
            ``[baseline.objective]``): its label term and co-distillation weights are those of
            ``codistill``; every kind takes what applies to it (:func:`objective_for`).
        readout: what the per-place readout reads: ``all_levels`` or ``top_level`` (the
            Forward-Forward kinds always read every level below their label level).
        image_readout: how a column model's image logits weigh its columns: ``mean`` or
            ``confidence`` (each column by its own confidence, no mask needed; see
            :class:`neurosim.readout.ColumnClassifier`). The CNN averages its places.
        lateral_kernel: spatial kernel of the CNN's level-to-level convolutions (odd, [1, 15]).
        steps: Adam steps of training, the same for every model and training-set size.
        batch_size: labelled images per step (>= 2, the contrastive term needs negatives).
        unlabelled_batch_size: unlabelled images per step (experiments that have them).
        lr: Adam learning rate (cosine schedule towards 0 over the run).
        weight_decay: L2 penalty (>= 0).
        grad_clip: gradient-norm clip of each model (> 0).
        eval_batch_size: images per forward pass when scoring (>= 1).
        flush_denormals: flush denormal floats to zero while training on a CPU
            (:attr:`neurosim.train.TrainConfig.flush_denormals`; the same models, faster).
        forward_forward: the Forward-Forward rule of the ``ff`` kinds
            (:class:`neurosim.forward_forward.ForwardForwardConfig`,
            ``[baseline.forward_forward]``).
    """

    model: ModelConfig = dataclasses.field(default_factory=flagship_model)
    objective: ObjectiveConfig = dataclasses.field(default_factory=_default_objective)
    readout: Literal["all_levels", "top_level"] = "all_levels"
    image_readout: Literal["mean", "confidence"] = "mean"
    lateral_kernel: int = 3
    steps: int = 180
    batch_size: int = 16
    unlabelled_batch_size: int = 0
    lr: float = 1e-2
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    eval_batch_size: int = 256
    flush_denormals: bool = True
    forward_forward: ForwardForwardConfig = dataclasses.field(default_factory=ForwardForwardConfig)

    moved_keys = {
        **{k: f"model.{k}" for k in _MODEL_KEYS},
        **{k: f"model.dynamics.{k}" for k in _DYNAMICS_KEYS},
        **{k: f"objective.{k}" for k in _OBJECTIVE_KEYS},
        "backprop_label_loss": "objective.label",
    }

    def __post_init__(self) -> None:
        if not isinstance(self.model, ModelConfig):
            raise ValueError(f"model must be a ModelConfig; got {self.model!r}")
        if not isinstance(self.objective, ObjectiveConfig):
            raise ValueError(f"objective must be an ObjectiveConfig; got {self.objective!r}")
        check_int("model.n_columns", self.model.n_columns, 4, 16_384)
        check_choice("readout", self.readout, READOUT_LEVELS)
        check_choice("image_readout", self.image_readout, IMAGE_READOUTS)
        check_int("lateral_kernel", self.lateral_kernel, 1, 15)
        if self.lateral_kernel % 2 == 0:
            raise ValueError(f"lateral_kernel must be odd, in [1, 15]; got {self.lateral_kernel}")
        check_int("steps", self.steps, 1, 10**7)
        check_int("batch_size", self.batch_size, 2, 65_536)
        check_int("unlabelled_batch_size", self.unlabelled_batch_size, 0, 65_536)
        check_range("lr", self.lr, 0.0, 1.0, lo_inclusive=False)
        check_range("weight_decay", self.weight_decay, 0.0, 1.0)
        check_range("grad_clip", self.grad_clip, 0.0, None, lo_inclusive=False)
        check_int("eval_batch_size", self.eval_batch_size, 1, 65_536)
        if not isinstance(self.forward_forward, ForwardForwardConfig):
            raise ValueError(
                f"forward_forward must be a ForwardForwardConfig; got {self.forward_forward!r}"
            )

    @classmethod
    def quick(cls, **overrides: Any) -> BaselineConfig:
        """A tiny sheet trained for a few steps: the size the experiments' ``--quick`` runs and
        the test suite use (``overrides`` change any top-level field; ``model=`` and
        ``objective=`` replace those tables)."""
        fields: dict[str, Any] = dict(
            model=flagship_model(n_columns=16, dim=8, hidden=(8,), k_cells=8),
            steps=3,
            batch_size=8,
        )
        fields.update(overrides)
        return cls(**fields)

    # read-only views of the sheet's shape (the fields live in ``model``)
    @property
    def n_columns(self) -> int:
        return self.model.n_columns

    @property
    def n_levels(self) -> int:
        return self.model.n_levels

    @property
    def k_cells(self) -> int:
        return self.model.k_cells

    @property
    def level_dims(self) -> tuple[int, ...]:
        """Embedding size of every level (``model.dim`` repeated when it is one integer)."""
        return self.model.level_dims

    @property
    def readout_dim(self) -> int:
        """Input size of the per-place readout."""
        dims = self.level_dims
        return sum(dims) if self.readout == "all_levels" else dims[-1]

    def model_config(self, *, shared: bool, seed: int) -> ModelConfig:
        """The :class:`neurosim.model.ModelConfig` of a column kind with this seed."""
        check_seed("seed", seed)
        return dataclasses.replace(self.model, shared=shared, seed=int(seed))


def _check_kind(kind: str) -> str:
    check_choice("kind", kind, MODEL_KINDS)
    return kind


def objective_for(kind: str, objective: ObjectiveConfig) -> ObjectiveConfig:
    """The objective of ``kind`` from the configured one (see the module doc).

    End-to-end kinds train on the label term alone (``lc-backprop+codistill`` adds the
    co-distillation terms), ``local`` is ``codistill`` without ``w_consensus`` and
    ``w_neighbour``, ``codistill`` is the configured rule, local; for the Forward-Forward kinds
    it is the companion of the FF rule (:func:`analyses.ff_kinds.ff_companion`).
    """
    _check_kind(kind)
    if kind in FF_KINDS:
        from analyses.ff_kinds import ff_companion

        return ff_companion(kind, objective)
    off = dict(w_consensus=0.0, w_neighbour=0.0, w_temporal=0.0)
    if kind == "codistill":
        return dataclasses.replace(objective, locality="local")
    if kind == "local":
        return dataclasses.replace(objective, locality="local", **off)
    if kind == "lc-backprop+codistill":
        return dataclasses.replace(objective, locality="bptt")
    return dataclasses.replace(objective, locality="bptt", w_contrastive=0.0, w_fill_in=0.0, **off)


# ------------------------------------------------------------------------------------ models


def build_model(kind: str, retina, config: BaselineConfig, *, seed: int, device="cpu") -> nn.Module:
    """An untrained model of ``kind`` for ``retina``.

    Column kinds return a :class:`~neurosim.readout.ColumnClassifier` over
    ``Model.from_retina(retina, ...)`` (unshared except for ``shared-columns``; unshared models
    pass :func:`neurosim.columns.assert_unshared`, checked here) with a fill-in decoder when the
    kind's objective has a fill-in term. ``cnn`` returns a :class:`ConvClassifier` over the
    retina's ``image_shape``. ``seed`` sets the initialisation (and long-range neighbours).
    """
    from neurosim.model import Model

    _check_kind(kind)
    if not isinstance(config, BaselineConfig):
        raise ValueError(f"config must be a BaselineConfig; got {type(config).__name__}")
    check_seed("seed", seed)
    if kind in FF_KINDS:
        from analyses.ff_kinds import ff_classifier

        return ff_classifier(kind, retina, config, seed=seed, device=device)
    gen = torch.Generator().manual_seed(int(seed) + 7919)
    m = config.model
    if kind == "cnn":
        model = ConvClassifier(
            tuple(retina.image_shape),
            n_places=m.n_columns,
            n_levels=m.n_levels,
            dim=m.dim,
            hidden=m.hidden,
            activation=m.activation,
            lateral_kernel=config.lateral_kernel,
            readout_levels=config.readout,
            generator=gen,
        )
        return model.to(device)
    shared = kind == "shared-columns"
    # Model.from_retina places the columns (uniform grid, or foveated lattice seeded by
    # model.lattice_seed) and lists each column's cells in its canonical order.
    sheet = Model.from_retina(retina, config.model_config(shared=shared, seed=seed), device=device)
    fill_in = objective_for(kind, config.objective).w_fill_in > 0
    model = ColumnClassifier(
        sheet,
        readout_levels=config.readout,
        fill_in=fill_in,
        image_readout=config.image_readout,
        generator=gen,
    )
    if not shared:
        assert_unshared(model)
    return model.to(device)


def _stack(models: Sequence[nn.Module]) -> nn.Module:
    return type(models[0]).stack(models)


def count_parameters(model: nn.Module) -> tuple[int, float]:
    """``(total stored parameters, parameters per column/place)``.

    Per column: for an unshared sheet the total divided by the number of columns (every column
    owns that many); for a shared sheet or the CNN every place uses all the parameters, so the
    total.
    """
    total = int(sum(p.numel() for p in model.parameters()))
    if isinstance(model, ColumnClassifier) and not model.shared:
        return total, total / model.sheet.n_columns
    return total, float(total)


def image_logits(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """The image's logits ``[B, K]`` of one (unstacked) model: a column model's
    :meth:`~neurosim.readout.ColumnClassifier.image_logits` (its ``image_readout``), the
    CNN's places averaged."""
    logits = model(inputs)
    if isinstance(model, ColumnClassifier):
        return model.image_logits(logits)[:, 0]
    return logits.mean(dim=1)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    kind: str,
    data: RetinaInputs,
    *,
    batch_size: int = 256,
    device="cpu",
    forward_forward: ForwardForwardConfig | None = None,
) -> float:
    """Accuracy of the image's logits (:func:`image_logits`) of one model on ``data``; the
    Forward-Forward kinds answer by goodness (:func:`analyses.ff_kinds.evaluate_ff`, with
    ``forward_forward``'s sign and short list; default
    :class:`~neurosim.forward_forward.ForwardForwardConfig`)."""
    if kind in FF_KINDS:
        from analyses.ff_kinds import evaluate_ff

        return evaluate_ff(model, data, forward_forward, batch_size=batch_size, device=device)
    model.eval()
    x = data.for_model(kind)
    correct = 0
    for lo in range(0, len(data), batch_size):
        logits = image_logits(model, x[lo : lo + batch_size].to(device))
        correct += int((logits.argmax(-1).cpu() == data.labels[lo : lo + batch_size]).sum())
    return correct / max(len(data), 1)


# ------------------------------------------------------------------------------------ training


@dataclasses.dataclass(eq=False)
class Job:
    """One model to train: its retina, data, test sets and seed.

    Attributes:
        retina: the :class:`retina.Retina` that produced the inputs.
        train: training inputs.
        tests: ``{name: RetinaInputs}`` scored after training (the first is the accuracy).
        seed: initialisation and data order.
        unlabelled: optional unlabelled inputs (labels ignored), ``unlabelled_batch_size`` of
            them per step.
        video: optional unlabelled videos, retina responses ``[V, F, n_cells]`` (scaled like
            the training inputs); ``unlabelled_batch_size`` of them per step go to the kinds
            whose objective learns from videos (:attr:`ObjectiveConfig.learns_from_video`).
        video_weights: ``[V, F, C]`` how much of the moving digit each column's input holds
            (for the ``"broadcast"`` temporal teacher).
    """

    retina: Any
    train: RetinaInputs
    tests: dict[str, RetinaInputs]
    seed: int
    unlabelled: RetinaInputs | None = None
    video: torch.Tensor | None = None
    video_weights: torch.Tensor | None = None


@dataclasses.dataclass(eq=False)
class TrainedModel:
    """A trained model and its scores.

    Attributes:
        kind: the model label.
        model: the trained module (:class:`ColumnClassifier` or :class:`ConvClassifier`, one
            model, unstacked), in ``eval`` mode.
        accuracy: test accuracy of the image's logits on the first test set.
        accuracies: accuracy on every named test set.
        n_parameters: stored parameters.
        n_parameters_per_column: parameters each column/place uses (:func:`count_parameters`).
        history: the model's per-step training history (xarray Dataset on ``step``).
        train_seconds: wall time of training (of the whole batch of jobs it was trained with).
        final_loss: mean training loss over the last 10 % of the steps.
        final_loss_change: the change of the training loss over the last 20 % of the steps, from
            a least-squares line (loss units; ~0 when the loss has flattened).
        checkpoint_accuracies: ``{step: {test name: accuracy}}`` at the checkpoints asked for
            (the last step included).
    """

    kind: str
    model: nn.Module
    accuracy: float
    accuracies: dict[str, float]
    n_parameters: int
    n_parameters_per_column: float
    history: Any
    train_seconds: float
    final_loss: float
    final_loss_change: float
    checkpoint_accuracies: dict[int, dict[str, float]] = dataclasses.field(default_factory=dict)


def loss_tail(losses: np.ndarray) -> tuple[float, float]:
    """``(mean of the last 10 %, fitted change over the last 20 %)`` of a loss curve."""
    losses = np.asarray(losses, dtype=float)
    tail = losses[-max(1, len(losses) // 10) :]
    window = losses[-max(2, len(losses) // 5) :]
    if len(window) < 2 or not np.all(np.isfinite(window)):
        return float(tail.mean()), float("nan")
    slope = np.polyfit(np.arange(len(window), dtype=float), window, 1)[0]
    return float(tail.mean()), float(slope * (len(window) - 1))


def make_loss_fn(kind: str, config: BaselineConfig, *, seeds: Sequence[int] = (0,)):
    """The :class:`neurosim.objectives.Objective` of ``kind`` (the Trainer's ``loss_fn``)."""
    from neurosim.objectives import Objective

    if kind in FF_KINDS:
        from analyses.ff_kinds import ff_objective

        return ff_objective(kind, config, seeds=seeds)
    return Objective(objective_for(kind, config.objective), total_steps=config.steps, seeds=seeds)


def _training_streams(kind: str, jobs: Sequence[Job], config: BaselineConfig):
    """``(data, unlabelled)`` of the Trainer: one labelled dataset per job, and its unlabelled
    images or videos (None without)."""
    data = [{"responses": j.train.for_model(kind), "labels": j.train.labels} for j in jobs]
    if not config.unlabelled_batch_size:
        return data, None
    videos = objective_for(kind, config.objective).learns_from_video and all(
        j.video is not None for j in jobs
    )
    if videos:
        unlabelled = [{"video": j.video} for j in jobs]
        if all(j.video_weights is not None for j in jobs):
            for u, j in zip(unlabelled, jobs, strict=True):
                u["video_weights"] = j.video_weights
        return data, unlabelled
    if any(j.video is not None for j in jobs):
        if videos is False and objective_for(kind, config.objective).learns_from_video:
            raise ValueError("jobs trained together must all have videos, or none")
        return data, None  # a kind that cannot learn from videos trains without them
    if all(j.unlabelled is None for j in jobs):
        return data, None  # nothing unlabelled for these jobs
    if any(j.unlabelled is None for j in jobs):
        raise ValueError("jobs trained together must all have unlabelled inputs, or none")
    unlabelled = [
        {
            "responses": j.unlabelled.for_model(kind),
            "labels": torch.full_like(j.unlabelled.labels, -1),
        }
        for j in jobs
    ]
    return data, unlabelled


def train_jobs(
    kind: str,
    jobs: Sequence[Job],
    config: BaselineConfig,
    *,
    device="cpu",
    quiet: bool = True,
    checkpoints: Sequence[int] = (),
) -> list[TrainedModel]:
    """Train one model of ``kind`` per job, all as one batched computation (replicas).

    Every job gets its own initialisation and data order from its seed and its own data;
    replica ``r`` ends as the model it would be trained alone (:mod:`neurosim.replicas`). The
    jobs must share the retina's cell count and image shape (their retinas may differ).
    Training: :class:`neurosim.train.Trainer` on a stream of ``config.steps`` Adam steps of
    ``config.batch_size`` images (a cosine schedule over the steps), whatever the training-set
    size. ``checkpoints``: steps (in ``[1, steps]``) after which every model is also scored on
    its test sets (:attr:`TrainedModel.checkpoint_accuracies`; the last step always is).

    Returns:
        one :class:`TrainedModel` per job, in order (each model unstacked).
    """
    from neurosim.train import TrainConfig, Trainer

    _check_kind(kind)
    jobs = list(jobs)
    if not jobs:
        raise ValueError("jobs must hold at least one job")
    for i, job in enumerate(jobs):
        if not job.tests:
            raise ValueError(f"jobs[{i}].tests must hold at least one test set")
    seeds = [int(j.seed) for j in jobs]
    models = [build_model(kind, j.retina, config, seed=s) for j, s in zip(jobs, seeds, strict=True)]
    n_total, n_per_column = count_parameters(models[0])
    stacked = _stack(models).to(device)
    data, unlabelled = _training_streams(kind, jobs, config)
    tcfg = TrainConfig(
        steps=config.steps,
        batch_size=config.batch_size,
        unlabelled_batch_size=config.unlabelled_batch_size if unlabelled else 0,
        lr=config.lr,
        weight_decay=config.weight_decay,
        schedule="cosine",
        grad_clip=config.grad_clip,
        flush_denormals=config.flush_denormals,
        seed=seeds[0],
    )
    trainer = Trainer(
        stacked,
        make_loss_fn(kind, config, seeds=seeds),
        data,
        tcfg,
        device=device,
        quiet=quiet,
        unlabelled=unlabelled,
        seeds=seeds,
    )
    scores, seconds = _fit_and_score(trainer, stacked, kind, jobs, config, checkpoints, device)
    history = trainer.history_dataset()
    return [
        _trained_model(
            kind, stacked, r, history, scores[r], config.steps, seconds, n_total, n_per_column
        )
        for r, _job in enumerate(jobs)
    ]


def _fit_and_score(trainer, stacked, kind: str, jobs: list[Job], config, checkpoints, device):
    """Train up to each checkpoint and the last step, scoring every replica on its tests there."""
    stops = sorted({check_int("checkpoint", int(c), 1, config.steps) for c in checkpoints})
    stops = [*(c for c in stops if c < config.steps), config.steps]
    scores: list[dict[int, dict[str, float]]] = [{} for _ in jobs]
    start = time.perf_counter()
    for stop in stops:
        trainer.fit(max_steps=stop)
        for r, job in enumerate(jobs):
            model = stacked.replica(r).eval()
            scores[r][stop] = {
                name: evaluate(
                    model,
                    kind,
                    data,
                    batch_size=config.eval_batch_size,
                    device=device,
                    forward_forward=config.forward_forward,
                )
                for name, data in job.tests.items()
            }
    return scores, time.perf_counter() - start


def _trained_model(kind, stacked, r, history, scores, steps, seconds, n_total, n_per_column):
    """Replica ``r`` unstacked, as a :class:`TrainedModel` with its history and scores."""
    model = stacked.replica(r).eval()
    h = history.isel(replica=r) if "replica" in history.dims else history
    mean, change = loss_tail(h["replica_loss"].values)
    accs = scores[steps]
    return TrainedModel(
        kind=kind,
        model=model,
        accuracy=next(iter(accs.values())),
        accuracies=accs,
        n_parameters=n_total,
        n_parameters_per_column=n_per_column,
        history=h,
        train_seconds=seconds,
        final_loss=mean,
        final_loss_change=change,
        checkpoint_accuracies=scores,
    )


def train_and_evaluate(
    kind: str,
    retina,
    train: RetinaInputs,
    tests: RetinaInputs | Mapping[str, RetinaInputs],
    config: BaselineConfig,
    *,
    seed: int,
    device="cpu",
    quiet: bool = True,
    unlabelled: RetinaInputs | None = None,
) -> TrainedModel:
    """Build a model of ``kind`` for ``retina``, train it on ``train`` and score it on ``tests``
    (one test set, scored as ``"test"``, or ``{name: RetinaInputs}``): :func:`train_jobs` with
    one job."""
    if not isinstance(train, RetinaInputs):
        raise ValueError(f"train must be RetinaInputs; got {type(train).__name__}")
    tests = {"test": tests} if isinstance(tests, RetinaInputs) else dict(tests)
    job = Job(retina=retina, train=train, tests=tests, seed=seed, unlabelled=unlabelled)
    return train_jobs(kind, [job], config, device=device, quiet=quiet)[0]
