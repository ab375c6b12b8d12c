"""The models compared by the flagship experiment, and one function that trains and scores them.

Five model kinds see the same retina, have the same topology (``n_levels`` levels of ``dim``
units at each of about ``n_columns`` places, the same hidden sizes), the same readout (a linear
map of the concatenated levels to class logits *at every place*, averaged over places into the
image's logits) and the same training budget (``steps`` Adam steps of ``batch_size`` images):

``cnn``
    a weight-shared convolutional network (the anchor users know). It reads the retina's output
    resampled onto the pixel grid, ``retina.render(responses)``: the regularised least-squares
    image that reproduces the responses (see :meth:`retina.Retina.render`). That is exactly the
    information the retina passes on, in the only geometry a convolution can use, for both the
    uniform and the foveated retina (on the foveated one the periphery arrives blurred). Level 0
    is a strided convolution (kernel ``2 s``, stride ``s``, chosen so the feature map has about
    ``n_columns`` places) followed by 1x1 convolutions through ``hidden`` (the column encoder's
    MLP, with a pixel patch in place of the column's cells); level ``l`` is a
    ``lateral_kernel x lateral_kernel`` convolution from level ``l - 1`` then 1x1 convolutions
    (the bottom-up MLP, the spatial kernel standing in for lateral attention); no top-down pass
    and no settling: the feed-forward network users know.
``shared-columns``
    :class:`neurosim.model.Model` with ``shared=True``: one set of weights for every column, also
    on the foveated retina where the columns' inputs mean different things (each reads its
    ``k_cells`` nearest cells, which cover more degrees in the periphery). Trained end to end by
    backpropagation through the settling; cross-entropy of the image's logits.
``lc-backprop``
    the same model with unshared columns, trained in the same way: labels only, no
    co-distillation. The locally connected baseline (Bartunov et al. 2018, NeurIPS, "Assessing
    the scalability of biologically-motivated deep learning algorithms"; Pogodin, Mehta,
    Lillicrap & Latham 2021, NeurIPS, "Towards biologically plausible convolutional networks").
``codistill``
    unshared columns trained by local co-distillation (:mod:`neurosim.learning`; seed 001,
    00:29-00:34): settled with ``detach_inputs=True`` (no gradient across columns or time
    steps). The loss of column ``c`` reaches only column ``c``'s own nets:

    * its own readout's label cross-entropy (per column, not of the image average);
    * consensus co-distillation: its bottom-up and top-down predictions at every step
      regressed on the detached consensus of their level
      (:func:`~neurosim.learning.consensus_codistillation_loss`);
    * output co-distillation: the ``T**2``-scaled KL to the detached attention-weighted soft
      predictions of its top-level neighbours at temperature ``T``
      (:func:`~neurosim.learning.neighbour_codistillation_loss`), switched on after a warm-up
      and ramped up (:func:`~neurosim.learning.codistillation_weight`);
    * an anti-collapse InfoNCE term per level (:func:`~neurosim.learning.contrastive_loss`): the
      column's embedding must pick the detached mean embedding of the *other* columns of its own
      image out of those of the other images in the batch.
``lc-backprop+codistill``
    ``lc-backprop`` plus the consensus and output co-distillation terms (end to end).

Public API (used by every experiment that trains these models)::

    retina = build_retina("foveated", n_cells=288, canvas_px=24, pixels_per_deg=2.0, seed=0)
    train = retina_inputs(retina, canvases.images, canvases.labels)
    test = retina_inputs(retina, test_canvases.images, test_canvases.labels, scale=train.scale)
    trained = train_and_evaluate("codistill", retina, train, test, BaselineConfig(),
                                 seed=0, device="cpu", quiet=True)
    trained.accuracy, trained.n_parameters, trained.model        # the trained ColumnClassifier
    trained.model.sheet.settle(test.responses)                     # its settled embeddings

:func:`build_model` alone gives an untrained model (for "before training" comparisons).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neurosim.columns import ACTIVATIONS, ColumnLinear, assert_unshared
from neurosim.config import (
    Config,
    check_choice,
    check_per_level,
    check_positive_int,
    check_range,
    check_seed,
)

__all__ = [
    "MODEL_KINDS",
    "RETINA_KINDS",
    "N_CLASSES",
    "BaselineConfig",
    "RetinaInputs",
    "TrainedModel",
    "ColumnClassifier",
    "ConvClassifier",
    "build_retina",
    "retina_inputs",
    "build_model",
    "count_parameters",
    "make_loss_fn",
    "image_logits",
    "evaluate",
    "train_and_evaluate",
]

#: the model labels, exactly as they appear in results files
MODEL_KINDS: tuple[str, ...] = (
    "cnn",
    "shared-columns",
    "lc-backprop",
    "codistill",
    "lc-backprop+codistill",
)
#: the retina labels
RETINA_KINDS: tuple[str, ...] = ("uniform", "foveated")
#: digit classes
N_CLASSES = 10


@dataclasses.dataclass(frozen=True, kw_only=True)
class BaselineConfig(Config):
    """Architecture, training budget and co-distillation settings shared by all model kinds.

    Attributes:
        n_columns: columns of the sheet (>= 4); the CNN's feature map has about as many places.
        n_levels: levels per column / convolutional stages (>= 1).
        dim: embedding size of a level = channels of a CNN stage (>= 1), or one size per level
            (a list of ``n_levels`` integers, as ``ModelConfig.dim``).
        hidden: hidden layer sizes of every per-column MLP / 1x1-conv stack.
        activation: gelu | relu | tanh | silu.
        k_cells: retina cells read by each column (>= 1).
        neighbour_k: lateral neighbours per column at level 0 (widened by ``neighbour_growth``).
        neighbour_growth: widening of the neighbourhood per level (>= 1).
        n_steps: Euler steps of one settling (>= 1).
        tau_ms, dt_ms: time constant and Euler step of the rate dynamics (0 < dt < tau).
        beta: inverse temperature of lateral attention (>= 0).
        w_bottom_up, w_top_down, w_lateral, w_previous: consensus weights (>= 0).
        position_encoding: ``xy`` or ``fourier`` input of the top-down neural field.
        readout: what the per-place readout reads: ``all_levels`` (the levels concatenated) or
            ``top_level``.
        lateral_kernel: spatial kernel of the CNN's level-to-level convolutions (odd, >= 1).
        steps: Adam steps of training, the same for every model and training-set size (>= 1).
        batch_size: images per step (>= 2, the contrastive term needs negatives).
        lr: Adam learning rate (cosine schedule towards 0 over the run).
        weight_decay: L2 penalty (>= 0).
        grad_clip: global gradient-norm clip (> 0).
        backprop_label_loss: label loss of the end-to-end kinds: ``image`` (cross-entropy of the
            image's averaged logits) or ``column`` (mean of every place's own cross-entropy).
        temperature: ``T`` of the neighbours' soft targets (> 0).
        w_consensus: weight of consensus co-distillation (>= 0).
        w_neighbour: weight of output co-distillation once ramped up (>= 0).
        w_contrastive: weight of the anti-collapse InfoNCE term (>= 0).
        contrastive_temperature: its temperature (> 0).
        warmup_fraction: fraction of ``steps`` before output co-distillation starts ([0, 1)).
        ramp_fraction: fraction of ``steps`` over which it ramps up to ``w_neighbour``.
        eval_batch_size: images per forward pass when scoring (>= 1).
        lattice_seed: seed of the foveated column lattice (``ModelConfig.lattice_seed``). The
            column positions belong to the retina, not to the model's initialisation: every
            model and seed on one retina gets the same columns.
    """

    n_columns: int = 36
    n_levels: int = 2
    dim: int | tuple[int, ...] = 16
    hidden: tuple[int, ...] = (32,)
    activation: Literal["gelu", "relu", "tanh", "silu"] = "gelu"
    k_cells: int = 64
    neighbour_k: int = 4
    neighbour_growth: float = 1.5
    n_steps: int = 2
    tau_ms: float = 20.0
    dt_ms: float = 10.0
    beta: float = 1.0
    w_bottom_up: float = 1.0
    w_top_down: float = 1.0
    w_lateral: float = 1.0
    w_previous: float = 1.0
    position_encoding: Literal["xy", "fourier"] = "fourier"
    readout: Literal["all_levels", "top_level"] = "all_levels"
    lateral_kernel: int = 3
    steps: int = 180
    batch_size: int = 16
    lr: float = 1e-2
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    backprop_label_loss: Literal["image", "column"] = "image"
    temperature: float = 2.0
    w_consensus: float = 0.1
    w_neighbour: float = 1.0
    w_contrastive: float = 0.02
    contrastive_temperature: float = 0.5
    warmup_fraction: float = 0.3
    ramp_fraction: float = 0.2
    eval_batch_size: int = 256
    lattice_seed: int = 0

    def __post_init__(self) -> None:
        check_positive_int("n_columns", self.n_columns)
        check_range("n_columns", self.n_columns, 4, None)
        check_positive_int("n_levels", self.n_levels)
        check_per_level("dim", self.dim, self.n_levels)
        for i, h in enumerate(self.hidden):
            check_positive_int(f"hidden[{i}]", h)
        check_choice("activation", self.activation, tuple(ACTIVATIONS))
        check_positive_int("k_cells", self.k_cells)
        check_positive_int("neighbour_k", self.neighbour_k, self.n_columns - 1)
        check_range("neighbour_growth", self.neighbour_growth, 1.0, 1e6)
        check_positive_int("n_steps", self.n_steps)
        check_range("tau_ms", self.tau_ms, 0.0, None, lo_inclusive=False)
        check_range("dt_ms", self.dt_ms, 0.0, self.tau_ms, lo_inclusive=False, hi_inclusive=False)
        check_range("beta", self.beta, 0.0, 1e6)
        for name in ("w_bottom_up", "w_top_down", "w_lateral", "w_previous"):
            check_range(name, getattr(self, name), 0.0, 1e6)
        check_choice("position_encoding", self.position_encoding, ("xy", "fourier"))
        check_choice("readout", self.readout, ("all_levels", "top_level"))
        check_positive_int("lateral_kernel", self.lateral_kernel, 15)
        if self.lateral_kernel % 2 == 0:
            raise ValueError(f"lateral_kernel must be odd, in [1, 15]; got {self.lateral_kernel}")
        check_positive_int("steps", self.steps)
        check_positive_int("batch_size", self.batch_size)
        check_range("batch_size", self.batch_size, 2, None)
        check_range("lr", self.lr, 0.0, 1.0, lo_inclusive=False)
        check_range("weight_decay", self.weight_decay, 0.0, 1.0)
        check_range("grad_clip", self.grad_clip, 0.0, None, lo_inclusive=False)
        check_choice("backprop_label_loss", self.backprop_label_loss, ("image", "column"))
        check_range("temperature", self.temperature, 0.0, 100.0, lo_inclusive=False)
        for name in ("w_consensus", "w_neighbour", "w_contrastive"):
            check_range(name, getattr(self, name), 0.0, 1e6)
        check_range(
            "contrastive_temperature", self.contrastive_temperature, 0.0, 100.0, lo_inclusive=False
        )
        check_range("warmup_fraction", self.warmup_fraction, 0.0, 1.0, hi_inclusive=False)
        check_range("ramp_fraction", self.ramp_fraction, 0.0, 1.0)
        check_positive_int("eval_batch_size", self.eval_batch_size)
        check_seed("lattice_seed", self.lattice_seed)

    def model_config(self, *, shared: bool, seed: int):
        """The :class:`neurosim.model.ModelConfig` of the column kinds."""
        from neurosim.dynamics import DynamicsConfig
        from neurosim.model import ModelConfig

        return ModelConfig(
            n_columns=self.n_columns,
            n_levels=self.n_levels,
            dim=self.dim,
            hidden=self.hidden,
            activation=self.activation,
            k_cells=self.k_cells,
            neighbour_k=self.neighbour_k,
            neighbour_growth=self.neighbour_growth,
            shared=shared,
            position_encoding=self.position_encoding,
            seed=seed,
            lattice_seed=self.lattice_seed,
            dynamics=DynamicsConfig(
                tau_ms=self.tau_ms,
                dt_ms=self.dt_ms,
                n_steps=self.n_steps,
                w_bottom_up=self.w_bottom_up,
                w_top_down=self.w_top_down,
                w_lateral=self.w_lateral,
                w_previous=self.w_previous,
                beta=self.beta,
            ),
        )

    @classmethod
    def quick(cls, **overrides: Any) -> BaselineConfig:
        """A tiny sheet trained for a few steps: the size the experiments' ``--quick`` runs and
        the test suite use (``overrides`` change any field)."""
        fields = dict(
            n_columns=16,
            n_levels=2,
            dim=8,
            hidden=(8,),
            k_cells=8,
            neighbour_k=4,
            n_steps=2,
            steps=3,
            batch_size=8,
        )
        fields.update(overrides)
        return cls(**fields)

    @property
    def level_dims(self) -> tuple[int, ...]:
        """Embedding size of every level (``dim`` repeated when it is one integer)."""
        return check_per_level("dim", self.dim, self.n_levels)

    @property
    def readout_dim(self) -> int:
        """Input size of the per-place readout."""
        dims = self.level_dims
        return sum(dims) if self.readout == "all_levels" else dims[-1]


def _check_kind(kind: str) -> str:
    check_choice("kind", kind, MODEL_KINDS)
    return kind


# ------------------------------------------------------------------------------------ retina


def build_retina(
    kind: str,
    *,
    n_cells: int,
    canvas_px: int,
    pixels_per_deg: float,
    seed: int = 0,
):
    """A ``uniform`` or ``foveated`` :class:`retina.Retina` covering the whole square canvas.

    Both kinds get the same number of cells over the same field, ``fov_deg = canvas_px /
    pixels_per_deg``, fixating the canvas centre.
    """
    from retina import Retina

    check_choice("retina", kind, RETINA_KINDS)
    check_positive_int("canvas_px", canvas_px)
    check_range("pixels_per_deg", pixels_per_deg, 0.0, None, lo_inclusive=False)
    make = Retina.uniform if kind == "uniform" else Retina.foveated
    return make(
        n_cells=n_cells,
        fov_deg=canvas_px / pixels_per_deg,
        image_shape=(canvas_px, canvas_px),
        pixels_per_deg=pixels_per_deg,
        seed=seed,
    )


@dataclasses.dataclass(frozen=True, eq=False)
class RetinaInputs:
    """What a retina passes on about a set of images, in the two forms the models read.

    Attributes:
        responses: ``[N, n_cells]`` float32 cell responses divided by ``scale`` (column kinds).
        images: ``[N, H, W]`` float32 ``retina.render(responses)`` divided by ``image_scale``
            (the CNN).
        labels: ``[N]`` int64.
        scale, image_scale: the divisors (standard deviations of the training pool, so that the
            test set is scaled like the training set).
    """

    responses: torch.Tensor
    images: torch.Tensor
    labels: torch.Tensor
    scale: float
    image_scale: float

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: np.ndarray | torch.Tensor) -> RetinaInputs:
        """The items at ``index`` (same scales)."""
        idx = torch.as_tensor(np.asarray(index), dtype=torch.long)
        return dataclasses.replace(
            self, responses=self.responses[idx], images=self.images[idx], labels=self.labels[idx]
        )


def retina_inputs(
    retina,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    scale: tuple[float, float] | None = None,
) -> RetinaInputs:
    """Apply ``retina`` to ``images [N, H, W]`` and render its responses back to pixels.

    Args:
        retina: a :class:`retina.Retina` whose ``image_shape`` is ``(H, W)``.
        images: ``[N, H, W]`` canvases in [0, 1].
        labels: ``[N]`` class labels.
        scale: ``(scale, image_scale)`` of a training pool (:attr:`RetinaInputs.scale`,
            :attr:`RetinaInputs.image_scale`); ``None`` computes them from these images.
    """
    images = np.asarray(images, dtype=np.float32)
    labels = np.asarray(labels)
    if images.ndim != 3 or labels.shape != (images.shape[0],):
        raise ValueError(
            f"images must be [N, H, W] and labels [N]; got {images.shape} and {labels.shape}"
        )
    resp = np.asarray(retina(images), dtype=np.float64)
    rendered = np.asarray(retina.render(resp), dtype=np.float64)
    if scale is None:
        s = float(resp.std()) or 1.0
        si = float(rendered.std()) or 1.0
    else:
        s, si = (float(v) for v in scale)
        if not (s > 0 and si > 0):
            raise ValueError(f"scale must be two numbers > 0; got {scale!r}")
    return RetinaInputs(
        responses=torch.as_tensor(resp / s, dtype=torch.float32),
        images=torch.as_tensor(rendered / si, dtype=torch.float32),
        labels=torch.as_tensor(labels, dtype=torch.long),
        scale=s,
        image_scale=si,
    )


# ------------------------------------------------------------------------------------ models


class ColumnClassifier(nn.Module):
    """A column sheet (:class:`neurosim.model.Model`) with a per-column readout of class logits.

    Args:
        sheet: the column model.
        readout_levels: ``"all_levels"`` or ``"top_level"``.
        n_classes: number of classes ``K``.
        generator: initialisation of the readout.

    The readout is a :class:`~neurosim.columns.ColumnLinear` ``[C, R, K]`` (``[1, R, K]``, one
    for all columns, when the sheet is shared), ``R = sum(dim)`` over the levels
    (``n_levels * dim`` for one size) or the top level's size.
    """

    def __init__(
        self,
        sheet: nn.Module,
        *,
        readout_levels: str = "all_levels",
        n_classes: int = N_CLASSES,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        check_choice("readout_levels", readout_levels, ("all_levels", "top_level"))
        self.sheet = sheet
        self.readout_levels = readout_levels
        cfg = sheet.config
        dims = cfg.level_dims
        r = sum(dims) if readout_levels == "all_levels" else dims[-1]
        self.readout = ColumnLinear(
            cfg.n_columns, r, n_classes, shared=cfg.shared, generator=generator
        )
        self.readout.to(sheet.device)

    @property
    def shared(self) -> bool:
        return bool(self.sheet.config.shared)

    def features(self, state: torch.Tensor) -> torch.Tensor:
        """Readout input ``[B, C, R]`` from a state ``[B, C, L, D]`` (padding of smaller levels
        dropped: ``R = sum(dim)`` or ``dim[-1]``)."""
        sheet = self.sheet
        if self.readout_levels == "top_level":
            return sheet.level(state, sheet.n_levels - 1)
        if sheet.ragged:
            return torch.cat([sheet.level(state, lv) for lv in range(sheet.n_levels)], dim=-1)
        return state.flatten(2)

    def column_logits(
        self, responses: torch.Tensor, *, detach_inputs: bool = False, return_trajectory=False
    ):
        """Settle on ``responses [B, n_cells]``; returns ``(logits [B, C, K], Settled)``."""
        settled = self.sheet.settle(
            responses, detach_inputs=detach_inputs, return_trajectory=return_trajectory
        )
        return self.readout(self.features(settled.state)), settled

    def forward(self, responses: torch.Tensor) -> torch.Tensor:
        """Per-column logits ``[B, C, K]`` (settled end to end)."""
        return self.column_logits(responses)[0]


class ConvClassifier(nn.Module):
    """The weight-shared CNN of the same topology: per-place logits ``[B, P, K]``.

    Args:
        image_shape: ``(H, W)`` of the rendered input.
        n_places: wanted number of places of the feature maps (about ``n_columns``).
        n_levels, dim, hidden, activation: as the column sheet (``dim`` one integer or one per
            level: the channels of each stage).
        lateral_kernel: odd kernel of the level-to-level convolutions.
        readout_levels: ``"all_levels"`` or ``"top_level"``.
        n_classes: ``K``.
        generator: initialisation (each weight U(-1/sqrt(fan_in), 1/sqrt(fan_in)), biases 0,
            as :class:`~neurosim.columns.ColumnLinear`).

    Level 0: ``Conv(1 -> h0, kernel 2s, stride s, padding (2s - s) // 2)`` with
    ``s = max(1, round(H / sqrt(n_places)))``, then 1x1 convs through ``hidden`` to ``dim[0]``.
    Level l: ``Conv(dim[l-1] -> h0, lateral_kernel, same padding)``, then 1x1 convs to
    ``dim[l]``.
    Readout: 1x1 conv of the (concatenated) levels to ``K``.
    """

    def __init__(
        self,
        image_shape: tuple[int, int],
        *,
        n_places: int,
        n_levels: int,
        dim: int | tuple[int, ...],
        hidden: tuple[int, ...],
        activation: str = "gelu",
        lateral_kernel: int = 3,
        readout_levels: str = "all_levels",
        n_classes: int = N_CLASSES,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        check_choice("activation", activation, tuple(ACTIVATIONS))
        check_choice("readout_levels", readout_levels, ("all_levels", "top_level"))
        h, w = (int(v) for v in image_shape)
        stride = max(1, int(round(min(h, w) / math.sqrt(n_places))))
        kernel = 2 * stride
        self.activation = activation
        self.readout_levels = readout_levels
        self.image_shape = (h, w)

        dims = tuple(dim) if isinstance(dim, (tuple, list)) else (int(dim),) * n_levels
        if len(dims) != n_levels:
            raise ValueError(f"dim must list n_levels={n_levels} sizes; got {list(dims)}")

        def stack(c_in: int, k: int, s: int, pad: int, d_out: int) -> nn.ModuleList:
            sizes = [*hidden, d_out]
            layers = [nn.Conv2d(c_in, sizes[0], k, stride=s, padding=pad)]
            layers += [nn.Conv2d(a, b, 1) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
            return nn.ModuleList(layers)

        self.levels = nn.ModuleList([stack(1, kernel, stride, (kernel - stride) // 2, dims[0])])
        for lv in range(1, n_levels):
            self.levels.append(
                stack(dims[lv - 1], lateral_kernel, 1, lateral_kernel // 2, dims[lv])
            )
        r = sum(dims) if readout_levels == "all_levels" else dims[-1]
        self.readout = nn.Conv2d(r, n_classes, 1)
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                    bound = 1.0 / math.sqrt(fan_in)
                    u = torch.rand(m.weight.shape, generator=generator)
                    m.weight.copy_((u * 2 - 1) * bound)
                    m.bias.zero_()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images [B, H, W] -> per-place logits [B, P, K]``."""
        if images.dim() != 3 or tuple(images.shape[1:]) != self.image_shape:
            raise ValueError(
                f"images must have shape [batch, {self.image_shape[0]}, {self.image_shape[1]}]; "
                f"got {tuple(images.shape)}"
            )
        act = ACTIVATIONS[self.activation]
        x = images.unsqueeze(1)
        outs = []
        for layers in self.levels:
            for i, layer in enumerate(layers):
                x = layer(x)
                if i < len(layers) - 1:
                    x = act(x)
            outs.append(x)
        feats = outs[-1] if self.readout_levels == "top_level" else torch.cat(outs, dim=1)
        logits = self.readout(feats)  # [B, K, h', w']
        return logits.flatten(2).transpose(1, 2)


def build_model(kind: str, retina, config: BaselineConfig, *, seed: int, device="cpu") -> nn.Module:
    """An untrained model of ``kind`` for ``retina``.

    Column kinds return a :class:`ColumnClassifier` over ``Model.from_retina(retina, ...)``
    (unshared except for ``shared-columns``; unshared models pass
    :func:`neurosim.columns.assert_unshared`, checked here). ``cnn`` returns a
    :class:`ConvClassifier` over the retina's ``image_shape``. ``seed`` sets the
    initialisation (and the model's long-range neighbours).
    """
    from neurosim.model import Model

    _check_kind(kind)
    if not isinstance(config, BaselineConfig):
        raise ValueError(f"config must be a BaselineConfig; got {type(config).__name__}")
    gen = torch.Generator().manual_seed(int(seed) + 7919)
    if kind == "cnn":
        model = ConvClassifier(
            tuple(retina.image_shape),
            n_places=config.n_columns,
            n_levels=config.n_levels,
            dim=config.dim,
            hidden=config.hidden,
            activation=config.activation,
            lateral_kernel=config.lateral_kernel,
            readout_levels=config.readout,
            generator=gen,
        )
        return model.to(device)
    shared = kind == "shared-columns"
    # Model.from_retina places the columns (uniform grid, or foveated lattice seeded by
    # config.lattice_seed) and lists each column's cells in its canonical order (polarity, row
    # offset, column offset), so a shared filter means one relative layout on a uniform retina.
    sheet = Model.from_retina(
        retina, config.model_config(shared=shared, seed=int(seed)), device=device
    )
    model = ColumnClassifier(sheet, readout_levels=config.readout, generator=gen)
    if not shared:
        assert_unshared(model)
    return model.to(device)


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


# ------------------------------------------------------------------------------------ losses


def image_logits(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """The image's logits ``[B, K]``: per-place logits averaged over places."""
    return model(inputs).mean(dim=1)


def _label_ce(logits: torch.Tensor, labels: torch.Tensor, mode: str) -> torch.Tensor:
    """``image``: CE of the place-averaged logits; ``column``: mean of each place's CE."""
    if mode == "image":
        return F.cross_entropy(logits.mean(dim=1), labels)
    k = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, k), labels.repeat_interleave(logits.shape[1]))


def _contrastive_levels(state: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE per level with detached leave-one-out positives (local: no cross-column grad)."""
    from neurosim.learning import contrastive_loss

    c = state.shape[1]
    total = state.new_zeros(())
    for lv in range(state.shape[2]):  # a loop over levels (<= a handful), not over columns
        e = state[:, :, lv]
        pos = ((e.sum(dim=1, keepdim=True) - e) / (c - 1)).detach()
        total = total + contrastive_loss(e, temperature, positives=pos)
    return total / state.shape[2]


def _neighbour_term(model: ColumnClassifier, logits, settled, temperature: float):
    """Output co-distillation towards the top level's attention-weighted neighbours."""
    from neurosim.attention import lateral_attention
    from neurosim.learning import neighbour_codistillation_loss

    nb = model.sheet.neighbours[-1]
    top = settled.state[:, :, -1].detach()
    _, weights = lateral_attention(
        top, nb.index, settled.betas[-1], mask=nb.mask, return_weights=True
    )
    return neighbour_codistillation_loss(logits, nb.index, weights.detach(), temperature)


def make_loss_fn(kind: str, config: BaselineConfig):
    """``loss_fn(model, (inputs, labels), step) -> dict`` for :class:`neurosim.train.Trainer`.

    Returned entries: ``loss`` (minimised), ``label`` and, for the co-distilling kinds,
    ``consensus``, ``neighbour`` (unweighted), ``neighbour_weight``, ``contrastive``.
    """
    from neurosim.learning import codistillation_weight, consensus_codistillation_loss

    _check_kind(kind)
    warmup = int(round(config.warmup_fraction * config.steps))
    ramp = int(round(config.ramp_fraction * config.steps))

    if kind in ("cnn", "shared-columns", "lc-backprop"):

        def loss_fn(model, batch, step):
            x, y = batch
            label = _label_ce(model(x), y, config.backprop_label_loss)
            return {"loss": label, "label": label.detach()}

        return loss_fn

    local = kind == "codistill"

    def codistill_loss_fn(model, batch, step):
        x, y = batch
        logits, settled = model.column_logits(x, detach_inputs=local, return_trajectory=True)
        label = _label_ce(logits, y, "column" if local else config.backprop_label_loss)
        cons = consensus_codistillation_loss(
            settled.bottom_up,
            settled.top_down,
            settled.consensus,
            top_down_levels=model.sheet.has_top_down,
            level_dims=model.sheet.level_dims if model.sheet.ragged else None,
        )
        w_nb = config.w_neighbour * codistillation_weight(int(step), warmup, ramp)
        neighbour = _neighbour_term(model, logits, settled, config.temperature)
        loss = label + config.w_consensus * cons + w_nb * neighbour
        out = {
            "label": label.detach(),
            "consensus": cons.detach(),
            "neighbour": neighbour.detach(),
            "neighbour_weight": torch.tensor(w_nb),
        }
        if local and config.w_contrastive > 0:
            contrastive = _contrastive_levels(settled.state, config.contrastive_temperature)
            loss = loss + config.w_contrastive * contrastive
            out["contrastive"] = contrastive.detach()
        out["loss"] = loss
        return out

    return codistill_loss_fn


# ------------------------------------------------------------------------------------ training


@dataclasses.dataclass(eq=False)
class TrainedModel:
    """A trained model and its scores.

    Attributes:
        kind: the model label.
        model: the trained module (:class:`ColumnClassifier` or :class:`ConvClassifier`), in
            ``eval`` mode.
        accuracy: test accuracy of the image's logits (``tests["test"]``).
        accuracies: accuracy on every named test set.
        n_parameters: stored parameters.
        n_parameters_per_column: parameters each column/place uses (:func:`count_parameters`).
        history: the trainer's metrics history (xarray Dataset).
        train_seconds: wall time of training.
        final_loss: mean loss over the last 10 % of the steps.
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


def _model_inputs(kind: str, data: RetinaInputs) -> torch.Tensor:
    return data.images if kind == "cnn" else data.responses


@torch.no_grad()
def evaluate(
    model: nn.Module, kind: str, data: RetinaInputs, *, batch_size: int = 256, device="cpu"
) -> float:
    """Accuracy of the image's logits (:func:`image_logits`) on ``data``."""
    model.eval()
    x = _model_inputs(kind, data)
    correct = 0
    for lo in range(0, len(data), batch_size):
        logits = image_logits(model, x[lo : lo + batch_size].to(device))
        correct += int((logits.argmax(-1).cpu() == data.labels[lo : lo + batch_size]).sum())
    return correct / max(len(data), 1)


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
) -> TrainedModel:
    """Build a model of ``kind`` for ``retina``, train it on ``train`` and score it on ``tests``.

    Training: :class:`neurosim.train.Trainer` with Adam, cosine schedule, ``config.steps`` steps
    of ``config.batch_size`` images whatever the training-set size (epochs =
    ``ceil(steps / steps_per_epoch)``, stopped after ``steps``), seeded by ``seed`` (shuffling
    and initialisation).

    Args:
        kind: one of :data:`MODEL_KINDS`.
        retina: the :class:`retina.Retina` that produced ``train``/``tests``.
        train: training inputs.
        tests: one test set (scored as ``"test"``) or ``{name: RetinaInputs}``; the first is
            :attr:`TrainedModel.accuracy`.
        config: :class:`BaselineConfig`.
        seed: initialisation and data order.
        device: torch device.
        quiet: hide the trainer's progress bar.
    """
    from neurosim.train import TrainConfig, Trainer

    _check_kind(kind)
    if not isinstance(train, RetinaInputs):
        raise ValueError(f"train must be RetinaInputs; got {type(train).__name__}")
    tests = {"test": tests} if isinstance(tests, RetinaInputs) else dict(tests)
    if not tests:
        raise ValueError("tests must hold at least one test set")
    model = build_model(kind, retina, config, seed=seed, device=device)
    n_total, n_per_column = count_parameters(model)
    batch = min(config.batch_size, len(train))
    steps_per_epoch = math.ceil(len(train) / batch)
    tcfg = TrainConfig(
        epochs=max(1, math.ceil(config.steps / steps_per_epoch)),
        batch_size=batch,
        lr=config.lr,
        weight_decay=config.weight_decay,
        schedule="cosine",
        grad_clip=config.grad_clip,
        seed=int(seed),
    )
    trainer = Trainer(
        model,
        make_loss_fn(kind, config),
        (_model_inputs(kind, train), train.labels),
        tcfg,
        device=device,
        quiet=quiet,
    )
    start = time.perf_counter()
    history = trainer.fit(max_steps=config.steps)
    seconds = time.perf_counter() - start
    losses = np.asarray(history["loss"].values, dtype=float)
    tail = losses[-max(1, len(losses) // 10) :]
    accs = {
        name: evaluate(model, kind, data, batch_size=config.eval_batch_size, device=device)
        for name, data in tests.items()
    }
    return TrainedModel(
        kind=kind,
        model=model,
        accuracy=next(iter(accs.values())),
        accuracies=accs,
        n_parameters=n_total,
        n_parameters_per_column=n_per_column,
        history=history,
        train_seconds=seconds,
        final_loss=float(tail.mean()),
    )
