"""Architectures by reference: a torchvision or timm model by name, or a user's factory, as an ArchDef.

    arch = "torchvision:resnet18"            any classification model of torchvision.models (weights=None)
    arch = "timm:resnet18"                   any timm model (timm.create_model, pretrained=False: no download)
    arch = "factory:my_pkg.models:make_net"  a function returning an nn.Module; [arch_params] are its kwargs

The spec's `arch` names one of these where it would name a built-in (data.models.archs), and
`data.models.archs.arch_def` resolves the prefix here; everything downstream (build_model, match_shapes,
the runner, the verdict) sees an ordinary ArchDef. The classes come from the task: `num_classes` (and, for
timm, `in_chans` and `img_size`; for torchvision, `image_size`) follow the task's input shape [C, H, W].

Declared parameters (what `[arch_params]` and `[grid]` may set) are the constructor's scalar arguments
(int, float, str, bool) exactly as this variant calls them: one build on the meta device records the
arguments the named builder really passes (so `resnext50_32x4d` declares groups = 32, `vit_tiny_patch16_224`
embed_dim = 192, not the class defaults), and an argument is declared only if passing that very value back
builds the same model (an argument the builder fixes itself, such as a ViT's patch size, is left out).
A declared argument is the load knob by naming it in `[axes.load]` (e.g. torchvision MobileNetV2's
`width_mult`, timm ViTs' `embed_dim`). torchvision's ResNet-18 has no width argument (its `width_per_group`
is the Bottleneck width of ResNet-50 and up; BasicBlock refuses any other value), so a width-scaled
ResNet-18 is the built-in `resnet18_width` (the published zoos' "width") or a factory.

`small_input` (torchvision ResNets only, default false): the stem of the published zoos' ResNets and of the
common CIFAR ResNet-18 — conv1 a 3×3 convolution, stride 1, padding 1, as in He et al. 2016 §4.2's CIFAR
networks, and no max-pool — in place of ImageNet's 7×7 stride-2 convolution and 3×3 max-pool, which would
shrink a 32×32 image to 8×8 before the first block.

Factories are user code: they are imported only from trusted configuration. The module must already be
importable (installed, or on PYTHONPATH: a zoo directory is never added to sys.path), and the factory must
be trusted — named in the PHASEZOO_FACTORIES environment variable (comma-separated `module:function`) or
passed to `allow_factory` (by a command-line flag, a notebook, a test). A spec read from a zoo directory
somebody typed into the dashboard, or an uploaded checkpoint (matched against the zoos' own specs only, it
never names an architecture), can therefore never import code.
"""
from __future__ import annotations

import functools
import importlib
import inspect
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from data.models.archs import ArchDef, ShapeMatch, Shapes, build_model, compare_shapes
from data.models.torchvision_compat import TorchvisionUnavailable, import_torchvision
from data.params import Param, SpecError

PREFIXES = ("torchvision:", "timm:", "factory:")
FACTORIES_ENV = "PHASEZOO_FACTORIES"
# identifiers joined by dots: my_pkg.models (module) and make_net or Builder.make (attribute)
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_FACTORY = re.compile(rf"({_DOTTED}):({_DOTTED})")
_SCALARS = {int: int, float: float, str: str, bool: bool, "int": int, "float": float, "str": str, "bool": bool}
# arguments the task sets, or that would reach for a download; never declared
_TASK_ARGS = {"num_classes", "n_classes", "input_shape", "in_chans", "img_size", "image_size"}
_NEVER = {"pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path", "weights", "progress",
          "cache_dir", "self"}

_trusted: set[str] = set()  # factories allowed by allow_factory (CLI flags, notebooks, tests)
_capture_lock = threading.Lock()


@dataclass(frozen=True)
class Flag(Param):
    """A true/false parameter (Param refuses bools, which are ints to Python: a width must never be `true`)."""

    type: type = bool

    def coerce(self, where: str, value: Any) -> Any:
        value = self.default if value is None else value
        if value is None:
            raise SpecError(f"{where}: missing (required bool)")
        if not isinstance(value, bool):
            raise SpecError(f"{where}: expected true or false, got {value!r}")
        return value


def is_reference(arch: str) -> bool:
    return arch.startswith(PREFIXES)


def reference_arch(arch: str) -> ArchDef:
    """The ArchDef `arch` names; SpecError (one line, naming `arch`) when it names nothing buildable."""
    kind, _, name = arch.partition(":")
    if kind == "factory":
        return _factory_arch(arch, name)
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        raise SpecError(f"arch {arch!r}: expected {kind}:<model name>, e.g. {kind}:resnet18")
    return (_torchvision_arch if kind == "torchvision" else _timm_arch)(name)


# ---- shared: building, declared arguments, recognition -------------------------------------------------


def _image_shape(arch: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise SpecError(f"arch {arch!r} takes images [C, H, W]; the task's inputs are {tuple(input_shape)}")
    return tuple(input_shape)  # type: ignore[return-value]


def _capture(cls: type, make: Callable[[], nn.Module]) -> dict[str, Any]:
    """The arguments `make()` passes to `cls.__init__` (defaults applied), recorded during one call."""
    seen: dict[str, Any] = {}
    original, me = cls.__init__, threading.get_ident()

    def recording(self, *args, **kwargs):
        # the outermost call in this thread: the model itself, not a sub-module of the same class, nor another
        # thread's model built meanwhile (which passes straight through)
        if not seen and threading.get_ident() == me:
            bound = inspect.signature(original).bind(self, *args, **kwargs)
            bound.apply_defaults()
            seen.update(bound.arguments)
        original(self, *args, **kwargs)

    with _capture_lock:
        cls.__init__ = recording
        try:
            with torch.device("meta"):
                make()
        finally:
            cls.__init__ = original
    return seen


def _declare(cls: type, args: Mapping[str, Any]) -> dict[str, Param]:
    """A Param (default: this variant's own value) for every scalar argument of `cls.__init__` in `args`."""
    hints = {p.name: p.annotation for p in inspect.signature(cls.__init__).parameters.values()}
    out: dict[str, Param] = {}
    for name, value in args.items():
        if name in _TASK_ARGS or name in _NEVER or not isinstance(value, int | float | str):
            continue
        if isinstance(value, bool):
            out[name] = Flag(default=value)
            continue
        kind = _SCALARS.get(hints.get(name), type(value))  # `drop_rate: float = 0`: a float, default 0.0
        if kind is bool:
            continue
        out[name] = Param(kind, kind(value))
    return out


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _passable(build: Callable[..., nn.Module], declared: dict[str, Param], probe: tuple[int, ...],
              n_classes: int) -> dict[str, Param]:
    """The declared arguments that, passed back with their own value, build the very same model (the
    builder may fix some itself: passing those raises, or changes the model)."""
    with torch.device("meta"):
        want = _shapes(build(probe, n_classes))
        try:
            if _shapes(build(probe, n_classes, **{k: p.default for k, p in declared.items()})) == want:
                return declared
        except Exception:  # noqa: BLE001 — some argument is the builder's own: find which, one at a time
            pass
        keep = {}
        for k, p in declared.items():
            try:
                if _shapes(build(probe, n_classes, **{k: p.default})) == want:
                    keep[k] = p
            except Exception:  # noqa: BLE001
                continue
        return keep


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def match_configs(arch: str, shapes: Shapes, input_shape: tuple[int, ...], n_classes: int,
                  configs: Iterable[Mapping[str, Any]]) -> ShapeMatch:
    """Recognition for a reference architecture: shapes seldom reveal a constructor's arguments, so each of
    the zoo's own configurations is built on the meta device (no memory, no initialisation) and every key
    and shape compared. The first that matches is the answer; none matching gives the nearest one's problems
    (fewest), so a state dict between grid values is not recognised — the built-in architectures infer that."""
    best: ShapeMatch | None = None
    for params in {tuple(sorted(dict(c).items())): dict(c) for c in configs}.values():
        try:
            with torch.device("meta"):
                want = _shapes(build_model(arch, input_shape, n_classes, params))
        except Exception as e:  # noqa: BLE001 — a configuration that does not build is no match
            m = ShapeMatch(arch, params, (f"no {arch} has these parameters {params}: {_one_line(e)}",))
        else:
            m = ShapeMatch(arch, params, compare_shapes(want, shapes))
        if m.ok:
            return m
        if best is None or len(m.problems) < len(best.problems):
            best = m
    return best or ShapeMatch(arch, {}, (f"the zoo has no {arch} configuration to compare with",))


# ---- torchvision -------------------------------------------------------------------------------------


def _resnet_stem(model: nn.Module, channels: int, small_input: bool) -> None:
    """Swap the stem for `channels` input channels and, with `small_input`, the CIFAR stem (3×3, stride 1,
    padding 1, no max-pool); initialised as torchvision initialises conv1 (Kaiming normal, fan_out, ReLU)."""
    if not small_input and channels == model.conv1.in_channels:
        return
    k, s, p = (3, 1, 1) if small_input else (7, 2, 3)
    model.conv1 = nn.Conv2d(channels, model.conv1.out_channels, k, s, p, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    if small_input:
        model.maxpool = nn.Identity()


@functools.cache
def _torchvision_arch(name: str) -> ArchDef:
    try:
        tv = import_torchvision()
    except TorchvisionUnavailable as e:
        raise SpecError(f"arch 'torchvision:{name}': {e}") from None
    models = tv.models
    names = models.list_models(module=models)  # classification only: detection/video need targets we lack
    if name not in names:
        close = [n for n in names if n.startswith(name[:4])][:6] or names[:6]
        raise SpecError(f"arch 'torchvision:{name}': not a torchvision classification model "
                        f"(e.g. {', '.join(close)}; torchvision.models.list_models() has {len(names)})")
    arch = f"torchvision:{name}"
    try:
        with torch.device("meta"):
            cls: type | None = type(models.get_model(name, weights=None))
    except Exception:  # noqa: BLE001 — RegNets compute their widths with tensor.tolist(): not on meta
        cls = None
    is_resnet = cls is not None and issubclass(cls, models.ResNet)
    takes_size = cls is not None and "image_size" in inspect.signature(cls.__init__).parameters

    def build(input_shape: tuple[int, ...], n_classes: int, small_input: bool = False, **kwargs) -> nn.Module:
        c, h, w = _image_shape(arch, input_shape)
        if c != 3 and not is_resnet:
            raise SpecError(f"arch {arch!r} takes 3-channel images; the task's have {c} (shape {input_shape})")
        if takes_size:
            if h != w:
                raise SpecError(f"arch {arch!r} takes square images; the task's are {h}×{w}")
            kwargs["image_size"] = h
        model = models.get_model(name, weights=None, num_classes=n_classes, **kwargs)
        if is_resnet:
            _resnet_stem(model, c, small_input)
        return model

    # a model that does not build on the meta device declares no arguments (built with its defaults)
    declared = {} if cls is None else _passable(
        build, _declare(cls, _capture(cls, lambda: models.get_model(name, weights=None, num_classes=10))),
        (3, 32, 32), 10)
    infer: Callable[[Shapes], dict | None] = lambda shapes: {}  # noqa: E731 — the defaults; building decides
    if is_resnet:
        declared["small_input"] = Flag(default=False)
        infer = _infer_small_input
    return ArchDef(build, declared, frozenset(), infer)


def _infer_small_input(shapes: Shapes) -> dict | None:
    stem = shapes.get("conv1.weight")  # [width, C, k, k]: k = 3 is the CIFAR stem, 7 ImageNet's
    return {"small_input": stem[-1] == 3} if stem is not None and len(stem) == 4 else None


# ---- timm --------------------------------------------------------------------------------------------


@functools.cache
def _timm_arch(name: str) -> ArchDef:
    try:
        import_torchvision()  # timm imports torchvision: the shim first, where it is needed
        import timm
    except (TorchvisionUnavailable, ImportError) as e:
        raise SpecError(f"arch 'timm:{name}': timm does not import ({_one_line(e)}); "
                        "pip install timm==1.0.31 (requirements.txt)") from None
    if not timm.is_model(name):
        close = timm.list_models(f"{name[:4]}*")[:6]
        raise SpecError(f"arch 'timm:{name}': not a timm model (e.g. {', '.join(close) or 'resnet18'})")
    arch = f"timm:{name}"
    with torch.device("meta"):
        cls = type(timm.create_model(name, pretrained=False))
    takes_size = "img_size" in inspect.signature(cls.__init__).parameters

    def build(input_shape: tuple[int, ...], n_classes: int, **kwargs) -> nn.Module:
        c, h, w = _image_shape(arch, input_shape)
        if takes_size:
            kwargs["img_size"] = h if h == w else (h, w)
        # pretrained=False and no checkpoint_path: timm reads nothing from disk or network
        return timm.create_model(name, pretrained=False, num_classes=n_classes, in_chans=c, **kwargs)

    args = _capture(cls, lambda: timm.create_model(name, pretrained=False, num_classes=10))
    declared = _passable(build, _declare(cls, args), (3, 32, 32), 10)
    return ArchDef(build, declared, frozenset(), lambda shapes: {})


# ---- user factories ----------------------------------------------------------------------------------


def allow_factory(ref: str) -> None:
    """Trust `module:function` (or `factory:module:function`) in this process and in the worker processes it
    spawns (they inherit PHASEZOO_FACTORIES): trusted configuration only."""
    _trusted.add(ref.removeprefix("factory:"))
    os.environ[FACTORIES_ENV] = ",".join(sorted(trusted_factories()))


def add_factory_flag(ap) -> None:
    """`--factory MODULE:FUNCTION` (repeatable) on a command: the command line is trusted configuration."""
    ap.add_argument("--factory", action="append", default=[], metavar="MODULE:FUNCTION",
                    help=f"trust this model factory, which a spec may name as arch = \"factory:MODULE:FUNCTION\" "
                         f"(repeatable; also ${FACTORIES_ENV})")


def trust_flagged(factories: Iterable[str]) -> None:
    for ref in factories:
        allow_factory(ref)


def trusted_factories() -> frozenset[str]:
    env = {s.strip().removeprefix("factory:") for s in os.environ.get(FACTORIES_ENV, "").split(",")}
    return frozenset(_trusted | {s for s in env if s})


def _factory_arch(arch: str, ref: str) -> ArchDef:
    m = _FACTORY.fullmatch(ref)
    if m is None:
        raise SpecError(f"arch {arch!r}: expected factory:<package.module>:<function>, "
                        "e.g. factory:my_pkg.models:make_net")
    if ref not in trusted_factories():
        raise SpecError(f"arch {arch!r}: factories are imported only from trusted configuration; name it in "
                        f"{FACTORIES_ENV} or with --factory {ref} (a spec in a zoo directory cannot import code)")
    module_name, attr = m.groups()
    try:
        fn: Any = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 — ImportError, SyntaxError, whatever its top level raises
        raise SpecError(f"arch {arch!r}: module {module_name!r} does not import ({_one_line(e)})") from None
    for part in attr.split("."):
        if not hasattr(fn, part):
            raise SpecError(f"arch {arch!r}: module {module_name!r} has no attribute {attr!r}")
        fn = getattr(fn, part)
    if not callable(fn):
        raise SpecError(f"arch {arch!r}: {attr!r} is not callable (a {type(fn).__name__}); expected a function "
                        "returning an nn.Module")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as e:
        raise SpecError(f"arch {arch!r}: its signature cannot be read ({_one_line(e)})") from None
    declared: dict[str, Param] = {}
    for p in sig.parameters.values():
        if p.name in _TASK_ARGS or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        has_default = p.default is not inspect.Parameter.empty
        kind = _SCALARS.get(p.annotation) or (type(p.default) if has_default and type(p.default) in _SCALARS
                                              else None)
        if p.kind is p.POSITIONAL_ONLY or (kind is None and not has_default):
            raise SpecError(f"arch {arch!r}: parameter {p.name!r} cannot be given by a spec (give it a default, "
                            "or make it a keyword argument annotated int, float, str or bool)")
        if kind is None or (has_default and not isinstance(p.default, kind)):
            continue  # a list, a callable, None…: the factory's own default, not settable from a spec
        if kind is bool:
            declared[p.name] = Flag(default=p.default if has_default else False)
        else:
            declared[p.name] = Param(kind, kind(p.default) if has_default else None)
    task_args = {n for n in ("input_shape", "n_classes", "num_classes") if n in sig.parameters}

    def build(input_shape: tuple[int, ...], n_classes: int, **kwargs) -> nn.Module:
        given = {"input_shape": tuple(input_shape), "n_classes": n_classes, "num_classes": n_classes}
        call = {**{n: given[n] for n in task_args}, **kwargs}
        try:
            model = fn(**call)
        except Exception as e:  # noqa: BLE001 — the user's code: any exception is their factory failing
            raise SpecError(f"arch {arch!r}: the factory raised {_one_line(e)} (called with {call})") from None
        if not isinstance(model, nn.Module):
            raise SpecError(f"arch {arch!r}: the factory returned a {type(model).__name__}, not a torch.nn.Module")
        return model

    return ArchDef(build, declared, frozenset(), lambda shapes: {})
