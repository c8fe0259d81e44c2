"""The CNN of the Small CNN Zoo (Unterthiner et al. 2020, "Predicting Neural Network Accuracy from Weights",
arXiv:2002.11448; the zoo NFN and ScaleGMN train on), as an ordinary `nn.Module`.

The published network (google-research/google-research, dnn_predict_accuracy/train_network.py, `build_cnn`):
`depth` (3) Keras Conv2D layers of `width` (16) filters, 3 × 3, stride 2, padding "valid", each followed by the
activation and (when the rate is > 0) dropout; global average pooling; a Dense layer to the classes (no
activation: the loss takes logits). The input is one channel: the zoo converted every dataset to grayscale (the
mean over RGB after scaling pixels to [-1, 1]), so a 3-channel input is averaged over its channels here first —
the network then has exactly the zoo's 4,970 parameters on 28 × 28 or 32 × 32 images with 10 classes.

State-dict keys: `convs.<i>.weight` [width, c_in, 3, 3] (torch's O × I × H × W; the zoo's TF kernels are
H × W × I × O, converted by data.importers.smallcnn), `convs.<i>.bias` [width], `head.weight` [classes, width],
`head.bias` [classes].

`train_fraction` and `init_std` are recorded hyperparameters of the zoo (the fraction of the training set a model
saw; the initialiser's standard deviation): they do not change the network, and are parameters here so that a
zoo spec can use them as grid knobs (its load axis, say). Register with
`"smallcnn": ArchDef(SmallCNN, SMALLCNN_PARAMS, frozenset(), infer_smallcnn)` in data.models.archs.ARCHS.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from data.params import Param

KERNEL, STRIDE = 3, 2  # train_network.py: CNN_KERNEL_SIZE = 3, --cnn_stride 2; Keras' default padding "valid"
# The activations the zoo was trained with (config.activation); Keras' selu is torch's (same constants).
ACTIVATIONS = {"relu": F.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "selu": F.selu, "linear": lambda x: x}

SMALLCNN_PARAMS: Mapping[str, Param] = {
    "width": Param(int, 16, lambda v: v > 0, "must be > 0"),  # config.num_units
    "depth": Param(int, 3, lambda v: v >= 1, "must be >= 1"),  # config.num_layers
    "activation": Param(str, "relu", lambda v: v in ACTIVATIONS, f"one of {list(ACTIVATIONS)}"),
    "dropout": Param(float, 0.0, lambda v: 0.0 <= v < 1.0, "in [0, 1)"),  # config.dropout (training only)
    "in_channels": Param(int, 1, lambda v: v > 0, "must be > 0"),  # 1 for the published zoo (grayscale)
    "train_fraction": Param(float, 1.0, lambda v: 0.0 < v <= 1.0, "in (0, 1]"),  # recorded only
    "init_std": Param(float, 0.05, lambda v: v > 0.0, "must be > 0"),  # recorded only
}


class SmallCNN(nn.Module):
    """Inputs [N, C, H, W] (C = in_channels, or any C when in_channels is 1: averaged to grayscale) -> logits
    [N, n_classes]. Each conv shrinks H and W to floor((H - 3) / 2) + 1 (32 -> 15 -> 7 -> 3)."""

    def __init__(self, input_shape: tuple[int, ...], n_classes: int, width: int = 16, depth: int = 3,
                 activation: str = "relu", dropout: float = 0.0, in_channels: int = 1,
                 train_fraction: float = 1.0, init_std: float = 0.05):
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"smallcnn: needs image inputs [C, H, W], got shape {tuple(input_shape)}")
        if in_channels != 1 and input_shape[0] != in_channels:
            raise ValueError(f"smallcnn: in_channels {in_channels} ≠ the task's {input_shape[0]} channels")
        size = min(input_shape[1:])
        for _ in range(depth):
            size = (size - KERNEL) // STRIDE + 1
        if size < 1:
            raise ValueError(f"smallcnn: {depth} stride-2 convolutions leave nothing of a "
                             f"{input_shape[1]}×{input_shape[2]} image")
        self.activation, self.dropout, self.in_channels = activation, dropout, in_channels
        self.train_fraction, self.init_std = train_fraction, init_std
        chans = [in_channels] + [width] * depth
        self.convs = nn.ModuleList(nn.Conv2d(a, b, KERNEL, stride=STRIDE) for a, b in zip(chans[:-1], chans[1:]))
        self.head = nn.Linear(width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_channels == 1 and x.shape[1] != 1:
            x = x.mean(1, keepdim=True)  # the zoo's grayscale conversion: the mean over the colour channels
        act = ACTIVATIONS[self.activation]
        for conv in self.convs:
            x = F.dropout(act(conv(x)), self.dropout, self.training)
        return self.head(x.mean((-2, -1)))  # global average pooling: [N, width, h, w] -> [N, width]


def infer_smallcnn(shapes: Mapping[str, tuple[int, ...]]) -> dict | None:
    """width, depth and in_channels from a state dict's shapes (the activation does not show: the zoo's value)."""
    first = shapes.get("convs.0.weight")
    if first is None or len(first) != 4:
        return None
    depth = sum(1 for k, s in shapes.items() if k.startswith("convs.") and k.endswith(".weight") and len(s) == 4)
    return {"width": first[0], "depth": depth, "in_channels": first[1]}
