"""The downstream studies (analysis.kernels.downstream, analysis.metrics.downstream, analysis.studies.phase_ensembles):
kernels against hand-computed or independently computed answers, and the registered metrics through the
runner on the tiny zoo (complete, resumable, bad input recorded as error rows)."""
import copy
import itertools
import math
import shutil

import numpy as np
import polars as pl
import pytest
import torch
from torch import nn

from analysis.kernels.downstream import (
    accuracy,
    apply_masks,
    average_states,
    ensemble,
    fine_tune,
    head_name,
    magnitude_masks,
    predict_proba,
    recalibrate_batchnorm,
    reset_head,
    weight_matching,
)
from analysis.metrics.downstream import SPARSITIES, average_epochs, prune, transfer
from analysis.metrics.registry import CELL, ModelInput
from analysis.runner.run import resolve_metrics, run
from analysis.studies.phase_ensembles import compare, draw_ensembles
from analysis.taxonomy.phases import UNCLASSIFIED
from data.models.archs import build_model
from data.tasks.builtin import load_task
from data.zoo.store import Zoo, read_metrics

DOWNSTREAM = ["ensemble", "average_epochs", "average_seeds", "average_aligned", "transfer", "prune"]
LAST = 3  # the tiny zoo's last epoch (checkpoints at 0, 1, 2, 3)


def mlp(width=16, depth=2, seed=0, n_in=40, n_classes=10):
    return build_model("mlp", (n_in,), n_classes, {"width": width, "depth": depth}, seed=seed)


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def with_state(model, sd):
    m = copy.deepcopy(model)
    m.load_state_dict(sd)
    return m.eval()


def logits(model, x):
    with torch.no_grad():
        return model.eval()(x)


# ----------------------------------------------------------------------------- ensemble
def _member_nll(true_class_probs):
    return -sum(math.log(p) for p in true_class_probs) / len(true_class_probs)


P_A = [[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.5, 0.3, 0.2], [0.2, 0.5, 0.3]]  # argmax 0 1 0 1
P_B = [[0.4, 0.5, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.6, 0.1, 0.3]]  # argmax 1 1 2 0
P_C = [[0.1, 0.1, 0.8], [0.3, 0.4, 0.3], [0.2, 0.2, 0.6], [0.9, 0.05, 0.05]]  # argmax 2 1 2 0


def test_ensemble_two_members_by_hand():
    y = torch.tensor([0, 1, 2, 0])
    r = ensemble([torch.tensor(P_A), torch.tensor(P_B)], y)
    # mean probabilities: [.55 .35 .1], [.15 .65 .2], [.3 .25 .45], [.4 .3 .3] -> argmax 0 1 2 0: all right
    assert r.n == 2
    assert r.acc == 1.0
    assert r.nll == pytest.approx(_member_nll([0.55, 0.65, 0.45, 0.4]), rel=1e-6)
    assert r.member_acc == pytest.approx((0.5 + 0.75) / 2)  # A right on 0, 1; B right on 1, 2, 3
    assert r.member_nll == pytest.approx((_member_nll([0.7, 0.6, 0.2, 0.2]) + _member_nll([0.4, 0.7, 0.7, 0.6])) / 2,
                                         rel=1e-6)
    assert r.disagreement == pytest.approx(0.75)  # argmaxes 0101 vs 1120 differ on inputs 0, 2, 3


def test_ensemble_three_members_by_hand():
    y = torch.tensor([0, 1, 2, 1])
    r = ensemble([torch.tensor(P_A, dtype=torch.float32), torch.tensor(P_B), torch.tensor(P_C)], y)
    # mean probabilities: [.4 .267 .333], [.2 .567 .233], [.267 .233 .5], [.567 .217 .217] -> 0 1 2 0
    assert r.n == 3
    assert r.acc == pytest.approx(0.75)  # the last input (label 1) is called 0
    assert r.nll == pytest.approx(_member_nll([1.2 / 3, 1.7 / 3, 1.5 / 3, 0.65 / 3]), rel=1e-6)
    assert r.member_acc == pytest.approx((0.75 + 0.5 + 0.5) / 3)
    assert r.member_nll == pytest.approx((_member_nll([0.7, 0.6, 0.2, 0.5]) + _member_nll([0.4, 0.7, 0.7, 0.1])
                                          + _member_nll([0.1, 0.4, 0.6, 0.05])) / 3, rel=1e-6)
    # argmaxes A 0101, B 1120, C 2120: A-B differ on 3 of 4 inputs, A-C on 3, B-C on 1
    assert r.disagreement == pytest.approx((0.75 + 0.75 + 0.25) / 3)


def test_ensemble_identical_members_and_zero_probability():
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    r = ensemble([p, p.clone()], torch.tensor([1, 1]))
    assert (r.acc, r.member_acc, r.disagreement) == (0.5, 0.5, 0.0)
    assert math.isfinite(r.nll) and r.nll == pytest.approx(-math.log(1e-12) / 2)  # clamped, not inf
    assert r.member_nll == pytest.approx(r.nll)


@pytest.mark.parametrize("n", [0, 1])
def test_ensemble_needs_two_members(n):
    with pytest.raises(ValueError, match=f"at least 2 members, got {n}"):
        ensemble([torch.tensor(P_A)] * n, torch.tensor([0, 1, 2, 0]))


# ----------------------------------------------------------------------------- averaging
def test_average_states_is_the_mean():
    g = torch.Generator().manual_seed(0)
    a = {"w": torch.randn(5, 3, generator=g), "b": torch.randn(5, generator=g),
         "n": torch.tensor(7), "h": torch.randn(4, generator=g, dtype=torch.float64)}
    b = {"w": torch.randn(5, 3, generator=g), "b": torch.randn(5, generator=g),
         "n": torch.tensor(11), "h": torch.randn(4, generator=g, dtype=torch.float64)}
    avg = average_states([a, b])
    assert avg.keys() == a.keys()
    for k in ("w", "b", "h"):
        assert avg[k].dtype == a[k].dtype
        assert torch.equal(avg[k], (a[k] + b[k]) / 2), k
    assert avg["n"].dtype == torch.int64 and avg["n"].item() == 7  # integer buffers: the first model's
    assert avg["n"].data_ptr() != a["n"].data_ptr()  # a copy
    three = average_states([a, b, {k: v * 4 if v.is_floating_point() else v for k, v in a.items()}])
    torch.testing.assert_close(three["w"], (a["w"] + b["w"] + 4 * a["w"]) / 3)
    single = average_states([a])
    assert all(torch.equal(single[k], a[k]) for k in a)
    with pytest.raises(ValueError, match="nothing to average"):
        average_states([])


def test_average_states_of_batchnorm_models():
    a, b = nn.BatchNorm1d(3), nn.BatchNorm1d(3)
    a.train()(torch.randn(8, 3))
    for _ in range(3):
        b.train()(torch.randn(8, 3) + 1)
    avg = average_states([a.state_dict(), b.state_dict()])
    assert torch.equal(avg["running_mean"], (a.running_mean + b.running_mean) / 2)
    assert avg["num_batches_tracked"].item() == 1  # from the first model


def test_average_states_rejects_other_architectures():
    with pytest.raises(ValueError, match=r"different architectures.*'1\.weight'.*\(4, 40\).*\(16, 40\)"):
        average_states([mlp(width=4).state_dict(), mlp(width=16).state_dict()])
    with pytest.raises(ValueError, match=r"different architectures.*'7\.(weight|bias)'.*one model only"):
        average_states([mlp(depth=2).state_dict(), mlp(depth=3).state_dict()])


# ----------------------------------------------------------------------------- weight matching
def permute_hidden(model, sd, seed):
    """sd with the hidden units of every hidden layer permuted at random (the same function)."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    g = torch.Generator().manual_seed(seed)
    out = {k: v.clone() for k, v in sd.items()}
    for i, name in enumerate(names[:-1]):
        p = torch.randperm(out[f"{name}.weight"].shape[0], generator=g)
        assert not torch.equal(p, torch.arange(len(p)))
        out[f"{name}.weight"], out[f"{name}.bias"] = out[f"{name}.weight"][p], out[f"{name}.bias"][p]
        nxt = f"{names[i + 1]}.weight"
        out[nxt] = out[nxt][:, p]
    return out


def distance(a, b):
    return math.sqrt(sum(((a[k].double() - b[k].double()) ** 2).sum().item() for k in a))


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_weight_matching_undoes_a_permutation(depth):
    model = mlp(width=16, depth=depth, seed=0)
    sa = state(model)
    sb = permute_hidden(model, sa, seed=1)
    x = torch.randn(64, 40, generator=torch.Generator().manual_seed(2))
    b_model = with_state(model, sb)
    assert distance(sa, sb) > 1.0
    torch.testing.assert_close(logits(b_model, x), logits(model, x), atol=1e-5, rtol=0)  # same function
    aligned, rounds = weight_matching(model, sa, sb)
    assert rounds >= 1
    assert aligned.keys() == sa.keys()
    for k in sa:
        torch.testing.assert_close(aligned[k], sa[k], atol=1e-6, rtol=0, msg=k)
    torch.testing.assert_close(logits(with_state(model, aligned), x), logits(b_model, x), atol=1e-5, rtol=0)
    # b is not modified
    assert all(torch.equal(sb[k], v) for k, v in permute_hidden(model, sa, seed=1).items())


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_weight_matching_of_independent_models(seed):
    model = mlp(width=16, depth=2, seed=0)
    other = mlp(width=16, depth=2, seed=seed)
    sa, sb = state(model), state(other)
    aligned, _ = weight_matching(model, sa, sb)
    x = torch.randn(64, 40, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(logits(with_state(model, aligned), x), logits(other, x), atol=1e-5, rtol=0)
    assert distance(sa, aligned) <= distance(sa, sb) + 1e-9
    assert distance(sa, aligned) < distance(sa, sb)  # 16! orderings: the identity is not the best match
    # aligned is a permutation of b: every row multiset of the first layer is preserved
    assert sorted(aligned["1.bias"].tolist()) == sorted(sb["1.bias"].tolist())
    # the output layer's rows (classes) are never permuted
    assert torch.equal(aligned["5.bias"], sb["5.bias"])


def objective(a, b):
    """Σ over all tensors of ⟨A, B⟩: what weight matching maximises over permutations of B."""
    return sum((a[k].double() * b[k].double()).sum().item() for k in a)


def test_weight_matching_one_hidden_layer_is_the_global_optimum():
    """With one hidden layer the problem is one linear assignment: compare with all 6! permutations."""
    model, other = mlp(width=6, depth=1, seed=0), mlp(width=6, depth=1, seed=4)
    sa, sb = state(model), state(other)
    aligned, _ = weight_matching(model, sa, sb)
    best = max(objective(sa, {"1.weight": sb["1.weight"][list(p)], "1.bias": sb["1.bias"][list(p)],
                              "3.weight": sb["3.weight"][:, list(p)], "3.bias": sb["3.bias"]})
               for p in itertools.permutations(range(6)))
    assert objective(sa, aligned) == pytest.approx(best, rel=1e-12)
    assert objective(sa, aligned) > objective(sa, sb)


@pytest.mark.parametrize("depth", [2, 3])
def test_weight_matching_ends_at_a_fixed_point(depth):
    """Every layer's permutation is optimal given the others: matching the result again changes nothing,
    and no single transposition of two hidden units of any layer improves the objective."""
    model, other = mlp(width=6, depth=depth, seed=0), mlp(width=6, depth=depth, seed=7)
    sa = state(model)
    aligned, _ = weight_matching(model, sa, state(other))
    again, rounds = weight_matching(model, sa, aligned)
    assert rounds == 1 and all(torch.equal(again[k], aligned[k]) for k in aligned)
    names = [f"{2 * i + 1}" for i in range(depth + 1)]
    best = objective(sa, aligned)
    for i, name in enumerate(names[:-1]):
        for u, v in itertools.combinations(range(6), 2):
            p = list(range(6))
            p[u], p[v] = v, u
            swapped = dict(aligned)
            swapped[f"{name}.weight"] = aligned[f"{name}.weight"][p]
            swapped[f"{name}.bias"] = aligned[f"{name}.bias"][p]
            swapped[f"{names[i + 1]}.weight"] = aligned[f"{names[i + 1]}.weight"][:, p]
            assert objective(sa, swapped) <= best + 1e-9, (name, u, v)


def test_weight_matching_needs_an_mlp():
    cnn = build_model("cnn1d", (40,), 10, {"width": 4, "depth": 2}, seed=0)
    with pytest.raises(ValueError, match="MLP"):
        weight_matching(cnn, cnn.state_dict(), cnn.state_dict())


# ----------------------------------------------------------------------------- pruning
def n_weights(model):
    return sum(p.numel() for p in model.parameters() if p.ndim >= 2)


@pytest.mark.parametrize("sparsity", [0.1, 0.5, 0.8, 0.9, 0.95])
def test_magnitude_masks_prune_the_globally_smallest(sparsity):
    model = mlp(width=16, depth=2, seed=3)
    before = state(model)
    masks = magnitude_masks(model, sparsity)
    assert set(masks) == {"1.weight", "3.weight", "5.weight"}  # weight matrices only
    n = n_weights(model)
    assert n == 40 * 16 + 16 * 16 + 16 * 10
    zeros = sum(int((mk == 0).sum()) for mk in masks.values())
    assert zeros == math.floor(sparsity * n)
    assert all(set(mk.unique().tolist()) <= {0.0, 1.0} and mk.shape == before[k].shape for k, mk in masks.items())
    params = dict(model.named_parameters())
    pruned = torch.cat([params[k].detach().abs()[mk == 0] for k, mk in masks.items()])
    kept = torch.cat([params[k].detach().abs()[mk == 1] for k, mk in masks.items()])
    assert pruned.max() < kept.min()
    # per layer counts differ: the threshold is global, not per layer
    assert len({round(float((mk == 0).float().mean()), 3) for mk in masks.values()}) > 1
    apply_masks(model, masks)
    after = dict(model.named_parameters())
    for k, v in before.items():
        if k in masks:
            assert torch.equal(after[k].detach(), v * masks[k])
        else:  # biases untouched
            assert torch.equal(after[k].detach(), v)
    assert sum(int((after[k] == 0).sum()) for k in masks) == zeros


def test_magnitude_masks_edge_sparsities():
    model = mlp(width=4, depth=2, seed=0)
    masks = magnitude_masks(model, 0.0)
    assert all(torch.equal(mk, torch.ones_like(mk)) for mk in masks.values())
    tiny = 0.5 / n_weights(model)  # floor(s·n) = 0: nothing pruned
    assert all(bool(mk.all()) for mk in magnitude_masks(model, tiny).values())
    for bad in (1.0, 1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match="sparsity must be in"):
            magnitude_masks(model, bad)


def test_magnitude_masks_ties_are_kept():
    model = mlp(width=4, depth=2, seed=0)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.copy_(0.1 * torch.sign(torch.randn_like(p)))  # every weight has |w| = 0.1
    masks = magnitude_masks(model, 0.5)
    zeros = sum(int((mk == 0).sum()) for mk in masks.values())
    assert zeros == math.floor(0.5 * n_weights(model))  # exactly what was asked for, never more


# ----------------------------------------------------------------------------- fine-tuning
def blobs(n=200, n_in=40, seed=0):
    """Two well separated Gaussian blobs: an easy binary task."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    centre = torch.randn(n_in, generator=g)
    x = torch.randn(n, n_in, generator=g) * 0.5 + torch.where(y[:, None] == 1, centre, -centre)
    return x, y


def ce(model, x, y):
    with torch.no_grad():
        return nn.functional.cross_entropy(model.eval()(x), y).item()


def test_head_name_and_reset_head():
    model = mlp(width=8, depth=2)
    assert head_name(model) == "5"
    assert head_name(build_model("cnn1d", (40,), 10, {"width": 4, "depth": 2})) == "head"
    with pytest.raises(ValueError, match="no Linear head"):
        head_name(nn.Sequential(nn.ReLU()))
    before = state(model)
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    assert reset_head(a, seed=4) == "5" and reset_head(b, seed=4) == "5"
    sa, sb = state(a), state(b)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)  # seeded
    assert not torch.equal(sa["5.weight"], before["5.weight"])
    assert all(torch.equal(sa[k], before[k]) for k in sa if not k.startswith("5."))


def test_fine_tune_only_the_head():
    x, y = blobs()
    model = mlp(width=16, depth=2, seed=0, n_classes=2)
    before = state(model)
    fine_tune(model, x, y, epochs=3, lr=0.05, batch_size=20, only=head_name(model))
    after = state(model)
    for k in before:
        if k.startswith("5."):
            assert not torch.equal(after[k], before[k]), k
        else:
            assert torch.equal(after[k], before[k]), k
    assert all(p.requires_grad for p in model.parameters())  # restored


def test_fine_tune_keeps_masked_weights_at_zero():
    x, y = blobs()
    model = mlp(width=16, depth=2, seed=1, n_classes=2)
    masks = magnitude_masks(model, 0.7)
    apply_masks(model, masks)
    before = state(model)
    fine_tune(model, x, y, epochs=3, lr=0.05, batch_size=20, masks=masks)  # momentum and weight decay on
    after = state(model)
    for k, mk in masks.items():
        assert bool((after[k][mk == 0] == 0).all()), k
        assert bool((after[k][mk == 1] != before[k][mk == 1]).any()), k  # the kept weights trained
    assert not torch.equal(after["1.bias"], before["1.bias"])  # biases train, unmasked


def test_fine_tune_learns_and_is_seeded():
    x, y = blobs()
    model = mlp(width=16, depth=2, seed=2, n_classes=2)
    start = ce(model, x, y)
    twin = copy.deepcopy(model)
    fine_tune(model, x, y, epochs=5, lr=0.05, batch_size=20, seed=3)
    assert ce(model, x, y) < 0.2 * start
    assert accuracy(model, x, y) == 1.0
    fine_tune(twin, x, y, epochs=5, lr=0.05, batch_size=20, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), twin.state_dict().values()))


def test_fine_tune_freezes_batchnorm_statistics():
    x, y = blobs()
    model = nn.Sequential(nn.Linear(40, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    fine_tune(model, x, y, epochs=2, lr=0.05, batch_size=20)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_recalibrate_batchnorm():
    assert recalibrate_batchnorm(mlp(), torch.randn(10, 40)) is False
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    x = torch.randn(512, 3, generator=torch.Generator().manual_seed(0)) * 2 + 1
    assert recalibrate_batchnorm(model, x, chunk=256) is True
    assert not model.training
    with torch.no_grad():
        h = model[0](x)
    torch.testing.assert_close(model[1].running_mean, h.mean(0), atol=1e-5, rtol=1e-5)  # equal chunks
    p = predict_proba(model, x[:5])
    torch.testing.assert_close(p.sum(-1), torch.ones(5))


# ----------------------------------------------------------------------------- metrics called directly
@pytest.fixture(scope="module")
def zoo(tiny_zoo) -> Zoo:
    return Zoo.open(tiny_zoo)


def test_average_epochs_averages_the_last_k_stored(zoo):
    mid = "width16-batch_size64-s0"
    asked = []

    def at_epoch(e):
        asked.append(e)
        return zoo.build_model(mid, e)

    m = ModelInput(mid, zoo.build_model(mid, 2), zoo.task, 2, at_epoch, (0, 1, 2, 3))
    values = {v.metric: v.value for v in average_epochs(m)}
    assert sorted(asked) == [0, 1, 2]  # the last 3 stored up to epoch 2, not epoch 3
    states = [zoo.load_state_dict(mid, e) for e in (0, 1, 2)]
    avg = {k: (states[0][k].double() + states[1][k].double() + states[2][k].double()).div(3).float()
           for k in states[0]}
    acc = accuracy(with_state(m.model, avg), zoo.task.x_test, zoo.task.y_test)
    assert values["average_epochs_test_acc"] == pytest.approx(acc, abs=1e-12)
    own = accuracy(m.model, zoo.task.x_test, zoo.task.y_test)
    assert values["average_epochs_acc_delta"] == pytest.approx(acc - own, abs=1e-12)


def test_average_epochs_needs_two_checkpoints(zoo):
    mid = "width16-batch_size64-s0"
    model = zoo.build_model(mid, LAST)
    load = lambda e: zoo.build_model(mid, e)  # noqa: E731
    with pytest.raises(ValueError, match=r"1 checkpoint\(s\) stored up to epoch 3.*averaging needs at least 2"):
        average_epochs(ModelInput(mid, model, zoo.task, LAST, load, (LAST,)))
    with pytest.raises(ValueError, match="averaging needs at least 2"):  # only epoch 0 is at or before epoch 0
        average_epochs(ModelInput(mid, model, zoo.task, 0, load, (0, 1, 2, 3)))
    with pytest.raises(ValueError, match="stored checkpoints"):
        average_epochs(ModelInput(mid, model, zoo.task, LAST))


def test_transfer_needs_the_same_input_shape():
    digits = load_task("digits")
    m = ModelInput("digits-mlp", mlp(width=8, depth=2, n_in=64), digits, 0)
    with pytest.raises(ValueError, match=r"'mnist1d_shift' has inputs \(40,\).*\(64,\)"):
        transfer(m)


def test_transfer_and_prune_leave_the_model_alone(zoo):
    mid = "width16-batch_size16-s0"
    m = ModelInput(mid, zoo.build_model(mid, LAST), zoo.task, LAST)
    before = state(m.model)
    t = {v.metric: v.value for v in transfer(m, probe_epochs=1, finetune_epochs=1)}
    assert set(t) == {"transfer_probe_test_acc", "transfer_finetune_test_acc"}
    assert all(0.0 <= v <= 1.0 for v in t.values())
    p = prune(m, sparsities=(0.5, 0.9), finetune_epochs=0)
    base = accuracy(m.model, zoo.task.x_test, zoo.task.y_test)
    for s in (0.5, 0.9):
        pruned = copy.deepcopy(m.model)
        apply_masks(pruned, magnitude_masks(pruned, s))
        acc = accuracy(pruned, zoo.task.x_test, zoo.task.y_test)
        at = {v.metric: v.value for v in p if v.coord == s}
        assert at["prune_test_acc"] == pytest.approx(acc, abs=1e-12)
        assert at["prune_ft_test_acc"] == pytest.approx(acc, abs=1e-12)  # no fine-tuning epochs
        assert at["prune_retained"] == pytest.approx(acc / base)
    r90 = {v.metric: v.value for v in p if v.coord is None}
    assert r90["prune_retained_90"] == pytest.approx([v.value for v in p if v.metric == "prune_retained"
                                                      and v.coord == 0.9][0])
    assert all(torch.equal(v, state(m.model)[k]) for k, v in before.items())


# ----------------------------------------------------------------------------- the runner
@pytest.fixture(scope="module")
def full_run(tiny_zoo, tmp_path_factory):
    root = tmp_path_factory.mktemp("downstream") / "zoo"
    shutil.copytree(tiny_zoo, root)
    metrics = resolve_metrics(DOWNSTREAM)
    report = run(root, metrics, [LAST], workers=2, progress=False)
    return root, metrics, report, read_metrics(root)


@pytest.mark.slow
def test_runner_computes_every_downstream_metric(full_run):
    root, metrics, rep, table = full_run
    zoo = Zoo.open(root)
    assert sorted(m.name for m in metrics) == sorted(DOWNSTREAM)
    ids = sorted(zoo.catalog["model_id"].unique())
    assert len(ids) == 12
    assert rep.failures == 0 and table["error"].null_count() == table.height
    assert rep.tasks == 12 + 6 + 6  # models, seed pairs, cells
    assert rep.rows == table.height
    assert rep.cells == 6 and rep.busy > 0 and rep.seconds > 0
    assert set(table["epoch"]) == {LAST}
    has = lambda metric: table.filter(pl.col("metric") == metric)  # noqa: E731
    for name in ("average_epochs_test_acc", "transfer_probe_test_acc", "transfer_finetune_test_acc",
                 "prune_retained_90"):
        rows = has(name)
        assert sorted(rows["model_id"]) == ids and rows["other_id"].null_count() == rows.height, name
    prune_rows = has("prune_test_acc")
    assert prune_rows.height == 12 * len(SPARSITIES)
    for (mid,), g in prune_rows.group_by("model_id"):
        assert tuple(sorted(g["coord"])) == (0.5, 0.8, 0.9, 0.95), mid
    pairs = sorted((a, b) for a, b in zip(ids[::2], ids[1::2]))
    for name in ("average_seeds_acc_delta", "average_aligned_acc_delta", "average_aligned_mc"):
        rows = has(name)
        assert sorted(zip(rows["model_id"], rows["other_id"])) == pairs, name
    path = has("average_aligned_path_loss")
    assert path.height == 6 * 11
    assert sorted(set(path["coord"])) == pytest.approx([i / 10 for i in range(11)])
    # one set of ensemble rows per cell, under its first (seed-0) model, other_id "cell"
    ens = table.filter(pl.col("metric").str.starts_with("ensemble_"))
    assert ens.height == 6 * 5
    assert set(ens["other_id"]) == {CELL}
    assert sorted(set(ens["model_id"])) == ids[::2]
    assert ens.group_by("model_id", "metric").len()["len"].max() == 1


@pytest.mark.slow
def test_runner_values_are_in_range_and_consistent(full_run):
    root, _, _, table = full_run
    zoo = Zoo.open(root)
    val = lambda metric: table.filter(pl.col("metric") == metric)["value"]  # noqa: E731
    for name in ("ensemble_test_acc", "ensemble_disagreement", "average_epochs_test_acc", "transfer_probe_test_acc",
                 "transfer_finetune_test_acc", "prune_test_acc", "prune_ft_test_acc"):
        assert val(name).min() >= 0.0 and val(name).max() <= 1.0, name
    for name in ("ensemble_acc_gain", "average_epochs_acc_delta", "average_seeds_acc_delta",
                 "average_aligned_acc_delta"):
        assert val(name).abs().max() <= 1.0, name
    assert val("ensemble_test_nll").min() > 0 and val("prune_retained").min() >= 0
    err = val("average_aligned_path_error")
    assert err.min() >= 0 and err.max() <= 100
    # against the catalog (evaluated at training time, independently of analysis.kernels.downstream)
    cat = zoo.catalog.filter(pl.col("epoch") == LAST)
    test_acc = dict(zip(cat["model_id"], cat["test_acc"]))
    train_loss = dict(zip(cat["model_id"], cat["train_loss"]))
    one = lambda metric, mid: table.filter((pl.col("metric") == metric)  # noqa: E731
                                           & (pl.col("model_id") == mid))["value"]
    for mid in test_acc:
        if mid.endswith("-s0"):
            s1 = mid[:-1] + "1"
            mean = (test_acc[mid] + test_acc[s1]) / 2
            gain = one("ensemble_test_acc", mid)[0] - one("ensemble_acc_gain", mid)[0]
            assert gain == pytest.approx(mean, abs=1.5e-3), mid
            loss = table.filter((pl.col("metric") == "average_aligned_path_loss") & (pl.col("model_id") == mid))
            ends = dict(zip(loss["coord"], loss["value"]))
            assert ends[0.0] == pytest.approx(train_loss[mid], rel=1e-4), mid
            assert ends[1.0] == pytest.approx(train_loss[s1], rel=1e-4), mid  # aligned s1 = s1's function
        pr = table.filter(pl.col("model_id") == mid)
        acc = dict(pr.filter(pl.col("metric") == "prune_test_acc").select("coord", "value").iter_rows())
        kept = dict(pr.filter(pl.col("metric") == "prune_retained").select("coord", "value").iter_rows())
        assert sorted(acc) == sorted(kept) == list(SPARSITIES)
        for s in SPARSITIES:  # pruned / unpruned accuracy
            assert acc[s] / kept[s] == pytest.approx(test_acc[mid], abs=1.5e-3), (mid, s)
        assert one("prune_retained_90", mid)[0] == kept[0.9]
        assert (one("average_epochs_test_acc", mid)[0] - one("average_epochs_acc_delta", mid)[0]
                == pytest.approx(test_acc[mid], abs=1.5e-3)), mid
    # one ensemble recomputed by hand: averaged softmax of the two seeds
    a, b = (zoo.build_model(f"width64-batch_size16-s{s}", LAST) for s in (0, 1))
    x, y = zoo.task.x_test, zoo.task.y_test
    with torch.no_grad():
        p = (a(x).softmax(-1).double() + b(x).softmax(-1).double()) / 2
    assert one("ensemble_test_acc", "width64-batch_size16-s0")[0] == pytest.approx(
        (p.argmax(-1) == y).double().mean().item(), abs=1e-12)
    assert one("ensemble_test_nll", "width64-batch_size16-s0")[0] == pytest.approx(
        -p[torch.arange(len(y)), y].log().mean().item(), rel=1e-9)
    # the plain average of two seeds, by hand
    avg = {k: (a.state_dict()[k] + b.state_dict()[k]) / 2 for k in a.state_dict()}
    acc = accuracy(with_state(a, avg), x, y)
    mean = (accuracy(a, x, y) + accuracy(b, x, y)) / 2
    assert one("average_seeds_acc_delta", "width64-batch_size16-s0")[0] == pytest.approx(acc - mean, abs=1e-12)
    # the average after aligning seed 1 to seed 0
    aligned, _ = weight_matching(a, a.state_dict(), b.state_dict())
    avg = {k: (a.state_dict()[k] + aligned[k]) / 2 for k in aligned}
    acc = accuracy(with_state(a, avg), x, y)
    assert one("average_aligned_acc_delta", "width64-batch_size16-s0")[0] == pytest.approx(acc - mean, abs=1e-12)


@pytest.mark.slow
def test_runner_resumes(full_run):
    root, metrics, _, table = full_run
    again = run(root, metrics, [LAST], workers=1, progress=False)
    assert (again.tasks, again.rows, again.failures) == (0, 0, 0)
    assert read_metrics(root).equals(table)


@pytest.fixture(scope="module")
def bad_run(tiny_zoo, tmp_path_factory):
    """A zoo copy where one cell lost a seed (catalog rows dropped) and one model's last checkpoint is gone."""
    root = tmp_path_factory.mktemp("downstream_bad") / "zoo"
    shutil.copytree(tiny_zoo, root)
    cat = pl.read_parquet(root / "catalog.parquet")
    cat.filter(pl.col("model_id") != "width04-batch_size64-s1").write_parquet(root / "catalog.parquet")
    gone = root / cat.filter((pl.col("model_id") == "width16-batch_size16-s1")
                             & (pl.col("epoch") == LAST))["checkpoint"][0]
    gone.unlink()
    metrics = resolve_metrics(["ensemble", "average_epochs", "average_seeds"])
    report = run(root, metrics, [LAST], workers=1, progress=False)
    return root, report, read_metrics(root), gone


@pytest.mark.slow
def test_runner_one_seed_cell(bad_run):
    _, rep, table, _ = bad_run
    lone = "width04-batch_size64-s0"
    rows = table.filter(pl.col("model_id") == lone)
    ens = rows.filter(pl.col("metric").str.starts_with("ensemble"))
    assert ens.height == 1 and ens["other_id"][0] == CELL and ens["value"][0] is None
    msg = ens["error"][0]
    assert "has 1 seed" in msg and lone in msg and msg.startswith("ensemble on ")
    assert rows.filter(pl.col("other_id").is_not_null() & (pl.col("other_id") != CELL)).is_empty()  # no pair
    ok = rows.filter(pl.col("metric") == "average_epochs_test_acc")  # the lone model itself is computed
    assert ok.height == 1 and ok["error"][0] is None
    assert table.filter(pl.col("model_id") == "width04-batch_size64-s1").is_empty()
    assert rep.tasks == 11 + 5 + 6  # 11 models, the 5 two-seed cells' pairs, 6 cells (one of one seed)
    # the other cells' ensembles are computed (the one with the missing checkpoint aside)
    good = table.filter((pl.col("metric") == "ensemble_test_acc") & pl.col("error").is_null())
    assert good.height == 4


@pytest.mark.slow
def test_runner_missing_checkpoint(bad_run):
    _, rep, table, gone = bad_run
    broken, partner = "width16-batch_size16-s1", "width16-batch_size16-s0"
    errors = table.filter(pl.col("error").is_not_null())
    assert rep.failures == errors.height
    by = {(m, o): e for m, o, e in zip(errors["model_id"], errors["other_id"].fill_null(""), errors["error"])}
    assert set(by) == {(broken, ""), (partner, broken), (partner, CELL), ("width04-batch_size64-s0", CELL)}
    for key in [(broken, ""), (partner, broken), (partner, CELL)]:
        assert "cannot read checkpoint" in by[key] and gone.name in by[key] and broken in by[key], key
    assert by[(broken, "")].startswith("average_epochs on ")
    assert by[(partner, broken)].startswith("average_seeds on ")
    # everything else is computed
    done = table.filter(pl.col("error").is_null())
    assert sorted(set(done.filter(pl.col("metric") == "average_epochs_test_acc")["model_id"])) == sorted(
        {f"width{w}-batch_size{b}-s{s}" for w in ("04", "16", "64") for b in (16, 64) for s in (0, 1)}
        - {broken, "width04-batch_size64-s1"})
    assert done.filter(pl.col("metric") == "average_seeds_acc_delta").height == 4


# ----------------------------------------------------------------------------- phase ensembles
def synthetic(n_models=12, phases=("A", "B", "C"), n=50, classes=5, seed=0):
    rng = np.random.default_rng(seed)
    ids = [f"m{i:02d}" for i in range(n_models)]
    probs = {mid: torch.tensor(rng.dirichlet(np.ones(classes), n)) for mid in ids}
    phase_of = {mid: phases[i % len(phases)] for i, mid in enumerate(ids)}
    y = torch.tensor(rng.integers(0, classes, n))
    return probs, phase_of, y


def test_draw_ensembles_consistent_and_across():
    probs, phase_of, y = synthetic()
    probs["u0"] = probs["m00"].clone()  # unclassified models are never drawn
    probs["u1"] = probs["m01"].clone()
    phase_of["u0"] = UNCLASSIFIED  # u1 has no phase at all
    draws = 20
    t = draw_ensembles(probs, phase_of, y, size=3, draws=draws, seed=1, epoch=7)
    assert set(t["epoch"]) == {7}
    cons, acr = t.filter(pl.col("kind") == "consistent"), t.filter(pl.col("kind") == "across")
    assert cons.height == 3 * draws and acr.height == 3 * draws
    assert sorted(cons.group_by("phases").len().rows()) == [("A", draws), ("B", draws), ("C", draws)]
    for phases, members in cons.select("phases", "members").iter_rows():
        ms = members.split(",")
        assert len(ms) == 3 == len(set(ms)) and {phase_of[m] for m in ms} == {phases}
    for phases, members in acr.select("phases", "members").iter_rows():
        ms = members.split(",")
        assert len(ms) == 3 and len({phase_of[m] for m in ms}) == 3
        assert phases == "+".join(sorted(phase_of[m] for m in ms)) == "A+B+C"
    assert not any(m in ("u0", "u1") for ms in t["members"] for m in ms.split(","))
    # each row is the ensemble of its members, recomputed by hand
    for row in t.sample(10, seed=0).iter_rows(named=True):
        mean = torch.stack([probs[m] for m in row["members"].split(",")]).mean(0)
        assert row["acc"] == pytest.approx((mean.argmax(-1) == y).double().mean().item(), abs=1e-12)
        assert row["nll"] == pytest.approx(-mean[torch.arange(len(y)), y].log().mean().item(), rel=1e-9)
    assert t["disagreement"].min() >= 0 and t["disagreement"].max() <= 1
    # seeded
    assert t.equals(draw_ensembles(probs, phase_of, y, size=3, draws=draws, seed=1, epoch=7))
    assert not t["members"].equals(draw_ensembles(probs, phase_of, y, size=3, draws=draws, seed=2)["members"])


def test_compare_per_phase():
    probs, phase_of, y = synthetic()
    draws = 15
    t = draw_ensembles(probs, phase_of, y, size=2, draws=draws, seed=0)
    c = compare(t)
    assert c["phase"].to_list() == ["A", "B", "C"]
    assert c["n_consistent"].to_list() == [draws] * 3
    across = t.filter(pl.col("kind") == "across")
    assert across.height == 3 * draws and set(across["phases"]) <= {"A+B", "A+C", "B+C"}
    assert c["n_across"].sum() == 2 * across.height  # every across row holds 2 of the 3 phases
    for row in c.iter_rows(named=True):
        mine = across.filter(pl.col("phases").str.contains(row["phase"]))
        assert row["n_across"] == mine.height
        assert row["across_acc"] == pytest.approx(mine["acc"].mean())
        cons = t.filter((pl.col("kind") == "consistent") & (pl.col("phases") == row["phase"]))
        assert row["consistent_acc"] == pytest.approx(cons["acc"].mean())
        assert row["consistent_gain"] == pytest.approx(cons["acc_gain"].mean())


def test_draw_ensembles_small_phases_and_impossible_requests():
    probs, phase_of, y = synthetic(n_models=8, phases=("A", "B", "C", "D"))  # 2 models per phase
    t = draw_ensembles(probs, phase_of, y, size=3, draws=5, seed=0)
    assert set(t["kind"]) == {"across"} and t.height == 4 * 5  # no phase has 3 models; 4 phases do
    assert all(len(p.split("+")) == 3 for p in t["phases"])
    probs, phase_of, y = synthetic(n_models=12, phases=("A", "B", "C"))  # 4 models in each of 3 phases
    with pytest.raises(ValueError, match="nothing to draw"):
        draw_ensembles(probs, phase_of, y, size=5, draws=5)
    with pytest.raises(ValueError, match="nothing to draw"):  # nothing classified
        draw_ensembles(probs, {m: UNCLASSIFIED for m in probs}, y, size=2, draws=5)


def test_compare_without_consistent_ensembles():
    probs, phase_of, y = synthetic(n_models=8, phases=("A", "B", "C", "D"))  # 2 models per phase
    t = draw_ensembles(probs, phase_of, y, size=3, draws=5, seed=0)  # across-phase rows only
    c = compare(t)
    assert c.height == 0 and "phase" in c.columns
