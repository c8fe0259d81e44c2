"""Batched training equals one-at-a-time training; both are deterministic under fixed seeds."""
import sys

import pytest
import torch

from data.models.archs import build_model
from data.tasks.builtin import TaskData, load_task
from data.training.train import BatchedModels, TrainConfig, stack_padded, train_batched, train_one, unstack


@pytest.fixture(scope="module")
def data64() -> TaskData:
    d = load_task("mnist1d", n_train=300, label_noise=0.1)
    return TaskData(d.x_train.double(), d.y_train, d.x_test[:200].double(), d.y_test[:200], d.n_classes)


def models(arch, data, widths_seeds, dtype=torch.float64):
    return [build_model(arch, data.input_shape, data.n_classes, {"width": w}, seed=s).to(dtype)
            for w, s in widths_seeds]


WS = [(3, 0), (3, 1), (8, 0), (17, 2)]  # mixed widths (padding) and seeds
CFG = TrainConfig(epochs=2, lr=0.05, batch_size=32, momentum=0.9, weight_decay=5e-4)


def tanh_mlp(width: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(40, width), torch.nn.Tanh(), torch.nn.Linear(width, 10))


# Every way a group can be trained: the written-out backward (Linear/activation stacks), autograd over the
# baddbmm forward, and autograd over vmap(functional_call) (any architecture).
PATHS = [("mlp", "manual"), ("mlp", "baddbmm"), ("mlp", "vmap"), ("tanh", "manual"),
         pytest.param("cnn1d", "vmap", marks=pytest.mark.slow)]


@pytest.mark.parametrize("arch, path", PATHS)
def test_batched_equals_sequential(arch, path, data64, monkeypatch):
    import data.training.train as train_mod

    if path != "manual":
        monkeypatch.setattr(train_mod, "layer_plan", lambda template: None)
    if path == "vmap":
        orig = BatchedModels.__init__

        def init(self, ms):
            orig(self, ms)
            self._sequential = False
        monkeypatch.setattr(BatchedModels, "__init__", init)
    if arch == "tanh":
        monkeypatch.setattr(sys.modules[__name__], "models", lambda a, d, ws: [tanh_mlp(w, s).double() for w, s in ws])
    if arch != "cnn1d":
        assert (train_mod.layer_plan(models(arch, data64, WS)[0]) is not None) == (path == "manual")
    seq = [train_one(m, data64, CFG, s, [0, 1, 2]) for m, (_, s) in zip(models(arch, data64, WS), WS)]
    bat = train_batched(models(arch, data64, WS), data64, CFG, [s for _, s in WS], [0, 1, 2])
    for a, b in zip(seq, bat):
        for epoch in (0, 1, 2):
            for k in a.checkpoints[epoch]:
                assert a.checkpoints[epoch][k].shape == b.checkpoints[epoch][k].shape
                torch.testing.assert_close(b.checkpoints[epoch][k], a.checkpoints[epoch][k], rtol=1e-9, atol=1e-10)
        for ha, hb in zip(a.history, b.history):
            assert ha.epoch == hb.epoch
            assert hb.train_loss == pytest.approx(ha.train_loss, rel=1e-9)
            assert hb.test_acc == pytest.approx(ha.test_acc, abs=1e-12)
    # training moved the weights, and the models differ from each other (own init and data order)
    first = next(iter(seq[0].checkpoints[0]))
    assert all(torch.isfinite(t).all() for r in bat for t in r.checkpoints[2].values())
    assert not torch.equal(seq[0].checkpoints[0][first], seq[0].checkpoints[2][first])
    assert seq[0].history[-1].train_loss != seq[1].history[-1].train_loss


def test_float32_batched_close_to_sequential(data64):
    d32 = TaskData(data64.x_train.float(), data64.y_train, data64.x_test.float(), data64.y_test, 10)
    seq = [train_one(m, d32, CFG, s, [2]) for m, (_, s) in zip(models("mlp", d32, WS, torch.float32), WS)]
    bat = train_batched(models("mlp", d32, WS, torch.float32), d32, CFG, [s for _, s in WS], [2])
    for a, b in zip(seq, bat):
        for k in a.checkpoints[2]:
            torch.testing.assert_close(b.checkpoints[2][k], a.checkpoints[2][k], rtol=1e-4, atol=1e-5)


def test_deterministic(data64):
    runs = [train_batched(models("mlp", data64, WS), data64, CFG, [s for _, s in WS], [2]) for _ in range(2)]
    for a, b in zip(*runs):
        assert a.history == b.history
        assert all(torch.equal(a.checkpoints[2][k], b.checkpoints[2][k]) for k in a.checkpoints[2])


def test_padding_round_trip():
    states = [{"w": torch.randn(2, 3), "b": torch.randn(2)}, {"w": torch.randn(4, 1), "b": torch.randn(4)}]
    stacked = stack_padded(states)
    assert stacked["w"].shape == (2, 4, 3)
    assert stacked["w"][0, 2:].abs().sum() == 0 and stacked["w"][1, :, 1:].abs().sum() == 0
    for m, s in enumerate(states):
        back = unstack(stacked, m, {k: v.shape for k, v in s.items()})
        assert all(torch.equal(back[k], s[k]) for k in s)


def test_layer_plan_recognises_only_plain_stacks():
    from data.models.stacked_mlp import layer_plan

    nn = torch.nn
    assert layer_plan(nn.Sequential(nn.Flatten(-1), nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))) == [
        ("1", nn.ReLU), ("3", None)]
    assert layer_plan(nn.Sequential(nn.Linear(3, 4), nn.ReLU())) is None  # must end in a Linear
    assert layer_plan(nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))) is None  # no activation between
    assert layer_plan(nn.Sequential(nn.Linear(3, 4), nn.GELU(), nn.Linear(4, 2))) is None
    assert layer_plan(nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 2))) is None
    assert layer_plan(nn.Linear(3, 2)) is None


def test_models_with_buffers_are_refused():
    m = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    with pytest.raises(ValueError, match="buffers"):
        BatchedModels([m, m])
