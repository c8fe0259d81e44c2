"""Layer names a reader knows: the module path of each weight matrix, with a Sequential's child index replaced
by what the child is (`fc1`, `conv2`…).

Per-layer rows (metrics.parquet's `layer`, the upload's data-free report) are keyed by the parameter name
without ".weight" (analysis.kernels.weights), which for an `nn.Sequential` is a bare index: the MLP's Linear
layers are "1", "3", "5" (index 0 is the Flatten, the even ones activations). `layer_names` maps every such
key of a model to a name in the model's own order: a numbered Linear becomes fc<n>, a numbered convolution
conv<n>, a numbered embedding embed<n> (n counting that kind over the whole model, from 1); named modules
(`head`, `blocks.0.qkv`) and parameters held directly (the transformer's `pos`) keep their path.
"""
from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING

from torch import nn

from data.models.archs import build_model
from data.tasks.builtin import TASKS

if TYPE_CHECKING:
    from data.zoo.store import Zoo

# module type -> the stem its numbered instances are called by
_STEMS = ((nn.Linear, "fc"), (nn.Conv1d, "conv"), (nn.Conv2d, "conv"), (nn.Conv3d, "conv"), (nn.Embedding, "embed"))


def _stem(module: nn.Module) -> str | None:
    return next((s for t, s in _STEMS if isinstance(module, t)), None)


def layer_names(model: nn.Module) -> dict[str, str]:
    """Per-layer key (a rank ≥ 2 parameter's name without ".weight") -> its readable name, in the model's order.
    A renamed layer whose new name is some other layer's key keeps its key (names stay unique)."""
    modules = dict(model.named_modules())
    counts: dict[str, int] = {}
    names: dict[str, str] = {}
    for pname, p in model.named_parameters():
        if p.dim() < 2:
            continue
        key = pname.removesuffix(".weight")
        parent, _, last = key.rpartition(".")
        stem = _stem(modules[key]) if key in modules and last.isdigit() else None
        if stem is None:
            names[key] = key
            continue
        counts[stem] = counts.get(stem, 0) + 1
        names[key] = f"{stem}{counts[stem]}"
    taken = set(names)
    return {k: (v if v == k or v not in taken else k) for k, v in names.items()}


def arch_layer_names(arch: str, input_shape: tuple[int, ...], n_out: int, params: Mapping) -> dict[str, str]:
    """`layer_names` of an architecture (data.models.archs) with these parameters."""
    return dict(_arch_layer_names(arch, tuple(input_shape), n_out, tuple(sorted(dict(params or {}).items()))))


@lru_cache(maxsize=64)
def _arch_layer_names(arch: str, input_shape: tuple[int, ...], n_out: int, params: tuple) -> tuple:
    # Built on the CPU, not the meta device: initialising an embedding on meta imports torch's compiler (~6 s).
    # Seeded, so the global RNG is left as it was.
    return tuple(layer_names(build_model(arch, input_shape, n_out, dict(params), seed=0)).items())


def model_layer_names(zoo: Zoo, model_id: str) -> dict[str, str]:
    """`layer_names` of one model of a zoo (its architecture parameters and its task's shapes)."""
    cfg = zoo.configs[model_id]
    input_shape, n_out = TASKS[zoo.spec.task].shapes(cfg.get("task_params"))
    return arch_layer_names(zoo.spec.arch, input_shape, n_out, cfg.get("arch_params"))
