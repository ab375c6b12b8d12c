"""The cortex: unshared columns, lateral attention, rate dynamics and co-distillation."""

__version__ = "0.1.0"
