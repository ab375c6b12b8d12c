"""The eye: retinal lattices, receptive fields and the sparse sampling operator.

``retina.Retina.uniform(...)`` and ``retina.Retina.foveated(...)`` build retinas with the same
number of cells over the same field of view; ``retina(images)`` maps ``[batch, H, W]`` images
to ``[batch, n_cells]`` responses (one ON and one OFF cell per lattice site).
"""

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
from retina.receptive_fields import (
    CK95_SURROUND_RADIUS_RATIO,
    CK95_SURROUND_WEIGHT_RATIO,
    block_average,
    dog_operator,
    gaussian_rows,
    local_spacing_deg,
    materialize,
)
from retina.sampler import LUMA_WEIGHTS, MIN_CELLS, Retina, to_gray

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
    "local_spacing_deg",
    "dog_operator",
    "gaussian_rows",
    "block_average",
    "materialize",
    "CK95_SURROUND_RADIUS_RATIO",
    "CK95_SURROUND_WEIGHT_RATIO",
    "to_gray",
    "LUMA_WEIGHTS",
    "MIN_CELLS",
]
