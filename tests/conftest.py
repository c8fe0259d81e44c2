import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from data.generate import generate  # noqa: E402

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
