"""Brian2 text equations of the model's pieces: activations and the position encoding."""

from __future__ import annotations

import functools
import math

from neurosim.brian.preferences import import_brian2

__all__ = ["gelu_function", "activation_expr", "position_expr", "position_equations"]


@functools.lru_cache(maxsize=1)
def gelu_function():
    """Brian2 ``Function`` for the exact (erf) GELU of ``torch.nn.functional.gelu``."""
    b2 = import_brian2()
    from scipy.special import erf

    @b2.implementation(
        "cython",
        """
from libc.math cimport erf as _neurosim_erf
cdef double neurosim_gelu(double x):
    return 0.5 * x * (1.0 + _neurosim_erf(x * 0.7071067811865476))
""",
        name="neurosim_gelu",
    )
    @b2.check_units(x=1, result=1)
    def neurosim_gelu(x):
        return 0.5 * x * (1.0 + erf(x * 0.7071067811865476))

    return neurosim_gelu


def activation_expr(activation: str, arg: str) -> str:
    """Brian2 expression of ``ACTIVATIONS[activation](arg)`` (:mod:`neurosim.columns`)."""
    if activation == "gelu":
        return f"neurosim_gelu({arg})"
    if activation == "relu":
        return f"clip({arg}, 0, inf)"
    if activation == "tanh":
        return f"tanh({arg})"
    if activation == "silu":
        return f"({arg}) / (1 + exp(-({arg})))"
    raise ValueError(
        f"activation must be one of ['gelu', 'relu', 'tanh', 'silu']; got {activation!r}"
    )


def position_expr(p: int, encoding: str) -> str:
    """Brian2 expression of position feature ``p`` in terms of ``x_deg``, ``y_deg``.

    Order as :func:`neurosim.model._position_features`: ``[u_x, u_y]`` then per octave ``i``
    ``[sin(2^i pi u_x), sin(2^i pi u_y), cos(2^i pi u_x), cos(2^i pi u_y)]``, ``u = pos / scale``.
    """
    coord = ("x_deg", "y_deg")[p % 2]
    u = f"({coord} / position_scale_deg)"
    if p < 2:
        return u
    octave, kind = divmod(p - 2, 4)
    fn = "sin" if kind < 2 else "cos"
    return f"{fn}({2.0**octave * math.pi!r} * {u})"


def position_equations(encoding: str, n_frequencies: int) -> list[str]:
    """Equation lines of the position drive ``sum_p w_position_p * feature_p(x_deg, y_deg)``.

    ``encoding`` and ``n_frequencies`` as the model's config (``position_encoding``).
    """
    n_pos = 2 if encoding == "xy" else 2 + 4 * n_frequencies
    lines = [f"w_position_{p} : 1 (constant)" for p in range(n_pos)]
    drive = " + ".join(f"w_position_{p} * {position_expr(p, encoding)}" for p in range(n_pos))
    lines.append(f"position_drive = {drive} : 1")
    return lines
