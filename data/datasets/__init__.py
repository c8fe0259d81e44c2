"""Datasets read from disk under a data root ($PHASEZOO_DATA): nothing downloads. See docs/datasets.md.

Layouts: CIFAR-10/100 (python pickles or binary records), SVHN (.mat), image folders, TinyImageNet, .npz and
Parquet; preprocessing (the published zoos' normalisation) in data.datasets.preprocess.

`load_arrays(name, root=None, **params)` gives a dataset's arrays as stored; `load_normalised` the float32
inputs the published zoos were evaluated on; `available(name)` whether the root holds the layout.
"""
from data.datasets.preprocess import NORMALISATION, Normalisation, normalise, tensors
from data.datasets.registry import DATASETS, Dataset, available, dataset, load_arrays, load_normalised, normalisation
from data.datasets.root import ENV, MAX_BYTES, Arrays, DatasetError, data_root

__all__ = ["ENV", "MAX_BYTES", "NORMALISATION", "DATASETS", "Arrays", "Dataset", "DatasetError", "Normalisation",
           "available", "data_root", "dataset", "load_arrays", "load_normalised", "normalisation", "normalise",
           "tensors"]
