"""ResNet-18/50 "width" variants of the Phase-Transition Model Zoo (Schürholt et al. 2025), so its
published checkpoints load: stage widths [w, 2w, 4w, 8w], a CIFAR stem (3×3 convolution, stride 1, no
max-pool), BasicBlock × [2, 2, 2, 2] (ResNet-18) or Bottleneck × [3, 4, 6, 3] (ResNet-50, expansion 4),
global average pooling and a linear head; parameter names as in torchvision (conv1, bn1, layer1.0.conv1,
…, layerN.0.downsample.0/1, fc), which is what the published state dicts use.
"""
from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _shortcut(c_in, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (self.downsample(x) if self.downsample is not None else x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = _shortcut(c_in, planes * 4, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + (self.downsample(x) if self.downsample is not None else x))


def _shortcut(c_in: int, c_out: int, stride: int) -> nn.Module | None:
    if stride == 1 and c_in == c_out:
        return None
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))


class ResNetWidth(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], n_classes: int, width: int, depth: int):
        super().__init__()
        block, counts = {18: (BasicBlock, (2, 2, 2, 2)), 50: (Bottleneck, (3, 4, 6, 3))}[depth]
        self.conv1 = nn.Conv2d(input_shape[0], width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        c_in = width
        for stage, (mult, n) in enumerate(zip((1, 2, 4, 8), counts), start=1):
            blocks = []
            for i in range(n):
                blocks.append(block(c_in, width * mult, 2 if (i == 0 and stage > 1) else 1))
                c_in = width * mult * block.expansion
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
        self.fc = nn.Linear(c_in, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, C, H, W] -> [N, n_classes]
        x = torch.relu(self.bn1(self.conv1(x)))
        for stage in range(1, 5):
            x = getattr(self, f"layer{stage}")(x)
        return self.fc(x.mean((2, 3)))


def resnet18_width(input_shape: tuple[int, ...], n_classes: int, width: int) -> ResNetWidth:
    return ResNetWidth(input_shape, n_classes, width, 18)


def resnet50_width(input_shape: tuple[int, ...], n_classes: int, width: int) -> ResNetWidth:
    return ResNetWidth(input_shape, n_classes, width, 50)
