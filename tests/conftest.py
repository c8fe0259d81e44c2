import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from data.training.generate import generate  # noqa: E402

torch.set_num_threads(1)  # small-model autograd on 2 cores: extra threads only oversubscribe

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ZOO = ROOT / "data" / "zoos" / "mnist1d-mlp"

# A tiny zoo: 3 widths × 2 batch sizes × 2 seeds, a few epochs on 500 examples (seconds to train).
TINY_SPEC = """
name = "tiny"
description = "a tiny test zoo"
task = "mnist1d"
arch = "mlp"
seeds = [0, 1]
[task_params]
n_train = 500
label_noise = 0.1
[arch_params]
depth = 2
[training]
epochs = 3
lr = 0.05
momentum = 0.9
weight_decay = 5e-4
batch_size = 32
checkpoint_epochs = [1]
analysis_epochs = [2]
[grid]
width = [4, 16, 64]
batch_size = [16, 64]
[axes.load]
knob = "width"
increases = false
[axes.temperature]
knob = "batch_size"
increases = false
"""


# Tiny zoos of the other task kinds: a sequence task (transformers on modular addition) and a regression
# task (convection PINNs), each 2 × 2 cells × 2 seeds, trained for seconds.
TINY_SEQ_SPEC = """
name = "tiny-seq"
task = "modular_add"
arch = "transformer"
seeds = [0, 1]
[task_params]
p = 7
[arch_params]
width = 8
heads = 2
[training]
optimizer = "adamw"
weight_decay = 1.0
epochs = 30
lr = 1e-2
batch_size = 64
eval_every = 5
checkpoint_epochs = [10, 20]
analysis_epochs = [30]
[grid]
train_fraction = [0.5, 0.9]
lr = [3e-3, 3e-2]
[axes.load]
knob = "train_fraction"
increases = true
[axes.temperature]
knob = "lr"
increases = true
"""
TINY_PINN_SPEC = """
name = "tiny-pinn"
task = "convection"
arch = "mlp"
seeds = [0, 1]
[task_params]
n_train = 100
[arch_params]
width = 8
depth = 2
activation = "tanh"
[training]
optimizer = "adam"
epochs = 20
lr = 1e-2
batch_size = 512
eval_every = 5
checkpoint_epochs = [10, 15]
analysis_epochs = [20]
[grid]
beta = [1.0, 30.0]
lr = [1e-3, 1e-2]
[axes.load]
knob = "beta"
increases = true
[axes.temperature]
knob = "lr"
increases = true
"""


def _generated(tmp_path_factory, name: str, text: str) -> Path:
    spec = tmp_path_factory.mktemp("spec") / f"{name}.toml"
    spec.write_text(text)
    out = tmp_path_factory.mktemp("zoo") / name
    generate(spec, out, workers=2, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_seq_zoo(tmp_path_factory) -> Path:
    return _generated(tmp_path_factory, "tiny-seq", TINY_SEQ_SPEC)


@pytest.fixture(scope="session")
def tiny_pinn_zoo(tmp_path_factory) -> Path:
    return _generated(tmp_path_factory, "tiny-pinn", TINY_PINN_SPEC)


@pytest.fixture(scope="session")
def tiny_spec(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "tiny.toml"
    path.write_text(TINY_SPEC)
    return path


@pytest.fixture(scope="session")
def tiny_zoo(tmp_path_factory, tiny_spec) -> Path:
    out = tmp_path_factory.mktemp("zoo") / "tiny"
    generate(tiny_spec, out, workers=2, progress=False)
    return out


def code_running_pickle(path: Path, marker: Path) -> Path:
    """A PyTorch file whose unpickling would run `touch marker`: what an attacker would upload."""

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    torch.save({"w": torch.zeros(2), "x": Evil()}, path)
    return path
