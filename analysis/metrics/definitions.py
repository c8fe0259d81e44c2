"""The built-in metrics (science.md §2), registered with `analysis.metrics.registry`.

Every metric here is a thin adapter: choose inputs (a fixed, seeded probe set), call a pure kernel
(analysis.kernels.hessian/spectral/cka/connectivity/weights), and emit `Value` rows.
"""
from __future__ import annotations

import logging

import numpy as np
import polars as pl
import torch

from analysis.kernels.cka import linear_cka
from analysis.kernels.connectivity import PathProfile, bezier_curve, linear_path
from analysis.kernels.hessian import HessianOperator, parameter_groups
from analysis.kernels.relu_trace import is_relu_mlp, relu_mlp_hessian_trace
from analysis.kernels.spectral import hutchinson, hutchpp, lanczos_topk, slq_density
from analysis.kernels.weights import PERCENTILES, PowerLawFit, scan_weights
from analysis.metrics.outputs import LOG_MEAN
from analysis.metrics.registry import ModelInput, Output, Value, register
from data.tasks.builtin import TaskData
from data.tasks.objectives import PINN_TERMS
from data.training.train import scores

SPLITS = ("train", "test")


def probe_set(task: TaskData, split: str, n_batches: int, batch_size: int, seed: int) -> tuple[torch.Tensor, ...]:
    """A fixed, seeded set of n_batches × batch_size examples of a split (all of it if smaller)."""
    x, y = (task.x_train, task.y_train) if split == "train" else (task.x_test, task.y_test)
    n = min(len(y), n_batches * batch_size)
    idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:n].to(y.device)
    return x[idx], y[idx]


def _check_finite(m: ModelInput) -> None:
    for name, p in m.model.named_parameters():
        if not torch.isfinite(p).all():
            raise ValueError(f"model {m.model_id}: parameter {name!r} has non-finite values")


# ----------------------------------------------------------------------------- performance
@register("performance", scope="model", needs_data=True, outputs=[
    Output("train_loss", "higher = worse fit of the training set (the task's loss: cross-entropy in nats, "
           "or the PINN loss)", log_scale=True, role="fit", label="train loss"),
    Output("train_acc", "higher = better fit of the training set", unit="fraction", label="train accuracy"),
    Output("test_loss", "higher = worse generalisation (PINN: MSE against the exact solution)", log_scale=True,
           label="test loss"),
    Output("test_acc", "higher = better generalisation", unit="fraction", label="test accuracy"),
    Output("generalization_gap", "train_acc − test_acc; higher = more over-fitted", unit="fraction",
           label="generalisation gap", signed=True),
    *[Output(f"train_loss_{t}", f"the PINN loss's {t} term; higher = worse", log_scale=True,
             label=f"train loss, {t} term") for t in PINN_TERMS],
    Output("rel_l2_error", "‖u − u*‖₂/‖u*‖₂ on the 256 × 100 grid; ≈ 1 = the PINN failed", log_scale=True,
           unit="fraction", label="relative L2 error"),
])
def performance(m: ModelInput) -> list[Value]:
    """Train/test loss re-evaluated in eval mode on the full splits (training labels as trained, noise
    included) with the task's objective. Classification adds the accuracies and the generalisation gap; the
    PINN adds its loss's three terms and the relative L2 error against the exact solution."""
    _check_finite(m)
    obj = m.task.objective
    tr = scores(m.model, m.task.x_train, m.task.y_train, obj)
    te = scores(m.model, m.task.x_test, m.task.y_test, obj)
    out = [Value("train_loss", tr.loss.item(), split="train"), Value("test_loss", te.loss.item(), split="test")]
    if tr.acc is not None:
        out += [Value("train_acc", tr.acc.item(), split="train"), Value("test_acc", te.acc.item(), split="test"),
                Value("generalization_gap", (tr.acc - te.acc).item())]
    out += [Value(f"train_loss_{k}", v.item(), split="train") for k, v in (tr.terms or {}).items()]
    if te.rel_l2 is not None:
        out.append(Value("rel_l2_error", te.rel_l2.item(), split="test"))
    return out


# ----------------------------------------------------------------------------- grokking
@register("grokking", scope="model", needs_data=False, kinds=["sequence"], outputs=[
    Output("fit_epoch", "first logged epoch with training accuracy ≥ the fit threshold", unit="epochs",
           label="epoch the training set is fitted"),
    Output("generalization_epoch", "first logged epoch with test accuracy ≥ the test threshold", unit="epochs",
           label="epoch the test set is generalised"),
    Output("grokking_delay", "generalization_epoch − fit_epoch: how long generalisation lags memorisation; "
           "higher = later grokking", unit="epochs", label="grokking delay"),
    Output("fitted", "1 if the training set was fitted by this epoch", label="training set fitted"),
    Output("generalized", "1 if the test set was generalised to by this epoch", label="test set generalised"),
])
def grokking(m: ModelInput, *, fit_threshold: float = 0.99, test_threshold: float = 0.95) -> list[Value]:
    """The grokking delay (Power et al. 2022): epochs between fitting the training set and generalising,
    read off the model's logged training curve up to this epoch (resolution: the zoo's `eval_every`).
    A model that has not fitted or not generalised yet gets no epoch and no delay (`fitted`, `generalized` say
    which), so a censored run never looks like a short delay."""
    if m.history is None or m.history.is_empty():
        raise ValueError(f"model {m.model_id}: no training history (grokking reads the zoo's catalog)")
    h = m.history.filter(pl.col("epoch") <= m.epoch) if m.epoch is not None else m.history
    first = lambda col, thr: h.filter(pl.col(col) >= thr)["epoch"].min()
    fit, gen = first("train_acc", fit_threshold), first("test_acc", test_threshold)
    out = [Value("fitted", float(fit is not None)), Value("generalized", float(gen is not None))]
    out += [Value("fit_epoch", float(fit), split="train")] if fit is not None else []
    out += [Value("generalization_epoch", float(gen), split="test")] if gen is not None else []
    if fit is not None and gen is not None:
        out.append(Value("grokking_delay", float(max(gen - fit, 0))))
    return out


# ----------------------------------------------------------------------------- Hessian
# version 3: Hutch++ with a two-stage probe count and an honest stderr (analysis.kernels.spectral.hutchpp); only the
# hessian_trace_hutchpp rows changed, so analysis.runner.recompute carries the others over
# `stochastic_traces` (added later; its default leaves the stored rows' hash alone): False skips Hutch++ and
# Hutchinson, for a caller that has the exact trace already (an upload of a ReLU MLP: hessian_trace_exact)
@register("hessian", scope="model", needs_data=True, version=3, added=["stochastic_traces"], outputs=[
    Output("hessian_top_eigenvalue", "higher = sharper minimum", log_scale=True, role="sharpness",
           coord="rank", aggregate=LOG_MEAN, label="top Hessian eigenvalue"),
    Output("hessian_trace_hutchpp", "higher = sharper minimum", log_scale=True, role="sharpness",
           aggregate=LOG_MEAN, label="Hessian trace (Hutch++)"),
    Output("hessian_trace_hutchinson", "higher = sharper minimum", log_scale=True,
           aggregate=LOG_MEAN, label="Hessian trace (Hutchinson)"),
    Output("hessian_esd", "spectral density of the Hessian", coord="eigenvalue", label="Hessian spectral density"),
])
def hessian(m: ModelInput, *, splits: tuple[str, ...] = SPLITS, n_batches: int = 10, batch_size: int = 64,
            k: int = 3, tol: float = 1e-4, max_iter: int = 100, gradient_start: bool = True, sketch: int = 20,
            rtol: float = 0.02,
            hutchinson_probes: int = 100, slq_probes: int = 5, slq_steps: int = 60, seed: int = 0,
            stochastic_traces: bool = True) -> list[Value]:
    """Hessian of the task's loss (mean cross-entropy; the PINN loss on the training points, the MSE against
    the exact solution on the test grid) on a fixed probe set (PTMZ: 10 × 64 examples) per split, eval mode:
    top-k eigenvalues by Lanczos (stderr = the Ritz residual; the Krylov space starts from the loss
    gradient, which in trained networks lies mostly in the top eigenspace — Gur-Ari, Roberts & Dyer 2018),
    trace by Hutch++ and by Hutchinson (with their standard errors: ±2·stderr ≈ a 95 % interval,
    docs/trace-estimators.md), and the spectral density by stochastic Lanczos quadrature (coord = λ)."""
    _check_finite(m)
    out: list[Value] = []
    for split in splits:
        x, y = probe_set(m.task, split, n_batches, batch_size, seed)
        with HessianOperator(m.model, x, y, loss_fn=m.task.objective.loss) as H:
            dev = H.device
            eig = lanczos_topk(H.matvec, H.n, min(k, H.n), tol=tol, max_iter=max_iter, seed=seed, device=dev,
                               start=H.gradient() if gradient_start else None)
            out += [Value("hessian_top_eigenvalue", v, r, split, coord=float(i + 1))
                    for i, (v, r) in enumerate(zip(eig.values.tolist(), eig.residuals.tolist()))]
            if stochastic_traces:
                out.append(_hutchpp_value(H, "hessian_trace_hutchpp", split, None, sketch, rtol, seed))
                th = hutchinson(H.matvec, H.n, hutchinson_probes, seed=seed, device=dev)
                out.append(Value("hessian_trace_hutchinson", th.value, th.stderr, split))
            dens = slq_density(H.matvec, H.n, probes=slq_probes, steps=slq_steps, grid_points=200, seed=seed,
                               device=dev)
            out += [Value("hessian_esd", d, None, split, coord=g)
                    for g, d in zip(dens.grid.tolist(), dens.density.tolist())]
    return out


def _hutchpp_value(H: HessianOperator, name: str, split: str, layer: str | None, sketch: int, rtol: float,
                   seed: int) -> Value:
    """The Hutch++ trace row of `hessian` / `hessian_layers`, shared with their trace-only variants below."""
    tr = hutchpp(H.matvec, H.n, sketch=sketch, rtol=rtol, seed=seed, device=H.device)
    return Value(name, tr.value, tr.stderr, split, layer)


def hessian_hutchpp_only(m: ModelInput, *, splits: tuple[str, ...] = SPLITS, n_batches: int = 10,
                         batch_size: int = 64, sketch: int = 20, rtol: float = 0.02, seed: int = 0, **_) -> list[Value]:
    """`hessian`'s hessian_trace_hutchpp rows alone, from the same probe sets and seeds (each estimator has
    its own seeded generator, so the other outputs do not depend on this one): for analysis.runner.recompute.
    Takes all of `hessian`'s parameters and ignores those of the other estimators."""
    _check_finite(m)
    out = []
    for split in splits:
        x, y = probe_set(m.task, split, n_batches, batch_size, seed)
        with HessianOperator(m.model, x, y, loss_fn=m.task.objective.loss) as H:
            out.append(_hutchpp_value(H, "hessian_trace_hutchpp", split, None, sketch, rtol, seed))
    return out


@register("hessian_trace_exact", scope="model", needs_data=True, applies=is_relu_mlp, kinds=["classification"],
          outputs=[
    Output("hessian_trace_exact", "higher = sharper minimum (exact, ReLU perceptrons only)", log_scale=True,
           role="sharpness", aggregate=LOG_MEAN, label="Hessian trace (exact)"),
])
def hessian_trace_exact(m: ModelInput, *, splits: tuple[str, ...] = SPLITS, n_batches: int = 10,
                        batch_size: int = 64, seed: int = 0) -> list[Value]:
    """The exact Hessian trace on the same probe sets as `hessian`, for ReLU perceptrons: Tr H equals the
    Gauss-Newton trace there (analysis.kernels.relu_trace), computed from C backward passes with no variance."""
    _check_finite(m)
    return [Value("hessian_trace_exact", relu_mlp_hessian_trace(m.model, probe_set(m.task, s, n_batches, batch_size,
                                                                                    seed)[0]), 0.0, s)
            for s in splits]


# version 2: the honest Hutch++ (see `hessian`); only hessian_layer_trace rows changed
@register("hessian_layers", scope="model", needs_data=True, version=2, outputs=[
    Output("hessian_layer_top_eigenvalue", "higher = sharper along this layer", log_scale=True, per_layer=True,
           aggregate=LOG_MEAN, label="top Hessian eigenvalue of the layer"),
    Output("hessian_layer_trace", "higher = sharper along this layer", log_scale=True, per_layer=True,
           aggregate=LOG_MEAN, label="Hessian trace of the layer"),
])
def hessian_layers(m: ModelInput, *, splits: tuple[str, ...] = ("train",), n_batches: int = 10,
                   batch_size: int = 64, tol: float = 1e-4, max_iter: int = 100, sketch: int = 10,
                   rtol: float = 0.02, seed: int = 0) -> list[Value]:
    """Top eigenvalue and trace (Hutch++) of each parameter group's diagonal Hessian block (a layer's
    weight and bias), on the training probe set."""
    _check_finite(m)
    out: list[Value] = []
    for split in splits:
        x, y = probe_set(m.task, split, n_batches, batch_size, seed)
        for layer, names in parameter_groups(m.model).items():
            with HessianOperator(m.model, x, y, names=names, loss_fn=m.task.objective.loss) as H:
                eig = lanczos_topk(H.matvec, H.n, 1, tol=tol, max_iter=max_iter, seed=seed, device=H.device)
                tr = _hutchpp_value(H, "hessian_layer_trace", split, layer, sketch, rtol, seed)
            out += [Value("hessian_layer_top_eigenvalue", eig.values[0].item(), eig.residuals[0].item(), split, layer),
                    tr]
    return out


def hessian_layers_trace_only(m: ModelInput, *, splits: tuple[str, ...] = ("train",), n_batches: int = 10,
                              batch_size: int = 64, sketch: int = 10, rtol: float = 0.02, seed: int = 0,
                              **_) -> list[Value]:
    """`hessian_layers`'s hessian_layer_trace rows alone (see `hessian_hutchpp_only`)."""
    _check_finite(m)
    out = []
    for split in splits:
        x, y = probe_set(m.task, split, n_batches, batch_size, seed)
        for layer, names in parameter_groups(m.model).items():
            with HessianOperator(m.model, x, y, names=names, loss_fn=m.task.objective.loss) as H:
                out.append(_hutchpp_value(H, "hessian_layer_trace", split, layer, sketch, rtol, seed))
    return out


# ----------------------------------------------------------------------------- data-free
# version 2: adds alpha_ww (WeightWatcher 0.7.7's fit), skips zero-size layers, per-model log σ₁ in float64
# over layers with σ₁ > 0; `phasezoo recompute ZOO --metrics weights` updates stored rows
@register("weights", scope="model", needs_data=False, version=2, outputs=[
    Output("weight_mean", "mean weight", per_layer=True, label="mean weight"),
    Output("weight_var", "weight variance", per_layer=True, log_scale=True, label="weight variance"),
    *[Output(f"weight_p{p:02d}", f"{p}th weight percentile", per_layer=True,
             label=f"weight percentile {p}") for p in PERCENTILES],
    Output("spectral_norm", "largest singular value; per model: mean over layers of log σ₁", per_layer=True,
           label="spectral norm σ₁"),
    Output("stable_rank", "‖W‖²_F/‖W‖²₂; higher = more spread spectrum", per_layer=True, label="stable rank"),
    Output("alpha", "power-law tail exponent of WᵀW/N, textbook Clauset fit (tail ≥ 5, two-sided KS); "
           "WeightWatcher's bands do not apply: see alpha_ww", per_layer=True, role="data-free",
           label="power-law exponent α (Clauset)"),
    Output("alpha_ks", "KS distance of the Clauset α fit; lower = better fit", per_layer=True,
           label="KS distance of the α fit"),
    Output("alpha_ww", "WeightWatcher-compatible tail exponent (WW 0.7.7's fit): ≈2–4 well trained, >6 "
           "random-like or under-trained, <2 over-trained", per_layer=True, role="data-free",
           label="power-law exponent α (WeightWatcher)"),
    Output("alpha_ww_ks", "one-sided KS distance of the WeightWatcher α fit; lower = better fit", per_layer=True,
           label="KS distance of the WeightWatcher α fit"),
])
def weights(m: ModelInput) -> list[Value]:
    """Per-layer weight statistics, spectral norm, stable rank and heavy-tail α by two fits (Clauset's and
    WeightWatcher's, each with its KS distance: analysis.kernels.weights); per-model rows (layer = null) average
    them over layers (log spectral norm for σ₁, over layers with σ₁ > 0). Layers that cannot be measured
    (zero-size) are skipped and logged with the reason."""
    report, skipped = scan_weights(m.model.state_dict())
    for s in skipped:
        logging.getLogger("phasezoo.metrics").info("weights of %s: layer %s skipped: %s", m.model_id, s.layer,
                                                   s.reason)
    out: list[Value] = []
    for lw in report:
        out += [Value("weight_mean", lw.mean, layer=lw.layer), Value("weight_var", lw.var, layer=lw.layer),
                *[Value(f"weight_p{p:02d}", q, layer=lw.layer) for p, q in lw.percentiles.items()],
                Value("spectral_norm", lw.spectral_norm, layer=lw.layer),
                Value("stable_rank", lw.stable_rank, layer=lw.layer)]
    if sigmas := [float(np.log(lw.spectral_norm)) for lw in report if lw.spectral_norm > 0]:
        out.append(Value("spectral_norm", sum(sigmas) / len(sigmas)))
    if report:
        out.append(Value("stable_rank", sum(lw.stable_rank for lw in report) / len(report)))
    return out + _alpha_values("alpha", [(lw.layer, lw.alpha) for lw in report]) + _alpha_values(
        "alpha_ww", [(lw.layer, lw.alpha_ww) for lw in report])


def _alpha_values(name: str, fits: list[tuple[str, PowerLawFit | None]]) -> list[Value]:
    """α and its KS distance per fitted layer, and their means over the fitted layers (layer = null)."""
    fitted = [(layer, f) for layer, f in fits if f is not None]
    out = [v for layer, f in fitted for v in (Value(name, f.alpha, layer=layer),
                                              Value(f"{name}_ks", f.ks_distance, layer=layer))]
    if fitted:
        out += [Value(name, sum(f.alpha for _, f in fitted) / len(fitted)),
                Value(f"{name}_ks", sum(f.ks_distance for _, f in fitted) / len(fitted))]
    return out


def weights_ww_only(m: ModelInput, **_) -> list[Value]:
    """`weights`' rows that version 2 changed, alone, for analysis.runner.recompute: alpha_ww and alpha_ww_ks (new)
    and spectral_norm (version 1 took the per-model log σ₁ in float32); the other outputs are unchanged for
    every layer without a zero-size dimension."""
    return [v for v in weights(m) if v.metric in WEIGHTS_V2_CHANGED]


WEIGHTS_V2_CHANGED = ("alpha_ww", "alpha_ww_ks", "spectral_norm")  # analysis.runner.recompute's Partial names them


# ----------------------------------------------------------------------------- CKA
def _cka_values(name: str, xa: torch.Tensor, xb: torch.Tensor) -> list[Value]:
    return [Value(name, linear_cka(xa, xb)), Value(f"{name}_debiased", linear_cka(xa, xb, debiased=True))]


@register("cka_logits_test", scope="pair", needs_data=True, outputs=[
    Output("cka_logits_test", "higher = more similar representations", role="similarity",
           label="CKA (logits, test)", bounds=(0.0, 1.0)),
    Output("cka_logits_test_debiased", "higher = more similar representations", label="CKA (logits, test, debiased)"),
])
def cka_logits_test(a: ModelInput, b: ModelInput, *, n_batches: int = 8, batch_size: int = 125) -> list[Value]:
    """PTMZ's variant: linear CKA of raw logits on test batches, computed per batch and averaged
    (stderr over batches); biased and debiased. For the PINN: of its predictions u on the test grid (stored
    in a seeded order, so each batch is a uniform sample of the grid)."""
    x = a.task.x_test
    rows: dict[str, list[float]] = {}
    with torch.no_grad():
        for i in range(n_batches):
            xb = x[i * batch_size:(i + 1) * batch_size]
            if len(xb) < 4:
                break
            for v in _cka_values("cka_logits_test", a.model(xb), b.model(xb)):
                rows.setdefault(v.metric, []).append(v.value)
    out = []
    for name, vals in rows.items():
        t = torch.tensor(vals, dtype=torch.float64)
        out.append(Value(name, t.mean().item(), (t.std() / len(t) ** 0.5).item() if len(t) > 1 else None, "test"))
    return out


@register("cka_softmax_mixup", scope="pair", needs_data=True, kinds=["classification"], outputs=[
    Output("cka_softmax_mixup", "higher = more similar representations", role="similarity",
           label="CKA (softmax, mixup)", bounds=(0.0, 1.0)),
    Output("cka_softmax_mixup_debiased", "higher = more similar representations",
           label="CKA (softmax, mixup, debiased)"),
])
def cka_softmax_mixup(a: ModelInput, b: ModelInput, *, n: int = 640, beta: float = 16.0, seed: int = 0) -> list[Value]:
    """Yang et al.'s variant: linear CKA of softmax outputs on mixup inputs of training examples,
    λ ~ Beta(16, 16) (on raw training data CKA is trivially high once models fit it)."""
    rng = np.random.default_rng(seed)
    x = a.task.x_train
    i, j = (torch.as_tensor(rng.integers(0, len(x), n), device=x.device) for _ in range(2))
    lam = torch.as_tensor(rng.beta(beta, beta, n), dtype=x.dtype, device=x.device).view(-1, *[1] * (x.ndim - 1))
    mixed = lam * x[i] + (1 - lam) * x[j]
    with torch.no_grad():
        return [Value(v.metric, v.value, None, "train") for v in
                _cka_values("cka_softmax_mixup", a.model(mixed).softmax(-1), b.model(mixed).softmax(-1))]


# ----------------------------------------------------------------------------- mode connectivity
def _path_values(prefix: str, p: PathProfile) -> list[Value]:
    return [Value(prefix, p.mc, split="train"),
            Value(f"{prefix}_endpoint_dominated", float(p.endpoint_dominated), split="train"),
            *[Value(f"{prefix}_error", e, split="train", coord=t) for t, e in zip(p.t, p.error)],
            *[Value(f"{prefix}_loss", lo, split="train", coord=t) for t, lo in zip(p.t, p.loss)]]


def _path_outputs(prefix: str, what: str) -> list[Output]:
    return [Output(prefix, f"mc along the {what} (training error in % points; decades of training loss for "
                           "regression): < 0 barrier, > 0 ends not converged, ≈ 0 well connected", role="connectivity",
                   label=f"mode connectivity mc ({what})"),
            Output(f"{prefix}_endpoint_dominated", "1 if the ends differ and every interior point lies between their "
                   "errors (|mc| ≤ the ends' half-difference: mc then says only which end the path stays nearer to)",
                   label=f"ends dominate the {what}"),
            Output(f"{prefix}_error", f"training error (%; log10 of the loss for regression) along the {what}",
                   coord="t", label=f"training error along the {what}"),
            Output(f"{prefix}_loss", f"training loss along the {what}", coord="t", label=f"training loss along the {what}")]


def _params(m: ModelInput) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in m.model.named_parameters()}


# version 2: t* over the interior of the path, sign-neutral ties, the end-point band flag (analysis.kernels.connectivity);
# stored rows of version 1 are rewritten from their profiles by `phasezoo mc-recompute ZOO`
@register("mc_linear", scope="pair", needs_data=True, version=2, outputs=_path_outputs("mc_linear", "straight line"))
def mc_linear(a: ModelInput, b: ModelInput, *, points: int = 11) -> list[Value]:
    """Mode connectivity on the straight line between the two models (11 points), training split."""
    for m in (a, b):
        _check_finite(m)
    return _path_values("mc_linear", linear_path(a.model, _params(a), _params(b), a.task.x_train, a.task.y_train,
                                                 points, objective=a.task.objective))


@register("mc_bezier", scope="pair", needs_data=True, version=2,
          outputs=_path_outputs("mc_bezier", "trained Bézier curve"), added=["optimizer"])
def mc_bezier(a: ModelInput, b: ModelInput, *, epochs: int = 100, lr: float = 0.1, batch_size: int = 128,
              weight_decay: float = 5e-4, seed: int = 0, optimizer: str = "sgd") -> list[Value]:
    """Mode connectivity on a quadratic Bézier curve trained between the two models (PTMZ's recipe: lr 0.1,
    batch 128, wd 5e-4, momentum 0.9, Garipov schedule), evaluated at t ∈ {0, .25, .5, .75, 1}.

    PTMZ trains 10 epochs of CIFAR's 50,000 images (~3,900 steps); on a 2,000-example task that would be
    160 steps, too few to connect models that fit their training set (measured on the default zoo: wide
    cells kept mc ≈ −23 after 10 epochs at lr 0.05 and reached mc ≈ 0 after 100–150 epochs at lr 0.1), so the
    default is 100 epochs (~1,600 steps here). A zoo trained with Adam (the PINNs) sets `optimizer = "adam"`
    and its own lr in its spec's [metrics.mc_bezier] table."""
    for m in (a, b):
        _check_finite(m)
    prof = bezier_curve(a.model, _params(a), _params(b), a.task.x_train, a.task.y_train, epochs=epochs, lr=lr,
                        batch_size=batch_size, weight_decay=weight_decay, seed=seed, objective=a.task.objective,
                        optimizer=optimizer)
    return _path_values("mc_bezier", prof)
