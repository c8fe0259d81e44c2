"""Training: the one-model reference and batched kernels, the zoo generator, and the worker pools."""
