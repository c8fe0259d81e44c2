import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from data.training.generate import generate  # noqa: E402
from data.zoo.spec_builder import tiny_mlp_spec, tiny_pinn_spec, tiny_seq_spec  # noqa: E402

MAIN = sys.modules["__main__"]  # pytest's, saved at collection: before any AppTest replaced it


@pytest.fixture(autouse=True)
def keep_main():
    """Put back the real __main__ after every test: AppTest installs the page script as __main__, and a worker
    process spawned later (a fixture generating a zoo) would import the page in its stead."""
    yield
    sys.modules["__main__"] = MAIN


torch.set_num_threads(1)  # small-model autograd on 2 cores: extra threads only oversubscribe

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ZOO = ROOT / "data" / "zoos" / "mnist1d-mlp"

# The tiny zoos (data.zoo.spec_builder), each trained in seconds: MNIST-1D MLPs (3 widths × 2 batch sizes ×
# 2 seeds), and one zoo of each other task kind, a sequence task (transformers on modular addition) and a
# regression task (convection PINNs), 2 × 2 cells × 2 seeds. As text: tests edit it into variants and bad specs.
TINY_SPEC = tiny_mlp_spec().toml()
TINY_SEQ_SPEC = tiny_seq_spec().toml()
TINY_PINN_SPEC = tiny_pinn_spec().toml()


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


def private_cache(tmp_path_factory):
    """A module's own PHASEZOO_CACHE (verdict reports, task arrays): the user's MNIST-1D arrays copied over
    when their cache has them, so nothing is regenerated and nothing is written to the user's cache. Used as
    `yield from private_cache(tmp_path_factory)` in a module-scoped fixture."""
    import shutil

    from data.tasks.builtin import cache_dir

    mine = tmp_path_factory.mktemp("phasezoo-cache")
    user = cache_dir()
    for f in user.glob("mnist1d-*.npz") if user.is_dir() else ():
        shutil.copy(f, mine / f.name)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PHASEZOO_CACHE", str(mine))
        yield mine



class Recorder:
    """A scikit-learn-style classifier that records the rows of every fit (`Recorder.fits`, reset by the test)
    and surely predicts its first class: for checking what a validation trains on."""

    fits: list = []

    def get_params(self, deep=False):
        return {}

    def set_params(self, **_):
        return self

    def fit(self, X, y):
        import numpy as np

        Recorder.fits.append(np.array(X, copy=True))
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        import numpy as np

        return np.full(len(X), self.classes_[0])

    def predict_proba(self, X):
        import numpy as np

        return np.eye(len(self.classes_))[np.zeros(len(X), int)]
