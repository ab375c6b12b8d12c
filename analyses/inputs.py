"""What a retina passes on about a set of images, in the two forms the models read.

The column models read the cell responses; the CNN reads them resampled onto the pixel grid
(``retina.render(responses)``: the regularised least-squares image that reproduces the
responses, see :meth:`retina.Retina.render`) — exactly the information the retina passes on, in
the only geometry a convolution can use, for the uniform and the foveated retina alike (on the
foveated one the periphery arrives blurred). The render is slow and only the CNN needs it, so
it is computed only when asked for: ``render=True`` at once, ``render="lazy"`` the first time a
CNN reads it (in the process that trains the CNN, beside the other models' training).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from neurosim.config import check_choice, check_int, check_range

__all__ = ["RETINA_KINDS", "RetinaInputs", "build_retina", "retina_inputs"]

#: the retina labels
RETINA_KINDS: tuple[str, ...] = ("uniform", "foveated")


def build_retina(
    kind: str,
    *,
    n_cells: int,
    canvas_px: int,
    pixels_per_deg: float,
    seed: int = 0,
):
    """A ``uniform`` or ``foveated`` :class:`retina.Retina` covering the whole square canvas.

    Both kinds get the same number of cells over the same field, ``fov_deg = canvas_px /
    pixels_per_deg`` (the side of the square field in degrees), fixating the canvas centre.
    """
    from retina import Retina

    check_choice("retina", kind, RETINA_KINDS)
    check_int("canvas_px", canvas_px, 1, 4096)
    check_range("pixels_per_deg", pixels_per_deg, 0.0, None, lo_inclusive=False)
    make = Retina.uniform if kind == "uniform" else Retina.foveated
    return make(
        n_cells=n_cells,
        fov_deg=canvas_px / pixels_per_deg,
        image_shape=(canvas_px, canvas_px),
        pixels_per_deg=pixels_per_deg,
        seed=seed,
    )


@dataclasses.dataclass(frozen=True, eq=False)
class RetinaInputs:
    """What a retina passes on about a set of images.

    Attributes:
        responses: ``[N, n_cells]`` float32 cell responses divided by ``scale`` (column kinds).
        images: ``[N, H, W]`` float32 ``retina.render(responses)`` divided by ``image_scale``
            (the CNN), or None when not rendered (yet: :meth:`rendered` renders lazily).
        labels: ``[N]`` int64.
        scale, image_scale: the divisors (standard deviations of the training pool, so that the
            test set is scaled like the training set; ``image_scale`` is NaN when not rendered).
        renderer: the retina, when the images are rendered lazily (else None).
        source: ``(inputs, index)`` when these are a subset of lazily rendered ``inputs``.
    """

    responses: torch.Tensor
    images: torch.Tensor | None
    labels: torch.Tensor
    scale: float
    image_scale: float
    renderer: object | None = None
    source: tuple | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: np.ndarray | torch.Tensor) -> RetinaInputs:
        """The items at ``index`` (same scales; a lazily rendered set renders once, whole)."""
        idx = torch.as_tensor(np.asarray(index), dtype=torch.long)
        lazy = self.images is None and self.renderer is not None
        return dataclasses.replace(
            self,
            responses=self.responses[idx],
            images=None if self.images is None else self.images[idx],
            labels=self.labels[idx],
            source=(self, idx) if lazy else None,
        )

    def rendered(self) -> torch.Tensor:
        """The rendered images ``[N, H, W]`` (rendered now and kept if they are lazy)."""
        if self.images is not None:
            return self.images
        if self.source is not None:
            parent, idx = self.source
            images = parent.rendered()[idx]
        elif self.renderer is not None:
            resp = self.responses.double().numpy() * self.scale
            images = torch.as_tensor(
                np.asarray(self.renderer.render(resp)) / self.image_scale, dtype=torch.float32
            )
        else:
            raise ValueError("the cnn reads rendered images: build the inputs with render=True")
        object.__setattr__(self, "images", images)  # a cache: the dataclass is frozen
        return images

    def for_model(self, kind: str) -> torch.Tensor:
        """What a model of ``kind`` reads: the rendered images for ``cnn``, else the responses."""
        return self.rendered() if kind == "cnn" else self.responses


def retina_inputs(
    retina,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    scale: tuple[float, float] | None = None,
    render: bool | str = True,
) -> RetinaInputs:
    """Apply ``retina`` to ``images [N, H, W]`` and (if ``render``) render its responses back.

    Args:
        retina: a :class:`retina.Retina` whose ``image_shape`` is ``(H, W)``.
        images: ``[N, H, W]`` canvases in [0, 1].
        labels: ``[N]`` class labels.
        scale: ``(scale, image_scale)`` of a training pool (:attr:`RetinaInputs.scale`,
            :attr:`RetinaInputs.image_scale`); ``None`` computes them from these images.
        render: also compute the rendered images (only the CNN reads them; slow): ``True``
            now, ``"lazy"`` when first read (:meth:`RetinaInputs.rendered`), ``False`` never.
            The image scale of a lazy training pool comes from the render of its first 128
            images.
    """
    if render not in (True, False, "lazy"):
        raise ValueError(f"render must be True, False or 'lazy'; got {render!r}")
    images = np.asarray(images, dtype=np.float32)
    labels = np.asarray(labels)
    if images.ndim != 3 or labels.shape != (images.shape[0],):
        raise ValueError(
            f"images must be [N, H, W] and labels [N]; got {images.shape} and {labels.shape}"
        )
    resp = np.asarray(retina(images), dtype=np.float64)
    rendered = np.asarray(retina.render(resp), dtype=np.float64) if render is True else None
    if scale is None:
        s = float(resp.std()) or 1.0
        if render is True:
            si = float(rendered.std()) or 1.0
        elif render == "lazy":
            si = float(np.asarray(retina.render(resp[:128])).std()) or 1.0
        else:
            si = float("nan")
    else:
        s, si = (float(v) for v in scale)
        if not (s > 0 and (si > 0 or not render)):
            raise ValueError(f"scale must be two numbers > 0; got {scale!r}")
    return RetinaInputs(
        responses=torch.as_tensor(resp / s, dtype=torch.float32),
        images=None if rendered is None else torch.as_tensor(rendered / si, dtype=torch.float32),
        labels=torch.as_tensor(labels, dtype=torch.long),
        scale=s,
        image_scale=si,
        renderer=retina if render == "lazy" else None,
    )
