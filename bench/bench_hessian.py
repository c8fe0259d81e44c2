"""Our Hessian kernels against PyHessian 0.1, side by side on the default zoo's largest model.

    python bench/bench_hessian.py [--model width256-batch_size0064-s0] [--epoch 300]

Targets (issue: metrics engine): the top eigenvalue to 1e-4 relative accuracy and the trace to a 2 %
relative standard error. Both codes use the same Hessian-vector product (double back-propagation through
a kept first-order graph, on the same 10 × 64 training examples, eval mode, one thread), so the gain is
algorithmic: Lanczos started from the loss gradient (ours, as the `hessian` metric runs it) against power
iteration from a random vector (PyHessian); for the trace, the exact ReLU identity
Tr H = Tr GGN (ours, C backward passes, zero variance) — or adaptive Hutch++ where it does not apply —
against Hutchinson.

- eigenvalue: the reference is Lanczos run to 1e-10. PyHessian's power iteration stops on a relative change
  below `tol`; the bench tries tol = 1e-3, 1e-4, ... and times the first run whose *true* error ≤ 1e-4.
- trace: PyHessian's stopping rule ignores variance (stack.md), so it gets the number of Rademacher probes
  a 2 % standard error needs, calibrated on a first run (not timed), then a timed run with exactly that many.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from analysis.kernels.hessian import HessianOperator
from analysis.kernels.relu_trace import is_relu_mlp, relu_mlp_hessian_trace
from analysis.kernels.spectral import hutchpp, lanczos_topk
from analysis.metrics.definitions import probe_set
from data.zoo.store import Zoo

ZOO = Path(__file__).resolve().parents[1] / "data" / "zoos" / "mnist1d-mlp"


def timed(fn, repeats: int = 3):
    """(result, median wall time over `repeats` runs): single runs of ~10 ms are too noisy to compare."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, sorted(times)[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="width256-batch_size0064-s0")
    ap.add_argument("--epoch", type=int, default=300)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from pyhessian import hessian as PyHessian

    zoo = Zoo.open(ZOO)
    model = zoo.build_model(args.model, args.epoch)
    x, y = probe_set(zoo.task, "train", 10, 64, seed=0)
    n = sum(p.numel() for p in model.parameters())
    print(f"model {args.model} epoch {args.epoch}: {n:,} parameters, {len(y)} probe examples, 1 thread, "
          "median of 3 timed runs")

    with HessianOperator(model, x, y) as H:
        ref = lanczos_topk(H.matvec, H.n, 1, tol=1e-10, max_iter=300).values[0].item()
        g = H.gradient()
        ours_eig, t_ours_eig = timed(lambda: lanczos_topk(H.matvec, H.n, 1, tol=1e-4, start=g))
        hpp, t_hpp = timed(lambda: hutchpp(H.matvec, H.n, rtol=0.02))
        v = torch.randn(H.n, dtype=torch.float64)
        _, t_hvp = timed(lambda: [H.matvec(v) for _ in range(20)], 1)
    ours_err = abs(ours_eig.values[0].item() - ref) / abs(ref)
    if is_relu_mlp(model):  # exact, from C backward passes (analysis/kernels/relu_trace.py)
        relu_mlp_hessian_trace(model, x)  # warm-up, as the HVPs were warmed up by the reference run
        exact, t_ours_tr = timed(lambda: relu_mlp_hessian_trace(model, x))
    else:
        exact, t_ours_tr = None, t_hpp

    def grad_once():
        model.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
    _, t_grad = timed(lambda: [grad_once() for _ in range(20)], 1)

    model.zero_grad(set_to_none=True)
    ph = PyHessian(model, nn.CrossEntropyLoss(), data=(x, y), cuda=False)
    from pyhessian.utils import hessian_vector_product
    vv = [torch.randn_like(p) for p in ph.params]
    _, t_ph_hvp = timed(lambda: [hessian_vector_product(ph.gradsH, ph.params, vv) for _ in range(20)], 1)
    for tol in (1e-3, 1e-4, 1e-5, 1e-6, 1e-7):
        torch.manual_seed(0)
        (vals, _), t_ph_eig = timed(lambda: (torch.manual_seed(0), ph.eigenvalues(maxIter=1000, tol=tol))[1])
        ph_err = abs(vals[0] - ref) / abs(ref)
        if ph_err <= 1e-4:
            break
    torch.manual_seed(3)
    default = np.array(ph.trace())  # as shipped: maxIter=100, tol=1e-3, its stopping rule
    torch.manual_seed(1)
    calib = np.array(ph.trace(maxIter=100, tol=0.0))
    probes = math.ceil((calib.std(ddof=1) / (0.02 * abs(calib.mean()))) ** 2)
    samples, t_ph_tr = timed(lambda: (torch.manual_seed(2), np.array(ph.trace(maxIter=probes, tol=0.0)))[1])
    ph_se = samples.std(ddof=1) / math.sqrt(len(samples)) / abs(samples.mean())

    print(f"HVP / gradient cost: ours {t_hvp / t_grad:.2f}, PyHessian {t_ph_hvp / t_grad:.2f} "
          f"(one gradient {t_grad / 20 * 1e3:.1f} ms)")
    print(f"top eigenvalue {ref:.6g} (reference: Lanczos to 1e-10)")
    print(f"  ours      Lanczos from the gradient, tol 1e-4: {ours_eig.matvecs:4d} HVPs, {t_ours_eig:6.2f} s, true rel. error {ours_err:.1e}")
    print(f"  PyHessian power it. tol {tol:.0e}: ~{t_ph_eig / (t_ph_hvp / 20):4.0f} HVPs, {t_ph_eig:6.2f} s, "
          f"true rel. error {ph_err:.1e}")
    print("trace to 2 % relative standard error")
    if exact is not None:
        print(f"  ours      exact (ReLU identity Tr H = Tr GGN): {t_ours_tr:6.2f} s, {exact:.5g} ± 0")
    print(f"  ours      Hutch++: {hpp.matvecs:4d} HVPs, {t_hpp:6.2f} s, {hpp.value:.5g} ± "
          f"{hpp.stderr / abs(hpp.value):.1%}" + ("  (used when the exact identity does not apply)" if exact else ""))
    print(f"  PyHessian Hutchinson: {probes:4d} HVPs, {t_ph_tr:6.2f} s, {samples.mean():.5g} ± {ph_se:.1%} "
          f"(probe count calibrated for it; its own default stops after {len(default)} probes at "
          f"{default.mean():.5g}, {abs(default.mean() - calib.mean()) / abs(calib.mean()):.0%} off)")
    ours_total, ph_total = t_ours_eig + t_ours_tr, t_ph_eig + t_ph_tr
    print(f"ratios (PyHessian / ours): eigenvalue {t_ph_eig / t_ours_eig:.1f}x, trace {t_ph_tr / t_ours_tr:.1f}x, "
          f"both {ph_total / ours_total:.1f}x  (target >= 5x)")


if __name__ == "__main__":
    main()
