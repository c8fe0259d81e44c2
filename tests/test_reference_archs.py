"""Architectures by reference (data.models.reference): torchvision and timm models by name, user factories.

Oracles: torchvision's ResNet-18 with the CIFAR stem has exactly the keys and shapes of the published zoos'
ResNet-18 of width 64 (data.models.resnet, written independently); recognition builds on the meta device and
compares every key and shape; every bad factory string is one line naming it. Nothing downloads.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings

import polars as pl
import pytest
import torch

from analysis.upload.recognise import match_zoo
from data.models import reference
from data.models.archs import arch_def, arch_params, build_model, match_shapes, n_params
from data.models.reference import FACTORIES_ENV, match_configs
from data.models.torchvision_compat import TorchvisionUnavailable, import_torchvision
from data.params import SpecError
from data.zoo.spec import load_spec, parse_spec
from data.zoo.store import Zoo

warnings.filterwarnings("ignore", category=FutureWarning)  # GoogLeNet/Inception init notices, not ours

CIFAR = (3, 32, 32)


def shapes_of(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg and msg, msg
    return msg


# ---- torchvision ---------------------------------------------------------------------------------------


def test_torchvision_imports_through_the_shim_once():
    tv = import_torchvision()
    assert tv.__version__.startswith("0.28.0")
    assert import_torchvision() is tv  # a second call reuses the module: the schemas are not defined twice


def test_torchvision_not_installed_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # `import torchvision` now raises ModuleNotFoundError
    with pytest.raises(TorchvisionUnavailable) as e:
        import_torchvision()
    assert "torchvision is not installed" in one_line(e) and "torchvision==0.28.0" in str(e.value)


@pytest.mark.slow
def test_torchvision_failing_otherwise_is_one_line():
    """Any other import failure is not the missing-schema one: no shim, a one-line error (a fresh process,
    since a half-import cannot be undone in this one)."""
    code = textwrap.dedent("""
        import sys, importlib.abc, importlib.machinery
        class Broken(importlib.abc.MetaPathFinder, importlib.abc.Loader):
            def find_spec(self, name, path, target=None):
                return importlib.machinery.ModuleSpec(name, self) if name == "torchvision" else None
            def create_module(self, spec):
                return None
            def exec_module(self, module):
                raise RuntimeError("something else\\nentirely")
        sys.meta_path.insert(0, Broken())
        from data.models.torchvision_compat import import_torchvision, TorchvisionUnavailable
        try:
            import_torchvision()
        except TorchvisionUnavailable as e:
            print(repr(str(e)))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == repr("torchvision does not import (RuntimeError: something else entirely)"), out


def test_torchvision_resnet18_builds_runs_and_is_the_published_resnet18():
    model = build_model("torchvision:resnet18", CIFAR, 10, {"small_input": True}, seed=0)
    again = build_model("torchvision:resnet18", CIFAR, 10, {"small_input": True}, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    x = torch.randn(2, *CIFAR)  # (a forward pass in training mode moves BatchNorm's running statistics)
    assert model(x).shape == (2, 10)
    assert (model.conv1.kernel_size, model.conv1.stride, type(model.maxpool)) == ((3, 3), (1, 1), torch.nn.Identity)
    # the published zoos' ResNet-18 (width 64 = torchvision's stage widths), an independent implementation
    assert shapes_of(model) == shapes_of(build_model("resnet18_width", CIFAR, 10, {"width": 64}))
    assert n_params(model) == 11_173_962  # torchvision's 11,689,512 for 1000 classes less 990 × 513 of the head
    plain = build_model("torchvision:resnet18", CIFAR, 10, {})  # default: torchvision's own ImageNet stem
    assert plain.conv1.kernel_size == (7, 7) and isinstance(plain.maxpool, torch.nn.MaxPool2d)
    assert plain(x).shape == (2, 10)


def test_torchvision_resnet18_state_dict_is_recognised_by_shapes():
    for small in (True, False):
        state = build_model("torchvision:resnet18", CIFAR, 10, {"small_input": small}).state_dict()
        m = match_shapes("torchvision:resnet18", {k: v.shape for k, v in state.items()}, CIFAR, 10)
        assert m.ok and m.params == {"small_input": small}, m
    state = build_model("torchvision:resnet18", CIFAR, 100, {"small_input": True}).state_dict()
    m = match_shapes("torchvision:resnet18", {k: v.shape for k, v in state.items()}, CIFAR, 10)
    assert not m.ok and "fc.weight (100, 512) ≠ (10, 512)" in m.problems[0]
    m = match_shapes("torchvision:resnet18", {"0.weight": (8, 40)}, CIFAR, 10)
    assert not m.ok  # an MLP's keys: no conv1, nothing inferred


@pytest.mark.slow
def test_torchvision_declares_the_constructor_arguments_this_variant_passes():
    assert {k: p.default for k, p in arch_def("torchvision:resnext50_32x4d").params.items()} == {
        "zero_init_residual": False, "groups": 32, "width_per_group": 4, "small_input": False}
    mobilenet = arch_def("torchvision:mobilenet_v2").params
    assert mobilenet["width_mult"].default == 1.0 and "small_input" not in mobilenet
    # the load knob: a grid over width_mult is a family of smaller and larger models
    with torch.device("meta"):
        sizes = [n_params(build_model("torchvision:mobilenet_v2", CIFAR, 10, {"width_mult": w})) for w in (0.5, 1.0)]
    assert sizes[0] < sizes[1]
    vit = arch_def("torchvision:vit_b_16").params
    assert "patch_size" not in vit and "image_size" not in vit  # fixed by the builder / set from the task
    with torch.device("meta"):
        assert build_model("torchvision:vit_b_16", CIFAR, 10, {}).image_size == 32


def test_torchvision_bad_names_parameters_and_inputs_are_one_line():
    with pytest.raises(SpecError) as e:
        arch_def("torchvision:resnet19")
    assert "'torchvision:resnet19': not a torchvision classification model" in one_line(e)
    assert "resnet18" in str(e.value)
    for bad in ("torchvision:", "torchvision:res net", "torchvision:../x"):
        with pytest.raises(SpecError) as e:
            arch_def(bad)
        assert "expected torchvision:<model name>" in one_line(e)
    with pytest.raises(SpecError) as e:
        arch_params("torchvision:resnet18", {"small_input": 1})
    assert "arch_params.small_input: expected true or false, got 1" == one_line(e)
    with pytest.raises(SpecError) as e:
        arch_params("torchvision:resnet18", {"width": 32})
    assert "unknown parameter(s) ['width']" in one_line(e)
    with pytest.raises(SpecError) as e:
        build_model("torchvision:resnet18", (40,), 10, {})
    assert "takes images [C, H, W]; the task's inputs are (40,)" in one_line(e)
    with pytest.raises(SpecError) as e:
        build_model("torchvision:mobilenet_v2", (1, 28, 28), 10, {})
    assert "takes 3-channel images; the task's have 1" in one_line(e)
    # a ResNet's stem follows the task's channels
    gray = build_model("torchvision:resnet18", (1, 28, 28), 10, {"small_input": True})
    assert gray.conv1.in_channels == 1 and gray(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(SpecError) as e:
        arch_def("keras:resnet18")
    assert "unknown architecture 'keras:resnet18'" in one_line(e) and "torchvision:<name>" in str(e.value)


# ---- timm ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_timm_models_by_name():
    pytest.importorskip("timm")
    model = build_model("timm:resnet18", (1, 28, 28), 10, {}, seed=0)  # in_chans from the task
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10) and model.conv1.in_channels == 1
    state = model.state_dict()
    assert match_shapes("timm:resnet18", {k: v.shape for k, v in state.items()}, (1, 28, 28), 10).ok
    vit = arch_def("timm:vit_tiny_patch16_224").params
    assert vit["embed_dim"].default == 192 and vit["depth"].default == 12  # the variant's, not the class's 768
    small = build_model("timm:vit_tiny_patch16_224", CIFAR, 10, {"depth": 1, "embed_dim": 48, "num_heads": 3})
    assert small(torch.randn(2, *CIFAR)).shape == (2, 10)  # img_size from the task: 2 × 2 patches of 16
    with pytest.raises(SpecError) as e:
        arch_def("timm:not_a_model_xyz")
    assert "'timm:not_a_model_xyz': not a timm model" in one_line(e)


# ---- factories -----------------------------------------------------------------------------------------

FACTORY_MODULE = '''
from torch import nn

def make_net(input_shape, n_classes, width: int = 8, depth: int = 1, bias: bool = True, note=None):
    layers, d = [nn.Flatten()], input_shape[0]
    for _ in range(depth):
        layers += [nn.Linear(d, width, bias=bias), nn.ReLU()]
        d = width
    return nn.Sequential(*layers, nn.Linear(d, n_classes))

def raises(width: int = 8):
    raise ValueError("width must be even\\nreally")

def not_a_module(width: int = 8):
    return [width]

def untyped_required(input_shape, n_classes, scale):
    return nn.Linear(1, 1)

NOT_CALLABLE = 3
'''


@pytest.fixture
def factories(tmp_path, monkeypatch):
    """A user's module on sys.path (trusted configuration: the user's own environment), trusted via the env."""
    (tmp_path / "pz_user_models.py").write_text(FACTORY_MODULE)
    (tmp_path / "pz_user_broken.py").write_text("def f(:\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(reference, "_trusted", set())
    names = ["make_net", "raises", "not_a_module", "untyped_required", "NOT_CALLABLE", "missing"]
    monkeypatch.setenv(FACTORIES_ENV, ",".join([*(f"pz_user_models:{n}" for n in names), "pz_user_broken:f",
                                                "pz_no_such_module:f"]))
    return "factory:pz_user_models:make_net"


def test_factory_builds_with_its_keyword_arguments(factories):
    d = arch_def(factories)
    assert {k: (p.type, p.default) for k, p in d.params.items()} == {
        "width": (int, 8), "depth": (int, 1), "bias": (bool, True)}  # `note=None`: not settable from a spec
    model = build_model(factories, (40,), 10, {"width": 16, "depth": 2}, seed=0)
    assert model(torch.randn(3, 40)).shape == (3, 10)
    assert n_params(model) == 40 * 16 + 16 + 16 * 16 + 16 + 16 * 10 + 10
    with pytest.raises(SpecError) as e:
        arch_params(factories, {"width": "wide"})
    assert one_line(e) == "arch_params.width: expected int, got 'wide'"


def test_factory_needs_trusted_configuration(factories, monkeypatch):
    monkeypatch.delenv(FACTORIES_ENV)
    with pytest.raises(SpecError) as e:
        arch_def(factories)
    assert "imported only from trusted configuration" in one_line(e) and factories in str(e.value)
    reference.allow_factory("pz_user_models:make_net")  # what a --factory flag does
    assert arch_def(factories).params["width"].default == 8


@pytest.mark.parametrize("ref, expected", [
    ("factory:pz_user_models", "expected factory:<package.module>:<function>"),
    ("factory:pz user:make", "expected factory:<package.module>:<function>"),
    ("factory:pz_user_models:other", "imported only from trusted configuration"),
    ("factory:pz_no_such_module:f", "module 'pz_no_such_module' does not import (ModuleNotFoundError"),
    ("factory:pz_user_broken:f", "module 'pz_user_broken' does not import (SyntaxError"),
    ("factory:pz_user_models:missing", "module 'pz_user_models' has no attribute 'missing'"),
    ("factory:pz_user_models:NOT_CALLABLE", "'NOT_CALLABLE' is not callable (a int)"),
    ("factory:pz_user_models:untyped_required", "parameter 'scale' cannot be given by a spec"),
])
def test_bad_factory_strings_are_one_line_naming_the_factory(factories, ref, expected):
    with pytest.raises(SpecError) as e:
        arch_def(ref)
    msg = one_line(e)
    assert msg.startswith(f"arch {ref!r}: ") and expected in msg, msg


@pytest.mark.parametrize("ref, expected", [
    ("factory:pz_user_models:raises", "the factory raised ValueError: width must be even really (called with"),
    ("factory:pz_user_models:not_a_module", "the factory returned a list, not a torch.nn.Module"),
])
def test_factory_failing_when_called_is_one_line(factories, ref, expected):
    with pytest.raises(SpecError) as e:
        build_model(ref, (40,), 10, {})
    msg = one_line(e)
    assert msg.startswith(f"arch {ref!r}: ") and expected in msg, msg


def spec_text(arch: str, task: str, arch_params: str, grid: str, load: str) -> str:
    return f'''
name = "by-reference"
task = "{task}"
arch = "{arch}"
seeds = [0, 1]
[arch_params]
{arch_params}
[training]
epochs = 2
lr = 0.1
batch_size = 32
analysis_epochs = [2]
[grid]
{grid}
batch_size = [32, 64]
[axes.load]
knob = "{load}"
increases = false
[axes.temperature]
knob = "batch_size"
increases = false
'''


def test_factory_zoo_with_a_width_load_knob_parses_and_recognises_uploads(factories, tmp_path):
    spec = parse_spec(spec_text(factories, "mnist1d", "depth = 2", "width = [8, 16]", "width"))
    assert spec.arch == factories and spec.load.knob == "width"
    assert sorted({c.get("arch_params")["width"] for c in spec.models()}) == [8, 16]
    zoo = Zoo(tmp_path, spec, pl.DataFrame())
    state = build_model(factories, (40,), 10, {"width": 16, "depth": 2}).state_dict()
    m = match_zoo(state, zoo)
    assert m.ok and m.on_grid and m.knobs == {"width": 16} and m.arch_params["depth"] == 2, m
    between = build_model(factories, (40,), 10, {"width": 12, "depth": 2}).state_dict()
    m = match_zoo(between, zoo)  # a factory's arguments are matched on the grid only
    assert not m.ok and "shape(s) differ" in m.problems[0], m
    with pytest.raises(SpecError) as e:
        parse_spec(spec_text(factories, "mnist1d", "depth = 2", "width = [8, 0.5]", "width"))
    assert "grid.width" in one_line(e)


def test_torchvision_spec_parses_and_its_zoo_recognises_its_models(tmp_path):
    text = spec_text("torchvision:resnet18", "cifar10", "small_input = true", "lr = [0.1, 0.01]", "lr")
    spec = parse_spec(text)
    assert spec.arch == "torchvision:resnet18" and spec.arch_params["small_input"] is True
    state = build_model("torchvision:resnet18", CIFAR, 10, {"small_input": True}).state_dict()
    m = match_zoo(state, Zoo(tmp_path, spec, pl.DataFrame()))
    assert m.ok and m.arch_params["small_input"] is True, m
    imagenet_stem = build_model("torchvision:resnet18", CIFAR, 10, {}).state_dict()
    assert not match_zoo(imagenet_stem, Zoo(tmp_path, spec, pl.DataFrame())).ok
    with pytest.raises(SpecError) as e:
        parse_spec(text.replace("torchvision:resnet18", "torchvision:resnet19"), "z/spec.toml")
    assert one_line(e).startswith("z/spec.toml: arch 'torchvision:resnet19': not a torchvision")


def test_match_configs_reports_the_nearest_configuration():
    shapes = shapes_of(build_model("mlp", (40,), 10, {"width": 16}))
    m = match_configs("mlp", shapes, (40,), 10, [{"width": 8}, {"width": 16}, {"width": 8}])
    assert m.ok and m.params["width"] == 16
    m = match_configs("mlp", shapes, (40,), 10, [{"width": 8}, {"width": 0}])
    assert not m.ok and m.params == {"width": 8} and "shape(s) differ" in m.problems[0]
    assert not match_configs("mlp", shapes, (40,), 10, []).ok


@pytest.mark.slow
def test_generate_trusts_the_factory_its_own_spec_file_names(factories, tmp_path, monkeypatch):
    """The spec a user names on the command line is trusted configuration (the workers inherit the trust);
    `--factory` trusts one explicitly; without either, a factory is refused before any training."""
    from data.training.generate import main as generate_main

    monkeypatch.delenv(FACTORIES_ENV)
    spec = tmp_path / "own.toml"
    spec.write_text(spec_text(factories, "mnist1d", "depth = 1", "width = [4, 8]", "width"))
    assert generate_main([str(spec), "--out", str(tmp_path / "zoo"), "--workers", "1", "--quiet"]) == 0
    assert Zoo.open(tmp_path / "zoo").catalog["model_id"].n_unique() == 8  # 2 widths × 2 batch sizes × 2 seeds
    assert reference.trusted_factories() == {"pz_user_models:make_net"}

    # the zoo directory's own spec does not trust the factory: `phasezoo run` needs --factory (or the env)
    from analysis.runner.run import main as run_main

    monkeypatch.setattr(reference, "_trusted", set())
    monkeypatch.delenv(FACTORIES_ENV)
    zoo = str(tmp_path / "zoo")
    assert run_main([zoo, "--metrics", "weights", "--workers", "1", "--quiet"]) == 2
    assert run_main([zoo, "--metrics", "weights", "--workers", "1", "--quiet",
                     "--factory", "pz_user_models:make_net"]) == 0
    assert (tmp_path / "zoo" / "metrics.parquet").exists()


def test_a_zoo_directorys_factory_is_not_trusted_by_opening_it(factories, tmp_path, monkeypatch):
    spec = tmp_path / "zoo" / "spec.toml"
    spec.parent.mkdir()
    spec.write_text(spec_text(factories, "mnist1d", "depth = 1", "width = [4, 8]", "width"))
    monkeypatch.delenv(FACTORIES_ENV)
    monkeypatch.delitem(sys.modules, "pz_user_models", raising=False)
    with pytest.raises(SpecError) as e:
        load_spec(spec)  # what Zoo.open does: no import of the factory's module
    assert "imported only from trusted configuration" in one_line(e) and "--factory" in one_line(e)
    assert "pz_user_models" not in sys.modules
