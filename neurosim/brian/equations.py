"""Brian2 text equations of the model's pieces: levels, hidden units, activations, positions.

All variables are dimensionless (``: 1``) except ``tau`` (``second``): the embedding rates of
neurosim are unitless numbers, and Brian2 checks the units of every equation.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from neurosim.brian.preferences import import_brian2

__all__ = [
    "gelu_function",
    "activation_expr",
    "position_expr",
    "position_equations",
    "evaluate_position_equations",
    "level_equations",
    "hidden_equations",
]

#: per-neuron parameters of every level and hidden group: its column, unit and place
_NEURON_PARAMETERS = [
    "column : integer (constant)",
    "unit : integer (constant)",
    "x_deg : 1 (constant)",
    "y_deg : 1 (constant)",
]


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


def _n_position_features(encoding: str, n_frequencies: int) -> int:
    """``P``: 2 (``u_x, u_y``) plus, for ``"fourier"``, 4 per octave."""
    return 2 if encoding == "xy" else 2 + 4 * n_frequencies


def evaluate_position_equations(
    positions_deg: np.ndarray, scale_deg: float, encoding: str, n_frequencies: int
) -> np.ndarray:
    """``[C, P]``: the features of :func:`position_expr`, their text evaluated with numpy.

    Not a second implementation of the encoding: the very expressions the Brian2 groups
    integrate, so that :func:`neurosim.brian.spec.model_spec` can compare them with the model's
    ``position_features`` before building. ``positions_deg [C, 2]`` (deg).
    """
    names = {
        "sin": np.sin,
        "cos": np.cos,
        "x_deg": positions_deg[:, 0],
        "y_deg": positions_deg[:, 1],
        "position_scale_deg": scale_deg,
    }
    n_pos = _n_position_features(encoding, n_frequencies)
    cols = [eval(position_expr(p, encoding), {"__builtins__": {}}, names) for p in range(n_pos)]
    return np.stack(cols, axis=1)


def position_equations(encoding: str, n_frequencies: int) -> list[str]:
    """Equation lines of the position drive ``sum_p w_position_p * feature_p(x_deg, y_deg)``.

    ``encoding`` and ``n_frequencies`` as the model's config (``position_encoding``).
    """
    n_pos = _n_position_features(encoding, n_frequencies)
    lines = [f"w_position_{p} : 1 (constant)" for p in range(n_pos)]
    drive = " + ".join(f"w_position_{p} * {position_expr(p, encoding)}" for p in range(n_pos))
    lines.append(f"position_drive = {drive} : 1")
    return lines


def level_equations(
    *, has_top_down: bool, position_drive: bool, encoding: str, n_frequencies: int
) -> str:
    """Equations of one level group: ``tau dr/dt = -r + consensus`` (Euler-integrated).

    ``consensus`` weighs the four terms with the normalised ``a_*`` of
    :func:`neurosim.dynamics.consensus`; ``bottom_up`` / ``top_down`` are the summed synaptic
    inputs ``bu_sum`` / ``td_sum`` plus the last layer's bias; ``lateral`` is written each step
    by the lateral-attention operation. Without a level above (``has_top_down=False``) the
    top-down term is 0. ``position_drive``: the top-down net is one linear layer, so this level
    also receives its position encoding (:func:`position_equations`).
    """
    eqs = [
        "dr/dt = (consensus - r) / tau : 1",
        "consensus = a_bottom_up * bottom_up + a_top_down * top_down"
        " + a_lateral * lateral + a_previous * r : 1",
        "bottom_up = bu_sum + bu_bias : 1",
        "bu_sum : 1",
        "bu_bias : 1 (constant)",
        "lateral : 1",
        "a_bottom_up : 1 (constant)",
        "a_top_down : 1 (constant)",
        "a_lateral : 1 (constant)",
        "a_previous : 1 (constant)",
        "tau : second (constant, shared)",
        *_NEURON_PARAMETERS,
    ]
    if has_top_down:
        eqs += ["td_sum : 1", "td_bias : 1 (constant)"]
        td = "td_sum + td_bias"
        if position_drive:
            td += " + position_drive"
            eqs += position_equations(encoding, n_frequencies)
        eqs.append(f"top_down = {td} : 1")
    else:
        eqs.append("top_down = 0 : 1")
    return "\n".join(eqs)


def hidden_equations(
    activation: str, *, position_drive: bool, encoding: str, n_frequencies: int
) -> str:
    """Equations of one hidden layer: the instantaneous rate ``h = act(h_sum + h_bias)``.

    ``h_sum`` is the summed synaptic input of the layer below (same time step, no delay: the
    torch MLP applies all its layers within one Euler step). ``position_drive``: the first
    layer of a top-down net, which also reads the column's position encoding.
    """
    eqs = ["h_sum : 1", "h_bias : 1 (constant)", *_NEURON_PARAMETERS]
    arg = "h_sum + h_bias"
    if position_drive:
        eqs += position_equations(encoding, n_frequencies)
        arg += " + position_drive"
    eqs.append(f"h = {activation_expr(activation, arg)} : 1")
    return "\n".join(eqs)
