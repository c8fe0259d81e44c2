"""The CUDA paths against the CPU, on a machine with a GPU (CI has none: this is run by hand there).

    python bench/check_cuda.py [--out DIR] [--quick]

1. trains a small zoo (3 widths × 2 batch sizes × 2 seeds, 20 epochs, batched) on the CPU and on CUDA:
   the epoch-1 losses must agree (float32 summation order only), and the timing of both is printed;
2. computes every registered metric of the CPU-trained zoo on the CPU and on CUDA (same weights): the
   values must agree within each metric's tolerance (exact kernels tightly, the trained Bézier curve of
   mode connectivity, a 20-epoch SGD run of its own, loosely);
3. analyses one checkpoint (analysis.upload.verdict) with its workers on each device: same phase and quantities;
4. the real architectures of bench/bench_archs.py (resnet18_width at width 16, torchvision:resnet18 with
   small_input; random CIFAR-10-shaped data, the bench's cut-down metric parameters): every metric of the
   same weights on the CPU and on CUDA within the tolerances of step 2, with cuDNN's TF32 convolutions off
   (on, a convolution rounds its inputs to 10 mantissa bits: ~1e-3 relative, not a device bug).
Exit status 1 if anything disagrees (2: no GPU here). Prints the largest differences per metric.
`--quick` (tests/test_benches.py runs it; on a machine without a GPU it only checks the refusal): steps 1
and 2 on 2 models of 2 epochs with the data-only metrics `performance` and `weights`; steps 3 and 4 skipped.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import torch

from data.zoo.spec_builder import tiny_mlp_spec

# The tiny test zoo grown to 3 widths × 2 batch sizes × 2 seeds of 20 epochs on 1,000 examples
SPEC = tiny_mlp_spec(n_train=1000, epochs=20, checkpoint_epochs=(10,), analysis_epochs=(20,), widths=(8, 32, 128),
                     batch_sizes=(16, 128)).replace(name="cuda-check", description="a small zoo for the CUDA check")
# metric -> (relative tolerance, absolute tolerance) between devices on the same weights
TOLERANCE = {"mc_bezier": (0.0, 3.0), "mc_bezier_error": (0.0, 3.0), "mc_bezier_loss": (0.1, 0.05),
             "mc_bezier_endpoint_dominated": (0.0, 1.0), "hessian_esd": (0.05, 1e-3)}
DEFAULT_TOL = (1e-3, 1e-4)
QUICK_SPEC = tiny_mlp_spec(n_train=200, epochs=2, checkpoint_epochs=(1,), analysis_epochs=(2,), widths=(8, 32),
                           batch_sizes=(16,)).replace(name="cuda-check-quick", description="the CUDA check's quick zoo")
QUICK_METRICS = ("performance", "weights")


def main(argv=None) -> int:
    from analysis.metrics.catalog import list_metrics
    from analysis.runner.run import run
    from data.training.generate import generate
    from data.zoo.store import Zoo

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--quick", action="store_true", help="steps 1-2 on 2 tiny models and 2 metrics (seconds)")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device here: nothing to check")
        return 2
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    work = Path(tempfile.mkdtemp())
    spec = (QUICK_SPEC if args.quick else SPEC).write(work / "spec.toml")
    last = (QUICK_SPEC if args.quick else SPEC).training["epochs"]
    ok = True
    zoos = {}
    for dev in ("cpu", "cuda"):
        t = time.perf_counter()
        generate(spec, work / dev, workers=1, device=dev, progress=False)
        print(f"generate on {dev}: {time.perf_counter() - t:.1f} s")
        zoos[dev] = Zoo.open(work / dev)
    a, b = (zoos[d].catalog.filter(pl.col("epoch") == 1).sort("model_id") for d in ("cpu", "cuda"))
    d_loss = (a["train_loss"] - b["train_loss"]).abs().max()
    d_acc = (a["test_acc"] - b["test_acc"]).abs().max()
    accs = [zoos[d].catalog.filter(pl.col("epoch") == last).sort("model_id")["test_acc"] for d in ("cpu", "cuda")]
    print(f"training: epoch-1 train loss max |Δ| {d_loss:.2e}, test acc max |Δ| {d_acc:.2e}; "
          f"epoch-{last} test acc mean {accs[0].mean():.3f} (cpu) vs {accs[1].mean():.3f} (cuda)")
    ok &= d_loss < 1e-3

    # every metric of the CPU-trained zoo, on each device
    tables = {}
    for dev in ("cpu", "cuda"):
        root = work / f"metrics-{dev}"
        shutil.copytree(work / "cpu", root)
        t = time.perf_counter()
        rep = run(root, list(QUICK_METRICS) if args.quick else list_metrics(), workers=1, device=dev, progress=False)
        print(f"metrics on {dev}: {rep.tasks} tasks, {rep.failures} failures, {time.perf_counter() - t:.1f} s")
        ok &= rep.failures == 0
        table = pl.read_parquet(root / "metrics.parquet")
        for err in table["error"].drop_nulls().unique().to_list()[:5]:
            print(f"  FAILED: {err}")
        # curves are matched by position: the spectral density's eigenvalue grid is itself computed
        tables[dev] = table.filter(pl.col("error").is_null()).sort("coord", nulls_last=True).with_columns(
            i=pl.int_range(pl.len()).over(["model_id", "other_id", "epoch", "metric", "split", "layer"]))
    key = ["model_id", "other_id", "epoch", "metric", "split", "layer", "i"]
    both = tables["cpu"].join(tables["cuda"], on=key, how="inner", suffix="_cuda", nulls_equal=True)
    print(f"  {len(both)} of {len(tables['cpu'])} rows matched across devices")
    ok &= len(both) == len(tables["cpu"])
    diffs = both.with_columns(d=(pl.col("value") - pl.col("value_cuda")).abs(),
                              scale=pl.max_horizontal(pl.col("value").abs(), pl.col("value_cuda").abs()))
    for (metric,), g in diffs.group_by("metric", maintain_order=True):
        rtol, atol = TOLERANCE.get(metric, DEFAULT_TOL)
        bad = g.filter(pl.col("d") > atol + rtol * pl.col("scale"))
        worst = g["d"].max()
        print(f"  {metric:34s} max |Δ| {worst:.3g}  {'ok' if bad.is_empty() else f'{len(bad)} beyond tolerance'}")
        ok &= bad.is_empty()

    if args.quick:
        print("quick: steps 3 (verdict) and 4 (ResNet-18s) skipped")
    else:
        ok &= check_verdict(work) and check_archs()
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        diffs.write_parquet(args.out / "cuda_metric_diffs.parquet")
    print("CUDA agrees with the CPU" if ok else "CUDA DISAGREES with the CPU")
    return 0 if ok else 1


def check_verdict(work: Path) -> bool:
    """Step 3: one checkpoint through the verdict pipeline, workers on each device."""
    from analysis.upload.verdict import Report, analyse, process_pool
    from data.zoo.store import Zoo

    cat = Zoo.open(work / "metrics-cpu").catalog
    row = cat.filter((pl.col("epoch") == 20) & (pl.col("width") == 32) & (pl.col("batch_size") == 16)
                     & (pl.col("seed") == 0))
    ck = work / "metrics-cpu" / row["checkpoint"][0]
    verdicts = {}
    for dev in ("cpu", "cuda"):
        pool = process_pool(2)
        t = time.perf_counter()
        [r] = analyse([ck], [Zoo.open(work / "metrics-cpu")], executor=pool, device=dev, cache=False)
        pool.shutdown()
        assert isinstance(r, Report), r
        verdicts[dev] = r
        print(f"verdict on {dev}: {r.rule.phase} (mc {r.rule.mc:.3g}, CKA {r.rule.cka:.3g}), "
              f"classifier {r.classifier.phase}, {time.perf_counter() - t:.1f} s")
    return verdicts["cpu"].rule.phase == verdicts["cuda"].rule.phase


def within(metric: str, a: float, b: float) -> bool:
    rtol, atol = TOLERANCE.get(metric, DEFAULT_TOL)
    return abs(a - b) <= atol + rtol * max(abs(a), abs(b))


def check_archs(devices: tuple[str, str] = ("cpu", "cuda")) -> bool:
    """Step 4: every metric of bench_archs' two ResNet-18s (seeds 0 and 1 a pair) on the CPU and on CUDA.
    hessian_layers on the small width only: at width 64, 41 blocks × ≥ 43 HVPs take ~5 min on one CPU thread."""
    try:  # run as a script (bench/ on sys.path) or imported from the repository root (the tests)
        from bench_archs import BENCH_PARAMS, CLASSES, MODEL_METRICS, MODELS, PAIR_METRICS, SHAPE, random_task
    except ImportError:
        from bench.bench_archs import BENCH_PARAMS, CLASSES, MODEL_METRICS, MODELS, PAIR_METRICS, SHAPE, random_task
    from analysis.metrics.catalog import get_metric
    from analysis.metrics.registry import ModelInput
    from data.models.archs import build_model

    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    ok = True
    try:
        for label, arch, params in MODELS:
            values = {}
            names = [n for n in MODEL_METRICS + PAIR_METRICS if n != "hessian_layers" or params.get("width", 64) < 64]
            for dev in devices:
                task = random_task(256, 256, torch.device(dev))
                a, b = (ModelInput(f"{label} s{s}", build_model(arch, SHAPE, CLASSES, params, seed=s).to(dev).eval(),
                                   task, 1) for s in (0, 1))
                t = time.perf_counter()
                for name in names:
                    metric = get_metric(name).with_params(**BENCH_PARAMS.get(name, {}))
                    rows = metric(a) if name in MODEL_METRICS else metric(a, b)
                    values[dev, name] = {(v.metric, v.split, v.layer, i): v.value for i, v in enumerate(rows)}
                print(f"{label} on {dev}: {len(names)} metrics in {time.perf_counter() - t:.1f} s")
            for name in names:
                cpu, gpu = (values[d, name] for d in devices)
                bad = [k for k in cpu if k not in gpu or not within(k[0], cpu[k], gpu[k])]
                worst = max((abs(cpu[k] - gpu[k]) for k in cpu if k in gpu), default=0.0)
                same = cpu.keys() == gpu.keys()
                print(f"  {label:22s} {name:16s} {len(cpu):5d} values, max |Δ| {worst:.3g}  "
                      + ("ok" if same and not bad else f"{len(bad)} beyond tolerance" if same else "different rows"))
                ok &= same and not bad
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    return ok


if __name__ == "__main__":
    sys.exit(main())
