"""Batched vs one-at-a-time zoo training, side by side in one run, both on the same cores.

    python bench/bench_generate.py [--epochs 20] [--workers 2]

Trains two grids of the default zoo's spec twice each with the zoo generator: once with one model per task
(the ordinary loop, `--sequential`) and once batched. Both use `--workers` processes with one torch thread
each, and both times are end to end (process start-up, data, training, per-epoch evaluation of the full
train and test splits, checkpoint and catalog writes).

  * the small models (width 2..64 × all 8 batch sizes × 3 seeds), whose training steps and epochs are
    mostly fixed overhead — the regime batching is for;
  * the whole default grid, which adds widths 128 and 256: those are arithmetic-bound (matmuls already at
    70–100 GFLOP/s on one core), so batching saves only their overhead and the ratio is lower.

Then compares every batched model with its one-at-a-time twin. In float32, SGD at these temperatures is
chaotic: rounding differences (a padded matmul sums in another order) grow over thousands of steps. The
bench measures that growth against the same growth between two *sequential* runs whose initial weights
differ by one float32 ulp — the system's own sensitivity. Float64 agreement to 1e-9 is asserted in
tests/test_train.py.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import polars as pl  # noqa: E402
import torch  # noqa: E402

from data.models.archs import build_model  # noqa: E402
from data.training.generate import generate  # noqa: E402
from data.training.train import TrainConfig, train_one  # noqa: E402
from data.zoo.spec_builder import SpecDraft  # noqa: E402
from data.zoo.store import Zoo  # noqa: E402

SPEC = Path(__file__).resolve().parents[1] / "data" / "specs" / "mnist1d-mlp.toml"


def spec_text(epochs: int, widths: list[int] | None) -> str:
    """The default zoo's spec cut to `epochs` (also its one analysis epoch) and, if given, to these widths;
    of its checkpoint epochs only those within the shorter run are kept (the others fail the spec check)."""
    default = SpecDraft.from_toml(SPEC.read_text())
    kept = [e for e in default.training.get("checkpoint_epochs", []) if e <= epochs]
    return default.merged(training={"epochs": epochs, "analysis_epochs": [epochs], "checkpoint_epochs": kept},
                          grid={"width": widths} if widths else {}).toml()


def side_by_side(tmp: Path, name: str, text: str, workers: int) -> tuple[Zoo, Zoo]:
    spec = tmp / f"{name}.toml"
    spec.write_text(text)
    times, zoos = {}, {}
    for mode in ("sequential", "batched"):
        t0 = time.perf_counter()
        rep = generate(spec, tmp / f"{name}-{mode}", workers=workers, batched=mode == "batched", progress=False)
        times[mode] = time.perf_counter() - t0
        zoos[mode] = Zoo.open(tmp / f"{name}-{mode}")
        print(f"  {mode:>10}: {rep.trained:3d} models in {rep.groups:3d} tasks, {times[mode]:6.1f} s, "
              f"{rep.trained / times[mode] * 60:7.1f} models/min", flush=True)
    print(f"  {'ratio':>10}: {times['sequential'] / times['batched']:.2f}x batched over sequential")
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {args.workers} worker processes x 1 thread, {os.cpu_count()} cores, "
          f"{args.epochs} epochs, MNIST-1D MLPs (spec {SPEC.name})")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print("small models: width 2..64 x batch 8..1024 x 3 seeds")
        side_by_side(tmp, "small", spec_text(args.epochs, [2, 4, 8, 16, 32, 64]), args.workers)
        print("whole default grid: width 2..256 x batch 8..1024 x 3 seeds")
        seq, bat = side_by_side(tmp, "grid", spec_text(args.epochs, None), args.workers)

        e = args.epochs
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


if __name__ == "__main__":
    main()
