"""The phase taxonomy (science.md §1): per-cell tables, phase labels from thresholds, and the learned
single-model classifier."""
