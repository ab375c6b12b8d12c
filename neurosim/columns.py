"""Unshared per-column layers: one weight tensor per layer, ``[n_columns, d_in, d_out]``.

Every column of the cortical sheet owns its own networks (the distillation talk, 00:07:36-00:13:48:
the brain cannot share weights between locations). Instead of one ``nn.Linear`` per column, a layer
keeps all columns' weights in a single tensor and applies them with one batched matmul
(``torch.bmm`` over the column dimension), so the cost is that of one big matmul, not of a Python
loop over columns.

``shared=True`` builds the weight-sharing baseline (a 1x1 convolution over the sheet, i.e. the CNN
case): one ``[1, d_in, d_out]`` weight used by every column. It exists for baselines and benchmarks
only and is never the default; :func:`assert_unshared` refuses such a model with a clear message.

Replicas: several independent models of one shape (seeds, training sets, retinas) can be trained
as one batched computation (:meth:`ColumnLinear.stack`): their columns are concatenated along the
column axis, so replica ``r`` owns columns ``r*C .. (r+1)*C - 1`` and every parameter keeps its
replica blocks along dim 0 (``[R*C, d_in, d_out]``; a shared layer holds one weight per replica,
``[R, d_in, d_out]``, its ``n_groups``). Nothing crosses replicas: each column still reads only its
own weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from neurosim.config import check_int

__all__ = [
    "ColumnLinear",
    "ColumnMLP",
    "WeightSharingError",
    "assert_unshared",
    "tie_columns_",
    "ACTIVATIONS",
]

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": nn.functional.gelu,
    "relu": torch.relu,
    "tanh": torch.tanh,
    "silu": nn.functional.silu,
}


class WeightSharingError(AssertionError):
    """Raised by :func:`assert_unshared` when columns share (or broadcast) weights."""


class ColumnLinear(nn.Module):
    """A linear layer with independent weights for every column.

    ``y[b, c] = x[b, c] @ weight[c] + bias[c]``.

    Args:
        n_columns: number of columns ``C`` (>= 1).
        d_in, d_out: input and output sizes (>= 1).
        shared: if True, one weight ``[1, d_in, d_out]`` serves all columns (baseline only).
        n_groups: with ``shared=True``, the number of column groups that each share one weight
            (``[n_groups, d_in, d_out]``, groups of ``n_columns / n_groups`` consecutive
            columns: the replicas of a stacked shared model); 1 otherwise.
        bias: whether to learn a per-column bias ``[C, d_out]``.
        generator: ``torch.Generator`` for the initialisation (CPU); None uses torch's default.
        device, dtype: where to allocate the parameters.

    Parameters:
        weight: ``[C, d_in, d_out]`` (``[n_groups, d_in, d_out]`` when shared).
        bias: ``[C, d_out]`` (``[n_groups, d_out]`` when shared), or None.

    Each column's weights are drawn independently from U(-1/sqrt(d_in), 1/sqrt(d_in)) (the
    ``nn.Linear`` default, Glorot-style bound); biases start at zero.
    """

    def __init__(
        self,
        n_columns: int,
        d_in: int,
        d_out: int,
        *,
        shared: bool = False,
        n_groups: int = 1,
        bias: bool = True,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_int("n_columns", n_columns, 1)
        check_int("d_in", d_in, 1)
        check_int("d_out", d_out, 1)
        check_int("n_groups", n_groups, 1, n_columns)
        if n_columns % n_groups or (n_groups > 1 and not shared):
            raise ValueError(
                f"n_groups must divide n_columns={n_columns} and is only for shared=True; "
                f"got {n_groups}"
            )
        self.n_columns = n_columns
        self.d_in = d_in
        self.d_out = d_out
        self.shared = bool(shared)
        self.n_groups = n_groups
        n_store = n_groups if self.shared else n_columns
        bound = 1.0 / math.sqrt(d_in)
        w = torch.rand(n_store, d_in, d_out, generator=generator, dtype=dtype or torch.float32)
        self.weight = nn.Parameter((w * 2.0 - 1.0).mul_(bound).to(device))
        if bias:
            self.bias = nn.Parameter(torch.zeros(n_store, d_out, dtype=w.dtype, device=device))
        else:
            self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """Apply every column's layer to its own input.

        Args:
            x: ``[B, C, d_x]``.
            extra: optional fixed per-column input ``[C, d_in - d_x]`` (no batch dim), treated as
                if concatenated after ``x`` on the last axis; it is computed once per call as a
                per-column bias instead of being copied for every batch element.

        Returns:
            ``[B, C, d_out]``.
        """
        d_x = self.d_in if extra is None else self.d_in - extra.shape[-1]
        if x.dim() != 3 or x.shape[1] != self.n_columns or x.shape[2] != d_x:
            raise ValueError(
                f"x must have shape [batch, {self.n_columns}, {d_x}]; got {tuple(x.shape)}"
            )
        w = self.weight
        bias = self.bias
        if extra is not None:
            if extra.dim() != 2 or extra.shape[0] != self.n_columns:
                raise ValueError(
                    f"extra must have shape [{self.n_columns}, {self.d_in - d_x}]; "
                    f"got {tuple(extra.shape)}"
                )
            # split, not two slices: its backward concatenates the two gradients instead of
            # adding each into a zero-filled copy of the whole weight.
            w, w_extra = torch.split(self.weight, [d_x, self.d_in - d_x], dim=1)
            if self.shared:
                g = self.n_groups
                e = torch.bmm(extra.view(g, -1, extra.shape[-1]), w_extra).reshape(-1, self.d_out)
                if bias is not None:  # [G, d_out] -> every column of its group
                    e = (e.view(g, -1, self.d_out) + bias[:, None]).reshape(-1, self.d_out)
                bias = e  # [C, d_out]
            else:
                e = torch.bmm(extra.unsqueeze(1), w_extra).squeeze(1)  # [C, d_out]
                bias = e if bias is None else e + bias
        if self.shared:
            return self._shared_forward(x, w, bias, per_column_bias=extra is not None)
        # Column-major batched matmul: [C, B, d_x] @ [C, d_x, d_out] -> [C, B, d_out].
        if bias is None:
            y = torch.bmm(x.transpose(0, 1), w)
        else:
            y = torch.baddbmm(bias.unsqueeze(1), x.transpose(0, 1), w)
        return y.transpose(0, 1)

    def _shared_forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        bias: torch.Tensor | None,
        *,
        per_column_bias: bool,
    ) -> torch.Tensor:
        """``x [B, C, d] @ w[group(c)] (+ bias)``: one plain matmul per group of columns."""
        b = x.shape[0]
        g = self.n_groups
        if g == 1:
            y = x @ w[0]
        else:  # [B, G, C/G, d] -> [G, B*C/G, d] @ [G, d, e]
            xg = x.view(b, g, -1, x.shape[-1]).transpose(0, 1).reshape(g, -1, x.shape[-1])
            y = torch.bmm(xg, w).view(g, b, -1, self.d_out).transpose(0, 1)
            y = y.reshape(b, self.n_columns, self.d_out)
        if bias is None:
            return y
        if per_column_bias:  # [C, d_out]
            return y + bias
        if g == 1:
            return y + bias[0]
        return (y.view(b, g, -1, self.d_out) + bias[None, :, None]).view(y.shape)

    @classmethod
    def stack(cls, layers: Sequence[ColumnLinear]) -> ColumnLinear:
        """One layer holding the columns of ``layers`` side by side (replicas, see the module
        doc): weights concatenated along dim 0 (copies), columns ``r*C .. (r+1)*C - 1`` are
        layer ``r``'s. All layers must have the same shape and sharing."""
        first = layers[0]
        for i, layer in enumerate(layers):
            same = (layer.n_columns, layer.d_in, layer.d_out, layer.shared, layer.bias is None)
            want = (first.n_columns, first.d_in, first.d_out, first.shared, first.bias is None)
            if same != want:
                raise ValueError(
                    f"layers[{i}] must have the shape of layers[0] (n_columns, d_in, d_out, "
                    f"shared, no bias) = {want}; got {same}"
                )
        out = cls.__new__(cls)
        nn.Module.__init__(out)
        out.n_columns = first.n_columns * len(layers)
        out.d_in, out.d_out, out.shared = first.d_in, first.d_out, first.shared
        out.n_groups = sum(layer.n_groups for layer in layers) if first.shared else 1
        with torch.no_grad():
            out.weight = nn.Parameter(torch.cat([layer.weight for layer in layers]))
            if first.bias is None:
                out.register_parameter("bias", None)
            else:
                out.bias = nn.Parameter(torch.cat([layer.bias for layer in layers]))
        return out

    def replica(self, r: int, n_replicas: int) -> ColumnLinear:
        """Replica ``r`` of a layer stacked from ``n_replicas`` layers, as a layer of its own
        (a copy of its weights)."""
        check_int("n_replicas", n_replicas, 1, self.n_columns)
        check_int("r", r, 0, n_replicas - 1)
        if self.n_columns % n_replicas or (self.shared and self.n_groups % n_replicas):
            raise ValueError(f"n_replicas={n_replicas} does not divide the layer's columns")
        out = ColumnLinear.__new__(ColumnLinear)
        nn.Module.__init__(out)
        out.n_columns = self.n_columns // n_replicas
        out.d_in, out.d_out, out.shared = self.d_in, self.d_out, self.shared
        out.n_groups = self.n_groups // n_replicas if self.shared else 1
        rows = self.weight.shape[0] // n_replicas
        with torch.no_grad():
            out.weight = nn.Parameter(self.weight[r * rows : (r + 1) * rows].clone())
            if self.bias is None:
                out.register_parameter("bias", None)
            else:
                out.bias = nn.Parameter(self.bias[r * rows : (r + 1) * rows].clone())
        return out

    def extra_repr(self) -> str:
        groups = f", n_groups={self.n_groups}" if self.shared and self.n_groups > 1 else ""
        return (
            f"n_columns={self.n_columns}, d_in={self.d_in}, d_out={self.d_out}, "
            f"shared={self.shared}{groups}, bias={self.bias is not None}"
        )


class ColumnMLP(nn.Module):
    """A per-column multilayer perceptron built from :class:`ColumnLinear` layers.

    Args:
        n_columns: number of columns ``C``.
        d_in: input size.
        hidden: hidden layer sizes (may be empty: then a single linear layer).
        d_out: output size.
        activation: one of ``ACTIVATIONS`` (``"gelu"``, ``"relu"``, ``"tanh"``, ``"silu"``),
            applied after every hidden layer (not after the output layer).
        shared: one set of weights for all columns (baseline only).
        generator, device, dtype: as for :class:`ColumnLinear`.

    ``forward(x [B, C, d_in]) -> [B, C, d_out]``.
    """

    def __init__(
        self,
        n_columns: int,
        d_in: int,
        hidden: Sequence[int],
        d_out: int,
        *,
        activation: str = "gelu",
        shared: bool = False,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {list(ACTIVATIONS)}; got {activation!r}")
        for i, h in enumerate(hidden):
            check_int(f"hidden[{i}]", h, 1)
        sizes = [d_in, *hidden, d_out]
        self.activation = activation
        self.shared = bool(shared)
        self.n_columns = n_columns
        self.layers = nn.ModuleList(
            ColumnLinear(
                n_columns,
                a,
                b,
                shared=shared,
                generator=generator,
                device=device,
                dtype=dtype,
            )
            for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """``x [B, C, d_x] -> [B, C, d_out]``.

        ``extra``: optional fixed per-column input ``[C, d_in - d_x]`` (e.g. the column's
        position), equivalent to concatenating it to every batch element of ``x``.
        """
        act = ACTIVATIONS[self.activation]
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x, extra) if i == 0 else layer(x)
            if i < last:
                x = act(x)
        return x

    @classmethod
    def stack(cls, mlps: Sequence[ColumnMLP]) -> ColumnMLP:
        """One MLP holding the columns of ``mlps`` side by side (replicas; see
        :meth:`ColumnLinear.stack`). All must have the same layer sizes and activation."""
        first = mlps[0]
        for i, m in enumerate(mlps):
            if m.activation != first.activation or len(m.layers) != len(first.layers):
                raise ValueError(
                    f"mlps[{i}] must have the activation and depth of mlps[0]; got "
                    f"{m.activation}/{len(m.layers)} vs {first.activation}/{len(first.layers)}"
                )
        out = cls.__new__(cls)
        nn.Module.__init__(out)
        out.activation, out.shared = first.activation, first.shared
        out.n_columns = sum(m.n_columns for m in mlps)
        out.layers = nn.ModuleList(
            ColumnLinear.stack([m.layers[i] for m in mlps]) for i in range(len(first.layers))
        )
        return out

    def replica(self, r: int, n_replicas: int) -> ColumnMLP:
        """Replica ``r`` of an MLP stacked from ``n_replicas`` MLPs, as an MLP of its own."""
        out = ColumnMLP.__new__(ColumnMLP)
        nn.Module.__init__(out)
        out.activation, out.shared = self.activation, self.shared
        out.layers = nn.ModuleList(layer.replica(r, n_replicas) for layer in self.layers)
        out.n_columns = out.layers[0].n_columns
        return out


def _self_overlaps(t: torch.Tensor) -> bool:
    """True if two different indices of ``t`` address the same memory (strides only)."""
    dims = sorted(
        ((st, sz) for st, sz in zip(t.stride(), t.shape, strict=True) if sz > 1),
        key=lambda p: p[0],
    )
    extent = 1
    for st, sz in dims:
        if st < extent:
            return True
        extent = st * (sz - 1) + extent
    return False


def _memory_span(t: torch.Tensor) -> tuple[int, int]:
    """Byte interval ``[start, end)`` of the storage region used by ``t``."""
    start = t.data_ptr()
    if t.numel() == 0:
        return start, start
    last = sum((sz - 1) * st for sz, st in zip(t.shape, t.stride(), strict=True))
    return start, start + (last + 1) * t.element_size()


def assert_unshared(model: nn.Module, *, check_values: bool = False) -> None:
    """Fail unless every column of ``model`` owns separate weights.

    Checks every :class:`ColumnLinear` inside ``model``:

    - built with ``shared=True``: fails with a message saying the model is weight-shared;
    - the column dimension of ``weight``/``bias`` has the module's ``n_columns`` entries and a
      nonzero stride (no ``expand`` / size-1 broadcast over columns);
    - no tensor addresses the same memory from two columns (internal overlap);
    - no two parameter tensors (of the same or different layers) overlap in storage, and no
      layer is registered twice (that would tie columns of different levels or nets);
    - ``check_values=True``: additionally, no two columns of a weight hold identical values
      (catches copies; off by default because tied initialisations are legitimate controls).

    Parameters that are not inside a ColumnLinear are reported too, since a plain layer applied
    to every column is weight sharing.

    Raises:
        WeightSharingError (an ``AssertionError``) describing the first violation.
    """
    seen: dict[int, str] = {}
    spans: list[tuple[int, int, str]] = []
    column_params: set[int] = set()
    n_layers = 0
    for name, module in model.named_modules(remove_duplicate=False):
        if not isinstance(module, ColumnLinear):
            continue
        n_layers += 1
        if id(module) in seen:
            raise WeightSharingError(
                f"layer {name!r} is the same module as {seen[id(module)]!r}: weights are shared"
            )
        seen[id(module)] = name or "<model>"
        if module.shared:
            raise WeightSharingError(
                f"the model is weight-shared: layer {name!r} was built with shared=True "
                "(one set of weights for all columns, a baseline); assert_unshared only "
                "accepts models built with shared=False"
            )
        for pname, p in (("weight", module.weight), ("bias", module.bias)):
            if p is None:
                continue
            full = f"{name}.{pname}" if name else pname
            column_params.add(id(p))
            if p.shape[0] != module.n_columns:
                raise WeightSharingError(
                    f"{full} has {p.shape[0]} column entries for {module.n_columns} columns: "
                    "it is broadcast over columns"
                )
            if module.n_columns > 1 and p.stride(0) == 0:
                raise WeightSharingError(f"{full} has stride 0 over columns: it is broadcast")
            if _self_overlaps(p):
                raise WeightSharingError(f"{full}: two columns address the same memory")
            lo, hi = _memory_span(p)
            for olo, ohi, oname in spans:
                if lo < ohi and olo < hi:
                    raise WeightSharingError(f"{full} shares storage with {oname}")
            spans.append((lo, hi, full))
            if check_values and pname == "weight" and module.n_columns > 1:
                flat = p.detach().reshape(module.n_columns, -1)
                if torch.unique(flat, dim=0).shape[0] < module.n_columns:
                    raise WeightSharingError(f"{full}: two columns hold identical weights")
    if n_layers == 0:
        raise WeightSharingError("model contains no ColumnLinear layer: nothing is per-column")
    for name, p in model.named_parameters():
        if id(p) not in column_params:
            raise WeightSharingError(
                f"parameter {name!r} is not a per-column ColumnLinear parameter: "
                "it would be shared by all columns"
            )


@torch.no_grad()
def tie_columns_(
    module: nn.Module,
    *,
    source_column: int = 0,
    noise_std: float = 0.0,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """Set every column's weights to those of ``source_column`` (+ independent noise), in place.

    Storage stays unshared (each column keeps its own copy, so training would untie them); this
    is how a weight-shared network is embedded in the unshared model, e.g. to show that tied
    columns reproduce the ``shared=True`` output, or to build a model whose columns compute
    nearly the same function. ``noise_std`` is relative to each layer's init bound
    ``1/sqrt(d_in)``. Returns ``module``.
    """
    if noise_std < 0 or math.isnan(noise_std):
        raise ValueError(f"noise_std must be in [0, inf); got {noise_std!r}")
    for layer in module.modules():
        if not isinstance(layer, ColumnLinear) or layer.shared:
            continue
        if not 0 <= source_column < layer.n_columns:
            raise ValueError(
                f"source_column must be in [0, {layer.n_columns - 1}]; got {source_column}"
            )
        for p in (layer.weight, layer.bias):
            if p is None:
                continue
            p.copy_(p[source_column : source_column + 1].expand_as(p))
            if noise_std > 0 and p is layer.weight:
                noise = torch.randn(p.shape, generator=generator, dtype=p.dtype)
                p.add_(noise.to(p.device), alpha=noise_std / math.sqrt(layer.d_in))
    return module
