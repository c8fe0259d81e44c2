"""Pure numerical kernels: tensors and operators in, frozen results (with their uncertainty) out.

Hessian operators, spectral algorithms, CKA, mode connectivity, data-free weight metrics, the exact ReLU
trace and the downstream kernels (ensembles, averaging, transfer, pruning). No zoo, no registry, no I/O."""
