"""The Brian2 objects of one network: cells, levels, column nets, lateral attention, monitors.

:func:`assemble` creates them from a :class:`~neurosim.brian.spec.ModelSpec` and a stimulus
(inside the codegen preferences of :func:`neurosim.brian.network.build_network`); the pieces are
one function each. Every object gets an explicit name: an auto-numbered one would change the
generated code, and thus defeat the compiled-code cache, for every further network built in the
process.

Order within one time step (``when`` / ``order``): all summed variables (``before_groups``,
ordered by depth: pixels -> cells -> hidden layers -> level inputs), then ``lateral``
(``before_groups``, last), then every level's state update (``groups``). Every term is
therefore computed from the states at time t, as in the torch engine (a Jacobi update of all
levels).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from neurosim.attention import lateral_attention
from neurosim.brian.equations import gelu_function, hidden_equations, level_equations
from neurosim.brian.spec import ColumnNetSpec, ModelSpec

__all__ = ["TERMS", "assemble"]

#: the per-step terms that ``record_terms`` monitors, as the level equations name them
TERMS = ("bottom_up", "top_down", "lateral", "consensus")

_SUMMED_WHEN = "before_groups"
_LATERAL_ORDER = 1000


@dataclasses.dataclass
class _Build:
    """What the assembly functions share while they create one network.

    Attributes:
        b2: the ``brian2`` module.
        spec: the exported model.
        dt_ms: the Euler step (ms), the model's.
        clock: the network's one ``Clock`` (``dt = dt_ms``).
        namespace: external names of the equations (functions, ``TimedArray`` inputs).
        objects: every object created so far, in creation order (the ``Network``'s contents).
    """

    b2: Any
    spec: ModelSpec
    dt_ms: float
    clock: Any
    namespace: dict[str, Any]
    objects: list[Any] = dataclasses.field(default_factory=list)


#: neurosim.dynamics integrator -> Brian2 state-update method
_METHODS = {"euler": "euler", "exponential": "exact"}


def _column_major(c: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """``column`` and ``unit`` of every neuron of a group of ``c * width`` neurons."""
    idx = np.arange(c * width)
    return idx // width, idx % width


def _place(build: _Build, group: Any, width: int) -> None:
    """Set ``column``, ``unit``, ``x_deg``, ``y_deg`` (deg) of a group of ``C * width``."""
    col, unit = _column_major(build.spec.n_columns, width)
    group.column[:] = col
    group.unit[:] = unit
    group.x_deg[:] = build.spec.positions_deg[col, 0]
    group.y_deg[:] = build.spec.positions_deg[col, 1]


def _summed_synapses(
    build: _Build,
    name: str,
    pre: tuple[Any, str, np.ndarray],
    post: tuple[Any, str, np.ndarray],
    weights: np.ndarray,
    order: int,
) -> Any:
    """``Synapses`` writing ``post_var = sum w * pre_var`` (a summed variable), one per pair.

    ``pre`` / ``post``: ``(group, variable, neuron indices [n_synapses])``; ``weights
    [n_synapses]``. The summed updater runs ``before_groups`` at ``order`` (its depth).
    """
    (source, src_var, pre_idx), (target, tgt_var, post_idx) = pre, post
    syn = build.b2.Synapses(
        source,
        target,
        model=f"w : 1 (constant)\n{tgt_var}_post = w * {src_var}_pre : 1 (summed)",
        clock=build.clock,
        name=name,
    )
    syn.connect(i=pre_idx, j=post_idx)
    syn.w[:] = weights
    for updater in syn.summed_updaters.values():
        updater.when = _SUMMED_WHEN
        updater.order = order
    build.objects.append(syn)
    return syn


def _retina_cells(
    build: _Build, frames: np.ndarray, retina: Any, is_image: bool
) -> tuple[Any, list[Any]]:
    """The ``retina`` group (``rate`` = cell response) and its drive.

    With ``is_image``, ``frames [n_frames, H*W]`` are pixel luminances of a ``pixels`` group
    (``TimedArray``) feeding the cells through ``Synapses`` holding ``retina.operator`` (the
    retina is linear); otherwise ``frames [n_frames, n_cells]`` are the responses themselves,
    read each step. Returns the cells and the operator's Synapses (empty without an image).
    """
    b2, spec = build.b2, build.spec
    dt = build.dt_ms * b2.ms
    cell_pos = np.zeros((spec.n_cells, 2))
    if retina is not None and hasattr(retina, "positions_deg"):
        cell_pos = np.asarray(retina.positions_deg, dtype=np.float64)
    cells = b2.NeuronGroup(
        spec.n_cells,
        "rate : 1\nx_deg : 1 (constant)\ny_deg : 1 (constant)",
        clock=build.clock,
        name="retina",
    )
    cells.x_deg[:] = cell_pos[:, 0]
    cells.y_deg[:] = cell_pos[:, 1]
    build.objects.append(cells)
    if not is_image:
        build.namespace["cell_responses"] = b2.TimedArray(
            frames, dt=dt, name="neurosim_cell_responses"
        )
        updater = cells.run_regularly("rate = cell_responses(t, i)", when=_SUMMED_WHEN, order=0)
        build.objects.append(updater)
        return cells, []
    build.namespace["image_luminance"] = b2.TimedArray(
        frames, dt=dt, name="neurosim_image_luminance"
    )
    pixels = b2.NeuronGroup(
        frames.shape[1], "luminance = image_luminance(t, i) : 1", clock=build.clock, name="pixels"
    )
    build.objects.append(pixels)
    op = retina.operator.tocoo()
    keep = op.data != 0
    syn = _summed_synapses(
        build,
        "retina_operator",
        (pixels, "luminance", op.col[keep]),
        (cells, "rate", op.row[keep]),
        op.data[keep],
        0,
    )
    return cells, [syn]


def _levels(build: _Build, x0: np.ndarray) -> list[Any]:
    """One ``NeuronGroup`` ``level{l}`` of ``C * dim[l]`` rate units per level, state ``x0``.

    ``x0 [C, L, D]`` is the initial state; neuron ``column * dim[l] + unit``.
    """
    b2, spec = build.b2, build.spec
    levels = []
    for lv in range(spec.n_levels):
        has_td = lv < spec.n_levels - 1
        eqs = level_equations(
            has_top_down=has_td,
            position_drive=has_td and len(spec.top_down[lv].weights) == 1,
            encoding=spec.position_encoding,
            n_frequencies=spec.n_frequencies,
        )
        d_lv = spec.level_dims[lv]
        grp = b2.NeuronGroup(
            spec.n_columns * d_lv,
            eqs,
            # euler: r + dt (c - r) / tau; exact: c + (r - c) exp(-dt / tau) for the consensus c
            # held over the step (a summed variable): the torch engine's two integrators
            method=_METHODS[spec.dynamics.integrator],
            clock=build.clock,
            name=f"level{lv}",
        )
        _place(build, grp, d_lv)
        grp.tau = spec.tau_ms * b2.ms
        a_bottom_up, a_top_down, a_lateral, a_previous = spec.term_weights[:, lv]
        grp.a_bottom_up = a_bottom_up
        grp.a_top_down = a_top_down
        grp.a_lateral = a_lateral
        grp.a_previous = a_previous
        grp.r[:] = x0[:, lv, :d_lv].ravel()
        levels.append(grp)
        build.objects.append(grp)
    return levels


def _hidden_group(build: _Build, net: ColumnNetSpec, k: int) -> Any:
    """The ``NeuronGroup`` ``{net}_h{k}`` of hidden layer ``k`` (``C * width`` instantaneous
    units, its bias set)."""
    spec = build.spec
    width = net.weights[k].shape[2]
    eqs = hidden_equations(
        net.activation,
        position_drive=k == 0 and net.n_position > 0,
        encoding=spec.position_encoding,
        n_frequencies=spec.n_frequencies,
    )
    grp = build.b2.NeuronGroup(
        spec.n_columns * width, eqs, clock=build.clock, name=f"{net.name}_h{k}"
    )
    _place(build, grp, width)
    grp.h_bias[:] = net.biases[k].ravel()
    build.objects.append(grp)
    return grp


def _column_net(
    build: _Build,
    net: ColumnNetSpec,
    source: tuple[Any, str],
    target: tuple[Any, str],
    base_order: int,
) -> tuple[list[Any], list[Any]]:
    """One per-column MLP: a hidden group per hidden layer and one ``Synapses`` per layer.

    ``source``: ``(group, variable)`` it reads (the cells' ``rate`` for the encoder, whose
    first layer picks each column's cells through ``spec.cell_index``; else a level's ``r``).
    ``target``: ``(level group, "bu" | "td")``, the level whose ``{kind}_sum`` the last layer
    writes (and whose ``{kind}_bias`` gets its bias). The weights ``[C, d_in, d_out]`` only
    connect units of the same column. Returns the hidden groups and the synapses.
    """
    c = build.spec.n_columns
    from_cells = net is build.spec.encoder
    level, kind = target
    groups, syns = [], []
    src, src_var = source
    for k, (w, bias) in enumerate(zip(net.weights, net.biases, strict=True)):
        d_in, d_out = w.shape[1] - (net.n_position if k == 0 else 0), w.shape[2]
        cc, a, bb = np.meshgrid(np.arange(c), np.arange(d_in), np.arange(d_out), indexing="ij")
        pre = build.spec.cell_index[cc, a] if k == 0 and from_cells else cc * d_in + a
        if k == len(net.weights) - 1:
            dst, dst_var = level, f"{kind}_sum"
            level.variables[f"{kind}_bias"].set_value(bias.ravel())
        else:
            dst, dst_var = _hidden_group(build, net, k), "h_sum"
            groups.append(dst)
        if k == 0 and net.n_position:
            w_pos = w[:, d_in:]  # [C, P, d_out]
            for p in range(net.n_position):
                dst.variables[f"w_position_{p}"].set_value(w_pos[:, p, :].ravel())
        syn = _summed_synapses(
            build,
            f"{net.name}_w{k}",
            (src, src_var, pre.ravel()),
            (dst, dst_var, (cc * d_out + bb).ravel()),
            w[:, :d_in].ravel(),
            base_order + k,
        )
        syns.append(syn)
        src, src_var = dst, "h"
    return groups, syns


def _column_nets(
    build: _Build, cells: Any, levels: list[Any]
) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """Every column net: the encoder (cells -> level 0), bottom-up (l-1 -> l), top-down
    (l+1 -> l). Returns ``{net name: hidden groups}`` and ``{net name: synapses}``."""
    spec = build.spec
    nets = [(spec.encoder, (cells, "rate"), (levels[0], "bu"), 1)]
    nets += [
        (net, (levels[lv], "r"), (levels[lv + 1], "bu"), 0) for lv, net in enumerate(spec.bottom_up)
    ]
    nets += [
        (net, (levels[lv + 1], "r"), (levels[lv], "td"), 0) for lv, net in enumerate(spec.top_down)
    ]
    hidden, synapses = {}, {}
    for net, source, target, base_order in nets:
        hidden[net.name], synapses[net.name] = _column_net(build, net, source, target, base_order)
    return hidden, synapses


def _lateral_operation(build: _Build, levels: list[Any], betas: np.ndarray) -> Any:
    """The ``network_operation`` writing every level's ``lateral`` from the states at time t.

    ``lateral[c] = sum_n softmax_n(beta * <r_c, r_n>) r_n`` over the level's neighbours is
    computed by :func:`neurosim.attention.lateral_attention` itself, the torch engine's
    function, on tensors that share memory with Brian2's state arrays (``torch.from_numpy``,
    no copy): one implementation for both engines. ``betas [n_steps]``: the inverse
    temperature of each step (the model's schedule).
    """
    b2, spec = build.b2, build.spec
    c, dt_ms = spec.n_columns, build.dt_ms
    # Built once: lateral_attention caches its sparse graph per index tensor. Measured (one
    # thread, float64): 0.22-0.40 ms per level and step for C = 16-256 columns, against
    # 0.04-0.19 ms for the numpy copy this replaces; about 5% of a Brian2 step (~11 ms at
    # 16 columns x 3 levels x dim 8, Cython), and trajectories identical to 1e-15.
    neighbours = [
        (torch.from_numpy(index), None if mask is None else torch.from_numpy(mask))
        for index, mask in spec.neighbours
    ]

    def lateral_attention_op(t):
        """Write ``lateral`` of every level from its ``r`` at time ``t`` (a Quantity)."""
        step = min(int(round(float(t / b2.ms) / dt_ms)), len(betas) - 1)
        beta = float(betas[step])
        with torch.no_grad():
            for grp, (index, mask) in zip(levels, neighbours, strict=True):
                x = torch.from_numpy(grp.variables["r"].get_value().reshape(1, c, -1))
                lateral = lateral_attention(x, index, beta, mask=mask, check_index=False)
                grp.variables["lateral"].set_value(lateral.numpy().ravel())

    op = b2.NetworkOperation(
        lateral_attention_op,
        clock=build.clock,
        when=_SUMMED_WHEN,
        order=_LATERAL_ORDER,
        name="lateral_attention",
    )
    build.objects.append(op)
    return op


def _monitors(build: _Build, levels: list[Any], record_terms: bool) -> tuple[list[Any], list[Any]]:
    """``StateMonitor`` of ``r`` per level at the start of every step (the state at time t),
    and, with ``record_terms``, of :data:`TERMS` after the lateral operation."""
    b2 = build.b2
    monitors = [
        b2.StateMonitor(
            grp, "r", record=True, when="start", clock=build.clock, name=f"level{lv}_rate"
        )
        for lv, grp in enumerate(levels)
    ]
    term_monitors = []
    if record_terms:
        term_monitors = [
            b2.StateMonitor(
                grp,
                list(TERMS),
                record=True,
                when=_SUMMED_WHEN,
                order=_LATERAL_ORDER + 1,
                clock=build.clock,
                name=f"level{lv}_terms",
            )
            for lv, grp in enumerate(levels)
        ]
    build.objects += monitors + term_monitors
    return monitors, term_monitors


def _poisson_cells(build: _Build, cells: Any, gain_hz: float) -> Any:
    """Spiking cells firing with probability ``gain_hz * max(rate, 0) * dt`` per step; returns
    their ``SpikeMonitor``. An output only: spikes do not feed back into the rate network."""
    b2 = build.b2
    poisson = b2.NeuronGroup(
        build.spec.n_cells,
        "response : 1 (linked)\n"
        "poisson_gain : Hz (constant, shared)\n"
        "rate_hz = poisson_gain * clip(response, 0, inf) : Hz",
        threshold="rand() < rate_hz * dt",
        clock=build.clock,
        name="poisson_cells",
    )
    poisson.response = b2.linked_var(cells, "rate")
    poisson.poisson_gain = gain_hz * b2.Hz
    spikes = b2.SpikeMonitor(poisson, name="poisson_spikes")
    build.objects += [poisson, spikes]
    return spikes


def assemble(
    b2: Any,
    spec: ModelSpec,
    *,
    dt_ms: float,
    frames: np.ndarray,
    is_image: bool,
    retina: Any,
    x0: np.ndarray,
    betas: np.ndarray,
    record_terms: bool,
    gain_hz: float | None,
) -> dict[str, Any]:
    """Create the Brian2 objects of one network (call inside the codegen prefs context).

    Args:
        b2: the ``brian2`` module.
        spec: the exported model.
        dt_ms: the clock's step (ms), the model's Euler step.
        frames: ``[n_frames, n_cells]`` responses, or ``[n_frames, H*W]`` luminances with
            ``is_image`` (then ``retina`` holds the operator).
        x0: initial state ``[C, L, D]``; betas: ``[n_steps]`` inverse temperatures.
        record_terms: also monitor :data:`TERMS`; gain_hz: Poisson cells' gain (None: none).

    Returns:
        The fields of :class:`~neurosim.brian.network.BrianNetwork` that hold Brian2 objects:
        ``network``, ``levels``, ``cells``, ``hidden``, ``synapses``, ``monitors``,
        ``term_monitors``, ``spikes``, ``namespace``.
    """
    build = _Build(
        b2=b2,
        spec=spec,
        dt_ms=dt_ms,
        clock=b2.Clock(dt=dt_ms * b2.ms, name="neurosim_clock"),
        namespace={
            "neurosim_gelu": gelu_function(),
            "position_scale_deg": spec.position_scale_deg,
        },
    )
    cells, retina_synapses = _retina_cells(build, frames, retina, is_image)
    levels = _levels(build, x0)
    hidden, synapses = _column_nets(build, cells, levels)
    if retina_synapses:
        synapses = {"retina": retina_synapses, **synapses}
    _lateral_operation(build, levels, betas)
    monitors, term_monitors = _monitors(build, levels, record_terms)
    spikes = None if gain_hz is None else _poisson_cells(build, cells, gain_hz)
    return dict(
        network=b2.Network(*build.objects, name="neurosim_network"),
        levels=levels,
        cells=cells,
        hidden=hidden,
        synapses=synapses,
        monitors=monitors,
        term_monitors=term_monitors,
        spikes=spikes,
        namespace=build.namespace,
    )
