"""Batched vs one-at-a-time zoo training, side by side in one run, both on the same cores.

    python bench/bench_generate.py [--epochs 20] [--workers 2] [--grid small|mlp|cnn|transformer ...] [--quick]

Trains grids of the built-in zoos' specs twice each with the zoo generator: once with one model per task
(the ordinary loop, `--sequential`) and once batched. Both use `--workers` processes with one torch thread
each, and both times are end to end (process start-up, data, the cost estimate, training, per-epoch
evaluation of the full train and test splits, checkpoint and catalog writes). Grids, each on a shortened
schedule of its spec (checkpoint epochs beyond it dropped):

  * MNIST-1D MLPs, the small models (width 2..64 × all 8 batch sizes × 3 seeds): mostly fixed overhead;
  * the whole default MLP grid (adds widths 128 and 256, arithmetic-bound);
  * the CNN zoo's grid (data/specs/mnist1d-cnn.toml) and the transformer zoo's (modadd-transformer.toml).

Each line prints the achieved GFLOP/s: the useful (unpadded) multiply-add FLOPs of every model's training
steps and logged evaluations, counted by torch's FlopCounterMode on one forward and backward pass, over
the wall time, against this CPU's single-thread matmul peak (torch.mm of 2048² float32, measured first)
times the workers.

Then compares every batched MLP with its one-at-a-time twin. In float32, SGD at these temperatures is
chaotic: rounding differences (a padded matmul sums in another order) grow over thousands of steps. The
bench measures that growth against the same growth between two *sequential* runs whose initial weights
differ by one float32 ulp — the system's own sensitivity. Float64 agreement to 1e-9 is asserted in
tests/test_train.py.

`--quick` (the test suite's, tests/test_benches.py): two-seed cut-downs of the MLP grid and the transformer
grid (the written-out SGD step and the vmap/autograd one), 1–2 epochs, one worker; the same code path and
the same result lines.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import polars as pl  # noqa: E402
import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from data.models.archs import build_model  # noqa: E402
from data.training.generate import generate  # noqa: E402
from data.training.train import TrainConfig, train_one  # noqa: E402
from data.zoo.spec import parse_spec  # noqa: E402
from data.zoo.spec_builder import SpecDraft  # noqa: E402
from data.zoo.store import Zoo  # noqa: E402

SPECS = Path(__file__).resolve().parents[1] / "data" / "specs"


@dataclass(frozen=True)
class Grid:
    name: str  # for --grid
    title: str
    spec: str  # file under data/specs
    epochs: int  # the shortened schedule
    grid: dict  # knob -> values replacing the spec's ({} = the spec's own grid)
    seeds: tuple[int, ...] | None = None  # None: the spec's


def grids(epochs: int, quick: bool) -> list[Grid]:
    if quick:
        return [Grid("mlp", "MLP grid (quick): width 4, 128 x batch 64, 512 x 2 seeds", "mnist1d-mlp.toml", 1,
                     {"width": [4, 128], "batch_size": [64, 512]}, (0, 1)),
                Grid("transformer", "transformer grid (quick): train fraction 0.5 x lr 1e-3 x 2 seeds", "modadd-transformer.toml",
                     2, {"train_fraction": [0.5], "lr": [1e-3]}, (0, 1))]
    return [Grid("small", "MLP small models: width 2..64 x batch 8..1024 x 3 seeds", "mnist1d-mlp.toml", epochs,
                 {"width": [2, 4, 8, 16, 32, 64]}),
            Grid("mlp", "MLP whole default grid: width 2..256 x batch 8..1024 x 3 seeds", "mnist1d-mlp.toml", epochs, {}),
            Grid("cnn", "CNN grid: width 2..64 x batch 16..512 x 3 seeds", "mnist1d-cnn.toml", max(1, epochs // 5), {}),
            Grid("transformer", "transformer grid: train fraction 0.3..0.8 x lr 1e-3..3e-2 x 3 seeds", "modadd-transformer.toml",
                 10 * epochs, {})]


def spec_text(g: Grid) -> str:
    """The spec cut to `g.epochs` (also its one analysis epoch) and to `g.grid`; of its checkpoint epochs only
    those within the shorter run are kept (the others fail the spec check)."""
    default = SpecDraft.from_toml((SPECS / g.spec).read_text())
    kept = [e for e in default.training.get("checkpoint_epochs", []) if e <= g.epochs]
    draft = default.merged(training={"epochs": g.epochs, "analysis_epochs": [g.epochs], "checkpoint_epochs": kept},
                           grid=g.grid)
    return draft.replace(seeds=g.seeds).toml() if g.seeds else draft.toml()


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of torch.mm on n×n float32 matrices, one thread: the best of `repeats` (the machine is shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    torch.set_num_threads(threads)
    return 2 * n ** 3 / best / 1e9


def counted_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def model_flops(spec, c) -> float:
    """Useful FLOPs of training one model: its steps' forward and backward passes over every training example
    per epoch, and the forward passes of each logged evaluation of both splits (per-example counts measured
    on two examples: a batch's FLOPs are linear in its examples)."""
    from data.training.generate import _task

    data = _task(spec.task, c.task_params)
    cfg = TrainConfig.from_training(c.get("training"))
    model = build_model(spec.arch, data.input_shape, data.n_classes, c.get("arch_params"), seed=c.seed)
    x, y = data.x_train[:2], data.y_train[:2]
    step = counted_flops(lambda: data.objective.loss(model, x, y).backward()) / 2
    with torch.no_grad():
        fwd = counted_flops(lambda: model(x)) / 2
    evals = sum(1 for e in range(cfg.epochs + 1) if e == 0 or cfg.logs(e, spec.checkpoint_epochs))
    return cfg.epochs * len(data.y_train) * step + evals * (len(data.y_train) + len(data.y_test)) * fwd


def grid_flops(text: str) -> float:
    """Useful FLOPs of training the spec's whole zoo (seeds share their count)."""
    spec = parse_spec(text, "bench")
    per_model: dict[tuple, float] = {}
    total = 0.0
    for c in spec.models():
        key = (c.task_params, c.arch_params, c.training)
        if key not in per_model:
            per_model[key] = model_flops(spec, c)
        total += per_model[key]
    return total


def side_by_side(tmp: Path, name: str, text: str, workers: int, peak: float) -> tuple[Zoo, Zoo]:
    spec = tmp / f"{name}.toml"
    spec.write_text(text)
    flops = grid_flops(text)
    times, zoos = {}, {}
    for mode in ("sequential", "batched"):
        t0 = time.perf_counter()
        rep = generate(spec, tmp / f"{name}-{mode}", workers=workers, batched=mode == "batched", progress=False)
        times[mode] = time.perf_counter() - t0
        zoos[mode] = Zoo.open(tmp / f"{name}-{mode}")
        rate = flops / times[mode] / 1e9
        print(f"  {mode:>10}: {rep.trained:3d} models in {rep.groups:3d} tasks, {times[mode]:6.1f} s, "
              f"{rep.trained / times[mode] * 60:7.1f} models/min, {rate:6.2f} GFLOP/s "
              f"({rate / (workers * peak):5.1%} of {workers} x peak)", flush=True)
    print(f"  {'ratio':>10}: {times['sequential'] / times['batched']:.2f}x batched over sequential "
          f"({flops / 1e9:.1f} GFLOP useful)", flush=True)
    return zoos["sequential"], zoos["batched"]


def max_weight_gap(a: Zoo, b: Zoo, model_ids, epoch: int) -> pl.DataFrame:
    rows = []
    for m in model_ids:
        sa, sb = a.load_state_dict(m, epoch), b.load_state_dict(m, epoch)
        rows.append({"model_id": m, "gap": max((sa[k] - sb[k]).abs().max().item() for k in sa)})
    return pl.DataFrame(rows)


def ulp_twin_gap(zoo: Zoo, model_id: str, epoch: int) -> float:
    """Train a model one-at-a-time from init weights nudged by one ulp; its largest weight gap to the stored run."""
    cfg = zoo.configs[model_id]
    task, tr = zoo.task, cfg.get("training")
    torch.set_num_threads(1)
    model = build_model(zoo.spec.arch, task.input_shape, task.n_classes, cfg.get("arch_params"), seed=cfg.seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.nextafter(p, torch.full_like(p, float("inf"))))
    res = train_one(model, task, TrainConfig(epoch, tr["lr"], tr["batch_size"], tr["momentum"], tr["weight_decay"]),
                    cfg.seed, [epoch])
    stored = zoo.load_state_dict(model_id, epoch)
    return max((res.checkpoints[epoch][k] - stored[k]).abs().max().item() for k in stored)


def twins(seq: Zoo, bat: Zoo, e: int) -> None:
    ids = seq.catalog["model_id"].unique().sort()
    gaps = max_weight_gap(seq, bat, ids, e).join(
        seq.catalog.filter(pl.col("epoch") == e).select("model_id", "test_acc", "batch_size"), on="model_id").join(
        bat.catalog.filter(pl.col("epoch") == e).select("model_id", pl.col("test_acc").alias("acc_b")),
        on="model_id")
    first = max_weight_gap(seq, bat, ids, 0)["gap"].max()
    print(f"twins (float32): max |dweight| at init {first:.1e}; after {e} epochs median "
          f"{gaps['gap'].median():.1e}, max {gaps['gap'].max():.1e}; max |dtest acc| "
          f"{(gaps['test_acc'] - gaps['acc_b']).abs().max():.3f}")
    for row in gaps.sort("gap", descending=True).head(2).iter_rows(named=True):
        print(f"  {row['model_id']}: batched-vs-sequential gap {row['gap']:.1e}; sequential run from "
              f"init + 1 ulp: gap {ulp_twin_gap(seq, row['model_id'], e):.1e} (chaotic SGD, not a bug)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=20, help="MLP epochs (CNN: a fifth; transformer: 10x, full batch)")
    ap.add_argument("--workers", type=int, default=None, help="worker processes (default 2; --quick: 1)")
    ap.add_argument("--quick", action="store_true", help="tiny MLP and transformer grids, 1-2 epochs, 1 worker")
    ap.add_argument("--grid", action="append", choices=("small", "mlp", "cnn", "transformer"),
                    help="only these grids (repeatable; default all; the twins need 'mlp')")
    args = ap.parse_args()
    workers = args.workers or (1 if args.quick else 2)
    peak = matmul_peak(512 if args.quick else 2048)
    print(f"torch {torch.__version__}, {workers} worker processes x 1 thread, {os.cpu_count()} cores; "
          f"single-thread matmul peak {peak:.1f} GFLOP/s (torch.mm float32)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        mlp = None
        for i, g in enumerate(g for g in grids(args.epochs, args.quick) if not args.grid or g.name in args.grid):
            print(f"{g.title}, {g.epochs} epochs (spec {g.spec})", flush=True)
            zoos = side_by_side(tmp, f"grid{i}", spec_text(g), workers, peak)
            if g.name == "mlp":
                mlp = (*zoos, g.epochs)
        if mlp:
            twins(*mlp)


if __name__ == "__main__":
    main()
