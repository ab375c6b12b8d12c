"""The Forward-Forward model kinds of :mod:`analyses.baselines` (``ff``, ``ff+codistill``).

Their sheet (:func:`ff_model_config`: one more level on top for the label code, every net's
input length-normalised), the classifier over it, the objective
(:class:`neurosim.forward_forward.ForwardForward` with the co-distillation terms as its
companion) and the evaluation by goodness. :mod:`analyses.baselines` dispatches to these for
the FF kinds; it configures, :mod:`neurosim.forward_forward` defines the rule.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import nn

from analyses.baselines import N_CLASSES, BaselineConfig, objective_for
from analyses.inputs import RetinaInputs
from neurosim.columns import assert_unshared
from neurosim.forward_forward import ForwardForward, ForwardForwardConfig, classify
from neurosim.model import Model, ModelConfig
from neurosim.objectives import ObjectiveConfig
from neurosim.readout import ColumnClassifier

__all__ = ["ff_companion", "ff_model_config", "ff_classifier", "ff_objective", "evaluate_ff"]


def ff_companion(kind: str, objective: ObjectiveConfig) -> ObjectiveConfig:
    """The terms an FF kind adds to Forward-Forward: ``ff+codistill`` the configured rule's
    (local, without its label term, which FF replaces), ``ff`` the same without ``w_consensus``
    and ``w_neighbour``."""
    companion = dataclasses.replace(objective, locality="local", label="none")
    if kind == "ff":
        return dataclasses.replace(companion, w_consensus=0.0, w_neighbour=0.0)
    return companion


def ff_model_config(config: BaselineConfig, *, seed: int) -> ModelConfig:
    """The sheet of the FF kinds: ``config.model`` (unshared, ``seed``) with one more level of
    ``N_CLASSES`` units on top for the label code and every net's input length-normalised."""
    m = config.model_config(shared=False, seed=seed)
    dims = (*m.level_dims, N_CLASSES)
    return dataclasses.replace(m, n_levels=m.n_levels + 1, dim=dims, normalize="input")


def ff_classifier(kind: str, retina, config: BaselineConfig, *, seed: int, device) -> nn.Module:
    """An untrained FF kind: a :class:`ColumnClassifier` over :func:`ff_model_config` reading
    the levels below the label (checked unshared)."""
    gen = torch.Generator().manual_seed(int(seed) + 7919)
    sheet = Model.from_retina(retina, ff_model_config(config, seed=seed), device=device)
    fill_in = objective_for(kind, config.objective).w_fill_in > 0
    model = ColumnClassifier(sheet, readout_levels="below_top", fill_in=fill_in, generator=gen)
    assert_unshared(model)
    return model.to(device)


def ff_objective(kind: str, config: BaselineConfig, *, seeds: Sequence[int]):
    """The :class:`neurosim.forward_forward.ForwardForward` objective of an FF kind."""
    return ForwardForward(
        config.forward_forward,
        total_steps=config.steps,
        seeds=seeds,
        companion=objective_for(kind, config.objective),
    )


@torch.no_grad()
def evaluate_ff(
    model: nn.Module,
    data: RetinaInputs,
    forward_forward: ForwardForwardConfig | None,
    *,
    batch_size: int,
    device,
) -> float:
    """Accuracy of Forward-Forward's answer (:func:`neurosim.forward_forward.classify`: the
    label of highest total goodness, among all or the readout's short list)."""
    cfg = ForwardForwardConfig() if forward_forward is None else forward_forward
    model.eval()
    correct = 0
    for lo in range(0, len(data), batch_size):
        pred = classify(model, data.responses[lo : lo + batch_size].to(device), cfg)[:, 0]
        correct += int((pred.cpu() == data.labels[lo : lo + batch_size]).sum())
    return correct / max(len(data), 1)
