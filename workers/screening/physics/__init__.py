"""Physics: cells, relaxation, the Γ check, elastic tensor, supercell phonons and the verdict rule."""
