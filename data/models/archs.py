"""Architecture registry: tiny width-scalable networks built as ordinary `nn.Module`s.

An architecture declares its parameters and which of them are *paddable*: a model with a smaller value
of a paddable parameter has every tensor equal to a leading slice of the larger model's tensor. Zero-
padding the extra rows/columns then gives a larger model with identical outputs whose extra weights
receive exactly zero gradient (activation(0) = 0 and the outgoing padded weights are 0), which is what
lets `data.training.train` stack models of different widths into one batched computation.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from data.models.resnet import resnet18_width, resnet50_width
from data.models.smallcnn import SMALLCNN_PARAMS, SmallCNN, infer_smallcnn
from data.params import Param, SpecError, positive, resolve

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


class MLP(nn.Sequential):
    """`depth` hidden layers of `width` units (ReLU, or tanh for PINNs) on flattened inputs.

    A plain `nn.Sequential` of Linear/activation, so `data.training.train` can run many of them with batched matmuls.
    """

    def __init__(self, input_shape: tuple[int, ...], n_classes: int, width: int, depth: int,
                 activation: str = "relu"):
        dims = [math.prod(input_shape)] + [width] * depth
        layers: list[nn.Module] = [nn.Flatten(start_dim=-len(input_shape))]
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(d_in, d_out), ACTIVATIONS[activation]()]
        layers.append(nn.Linear(dims[-1], n_classes))
        super().__init__(*layers)


class CNN1d(nn.Module):
    """`depth` conv layers (kernel 3, stride 2 after the first, `width` channels, ReLU), global mean-pool, linear head.

    Inputs are 1-D signals [N, L] (MNIST-1D) or flattened images, treated as one channel.
    """

    def __init__(self, input_shape: tuple[int, ...], n_classes: int, width: int, depth: int):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for i in range(depth):
            layers += [nn.Conv1d(c_in, width, 3, stride=1 if i == 0 else 2, padding=1), nn.ReLU()]
            c_in = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, L] -> [N, n_classes]
        h = self.features(x.flatten(1).unsqueeze(1))  # [N, 1, L] -> [N, width, L']
        return self.head(h.mean(-1))


class Transformer(nn.Module):
    """A decoder-style transformer for short token sequences (the grokking setting of Power et al. 2022 and
    Nanda et al. 2023): token + position embeddings, `depth` blocks of causal multi-head attention and a
    ReLU MLP (4 × `width`), each with a residual connection and no LayerNorm, and a linear read-out of the
    last position. Written with plain Linear layers and einsum so `torch.func.vmap` can stack models.

    Inputs: int64 tokens [N, L] in [0, n_classes] (the last id is the "=" token) -> logits [N, n_classes].
    """

    def __init__(self, input_shape: tuple[int, ...], n_classes: int, width: int, depth: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not a multiple of heads {heads}")
        self.heads = heads
        self.embed = nn.Embedding(n_classes + 1, width)
        self.pos = nn.Parameter(torch.randn(input_shape[0], width) / math.sqrt(width))
        self.blocks = nn.ModuleList(nn.ModuleDict({
            "qkv": nn.Linear(width, 3 * width), "out": nn.Linear(width, width),
            "up": nn.Linear(width, 4 * width), "down": nn.Linear(4 * width, width)}) for _ in range(depth))
        self.unembed = nn.Linear(width, n_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens) + self.pos  # [N, L, d]
        n, L, d = h.shape
        causal = torch.ones(L, L, dtype=torch.bool, device=h.device).tril()  # no buffer: models stack with vmap
        for b in self.blocks:
            q, k, v = b["qkv"](h).view(n, L, 3, self.heads, d // self.heads).unbind(2)  # each [N, L, H, d_h]
            att = torch.einsum("nihc,njhc->nhij", q, k) / math.sqrt(d // self.heads)
            att = att.masked_fill(~causal, float("-inf")).softmax(-1)
            h = h + b["out"](torch.einsum("nhij,njhc->nihc", att, v).reshape(n, L, d))
            h = h + b["down"](torch.relu(b["up"](h)))
        return self.unembed(h[:, -1])


Shapes = Mapping[str, tuple[int, ...]]  # parameter/buffer name -> tensor shape


# A Sequential's child index as nn.Module names it: ASCII digits, no leading zero ("01", "١", "²" are no index:
# str.isdigit accepts all three and int() would turn two of them into someone else's key).
_INDEX = re.compile(r"0|[1-9][0-9]*")


def _infer_mlp(shapes: Shapes) -> dict | None:
    """MLP keys are `<index>.weight` of the Sequential's Linear layers (index 0 is the Flatten)."""
    linear = sorted((int(k.split(".")[0]), k) for k, s in shapes.items()
                    if k.endswith(".weight") and _INDEX.fullmatch(k.split(".")[0]) and len(s) == 2)
    return {"width": shapes[linear[0][1]][0], "depth": len(linear) - 1} if len(linear) >= 2 else None


def _infer_cnn1d(shapes: Shapes) -> dict | None:
    convs = [k for k, s in shapes.items() if k.startswith("features.") and k.endswith(".weight") and len(s) == 3]
    first = shapes.get("features.0.weight")
    return {"width": first[0], "depth": len(convs)} if first is not None and len(first) == 3 else None


def _infer_transformer(shapes: Shapes) -> dict | None:
    embed, qkv = shapes.get("embed.weight"), shapes.get("blocks.0.qkv.weight")
    if embed is None or qkv is None or len(embed) != 2:
        return None
    # heads do not show in the shapes: the zoo's fixed value is used (recognition checks it by building)
    return {"width": embed[1], "depth": sum(1 for k in shapes if k.endswith(".qkv.weight"))}


def _infer_resnet(shapes: Shapes) -> dict | None:
    stem = shapes.get("conv1.weight")
    return {"width": stem[0]} if stem is not None and len(stem) == 4 else None


@dataclass(frozen=True)
class ArchDef:
    build: Callable[..., nn.Module]  # (input_shape, n_classes, **params) -> nn.Module
    params: Mapping[str, Param]
    paddable: frozenset[str]
    # a guess of the parameters from tensor shapes (checked by building); None: cannot be recognised
    infer: Callable[[Shapes], dict | None] = lambda shapes: None


ARCHS: Mapping[str, ArchDef] = {
    # the Phase-Transition Model Zoo's ResNets (data.models.resnet), for imported zoos; BatchNorm: not padded
    "resnet18_width": ArchDef(resnet18_width, {"width": positive(int)}, frozenset(), _infer_resnet),
    "resnet50_width": ArchDef(resnet50_width, {"width": positive(int)}, frozenset(), _infer_resnet),
    "mlp": ArchDef(MLP, {"width": positive(int), "depth": Param(int, 2, lambda v: v >= 1, "must be >= 1"),
                         "activation": Param(str, "relu", lambda v: v in ACTIVATIONS, f"one of {list(ACTIVATIONS)}")},
                   frozenset({"width"}), _infer_mlp),
    # width is not paddable: attention's 1/√d_head scale changes with it
    "transformer": ArchDef(Transformer, {"width": positive(int),
                                         "depth": Param(int, 1, lambda v: v >= 1, "must be >= 1"),
                                         "heads": Param(int, 4, lambda v: v >= 1, "must be >= 1")},
                           frozenset(), _infer_transformer),
    "cnn1d": ArchDef(CNN1d, {"width": positive(int), "depth": Param(int, 3, lambda v: v >= 1, "must be >= 1")},
                     frozenset({"width"}), _infer_cnn1d),
    # the Small CNN Zoo's network (Unterthiner et al. 2020), for imported zoos (data.importers.smallcnn)
    "smallcnn": ArchDef(SmallCNN, SMALLCNN_PARAMS, frozenset(), infer_smallcnn),
}


def arch_def(arch: str) -> ArchDef:
    """A built-in architecture, or one by reference ("torchvision:resnet18", "timm:…", "factory:pkg.mod:fn";
    data.models.reference, imported on first use: it loads torchvision)."""
    if arch in ARCHS:
        return ARCHS[arch]
    from data.models import reference  # noqa: PLC0415 — deferred: torchvision/timm cost seconds to import
    if reference.is_reference(arch):
        return reference.reference_arch(arch)
    raise SpecError(f"arch: unknown architecture {arch!r}; available: {sorted(ARCHS)} or "
                    f"{', '.join(p + '<name>' for p in reference.PREFIXES)}")


def arch_params(arch: str, given: Mapping) -> dict:
    return resolve("arch_params", arch_def(arch).params, given)


def build_model(arch: str, input_shape: tuple[int, ...], n_classes: int, params: Mapping,
                seed: int | None = None) -> nn.Module:
    """Build a model (missing parameters take their defaults); with `seed`, its initialisation is a pure
    function of the seed."""
    params = arch_params(arch, params)
    if seed is None:
        return arch_def(arch).build(input_shape, n_classes, **params)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return arch_def(arch).build(input_shape, n_classes, **params)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass(frozen=True)
class ShapeMatch:
    """Whether a state dict is `arch` (with the inferred `params`) for a task's input shape and classes."""

    arch: str
    params: dict  # the inferred parameters, {} when none could be inferred
    problems: tuple[str, ...]  # empty when every key and shape matches

    @property
    def ok(self) -> bool:
        return not self.problems


def _listed(keys: list[str], n: int = 3) -> str:
    return ", ".join(repr(k) for k in keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "")


def match_shapes(arch: str, shapes: Shapes, input_shape: tuple[int, ...], n_classes: int) -> ShapeMatch:
    """Infer `arch`'s parameters from the shapes, build that model, and compare every key and shape.

    The inference only proposes; building and comparing decides, so a wrong guess can never match.
    """
    try:  # keys and shapes are a stranger's: a guess that trips over them is simply no guess
        params = arch_def(arch).infer(shapes)
    except Exception:
        params = None
    if params is None:
        return ShapeMatch(arch, {}, (f"its keys are not those of a {arch}",))
    try:
        with torch.device("meta"):  # shapes only: no memory, no initialisation cost
            model = build_model(arch, input_shape, n_classes, params)
    except Exception as e:  # SpecError, ValueError (heads ∤ width), …: parameters no model of `arch` has
        return ShapeMatch(arch, params, (f"no {arch} has these parameters {params}: {e}",))
    return ShapeMatch(arch, params, compare_shapes({k: tuple(v.shape) for k, v in model.state_dict().items()}, shapes))


def compare_shapes(want: Shapes, shapes: Shapes) -> tuple[str, ...]:
    """Every key and shape of a built model (`want`) against a state dict's: the problems, empty when all match."""
    missing = [k for k in want if k not in shapes]
    extra = [k for k in shapes if k not in want]
    wrong = [f"{k} {tuple(shapes[k])} ≠ {tuple(want[k])}" for k in want
             if k in shapes and tuple(shapes[k]) != tuple(want[k])]
    problems = []
    if missing:
        problems.append(f"missing key(s) {_listed(missing)}")
    if extra:
        problems.append(f"unexpected key(s) {_listed(extra)}")
    if wrong:
        problems.append(f"shape(s) differ: {'; '.join(wrong[:3])}")
    return tuple(problems)
