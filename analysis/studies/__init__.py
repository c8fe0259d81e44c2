"""Studies over a whole zoo: weight-space embeddings, phase ensembles, the published findings re-tested,
Hessian spectral densities as curves."""
