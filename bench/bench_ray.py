"""Throughput of the executors against the number of workers, side by side in one run: a small CNN zoo
generated and its metrics computed with the local process pool and with a local Ray, each on 1 and 2
workers (CPUs). Prints models/min and tasks/min and the ratios to one local worker (a local Ray's start-up,
printed apart, is not in them; the pool's start-up is); also one ResNet-18 training step on this CPU, for
the worked estimate of a published-size zoo (docs/scale-out.md).

    python bench/bench_ray.py [--quick]

`--quick` (tests/test_benches.py): 4 models of 2 epochs, the data-only metrics, a ResNet-18 of width 8; the
same lines.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from data.zoo.spec_builder import mnist1d_width_batch

# 3 seeds × 2 widths × 4 batch sizes of small 1-D CNNs, 40 epochs; mode connectivity's Bézier curves trained
# for 20 epochs each
SPEC = mnist1d_width_batch(
    "bench-ray", arch="cnn1d", widths=(8, 16), batch_sizes=(32, 64, 128, 256), seeds=(0, 1, 2),
    task_params={"n_train": 1000, "label_noise": 0.1}, arch_params={"depth": 2},
    training={"epochs": 40, "lr": 0.05, "momentum": 0.9, "batch_size": 64, "analysis_epochs": [40]},
    metrics={"mc_bezier": {"epochs": 20}})
METRICS = ["performance", "weights", "cka_logits_test", "mc_linear", "mc_bezier"]
QUICK_SPEC = mnist1d_width_batch(
    "bench-ray-quick", arch="cnn1d", widths=(8,), batch_sizes=(128, 256), seeds=(0, 1),
    task_params={"n_train": 200, "label_noise": 0.1}, arch_params={"depth": 2},
    training={"epochs": 2, "lr": 0.05, "momentum": 0.9, "batch_size": 64, "analysis_epochs": [2]})
QUICK_METRICS = ["performance", "weights"]


def one(kind: str, workers: int, tmp: Path, metrics: list[str]) -> tuple[float, float, int, int, float]:
    import ray

    from analysis.runner.run import resolve_metrics, run
    from data.training.generate import generate
    from data.training.workers import Executor, ray_connect

    ex = Executor(kind)
    start = 0.0
    if kind == "ray":
        ray.shutdown()  # a fresh local Ray with `workers` CPUs
        t = time.perf_counter()
        ray_connect(ex, workers)
        start = time.perf_counter() - t
    out = tmp / f"{kind}{workers}"
    t = time.perf_counter()
    g = generate(tmp / "spec.toml", out, workers=workers, progress=False, executor=ex)
    t_gen = time.perf_counter() - t
    t = time.perf_counter()
    r = run(out, resolve_metrics(metrics), workers=workers, progress=False, executor=ex)
    return t_gen, time.perf_counter() - t, g.trained, r.tasks, start


def resnet_step(width: int = 64) -> float:
    """Seconds of one SGD step of a ResNet-18 (`width`) on a CIFAR-sized batch of 128, on this CPU."""
    import torch
    import torch.nn.functional as F

    from data.models.resnet import resnet18_width

    torch.set_num_threads(2)
    model = resnet18_width((3, 32, 32), 10, width=width)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(128, 3, 32, 32), torch.randint(0, 10, (128,))
    for i in range(4):
        if i == 1:
            t = time.perf_counter()
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return (time.perf_counter() - t) / 3


def main() -> None:
    import logging

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="4 tiny models, 2 metrics, a width-8 ResNet-18")
    args = ap.parse_args()
    logging.disable(logging.INFO)
    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    (QUICK_SPEC if args.quick else SPEC).write(tmp / "spec.toml")
    metrics, width = (QUICK_METRICS, 8) if args.quick else (METRICS, 64)
    rows = []
    try:
        for kind in ("local", "ray"):
            for workers in (1, 2):
                rows.append((kind, workers, *one(kind, workers, tmp, metrics)))
    finally:
        import ray

        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    base_g, base_m = rows[0][2], rows[0][3]
    print(f"{'executor':8s} {'workers':>7s} {'train':>9s} {'models/min':>10s} {'×':>5s} {'metrics':>9s} "
          f"{'tasks/min':>9s} {'×':>5s}")
    for kind, w, tg, tm, n_models, n_tasks, start in rows:
        print(f"{kind:8s} {w:7d} {tg:8.1f}s {60 * n_models / tg:10.1f} {base_g / tg:5.2f} {tm:8.1f}s "
              f"{60 * n_tasks / tm:9.1f} {base_m / tm:5.2f}" + (f"   (Ray start-up {start:.1f} s)" if start else ""))
    step = resnet_step(width)
    steps = 192 * 150 * -(-50_000 // 128)
    print(f"ResNet-18 (width {width}), batch 128, one SGD step on this CPU (2 threads): {step:.2f} s; a 192-model "
          f"150-epoch CIFAR-10 zoo is {steps:,} steps = {steps * step / 3600 / 24:.0f} CPU-days here")


if __name__ == "__main__":
    main()
