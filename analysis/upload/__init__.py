"""The upload pipeline: which zoo a checkpoint belongs to, its metrics, its phase and its place on the
zoo's map — each step once, with typed results."""
