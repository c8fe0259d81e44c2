"""The Hessian operator against dense autograd Hessians, closed forms and PyHessian."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from analysis.kernels.hessian import HessianOperator, dense_hessian, parameter_groups
from analysis.kernels.spectral import hutchinson, hutchpp, lanczos_topk, slq_density


def tiny_model(seed=0, width=6):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, width), nn.Tanh(), nn.Linear(width, 3)).double()


def tiny_data(n=40, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def test_hvp_matches_dense_hessian():
    model, (x, y) = tiny_model(), tiny_data()
    H = dense_hessian(model, x, y)
    n = H.shape[0]
    assert n == 5 * 6 + 6 + 6 * 3 + 3
    with HessianOperator(model, x, y) as op:
        V = torch.randn(n, 4, dtype=torch.float64)
        HV = torch.stack([op.matvec(V[:, i]) for i in range(4)], 1)
    torch.testing.assert_close(HV, H @ V, rtol=1e-10, atol=1e-12)


def test_eigen_trace_density_against_exact():
    model, (x, y) = tiny_model(width=10), tiny_data(60)
    H = dense_hessian(model, x, y)
    exact = torch.linalg.eigvalsh(H)
    with HessianOperator(model, x, y) as op:
        eig = lanczos_topk(op.matvec, op.n, 3, tol=1e-10)
        tr = hutchinson(op.matvec, op.n, 200, seed=3)
        pp = hutchpp(op.matvec, op.n, sketch=20, rtol=1e-3, seed=3)
        dens = slq_density(op.matvec, op.n, probes=3, steps=op.n)
    assert ((eig.values - exact.flip(0)[:3]).abs() / exact.flip(0)[:3].abs()).max() <= 1e-6
    assert abs(tr.value - torch.trace(H).item()) < 3 * tr.stderr
    assert abs(pp.value - torch.trace(H).item()) < 3 * pp.stderr + 1e-9
    assert dens.nodes.max().item() == pytest.approx(exact[-1].item(), rel=1e-6)
    assert dens.nodes.min().item() == pytest.approx(exact[0].item(), rel=1e-6, abs=1e-9)


def test_closed_form_linear_and_logistic_regression():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 4, generator=g, dtype=torch.float64)
    # linear regression, MSE/2: H = XᵀX / n for the weights
    lin = nn.Linear(4, 1, bias=False).double()
    yr = torch.randn(50, 1, generator=g, dtype=torch.float64)
    with HessianOperator(lin, x, yr, loss_fn=lambda f, x, t: 0.5 * ((f(x) - t) ** 2).mean()) as op:
        H = torch.stack([op.matvec(e) for e in torch.eye(4, dtype=torch.float64)], 1)
    torch.testing.assert_close(H, x.T @ x / 50, rtol=1e-12, atol=1e-12)
    # logistic regression, mean BCE: H = Xᵀ diag(p(1−p)) X / n
    logit = nn.Linear(4, 1, bias=False).double()
    yb = torch.randint(0, 2, (50, 1), generator=g).double()
    with HessianOperator(logit, x, yb, loss_fn=lambda f, x, t: F.binary_cross_entropy_with_logits(f(x), t)) as op:
        H = torch.stack([op.matvec(e) for e in torch.eye(4, dtype=torch.float64)], 1)
    p = torch.sigmoid(logit(x)).detach().squeeze(1)
    torch.testing.assert_close(H, x.T @ torch.diag(p * (1 - p)) @ x / 50, rtol=1e-10, atol=1e-12)


def test_layer_block_is_a_diagonal_block():
    model, (x, y) = tiny_model(), tiny_data()
    H = dense_hessian(model, x, y)
    groups = parameter_groups(model)
    assert list(groups) == ["0", "2"]
    with HessianOperator(model, x, y, names=groups["2"]) as op:
        block = torch.stack([op.matvec(e) for e in torch.eye(op.n, dtype=torch.float64)], 1)
    torch.testing.assert_close(block, H[-op.n:, -op.n:], rtol=1e-10, atol=1e-12)


def test_mode_and_grad_are_left_as_found():
    model = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 3)).double()
    x, y = tiny_data()
    model.train()
    model(x).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    stats = model[1].running_mean.clone()
    with HessianOperator(model, x, y) as op:
        assert not model.training  # eval mode: BatchNorm on running statistics
        op.matvec(torch.ones(op.n, dtype=torch.float64))
    assert model.training
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))
    assert torch.equal(model[1].running_mean, stats)


def test_bad_input_is_named():
    model, (x, y) = tiny_model(), tiny_data()
    with pytest.raises(ValueError, match="empty batch set"):
        HessianOperator(model, x[:0], y[:0])
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        with HessianOperator(model, x, y):
            pass


def test_agrees_with_pyhessian():
    """PyHessian 0.1 as the reference: cuda=False, zero_grad first, fixed sample counts (stack.md)."""
    pyhessian = pytest.importorskip("pyhessian")
    model = tiny_model(width=12).float()
    x, y = tiny_data(64)
    x = x.float()
    model.zero_grad(set_to_none=True)
    ref = pyhessian.hessian(model, nn.CrossEntropyLoss(), data=(x, y), cuda=False)
    top_ref, _ = ref.eigenvalues(maxIter=1000, tol=1e-7, top_n=1)
    with HessianOperator(model, x, y) as op:
        ours = lanczos_topk(op.matvec, op.n, 1, tol=1e-8)
        tr = hutchpp(op.matvec, op.n, sketch=30, rtol=1e-3)
    assert ours.values[0].item() == pytest.approx(top_ref[0], rel=1e-4)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    tr_ref = sum(ref.trace(maxIter=300, tol=0.0)) / 300  # fixed sample count (its stopping rule is broken)
    assert tr.value == pytest.approx(tr_ref, rel=0.1)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_exact_relu_trace_equals_dense_trace(depth):
    from analysis.kernels.relu_trace import is_relu_mlp, relu_mlp_hessian_trace

    torch.manual_seed(depth)
    layers = [nn.Flatten(-1), nn.Linear(5, 7), nn.ReLU()]
    for _ in range(depth - 1):
        layers += [nn.Linear(7, 7), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(7, 3)).double()
    x, y = tiny_data(50)
    assert is_relu_mlp(model)
    exact = torch.trace(dense_hessian(model, x, y)).item()
    assert relu_mlp_hessian_trace(model, x) == pytest.approx(exact, rel=1e-10)


def test_exact_trace_refuses_smooth_activations():
    from analysis.kernels.relu_trace import is_relu_mlp, relu_mlp_hessian_trace

    model = tiny_model()  # Tanh: its logits are not linear in each weight, the identity does not hold
    assert not is_relu_mlp(model)
    with pytest.raises(ValueError, match="Linear and ReLU"):
        relu_mlp_hessian_trace(model, tiny_data()[0])


# ----------------------------------------------------------------------------- Gauss–Newton split (kernels/ggn.py)
def dense_ggn(model, x):
    """(1/N) Σ_n J_nᵀ A_n J_n from the autograd Jacobian of the logits: an independent oracle for Tr G."""
    from torch.func import functional_call

    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def logits(flat):
        params, i = {}, 0
        for name, shape in zip(names, shapes):
            params[name] = flat[i:i + shape.numel()].view(shape)
            i += shape.numel()
        return functional_call(model, params, (x,))

    J = torch.autograd.functional.jacobian(logits, flat0)  # [N, C, P]
    p = logits(flat0).detach().softmax(-1)
    A = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    return torch.einsum("ncp,ncd,ndq->pq", J, A, J) / len(x)


def tiny_cnn(seed=0):
    from data.models.archs import CNN1d

    torch.manual_seed(seed)
    return CNN1d((12,), 4, width=3, depth=3).double()


def tiny_transformer(seed=0):
    from data.models.archs import Transformer

    torch.manual_seed(seed)
    return Transformer((3,), 5, width=4, depth=1, heads=2).double()


def test_ggn_trace_is_the_hessian_trace_of_piecewise_linear_models():
    from analysis.kernels.ggn import ggn_trace, piecewise_linear

    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(20, 12, generator=g, dtype=torch.float64), torch.randint(0, 4, (20,), generator=g)
    model = tiny_cnn()
    assert piecewise_linear(model)
    assert ggn_trace(model, x) == pytest.approx(torch.trace(dense_hessian(model, x, y)).item(), rel=1e-10)
    assert not piecewise_linear(tiny_model()) and not piecewise_linear(tiny_transformer())


@pytest.mark.parametrize("layer_norm", [False, True])
def test_ggn_trace_equals_the_dense_gauss_newton_trace(layer_norm):
    """Softmax attention (per-layer norms from hooks, incl. the embedding and `pos`) and a LayerNorm model
    (parameters no hook knows: torch.func per-example gradients)."""
    from analysis.kernels.ggn import _hooked, ggn_trace

    if layer_norm:
        torch.manual_seed(3)
        model = nn.Sequential(nn.Linear(5, 6), nn.LayerNorm(6), nn.ReLU(), nn.Linear(6, 3)).double()
        x = tiny_data(30)[0]
    else:
        model, x = tiny_transformer(), torch.randint(0, 6, (30, 3), generator=torch.Generator().manual_seed(4))
    assert _hooked(model) is not layer_norm
    exact = torch.trace(dense_ggn(model, x)).item()
    assert ggn_trace(model, x, max_rows=32) == pytest.approx(exact, rel=1e-10)  # chunked rows add up


def test_cross_entropy_trace_is_exact_or_unbiased_within_its_stderr():
    from analysis.kernels.ggn import cross_entropy_trace, residual_operator

    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(20, 12, generator=g, dtype=torch.float64), torch.randint(0, 4, (20,), generator=g)
    cnn = tiny_cnn()
    with HessianOperator(cnn, x, y) as op:
        exact = cross_entropy_trace(op)
    assert exact.stderr == 0 and exact.matvecs == 0
    assert exact.value == pytest.approx(torch.trace(dense_hessian(cnn, x, y)).item(), rel=1e-10)

    model = tiny_transformer()
    tokens, labels = torch.randint(0, 6, (30, 3), generator=g), torch.randint(0, 5, (30,), generator=g)
    H = dense_hessian(model, tokens, labels)
    R = H - dense_ggn(model, tokens)  # the residual left to the probes
    with HessianOperator(model, tokens, labels) as op, residual_operator(op) as res:
        V = torch.randn(op.n, 3, dtype=torch.float64, generator=g)
        RV = torch.stack([res.matvec(V[:, i]) for i in range(3)], 1)
        est = cross_entropy_trace(op, rtol=0.1, seed=1)
    torch.testing.assert_close(RV, R @ V, rtol=1e-8, atol=1e-10)  # R = H − G is the Hessian of Σ r·z
    assert est.probes >= 10 and est.matvecs == est.probes + 5
    assert abs(est.value - torch.trace(H).item()) < 4 * est.stderr
    # Rademacher quadratic forms of R vary with its off-diagonal mass: the stderr estimates that
    sd = (2 * (R.square().sum() - R.diagonal().square().sum())).sqrt().item()
    assert est.stderr == pytest.approx(sd / est.probes ** 0.5, rel=0.6)


def test_cross_entropy_trace_refuses_what_it_cannot_split():
    from analysis.kernels.ggn import cross_entropy_trace
    from data.tasks.objectives import ConvectionPINN

    model, (x, y) = tiny_model(), tiny_data()
    with HessianOperator(model, x, y, names=parameter_groups(model)["2"]) as op:
        with pytest.raises(ValueError, match="all parameters"):
            cross_entropy_trace(op)
    pinn = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    pts, kinds = torch.rand(16, 2, dtype=torch.float64), torch.zeros(16, dtype=torch.long)
    with HessianOperator(pinn, pts, kinds, loss_fn=ConvectionPINN(1.0).loss) as op:
        with pytest.raises(ValueError, match="cross-entropy"):
            cross_entropy_trace(op)
