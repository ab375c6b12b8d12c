"""The eye: retinal lattices, receptive fields and the sparse sampling operator.

``retina.Retina.uniform(...)`` and ``retina.Retina.foveated(...)`` build retinas with the same
number of cells over the same square field of view (``fov_deg`` is its side, in degrees);
``retina(images)`` maps ``[batch, H, W]`` images to ``[batch, n_cells]`` responses (one ON and
one OFF cell per lattice site), ``retina.deg_to_px`` / ``px_to_deg`` convert between the visual
field and the image, and ``retina.to_dataarray(responses)`` labels responses with the cells'
places.

The package exports what a user needs: the retina, the lattices and the density they follow,
the published constants behind them, and the gray conversion. The building blocks of the
operator (``gaussian_rows``, ``block_average``, ``dog_operator``, ``materialize``,
``local_spacing_deg``) and ``MIN_CELLS`` / ``MAX_SEED`` stay importable from their modules
(:mod:`retina.receptive_fields`, :mod:`retina.sampler`, :mod:`retina.lattice`).
"""

from retina.gray import LUMA_WEIGHTS, to_gray
from retina.lattice import (
    WATSON_MERIDIANS,
    foveated_lattice,
    foveated_site_density,
    foveated_spacing_deg,
    midget_fraction,
    nearest_neighbour_distance_deg,
    uniform_lattice,
    watson_density,
    watson_rgc_density,
)
from retina.receptive_fields import CK95_SURROUND_RADIUS_RATIO, CK95_SURROUND_WEIGHT_RATIO
from retina.sampler import Retina

__all__ = [
    "Retina",
    "uniform_lattice",
    "foveated_lattice",
    "foveated_site_density",
    "foveated_spacing_deg",
    "watson_density",
    "watson_rgc_density",
    "midget_fraction",
    "nearest_neighbour_distance_deg",
    "WATSON_MERIDIANS",
    "CK95_SURROUND_RADIUS_RATIO",
    "CK95_SURROUND_WEIGHT_RATIO",
    "to_gray",
    "LUMA_WEIGHTS",
]
