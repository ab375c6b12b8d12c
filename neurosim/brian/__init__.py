"""The same rate equations, built and run in Brian2.

Modules: :mod:`~neurosim.brian.spec` (what is read off the torch model),
:mod:`~neurosim.brian.equations` (Brian2 text equations), :mod:`~neurosim.brian.assemble`
(the Brian2 objects, one function each), :mod:`~neurosim.brian.network` (``build_network``,
``BrianNetwork.run``), :mod:`~neurosim.brian.preferences` (code generation and its cache).

Brian2: Stimberg, Brette & Goodman (2019), eLife 8:e47314.

A trained :class:`neurosim.model.Model` becomes a ``brian2.Network`` whose trajectory equals the
torch engine's (same forward-Euler step, float64): neuroscientists can then extend it with
Brian2's units, text equations, monitors and spiking neurons.

What becomes what
-----------------
``retina`` (``NeuronGroup``, one neuron per retina cell, ``x_deg``/``y_deg`` per neuron)
    ``rate`` (dimensionless) is the cell's response. With ``responses`` as input it is read each
    step from a ``TimedArray`` ``[n_frames, n_cells]``; with an ``image`` and a ``retina`` it is
    the summed variable of ``Synapses`` from a ``pixels`` group (luminance from a ``TimedArray``
    ``[n_frames, H*W]``) whose weights are the retina's sparse operator (the retina is linear:
    ``retina(image) = operator @ image``, :mod:`retina.sampler`).
``level{l}`` (one ``NeuronGroup`` per level, neuron ``column * dim[l] + unit``)
    ``tau dr/dt = -r + consensus`` with ``tau`` in ms and ``r`` dimensionless, ``consensus =
    a_bottom_up * bottom_up + a_top_down * top_down + a_lateral * lateral + a_previous * r``
    (the normalised term weights of :func:`neurosim.dynamics.consensus`); ``column``, ``unit``,
    ``x_deg``, ``y_deg`` are per-neuron parameters. Integrated with Brian2's ``euler`` method,
    ``r <- r + dt * (consensus - r) / tau``: the torch engine's :func:`~neurosim.dynamics.euler`
    of :func:`~neurosim.dynamics.drift`.
``{net}_h{k}`` (one ``NeuronGroup`` per hidden layer of every column MLP)
    neuron ``column * width + unit``. Hidden units are *instantaneous* rate units
    ``h = act(h_sum + h_bias)``: a subexpression of the summed synaptic input, evaluated within
    the same time step before the level state update. This is the exact counterpart of the
    torch MLP, which applies all its layers within one Euler step with no delay. A *fast* rate
    unit (``tau_h dh/dt = -h + act(...)``, ``tau_h << tau``) would only approximate it, with an
    error of order ``tau_h / tau``, and would force ``dt < tau_h``. The top-down nets' first
    layer also receives the position encoding of its column, written out as an equation in
    ``x_deg``, ``y_deg`` (a neural field; checked against :func:`neurosim.model.position_features`
    before building).
``Synapses`` (one per layer of every net; ``w`` per synapse)
    the unshared weights ``[n_columns, d_in, d_out]``, connecting unit ``a`` of column ``c``
    to unit ``b`` of the same column only; every pathway writes one summed variable of its
    target (``h_sum`` of a hidden group, ``bu_sum`` / ``td_sum`` of a level).
``lateral`` (a ``network_operation``, the documented exception)
    ``lateral[c] = sum_n softmax_n(beta * <e_c, e_n>) e_n`` over the neighbour index of the
    level, computed by the torch engine's own :func:`neurosim.attention.lateral_attention` on
    tensors that share Brian2's arrays. The softmax divides by a sum, over the neighbours, of
    exponentials of dot products between two columns' whole vectors: a summed synaptic variable
    can only add per-synapse terms that depend on one pre- and one post-synaptic *neuron* (one
    unit), so neither the dot product (a sum over units of another column) nor its normalised
    exponential can be written in Brian2 equations. The operation reads ``r`` of every level
    and writes the level's ``lateral`` parameter before the state update, with ``beta`` from
    the model's schedule at that step.
``poisson`` (optional ``NeuronGroup`` of spiking cells, one per retina cell)
    fires with probability ``rate_hz * dt`` per step, ``rate_hz = poisson_gain_hz *
    clip(response, 0, inf)`` in Hz: ON cells fire for positive contrast, OFF cells (negated ON
    responses) for negative. Spikes are an output for downstream spiking models; they do not
    feed back into the rate network (so parity with torch is unaffected).

Every term of a step is computed from the states at time t, as in the torch engine (a Jacobi
update of all levels; the schedule is in :mod:`~neurosim.brian.assemble`). ``StateMonitor``
records ``r`` at the start of every step; the final state is appended after the run, giving
``n_steps + 1`` states like ``Settled.trajectory``, returned in the torch engine's layout by
:func:`neurosim.export.trajectory_dataset`: ``rate [time, stimulus, column, level, unit]``.

Code generation: ``codegen="cython"`` (default), ``"numpy"`` or ``"auto"``; Brian2's global
preferences are set only while building and running, and each process compiles into its own
cache directory (:mod:`~neurosim.brian.preferences`).
"""

from neurosim.brian.network import BrianNetwork, build_network, relative_error, run
from neurosim.brian.preferences import CODEGEN_TARGETS, cython_available, default_cache_dir
from neurosim.brian.spec import ColumnNetSpec, model_spec
from neurosim.export import trajectory_dataset  # its home is neurosim.export; kept importable

__all__ = [
    "CODEGEN_TARGETS",
    "BrianNetwork",
    "ColumnNetSpec",
    "build_network",
    "run",
    "model_spec",
    "cython_available",
    "default_cache_dir",
    "trajectory_dataset",
    "relative_error",
]
