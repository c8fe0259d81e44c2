"""The published zoos' preprocessing, declared once: per-dataset normalisation, no augmentation for metrics.

The constants are those of the Phase-Transition Model Zoo's training scripts (github.com/ModelZoos/
PhaseTransitionModelZoo, scripts/<dataset>_resnet18_wide/train_zoo_*.py, the `test_transforms`:
`transforms.ToTensor()` then `transforms.Normalize(mean, std)`), so a measured model sees exactly the inputs it
was evaluated on:
- CIFAR-10: mean (125.3, 123.0, 113.9) / 255, std (63.0, 62.1, 66.7) / 255 (the commonly used
  CIFAR-10 statistics in 0–255 units, as written there);
- CIFAR-100: mean (0.5071, 0.4867, 0.4408), std (0.2675, 0.2565, 0.2761);
- SVHN: mean (0.4377, 0.4438, 0.4728), std (0.198, 0.201, 0.197);
- TinyImageNet: ImageNet's mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225).
Their training transforms (random crop with 4-pixel padding, horizontal flip, ±20° rotation) are augmentation
and are not applied: metrics are measured on the deterministic test-time inputs.

`normalise` reproduces torchvision's arithmetic in float32 — x / 255, then (x − mean) / std per channel —
so its output equals ToTensor + Normalize bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from data.datasets.root import Arrays, DatasetError


@dataclass(frozen=True)
class Normalisation:
    mean: tuple[float, ...]  # per channel, in ToTensor's [0, 1] units
    std: tuple[float, ...]
    source: str


PTMZ = "Phase-Transition Model Zoo, scripts/{}_resnet18_wide/train_zoo_{}_resnet18_wide.py, test_transforms"
NORMALISATION: dict[str, Normalisation] = {
    "cifar10": Normalisation(tuple(x / 255.0 for x in (125.3, 123.0, 113.9)),
                             tuple(x / 255.0 for x in (63.0, 62.1, 66.7)), PTMZ.format("cifar10", "cifar10")),
    "cifar100": Normalisation((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761), PTMZ.format("cifar100", "cifar100")),
    "svhn": Normalisation((0.4377, 0.4438, 0.4728), (0.198, 0.201, 0.197), PTMZ.format("svhn", "svhn")),
    "tinyimagenet": Normalisation((0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
                                  PTMZ.format("tinyimagenet", "tinyimagenet") + " (ImageNet's statistics)"),
}


def normalise(x: np.ndarray, norm: Normalisation | None) -> torch.Tensor:
    """[N, C, H, W] → float32 tensor. uint8 pixels become x / 255 (ToTensor) and then, with `norm`, (x − mean) / std
    per channel (Normalize); float inputs are taken as already scaled and only normalised if `norm` is given."""
    x = np.ascontiguousarray(x)
    t = torch.from_numpy(x if x.flags.writeable else x.copy())  # a read-only view (np.frombuffer) would warn
    t = t.to(torch.float32).div_(255) if t.dtype == torch.uint8 else t.to(torch.float32, copy=True)
    if norm is None:
        return t
    c = len(norm.mean)
    if t.ndim < 2 or t.shape[1] != c:
        raise DatasetError(f"normalisation ({norm.source}) has {c} channels but the inputs have shape "
                           f"[N, {', '.join(map(str, t.shape[1:]))}]")
    shape = (1, c) + (1,) * (t.ndim - 2)
    mean = torch.as_tensor(norm.mean, dtype=torch.float32).reshape(shape)
    std = torch.as_tensor(norm.std, dtype=torch.float32).reshape(shape)
    return t.sub_(mean).div_(std)


def tensors(arrays: Arrays, norm: Normalisation | None) -> tuple[torch.Tensor, ...]:
    """(x_train, y_train, x_test, y_test): normalised float32 inputs, int64 labels."""
    return (normalise(arrays.x_train, norm), torch.as_tensor(arrays.y_train, dtype=torch.int64),
            normalise(arrays.x_test, norm), torch.as_tensor(arrays.y_test, dtype=torch.int64))
