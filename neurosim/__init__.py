"""The cortex: unshared columns, lateral attention, rate dynamics, and the local rules that train
them (co-distillation, its label-only control, end-to-end backprop, Forward-Forward).

What a user needs is importable from here; each name is loaded on first use (importing
``neurosim`` or ``neurosim.config`` alone does not import torch)::

    from neurosim import Model, ModelConfig, Objective, ObjectiveConfig, Trainer, TrainConfig

The Brian2 backend is the subpackage :mod:`neurosim.brian`.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    # configs and checks
    "Config": "neurosim.config",
    "check_int": "neurosim.config",
    "check_range": "neurosim.config",
    "check_device": "neurosim.config",
    # columns, neighbours, attention, dynamics, the sheet
    "ColumnLinear": "neurosim.columns",
    "ColumnMLP": "neurosim.columns",
    "WeightSharingError": "neurosim.columns",
    "assert_unshared": "neurosim.columns",
    "tie_columns_": "neurosim.columns",
    "Neighbours": "neurosim.neighbours",
    "neighbour_index": "neurosim.neighbours",
    "level_neighbours": "neurosim.neighbours",
    "lateral_attention": "neurosim.attention",
    "DynamicsConfig": "neurosim.dynamics",
    "drift": "neurosim.dynamics",
    "euler": "neurosim.dynamics",
    "integrate": "neurosim.dynamics",
    "consensus": "neurosim.dynamics",
    "Model": "neurosim.model",
    "ModelConfig": "neurosim.model",
    "Settled": "neurosim.settled",
    "StepTerms": "neurosim.settled",
    "stack_models": "neurosim.replicas",
    "replica_model": "neurosim.replicas",
    # readouts and learning
    "ColumnClassifier": "neurosim.readout",
    "image_logits": "neurosim.readout",
    "Objective": "neurosim.objectives",
    "ObjectiveConfig": "neurosim.objectives",
    "Batch": "neurosim.objectives",
    "IGNORE_LABEL": "neurosim.objectives",
    "ForwardForward": "neurosim.forward_forward",
    "ForwardForwardConfig": "neurosim.forward_forward",
    "collapse_report": "neurosim.collapse",
    "level_rms": "neurosim.collapse",
    "Trainer": "neurosim.train",
    "TrainConfig": "neurosim.train",
    # results
    "settled_dataset": "neurosim.export",
    "trajectory_dataset": "neurosim.export",
    "to_netcdf": "neurosim.export",
    "open_results": "neurosim.export",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'neurosim' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
