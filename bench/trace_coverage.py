"""Coverage of the trace estimators' standard errors, and their cost, over many seeds.

    python bench/trace_coverage.py --quick                     # 100 seeds, the synthetic matrices only
    python bench/trace_coverage.py                             # 300 seeds, plus the default zoo's layer blocks
    git show 155fc7d:analysis/spectral.py > /tmp/old_spectral.py
    python bench/trace_coverage.py --baseline /tmp/old_spectral.py   # the same for another spectral.py

For each matrix (dense, exact trace known) and estimator: z = (estimate − Tr A)/stderr over the seeds; the
table gives the spread of z (≈ 1 when the stderr is honest), the fraction of |z| > 2 (≈ 5 %), the mean
matvecs, and how many runs were exact (stderr 0, excluded from z). The zoo cases are the per-layer blocks
of width008-batch_size0256-s1 at epoch 300 as `hessian_layers` sees them (10 × 64 training examples).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]

import torch  # noqa: E402

ZOO, MODEL, EPOCH = ROOT / "data" / "zoos" / "mnist1d-mlp", "width008-batch_size0256-s1", 300


def dense(matvec, n: int) -> torch.Tensor:
    A = torch.stack([matvec(e) for e in torch.eye(n, dtype=torch.float64)], 1)
    return (A + A.T) / 2


def matrices(with_zoo: bool) -> dict[str, torch.Tensor]:
    from analysis.kernels.hessian import HessianOperator, dense_hessian, parameter_groups
    test = module_at("test_trace_coverage", ROOT / "tests" / "test_trace_coverage.py")  # the test's matrices
    model, x, y = test.relu_net()
    out = {"flat (n=200)": test.flat(), "outliers (n=300)": test.outliers(),
           "relu_net (n=334)": dense_hessian(model, x, y)}
    if with_zoo:
        from analysis.metrics.definitions import probe_set
        from data.zoo.store import Zoo
        zoo = Zoo.open(ZOO)
        m = zoo.build_model(MODEL, EPOCH)
        task = zoo.task_of(MODEL)
        xs, ys = probe_set(task, "train", 10, 64, 0)
        for layer, names in parameter_groups(m).items():
            with HessianOperator(m, xs, ys, names=names, loss_fn=task.objective.loss) as H:
                out[f"{MODEL} layer {layer} (n={H.n})"] = dense(H.matvec, H.n)
    return out


def coverage(estimate, A: torch.Tensor, seeds: int) -> dict[str, float]:
    exact, zs, mv, n_exact = torch.trace(A).item(), [], 0, 0
    for s in range(seeds):
        r = estimate(lambda v: A @ v, A.shape[0], s)
        mv += r.matvecs
        if r.stderr == 0:
            n_exact += 1
        else:
            zs.append((r.value - exact) / r.stderr)
    z = torch.tensor(zs, dtype=torch.float64)
    return {"z_std": z.std().item() if len(z) > 1 else float("nan"),
            "beyond_2": (z.abs() > 2).double().mean().item() if len(z) else float("nan"),
            "matvecs": mv / seeds, "exact": n_exact}


def module_at(name: str, path: str | Path):
    """The module in this file, imported by its path: a baseline spectral.py, or the coverage test (tests/ is
    not an installed package)."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_spectral(path: str | None):
    if path is None:
        import analysis.kernels.spectral as mod
        return mod
    return module_at("baseline_spectral", path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="100 seeds, synthetic matrices only (~1 min)")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--baseline", default=None, help="measure this spectral.py instead of analysis/kernels/spectral.py")
    args = ap.parse_args()
    torch.set_num_threads(1)
    seeds = args.seeds or (100 if args.quick else 300)
    sp = load_spectral(args.baseline)
    estimators = {"hutchpp (sketch 10, rtol 0.02)": lambda mv, n, s: sp.hutchpp(mv, n, sketch=10, rtol=0.02, seed=s),
                  "hutchinson (30 probes)": lambda mv, n, s: sp.hutchinson(mv, n, 30, seed=s)}
    print(f"{args.baseline or 'analysis/kernels/spectral.py'}, {seeds} seeds")
    print(f"{'matrix':48s} {'estimator':32s} {'z std':>6s} {'|z|>2':>6s} {'matvecs':>8s} {'exact':>5s}")
    t0 = time.perf_counter()
    for name, A in matrices(not args.quick).items():
        for est_name, est in estimators.items():
            c = coverage(est, A, seeds)
            print(f"{name:48s} {est_name:32s} {c['z_std']:6.3f} {c['beyond_2']:6.1%} {c['matvecs']:8.1f} "
                  f"{c['exact']:5d}", flush=True)
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
