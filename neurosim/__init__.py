"""The cortex: unshared columns, lateral attention, rate dynamics and co-distillation."""

__version__ = "0.1.0"

# columns, attention, dynamics and the model (issue 3)
from neurosim.attention import lateral_attention  # noqa: E402
from neurosim.columns import (  # noqa: E402
    ColumnLinear,
    ColumnMLP,
    WeightSharingError,
    assert_unshared,
    tie_columns_,
)
from neurosim.dynamics import DynamicsConfig, consensus, drift, euler, integrate  # noqa: E402
from neurosim.model import Model, ModelConfig, Settled, StepTerms  # noqa: E402
from neurosim.neighbours import Neighbours, level_neighbours, neighbour_index  # noqa: E402

__all__ = [
    *globals().get("__all__", []),
    "ColumnLinear",
    "ColumnMLP",
    "WeightSharingError",
    "assert_unshared",
    "tie_columns_",
    "lateral_attention",
    "Neighbours",
    "neighbour_index",
    "level_neighbours",
    "DynamicsConfig",
    "drift",
    "euler",
    "integrate",
    "consensus",
    "Model",
    "ModelConfig",
    "Settled",
    "StepTerms",
]
