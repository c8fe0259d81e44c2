"""The non-classification task kinds end to end: the convection PINN (regression) and modular addition
(sequence) — their data, objectives, Hessians, batched training, spec validation, metrics and runner.

Every check is against an independent oracle: an exact solution, a numpy re-computation, a dense Hessian,
the one-model-at-a-time training loop, or a hand-built training curve.
"""
import math
import shutil

import numpy as np
import polars as pl
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from analysis.kernels.hessian import HessianOperator, dense_hessian
from analysis.metrics.catalog import get_metric
from analysis.metrics.registry import MetricError, ModelInput
from analysis.runner.run import resolve_metrics, run, zoo_metric
from data.models.archs import MLP, Transformer, build_model
from data.params import SpecError
from data.tasks.builtin import PINN_GRID, TaskData, load_task
from data.tasks.objectives import BOUNDARY, INITIAL, INTERIOR, Classification, ConvectionPINN
from data.training.generate import generate
from data.training.train import TrainConfig, train_batched, train_one
from data.zoo.spec import parse_spec
from data.zoo.store import SPEC, Zoo, read_metrics
from tests.conftest import TINY_PINN_SPEC, TINY_SEQ_SPEC

torch.set_num_threads(1)


def edited(text: str, old: str, new: str) -> str:
    """`text` with `old` replaced by `new`; fails if `old` is absent (so no test checks an unedited spec)."""
    assert old in text, f"{old!r} not in the spec"
    return text.replace(old, new)


# ============================================================================ convection PINN: data, loss
class SineWave(nn.Module):
    """u(x, t) = sin(x − c·t) as a model: the exact convection solution for c = β, float64 throughout."""

    def __init__(self, c: float):
        super().__init__()
        self.c = c

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        return torch.sin(p[..., 0] - self.c * p[..., 1]).unsqueeze(-1)


BETA = 3.0


@pytest.fixture(scope="module")
def convection():
    return load_task("convection", beta=BETA, n_train=64, data_seed=3)


def test_convection_points_and_exact_test_grid(convection):
    """Training points: n_train interior points, 128 initial points (t = 0) and 50 boundary points (x = 0),
    their kind as the target; test split: the 256 × 100 grid with y = sin(x − βt)."""
    d = convection
    kinds = d.y_train.numpy()
    assert d.y_train.dtype == torch.int64 and d.n_classes == 1
    assert [(kinds == k).sum() for k in (INTERIOR, INITIAL, BOUNDARY)] == [64, 128, 50]
    x = d.x_train.double().numpy()
    inner = x[kinds == INTERIOR]
    assert ((inner[:, 0] >= 0) & (inner[:, 0] < 2 * np.pi) & (inner[:, 1] >= 0) & (inner[:, 1] <= 1)).all()
    assert (x[kinds == INITIAL, 1] == 0).all() and len(np.unique(x[kinds == INITIAL, 0])) == 128
    assert (x[kinds == BOUNDARY, 0] == 0).all() and len(np.unique(x[kinds == BOUNDARY, 1])) == 50
    xt = d.x_test.double().numpy()
    assert len(xt) == PINN_GRID[0] * PINN_GRID[1] == 256 * 100
    assert len(np.unique(xt[:, 0])) == 256 and len(np.unique(xt[:, 1])) == 100
    assert len(np.unique(xt, axis=0)) == len(xt)  # a full grid, every point once
    assert d.y_test.dtype.is_floating_point
    np.testing.assert_allclose(d.y_test.double().numpy(), np.sin(xt[:, 0] - BETA * xt[:, 1]), atol=1e-5)
    assert isinstance(d.objective, ConvectionPINN) and d.objective.beta == BETA


def test_pinn_terms_vanish_on_exact_solution(convection):
    """The exact solution u = sin(x − βt) has zero residual, initial and boundary terms (float64)."""
    obj, x, kinds = convection.objective, convection.x_train.double(), convection.y_train
    terms = obj.terms(SineWave(BETA), x, kinds)
    assert set(terms) == {"residual", "initial", "boundary"}
    for name, v in terms.items():
        assert v.dtype == torch.float64 and abs(v.item()) < 1e-10, (name, v.item())
    assert obj.loss(SineWave(BETA), x, kinds).item() < 1e-10
    # and so the exact solution scores a zero error on the test grid (up to the float32 storage of y)
    s = obj.evaluate(SineWave(BETA), convection.x_test.double(), convection.y_test.double())
    assert s.loss.item() < 1e-12 and s.rel_l2.item() < 1e-6 and s.acc is None


def test_pinn_residual_of_wrong_solution_matches_numpy(convection):
    """u = sin x (the β = 0 solution) has residual u_t + βu_x = β cos x: the residual term is
    β²·mean(cos² x) over the interior points, while the initial and boundary terms stay 0; the loss is the sum
    of the terms, `evaluate` reports them with error = log10(loss), and on the test grid the MSE and relative
    L2 error against sin(x − βt) match numpy."""
    obj, x, kinds = convection.objective, convection.x_train.double(), convection.y_train
    wrong = SineWave(0.0)
    xi = x.numpy()[kinds.numpy() == INTERIOR]
    expected = BETA ** 2 * np.mean(np.cos(xi[:, 0] - 0.0 * xi[:, 1]) ** 2)
    terms = obj.terms(wrong, x, kinds)
    assert terms["residual"].item() == pytest.approx(expected, rel=1e-12)
    assert abs(terms["initial"].item()) < 1e-20 and abs(terms["boundary"].item()) < 1e-20
    assert obj.loss(wrong, x, kinds).item() == pytest.approx(expected, rel=1e-12)
    s = obj.evaluate(wrong, x, kinds)
    assert s.loss.item() == pytest.approx(expected, rel=1e-12)
    assert s.error.item() == pytest.approx(math.log10(expected), rel=1e-12)
    assert s.terms["residual"].item() == pytest.approx(expected, rel=1e-12)
    # stacked: every leading model gets the same (its own) value
    stacked = obj.evaluate(wrong, x, kinds, lead=(3,))
    assert stacked.loss.shape == (3,) and torch.allclose(stacked.loss, s.loss.expand(3), rtol=1e-12)

    xt, yt = convection.x_test.double(), convection.y_test.double()
    diff = np.sin(xt[:, 0].numpy()) - yt.numpy()
    te = obj.evaluate(wrong, xt, yt, chunk=1000)  # 25,600 points in chunks
    assert te.loss.item() == pytest.approx(np.mean(diff ** 2), rel=1e-10)
    assert te.rel_l2.item() == pytest.approx(np.linalg.norm(diff) / np.linalg.norm(yt.numpy()), rel=1e-10)


def test_pinn_term_of_a_missing_kind_is_zero(convection):
    """A batch without boundary points contributes 0 for that term (no division by zero)."""
    obj, kinds = convection.objective, convection.y_train
    keep = kinds != BOUNDARY
    terms = obj.terms(SineWave(0.0), convection.x_train.double()[keep], kinds[keep])
    assert terms["boundary"].item() == 0.0 and terms["residual"].item() > 0


# ============================================================================ PINN Hessian
def test_pinn_hessian_operator_equals_dense_hessian(convection):
    """For a tanh MLP and the PINN loss (whose Hessian involves third derivatives of the network), the
    matrix-free Hessian-vector products equal the dense autograd Hessian, which is symmetric, non-zero and
    the finite-difference derivative of the loss gradient."""
    torch.manual_seed(0)
    model = MLP((2,), 1, width=3, depth=1, activation="tanh").double()
    obj, kinds = convection.objective, convection.y_train
    idx = torch.cat([torch.nonzero(kinds == k)[:10, 0] for k in (INTERIOR, INITIAL, BOUNDARY)])
    x, y = convection.x_train.double()[idx], kinds[idx]
    assert len(idx) == 30 and set(y.tolist()) == {INTERIOR, INITIAL, BOUNDARY}
    n = sum(p.numel() for p in model.parameters())
    assert n == 13
    with HessianOperator(model, x, y, loss_fn=obj.loss) as H:
        assert H.n == n
        cols = torch.stack([H.matvec(e) for e in torch.eye(n, dtype=torch.float64)], 1)
        grad = H.gradient()
    D = dense_hessian(model, x, y, loss_fn=obj.loss)
    assert D.shape == (n, n) and D.abs().max() > 1e-3
    torch.testing.assert_close(cols, D, rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(D, D.T, rtol=1e-10, atol=1e-12)

    # finite differences: of the loss for the gradient, of the gradient for the Hessian, column by column
    params = list(model.parameters())
    flat0 = torch.cat([p.detach().reshape(-1) for p in params])

    def set_weights(flat):
        with torch.no_grad():
            i = 0
            for p in params:
                p.copy_(flat[i:i + p.numel()].view_as(p))
                i += p.numel()

    def loss_at(flat):
        set_weights(flat)
        return obj.loss(model, x, y).item()

    def grad_at(flat):
        set_weights(flat)
        return torch.cat([t.reshape(-1) for t in torch.autograd.grad(obj.loss(model, x, y), params)])

    h, eye = 1e-5, torch.eye(n, dtype=torch.float64)
    fd_grad = torch.tensor([(loss_at(flat0 + h * e) - loss_at(flat0 - h * e)) / (2 * h) for e in eye])
    fd_hess = torch.stack([(grad_at(flat0 + h * e) - grad_at(flat0 - h * e)) / (2 * h) for e in eye], 1)
    set_weights(flat0)
    assert grad.abs().max() > 1e-3
    torch.testing.assert_close(grad, fd_grad.double(), rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(fd_hess, D, rtol=1e-5, atol=1e-7)


# ============================================================================ batched = one at a time
def _compare(batched, singles, rtol, atol):
    for rb, rs in zip(batched, singles):
        assert [h.epoch for h in rb.history] == [h.epoch for h in rs.history]
        for hb, hs in zip(rb.history, rs.history):
            assert hb.train_loss == pytest.approx(hs.train_loss, rel=rtol, abs=atol)
            assert hb.test_loss == pytest.approx(hs.test_loss, rel=rtol, abs=atol)
            for a, b in ((hb.train_acc, hs.train_acc), (hb.test_acc, hs.test_acc)):
                assert (a is None) == (b is None) and (a is None or a == pytest.approx(b, abs=1e-12))
        assert rb.checkpoints.keys() == rs.checkpoints.keys()
        for e in rb.checkpoints:
            assert rb.checkpoints[e].keys() == rs.checkpoints[e].keys()
            for k in rb.checkpoints[e]:
                torch.testing.assert_close(rb.checkpoints[e][k], rs.checkpoints[e][k], rtol=rtol, atol=atol)


def test_batched_pinn_adam_equals_one_at_a_time():
    """Two tanh MLP PINNs of different widths (zero-padded into one stack) trained together with Adam give
    each model the history and weights of its own ordinary training loop (float64), logged exactly at the
    multiples of `eval_every`, the checkpoint epochs and the last epoch."""
    d = load_task("convection", beta=2.0, n_train=40)
    data = TaskData(d.x_train.double(), d.y_train, d.x_test[:400].double(), d.y_test[:400].double(), 1, d.objective)
    cfg = TrainConfig(epochs=7, lr=1e-2, batch_size=64, optimizer="adam", beta2=0.99, weight_decay=1e-3,
                      eval_every=3)
    ckpts = (0, 5, 7)
    widths, seeds = (4, 6), (0, 1)
    make = lambda: [build_model("mlp", (2,), 1, {"width": w, "depth": 2, "activation": "tanh"}, seed=s).double()
                    for w, s in zip(widths, seeds)]
    singles = [train_one(m, data, cfg, s, ckpts) for m, s in zip(make(), seeds)]
    batched = train_batched(make(), data, cfg, seeds, ckpts)
    for r in (*singles, *batched):
        assert [h.epoch for h in r.history] == [0, 3, 5, 6, 7]
        assert all(h.train_acc is None and h.test_acc is None for h in r.history)
        assert sorted(r.checkpoints) == [0, 5, 7]
    assert batched[0].history[-1].train_loss < batched[0].history[0].train_loss  # it trained
    assert singles[0].checkpoints[7]["1.weight"].shape == (4, 2)  # cut back to its own width
    _compare(batched, singles, rtol=1e-9, atol=1e-11)


def test_batched_transformer_adamw_equals_one_at_a_time():
    """Two transformers on modular addition (vmap over the module) trained together with AdamW equal their
    own ordinary training loops; logged epochs follow `eval_every`, checkpoints and the last epoch."""
    d = load_task("modular_add", p=7, train_fraction=0.5)
    cfg = TrainConfig(epochs=5, lr=1e-2, batch_size=8, optimizer="adamw", weight_decay=0.5, eval_every=2)
    ckpts = (0, 3, 5)
    seeds = (0, 1)
    make = lambda: [build_model("transformer", (3,), 7, {"width": 8, "heads": 2}, seed=s).double() for s in seeds]
    singles = [train_one(m, d, cfg, s, ckpts) for m, s in zip(make(), seeds)]
    batched = train_batched(make(), d, cfg, seeds, ckpts)
    for r in (*singles, *batched):
        assert [h.epoch for h in r.history] == [0, 2, 3, 4, 5]
        assert all(0.0 <= h.train_acc <= 1.0 and 0.0 <= h.test_acc <= 1.0 for h in r.history)
    assert not torch.equal(batched[0].checkpoints[5]["embed.weight"], batched[0].checkpoints[0]["embed.weight"])
    _compare(batched, singles, rtol=1e-9, atol=1e-11)


# ============================================================================ classification on stacks
def test_classification_loss_and_evaluate_on_stacked_outputs():
    """On M stacked models, `loss` is each model's own mean cross-entropy (own or shared labels) and
    `evaluate` (in chunks, lead = (M,)) each model's mean cross-entropy, accuracy and 0-1 error in %."""
    g = torch.Generator().manual_seed(0)
    M, N, D, C = 3, 23, 4, 5
    W = torch.randn(M, D, C, generator=g, dtype=torch.float64)
    forward = lambda x: x @ W if x.dim() == 3 else x @ W[0]  # [M, B, D] -> [M, B, C]; one model: [B, C]
    obj = Classification()
    x = torch.randn(M, N, D, generator=g, dtype=torch.float64)
    y = torch.randint(0, C, (M, N), generator=g)
    naive = torch.stack([F.cross_entropy(x[m] @ W[m], y[m]) for m in range(M)])
    torch.testing.assert_close(obj.loss(forward, x, y), naive, rtol=1e-12, atol=0)
    shared_x = torch.randn(N, D, generator=g, dtype=torch.float64)
    shared_y = y[0]
    naive_shared = torch.stack([F.cross_entropy(shared_x @ W[m], shared_y) for m in range(M)])
    torch.testing.assert_close(obj.loss(forward, shared_x.expand(M, N, D), shared_y), naive_shared,
                               rtol=1e-12, atol=0)
    assert obj.loss(forward, shared_x, shared_y).item() == pytest.approx(naive_shared[0].item(), rel=1e-12)

    s = obj.evaluate(forward, shared_x, shared_y, chunk=7, lead=(M,))
    acc = torch.tensor([(shared_x @ W[m]).argmax(-1).eq(shared_y).double().mean().item() for m in range(M)],
                       dtype=torch.float64)
    assert s.loss.shape == (M,) and s.acc.shape == (M,)
    torch.testing.assert_close(s.loss, naive_shared, rtol=1e-12, atol=0)
    torch.testing.assert_close(s.acc, acc, rtol=0, atol=0)
    torch.testing.assert_close(s.error, 100.0 * (1.0 - acc), rtol=1e-12, atol=1e-12)
    assert s.terms is None and s.rel_l2 is None
    assert len(set(acc.tolist())) > 1 or len(set(naive_shared.tolist())) > 1  # models really differ
    one = obj.evaluate(forward, shared_x, shared_y, chunk=5)
    assert one.loss.item() == pytest.approx(naive_shared[0].item(), rel=1e-12)
    assert one.acc.item() == acc[0].item()


# ============================================================================ modular addition
def _pairs(x: torch.Tensor) -> set[tuple[int, int]]:
    return {(a, b) for a, b in x[:, :2].tolist()}


@pytest.mark.parametrize("fraction", [0.4, 0.02])
def test_modular_add_split_and_labels(fraction):
    """Tokens (a, b, p), p the "=" token, labelled (a + b) mod p; for a train fraction < 1 the training and test
    pairs are disjoint, cover all p² pairs, and the training split has round(fraction·p²) (at least 1) pairs."""
    p = 7
    d = load_task("modular_add", p=p, train_fraction=fraction, data_seed=0)
    assert d.n_classes == p and d.input_shape == (3,)
    for x, y in ((d.x_train, d.y_train), (d.x_test, d.y_test)):
        assert x.dtype == torch.int64 and y.dtype == torch.int64
        assert (x[:, 2] == p).all() and (x[:, :2] >= 0).all() and (x[:, :2] < p).all()
        assert torch.equal(y, (x[:, 0] + x[:, 1]) % p)
    train, test = _pairs(d.x_train), _pairs(d.x_test)
    assert len(train) == len(d.x_train) and len(test) == len(d.x_test)  # no pair twice
    assert not train & test
    assert train | test == {(a, b) for a in range(p) for b in range(p)}
    assert len(train) == max(1, round(fraction * p * p))


def test_modular_add_full_fraction_and_seed():
    """At train_fraction 1 the test split is the training split (all p² pairs); the split is a function of
    data_seed: the same seed repeats it, another seed changes it."""
    p = 7
    full = load_task("modular_add", p=p, train_fraction=1.0)
    assert torch.equal(full.x_test, full.x_train) and torch.equal(full.y_test, full.y_train)
    assert _pairs(full.x_train) == {(a, b) for a in range(p) for b in range(p)}
    a = load_task("modular_add", p=p, train_fraction=0.5, data_seed=0)
    again = load_task("modular_add", p=p, train_fraction=0.5, data_seed=0)
    other = load_task("modular_add", p=p, train_fraction=0.5, data_seed=1)
    assert torch.equal(a.x_train, again.x_train)
    assert _pairs(a.x_train) != _pairs(other.x_train)
    assert len(a.x_train) == len(other.x_train)


def test_modular_add_fraction_below_one_always_holds_out_pairs():
    """A train fraction < 1 must leave a held-out test split disjoint from the training pairs
    (p = 7, f = 0.99: round(48.51) = 49 = p², so every pair is trained on and tested on)."""
    d = load_task("modular_add", p=7, train_fraction=0.99)
    assert len(d.x_test) > 0 and not _pairs(d.x_train) & _pairs(d.x_test)


def test_transformer_reads_the_equals_token():
    """The transformer embeds p + 1 tokens (0..p-1 and "=" = p) and maps [N, 3] tokens to [N, p] logits."""
    model = Transformer((3,), 7, width=8, depth=1, heads=2)
    assert model.embed.num_embeddings == 8
    x = load_task("modular_add", p=7, train_fraction=0.5).x_train
    assert model(x).shape == (len(x), 7)


# ============================================================================ bad specs fail up front
PINN_NO_BETA_GRID = edited(edited(edited(TINY_PINN_SPEC, "beta = [1.0, 30.0]", "n_train = [50, 100]"),
                                  'knob = "beta"', 'knob = "n_train"'), "[task_params]\nn_train = 100\n",
                           "[task_params]\n")

BAD_SPECS = {
    "beta grid value": (edited(TINY_PINN_SPEC, "beta = [1.0, 30.0]", "beta = [1.0, -1.0]"), "task_params.beta"),
    "beta task param": (edited(PINN_NO_BETA_GRID, "[task_params]\n", "[task_params]\nbeta = -1.0\n"),
                        "task_params.beta"),
    "train_fraction 0": (edited(TINY_SEQ_SPEC, "train_fraction = [0.5, 0.9]", "train_fraction = [0.0, 0.9]"),
                         "task_params.train_fraction"),
    "train_fraction 1.5": (edited(TINY_SEQ_SPEC, "train_fraction = [0.5, 0.9]", "train_fraction = [0.5, 1.5]"),
                           "task_params.train_fraction"),
    "unknown task": (edited(TINY_PINN_SPEC, 'task = "convection"', 'task = "heat_equation"'), "task"),
    "unknown arch": (edited(TINY_PINN_SPEC, 'arch = "mlp"', 'arch = "kan"'), "arch"),
    "unknown activation": (edited(TINY_PINN_SPEC, 'activation = "tanh"', 'activation = "gelu"'),
                           "arch_params.activation"),
    "rmsprop": (edited(TINY_PINN_SPEC, 'optimizer = "adam"', 'optimizer = "rmsprop"'), "training.optimizer"),
    "momentum with adam": (edited(TINY_PINN_SPEC, 'optimizer = "adam"', 'optimizer = "adam"\nmomentum = 0.9'),
                           "training.momentum"),
}
OFFENDER = {"beta grid value": "-1.0", "beta task param": "-1.0", "train_fraction 0": "0.0",
            "train_fraction 1.5": "1.5", "unknown task": "heat_equation", "unknown arch": "kan",
            "unknown activation": "gelu", "rmsprop": "rmsprop", "momentum with adam": "adam"}


def test_unedited_specs_parse():
    """The controls: the specs the bad ones are edited from are valid."""
    for text in (TINY_PINN_SPEC, TINY_SEQ_SPEC, PINN_NO_BETA_GRID):
        parse_spec(text)
    assert parse_spec(PINN_NO_BETA_GRID).task_params["beta"] == 1.0


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_bad_spec_names_the_field(case):
    """Each bad value is refused by `parse_spec` with a SpecError naming the offending field and value."""
    text, field = BAD_SPECS[case]
    with pytest.raises(SpecError) as err:
        parse_spec(text, "bad.toml")
    msg = str(err.value)
    assert msg.startswith("bad.toml: ") and f"{field}:" in msg and OFFENDER[case] in msg, msg


def test_momentum_grid_with_adam_is_refused():
    """momentum as a grid knob with a non-zero value under Adam is as wrong as momentum = 0.9 in [training]."""
    text = edited(edited(TINY_PINN_SPEC, "lr = [1e-3, 1e-2]", "momentum = [0.0, 0.9]"),
                  'knob = "lr"', 'knob = "momentum"')
    with pytest.raises(SpecError, match="momentum"):
        parse_spec(text)


def test_bad_value_shadowed_by_a_grid_knob_is_refused():
    """An out-of-range base value is refused even when a grid knob of the same name overrides it."""
    text = edited(TINY_PINN_SPEC, "[task_params]\n", "[task_params]\nbeta = -1.0\n")
    with pytest.raises(SpecError, match="task_params.beta"):
        parse_spec(text)


def test_generate_refuses_bad_spec_before_training(tmp_path):
    """`generate` with a bad spec raises SpecError and writes no checkpoint and no catalog."""
    spec = tmp_path / "bad.toml"
    spec.write_text(BAD_SPECS["beta grid value"][0])
    out = tmp_path / "zoo"
    with pytest.raises(SpecError, match="task_params.beta"):
        generate(spec, out, workers=1, progress=False)
    assert not list(tmp_path.rglob("*.safetensors")) and not list(tmp_path.rglob("*.parquet"))


# ============================================================================ the grokking metric
def _curve() -> pl.DataFrame:
    """Training accuracy fits (≥ 0.99) at epoch 100; test accuracy first reaches 0.95 at epoch 700 (0.94 before)."""
    epochs = list(range(0, 1001, 50))
    train = [min(1.0, e / 100) for e in epochs]
    test = [0.1 if e < 650 else 0.94 if e == 650 else 0.95 if e == 700 else 0.97 for e in epochs]
    return pl.DataFrame({"epoch": epochs, "train_acc": train, "test_acc": test})


def _grok(epoch, history, **params) -> dict[str, tuple]:
    metric = get_metric("grokking").with_params(**params)
    values = metric(ModelInput("m", nn.Linear(2, 2), None, epoch, history=history))
    assert len({v.metric for v in values}) == len(values)
    return {v.metric: (v.value, v.split) for v in values}


def test_grokking_reads_the_training_curve():
    """fit_epoch 100, generalization_epoch 700, grokking_delay 600 on the full curve; at epoch 500 the curve
    is cut there: fitted, not generalised, so no generalisation epoch and no delay (censored, not short)."""
    out = _grok(1000, _curve())
    assert out == {"fitted": (1.0, None), "generalized": (1.0, None), "fit_epoch": (100.0, "train"),
                   "generalization_epoch": (700.0, "test"), "grokking_delay": (600.0, None)}
    assert _grok(None, _curve()) == out  # no epoch: the whole curve
    early = _grok(500, _curve())
    assert early == {"fitted": (1.0, None), "generalized": (0.0, None), "fit_epoch": (100.0, "train")}
    assert _grok(50, _curve()) == {"fitted": (0.0, None), "generalized": (0.0, None)}
    # thresholds are parameters: test accuracy 0.94 counts at a 0.9 threshold
    assert _grok(1000, _curve(), test_threshold=0.9)["generalization_epoch"] == (650.0, "test")


def test_grokking_without_history_raises():
    """A model with no training curve (history None or empty) is an error, not a silent 'not fitted'."""
    with pytest.raises(ValueError, match="no training history"):
        _grok(10, None)
    with pytest.raises(ValueError, match="no training history"):
        _grok(10, _curve().clear())


# ============================================================================ end to end on the tiny zoos
RUN_METRICS = ["performance", "mc_linear", "cka_logits_test", "grokking", "cka_softmax_mixup"]


@pytest.fixture(scope="module")
def run_zoos(tiny_seq_zoo, tiny_pinn_zoo, tmp_path_factory):
    """Copies of the shared tiny zoos with the RUN_METRICS computed by the runner."""
    out = {}
    for kind, src in (("sequence", tiny_seq_zoo), ("regression", tiny_pinn_zoo)):
        dst = tmp_path_factory.mktemp("run") / src.name
        shutil.copytree(src, dst)
        report = run(dst, resolve_metrics(RUN_METRICS), progress=False, workers=1)
        out[kind] = (dst, report, read_metrics(dst))
    return out


@pytest.mark.slow
def test_runner_on_pinn_zoo(run_zoos):
    """The PINN zoo gets the regression outputs (rel_l2_error, the loss terms, mc in decades), no accuracies,
    and neither the classification-only nor the sequence-only metrics; its catalog has null accuracies; the
    metric's train_loss equals the one logged while training at the analysis epoch."""
    root, report, m = run_zoos["regression"]
    assert report.failures == 0 and m["error"].null_count() == len(m)
    names = set(m["metric"])
    assert {"rel_l2_error", "train_loss", "test_loss", "train_loss_residual", "train_loss_initial",
            "train_loss_boundary", "mc_linear", "cka_logits_test"} <= names
    assert not names & {"train_acc", "test_acc", "generalization_gap", "cka_softmax_mixup", "fitted", "fit_epoch"}
    zoo = Zoo.open(root)
    assert m.filter(pl.col("metric") == "rel_l2_error").height == len(zoo.configs) == 8
    assert m.filter(pl.col("metric") == "mc_linear").height == 4  # one seed pair per cell
    assert zoo.catalog["train_acc"].null_count() == zoo.catalog["test_acc"].null_count() == zoo.catalog.height
    _train_loss_matches_catalog(zoo, m)


@pytest.mark.slow
def test_runner_on_seq_zoo(run_zoos):
    """The sequence zoo gets accuracies and the grokking outputs, not the classification-only mixup CKA
    (mixing token ids is meaningless) nor the PINN outputs; its catalog has accuracies."""
    root, report, m = run_zoos["sequence"]
    assert report.failures == 0 and m["error"].null_count() == len(m)
    names = set(m["metric"])
    assert {"train_acc", "test_acc", "fitted", "generalized", "mc_linear", "cka_logits_test"} <= names
    assert not names & {"cka_softmax_mixup", "rel_l2_error", "train_loss_residual"}
    zoo = Zoo.open(root)
    fitted = m.filter(pl.col("metric") == "fitted")
    assert fitted.height == len(zoo.configs) == 8 and set(fitted["value"]) <= {0.0, 1.0}
    fit_epochs = m.filter(pl.col("metric") == "fit_epoch")
    assert fit_epochs.height == int(fitted["value"].sum())
    assert all(e % 5 == 0 and 0 <= e <= 30 for e in fit_epochs["value"])  # logged epochs (eval_every = 5)
    assert zoo.catalog["train_acc"].null_count() == 0 and zoo.catalog["test_acc"].null_count() == 0
    _train_loss_matches_catalog(zoo, m)
    acc = m.filter(pl.col("metric") == "train_acc").select("model_id", "epoch", "value")
    joined = acc.join(zoo.catalog.select("model_id", "epoch", "train_acc"), on=["model_id", "epoch"])
    assert joined.height == 8
    np.testing.assert_allclose(joined["value"].to_numpy(), joined["train_acc"].to_numpy(), atol=1e-9)


def _train_loss_matches_catalog(zoo: Zoo, m: pl.DataFrame) -> None:
    loss = m.filter(pl.col("metric") == "train_loss").select("model_id", "epoch", "value")
    joined = loss.join(zoo.catalog.select("model_id", "epoch", "train_loss"), on=["model_id", "epoch"])
    assert joined.height == 8
    np.testing.assert_allclose(joined["value"].to_numpy(), joined["train_loss"].to_numpy(), rtol=1e-4)


# ============================================================================ [metrics.<name>] in a spec
def _zoo_with_spec_tail(src, dst, tail: str):
    shutil.copytree(src, dst)
    (dst / SPEC).write_text((dst / SPEC).read_text() + tail)
    return dst


@pytest.mark.slow
def test_spec_metric_params_reach_the_runner(tiny_pinn_zoo, tmp_path):
    """[metrics.mc_bezier] lr = 0.001 in a zoo's spec overrides that parameter (only it) for the runner."""
    root = _zoo_with_spec_tail(tiny_pinn_zoo, tmp_path / "zoo", "\n[metrics.mc_bezier]\nlr = 0.001\n")
    base = get_metric("mc_bezier")
    m = zoo_metric(Zoo.open(root), base)
    assert m.params["lr"] == 0.001 and base.params["lr"] != 0.001
    assert {k: v for k, v in m.params.items() if k != "lr"} == {k: v for k, v in base.params.items() if k != "lr"}
    assert m.params_hash != base.params_hash
    assert zoo_metric(Zoo.open(tiny_pinn_zoo), base).params == base.params  # no table: the defaults


@pytest.mark.slow
@pytest.mark.parametrize("tail,named", [("\n[metrics.nope]\nlr = 0.1\n", "nope"),
                                        ("\n[metrics.mc_bezier]\nnope_param = 1\n", "nope_param")])
def test_spec_unknown_metric_or_parameter_fails_the_run(tiny_pinn_zoo, tmp_path, tail, named):
    """An unknown metric name or parameter in the spec's [metrics] stops `run` with a MetricError naming it,
    before anything is computed."""
    root = _zoo_with_spec_tail(tiny_pinn_zoo, tmp_path / "zoo", tail)
    with pytest.raises(MetricError, match=named):
        run(root, resolve_metrics(["performance", "mc_bezier"]), progress=False, workers=1)
    assert not read_metrics(root).height
