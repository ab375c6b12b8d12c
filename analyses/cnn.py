"""The weight-shared CNN of the same topology as the column sheet: the anchor users know.

:class:`ConvClassifier` reads the retina's output resampled onto the pixel grid
(``retina.render(responses)``, see :mod:`analyses.inputs`) and gives per-place logits
``[B, P, K]``: level 0 is a strided convolution (kernel ``2 s``, stride ``s``, chosen so the
feature map has about ``n_columns`` places) followed by 1x1 convolutions through ``hidden`` (the
column encoder's MLP, with a pixel patch in place of the column's cells); level ``l`` is a
``lateral_kernel x lateral_kernel`` convolution from level ``l - 1`` then 1x1 convolutions (the
bottom-up MLP, the spatial kernel standing in for lateral attention); no top-down pass and no
settling: the feed-forward network users know.

Replicas (several CNNs of one shape trained as one computation, like
:mod:`neurosim.replicas` for the column sheet) are grouped convolutions: replica ``r`` reads
channel ``r`` of ``[B, R, H, W]`` and owns the ``r``-th block of every weight along dim 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from neurosim.columns import ACTIVATIONS
from neurosim.config import check_choice, check_int
from neurosim.readout import READOUT_LEVELS

__all__ = ["ConvClassifier"]


class ConvClassifier(nn.Module):
    """The weight-shared CNN: images ``[B, H, W]`` (``[B, R, H, W]`` for replicas) -> per-place
    logits ``[B, R * P, K]``.

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
    ``dim[l]``. Readout: 1x1 conv of the (concatenated) levels to ``K``.
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
        n_classes: int = 10,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        check_choice("activation", activation, tuple(ACTIVATIONS))
        check_choice("readout_levels", readout_levels, READOUT_LEVELS)
        h, w = (int(v) for v in image_shape)
        stride = max(1, int(round(min(h, w) / math.sqrt(check_int("n_places", n_places, 1)))))
        kernel = 2 * stride
        self.activation = activation
        self.readout_levels = readout_levels
        self.image_shape = (h, w)
        self.n_replicas = 1
        dims = tuple(dim) if isinstance(dim, (tuple, list)) else (int(dim),) * n_levels
        if len(dims) != n_levels:
            raise ValueError(f"dim must list n_levels={n_levels} sizes; got {list(dims)}")
        self.level_channels = dims

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
        """``images [B, H, W]`` or ``[B, R, H, W]`` -> per-place logits ``[B, R * P, K]``."""
        hw = self.image_shape
        if images.dim() == 3 and self.n_replicas == 1:
            images = images.unsqueeze(1)
        if images.dim() != 4 or tuple(images.shape[1:]) != (self.n_replicas, *hw):
            raise ValueError(
                f"images must have shape [batch, {self.n_replicas}, {hw[0]}, {hw[1]}] (the "
                f"replica axis may be left out of one model); got {tuple(images.shape)}"
            )
        act = ACTIVATIONS[self.activation]
        b, r = images.shape[0], self.n_replicas
        x = images
        outs = []
        for layers in self.levels:
            for i, layer in enumerate(layers):
                x = layer(x)
                if i < len(layers) - 1:
                    x = act(x)
            outs.append(x)
        if self.readout_levels == "top_level":
            feats = outs[-1]
        else:  # concatenate each replica's levels: [B, R, sum(c), h, w]
            parts = [o.view(b, r, -1, *o.shape[2:]) for o in outs]
            feats = torch.cat(parts, dim=2).flatten(1, 2)
        logits = self.readout(feats)  # [B, R*K, h', w']
        k = logits.shape[1] // r
        return logits.view(b, r, k, -1).transpose(2, 3).reshape(b, -1, k)

    @classmethod
    def stack(cls, models: Sequence[ConvClassifier]) -> ConvClassifier:
        """CNNs of one shape as one grouped-convolution network (replicas; copies)."""
        first = models[0]
        out = cls.__new__(cls)
        nn.Module.__init__(out)
        out.activation, out.readout_levels = first.activation, first.readout_levels
        out.image_shape, out.level_channels = first.image_shape, first.level_channels
        out.n_replicas = sum(m.n_replicas for m in models)

        def grouped(convs: Sequence[nn.Conv2d]) -> nn.Conv2d:
            c0 = convs[0]
            if any(c.weight.shape != c0.weight.shape for c in convs):
                raise ValueError("models must have the same shape to be stacked")
            groups = sum(c.groups for c in convs)
            conv = nn.Conv2d(
                c0.in_channels * len(convs),
                c0.out_channels * len(convs),
                c0.kernel_size,
                stride=c0.stride,
                padding=c0.padding,
                groups=groups,
            )
            with torch.no_grad():
                conv.weight.copy_(torch.cat([c.weight for c in convs]))
                conv.bias.copy_(torch.cat([c.bias for c in convs]))
            return conv.to(c0.weight.device)

        out.levels = nn.ModuleList(
            nn.ModuleList(
                grouped([m.levels[lv][i] for m in models]) for i in range(len(first.levels[lv]))
            )
            for lv in range(len(first.levels))
        )
        out.readout = grouped([m.readout for m in models])
        return out

    def replica(self, r: int) -> ConvClassifier:
        """Replica ``r`` of a stacked CNN as a CNN of its own (copies)."""
        n = self.n_replicas
        check_int("r", r, 0, n - 1)
        out = ConvClassifier.__new__(ConvClassifier)
        nn.Module.__init__(out)
        out.activation, out.readout_levels = self.activation, self.readout_levels
        out.image_shape, out.level_channels = self.image_shape, self.level_channels
        out.n_replicas = 1

        def single(conv: nn.Conv2d) -> nn.Conv2d:
            w = conv.weight.shape[0] // n
            one = nn.Conv2d(
                conv.in_channels // n,
                w,
                conv.kernel_size,
                stride=conv.stride,
                padding=conv.padding,
                groups=conv.groups // n,
            )
            with torch.no_grad():
                one.weight.copy_(conv.weight[r * w : (r + 1) * w])
                one.bias.copy_(conv.bias[r * w : (r + 1) * w])
            return one.to(conv.weight.device)

        out.levels = nn.ModuleList(
            nn.ModuleList(single(layer) for layer in layers) for layers in self.levels
        )
        out.readout = single(self.readout)
        return out
