"""The eye: retinal lattices, receptive fields and the sparse sampling operator."""
