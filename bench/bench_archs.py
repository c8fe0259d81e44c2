"""Per-model cost of the registered metrics on ResNet-18, a small width against the standard one, CIFAR-10-shaped.

    python bench/bench_archs.py [--device cpu|cuda] [--threads 1,all] [--repeats 3] [--quick] [--out FILE.json]

Models: `resnet18_width` at width 16 (the published zoos' width variant, data/models/resnet.py) and
`torchvision:resnet18` with `small_input` (the CIFAR stem: the same keys and shapes as resnet18_width at
width 64, 11.2M parameters), both randomly initialised (seeds 0 and 1: a pair metric's two models). Data:
random tensors of CIFAR-10's shape ([N, 3, 32, 32] standard normal, labels uniform over 10 classes) — the
cost of a pass does not depend on the pixel values; the adaptive estimators' probe counts would (see below).

Each metric is run through the registry (`Metric.with_params`) at *bench parameters* — the defaults with
the probe sets, probe counts, path points and Bézier epochs cut down so one run takes seconds
(`BENCH_PARAMS`) — on 256 training and 256 test images; the measured time is the median of `--repeats` runs
(one run when it takes 5 s or more). Every registered default on all of CIFAR-10 would take hours to days
per model on this CPU, so the defaults are *projected* from unit costs measured on each model: an eval and
a train-mode forward pass per image, a gradient and a Hessian-vector product (HVP) on n images (a line
a + b·n through two sizes), a gradient and an HVP of each parameter group (hessian_layers' blocks), one
Bézier training step at batch 128; times each metric's pass counts (`passes`). The same counts at the
bench parameters predict the measured runs: the "pred/meas" column checks the unit model. Counts are
nominal where the kernels adapt: Lanczos at its `max_iter` cap (an upper bound: it stops when converged),
Hutch++ at its deflated minimum (2·sketch + 2·pilot + min_probes, `hutchpp_matvecs`); the real counts
depend on the trained weights, which random initialisation does not stand for.

The projected cost of measuring a published 192-model zoo (width 2..256 × batch 8..1024 × 3 seeds: 64
cells, 3 seed pairs each; science.md §3) at one epoch sums the projected defaults over its models and
pairs, a model of width w costing t16·(w/16)^p per metric with p fitted through the two measured widths and
clamped to [0, 2] (parameters and convolution FLOPs grow as width²; the width-16 cost below width 16,
widths 128 and 256 extrapolated); also with mc_bezier at PTMZ's 10 epochs (the registered default is 100).
On a GPU only when `--device cuda` ran, never from an assumed GPU speed.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from analysis.kernels.connectivity import BezierStep
from analysis.kernels.hessian import HessianOperator, parameter_groups
from analysis.metrics.catalog import get_metric
from analysis.metrics.registry import ModelInput
from data.models.archs import build_model, n_params
from data.tasks.builtin import TaskData
from data.tasks.objectives import CLASSIFICATION

SHAPE, CLASSES = (3, 32, 32), 10
CIFAR10 = {"n_train": 50_000, "n_test": 10_000}
MODEL_METRICS = ("performance", "weights", "hessian", "hessian_layers")
PAIR_METRICS = ("cka_logits_test", "mc_linear", "mc_bezier")
# (label, arch, arch params): index 0 the small width, index 1 the standard one
MODELS = (("resnet18_width w16", "resnet18_width", {"width": 16}),
          ("torchvision resnet18", "torchvision:resnet18", {"small_input": True}))
QUICK_MODELS = (("resnet18_width w2", "resnet18_width", {"width": 2}),
                ("resnet18_width w4", "resnet18_width", {"width": 4}))
DATA = {"n_train": 256, "n_test": 256}
QUICK_DATA = {"n_train": 32, "n_test": 32}
# the parameters each metric runs with here (the rest are the registered defaults)
BENCH_PARAMS = {
    # rtol 1e6: Hutch++ at its fewest probes (at random initialisation |Tr H| is small against its spread,
    # and the rtol rule would plan max_probes = 1000)
    "hessian": dict(splits=("train",), n_batches=1, batch_size=8, k=1, max_iter=5, hutchinson_probes=4,
                    slq_probes=1, slq_steps=4, sketch=2, rtol=1e6),
    "hessian_layers": dict(n_batches=1, batch_size=4, max_iter=3, sketch=2, rtol=1e6),
    "cka_logits_test": dict(n_batches=2, batch_size=125),
    "mc_linear": dict(points=3),
    "mc_bezier": dict(epochs=1),
}
QUICK_PARAMS = {**BENCH_PARAMS, "hessian": {**BENCH_PARAMS["hessian"], "batch_size": 4, "max_iter": 3},
                "hessian_layers": {**BENCH_PARAMS["hessian_layers"], "batch_size": 2, "max_iter": 2},
                "cka_logits_test": dict(n_batches=1, batch_size=16), "mc_bezier": dict(epochs=1, batch_size=16)}
PTMZ_BEZIER = "mc_bezier@10ep"  # a projection-only row: mc_bezier at PTMZ's 10 epochs
# Hutch++'s fixed counts (analysis.kernels.spectral.hutchpp defaults): pilot probes and the least fresh probes
HUTCHPP_PILOT, HUTCHPP_MIN = 10, 30
# The published zoos' grid (science.md §3): 8 widths × 8 batch sizes × 3 seeds = 192 models, 3 pairs a cell
ZOO_WIDTHS, ZOO_BATCHES, ZOO_SEEDS = (2, 4, 8, 16, 32, 64, 128, 256), 8, 3


@dataclass(frozen=True)
class Units:
    """Measured costs of one model's passes on one device and thread count (seconds)."""

    fwd: float  # eval forward, no graph, per image (batched)
    grad: tuple[float, float]  # a + b·n: a gradient with its graph kept (HessianOperator) on n images
    hvp: tuple[float, float]  # a + b·n: one Hessian-vector product on n images
    step: float  # one Bézier training step at batch 128 (per image × 128 below 128 images)
    fwd_train: float  # train-mode forward, no graph, per image (BatchNorm re-estimation on a path)
    layer_n: int = 0  # the images the per-layer costs below were measured on
    # per parameter group (hessian_layers' blocks): (parameters, gradient s, one HVP s) on layer_n images
    layers: tuple[tuple[int, float, float], ...] = ()

    def grad_s(self, n: int) -> float:
        return max(self.grad[0] + self.grad[1] * n, 0.0)

    def hvp_s(self, n: int) -> float:
        return max(self.hvp[0] + self.hvp[1] * n, 0.0)

    def layer_scale(self, n: int) -> tuple[float, float]:
        """(gradient, HVP) cost on n images over that on layer_n, taken from the whole model's lines."""
        return self.grad_s(n) / self.grad_s(self.layer_n), self.hvp_s(n) / self.hvp_s(self.layer_n)


@dataclass(frozen=True)
class Row:
    setting: str  # "cpu 1 thread", "cuda"
    model: str
    n_params: int
    metric: str
    measured: float | None  # median seconds at the bench parameters; None: not run
    predicted: float  # the unit model at the bench parameters and data
    projected: float  # the unit model at the registered defaults on CIFAR-10
    note: str = ""


@dataclass(frozen=True)
class Result:
    rows: tuple[Row, ...]
    units: dict = field(default_factory=dict)  # "setting | model" -> Units as a dict
    zoo: dict = field(default_factory=dict)  # setting -> {metric: seconds for the 192-model zoo}
    exponent: dict = field(default_factory=dict)  # setting -> p of t ∝ width^p (total per model)
    machine: str = ""


def random_task(n_train: int, n_test: int, device: torch.device, seed: int = 0) -> TaskData:
    """CIFAR-10-shaped random data: x ~ N(0, 1) [N, 3, 32, 32] float32, y uniform in 0..9."""
    g = torch.Generator().manual_seed(seed)
    x = lambda n: torch.randn(n, *SHAPE, generator=g)
    y = lambda n: torch.randint(0, CLASSES, (n,), generator=g)
    return TaskData(x(n_train), y(n_train), x(n_test), y(n_test), CLASSES).to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


REPEAT_BELOW = 5.0  # seconds: a run this short is repeated (noise), a longer one is timed once


def timed(fn, device: torch.device, repeats: int = 1) -> float:
    """Median wall seconds of up to `repeats` calls (the device synchronised before each clock read); after a
    first call of REPEAT_BELOW seconds or more, that one call (minutes of HVPs gain nothing from a median)."""
    times = []
    for _ in range(repeats):
        if times and times[0] >= REPEAT_BELOW:
            break
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def line(sizes: tuple[int, int], secs: tuple[float, float]) -> tuple[float, float]:
    """(a, b) of a + b·n through two measured sizes, a ≥ 0 and b ≥ 0 (timing noise on a shared machine can
    tilt a line through two points; a cost never falls with more images)."""
    b = max((secs[1] - secs[0]) / (sizes[1] - sizes[0]), 0.0)
    a = secs[1] - b * sizes[1]
    return (a, b) if a >= 0 else (0.0, secs[1] / sizes[1])  # else: proportional through the larger size


def measure_units(model: nn.Module, task: TaskData, device: torch.device, quick: bool) -> Units:
    """One model's pass costs; each measured once after a warm-up (the warm-up is the smaller size)."""
    model.eval()
    n_fwd = min(len(task.y_test), 32 if quick else 128)
    with torch.no_grad():
        model(task.x_test[:4])  # warm-up: first-call allocations
        fwd = timed(lambda: model(task.x_test[:n_fwd]), device, 3) / n_fwd
        saved = {k: v.clone() for k, v in model.named_buffers()}
        model.train()
        fwd_train = timed(lambda: model(task.x_test[:n_fwd]), device, 3) / n_fwd
        model.eval()
        for k, v in model.named_buffers():
            v.copy_(saved[k])
    sizes = (2, 8) if quick else (8, 32)
    grads, hvps = [], []
    for n in sizes:
        x, y = task.x_train[:n], task.y_train[:n]
        t0 = time.perf_counter()
        sync(device)
        with HessianOperator(model, x, y) as H:
            sync(device)
            grads.append(time.perf_counter() - t0)
            v = torch.randn(H.n, dtype=torch.float64, device=device)
            H.matvec(v)  # warm-up
            hvps.append(timed(lambda: H.matvec(v), device, 3))
    b = min(len(task.y_train), 128)
    step = bezier_step_seconds(model, task, b, device) * 128 / b
    n_l = sizes[0]
    x, y = task.x_train[:n_l], task.y_train[:n_l]
    layers = []
    for names in parameter_groups(model).values():  # as hessian_layers builds its operators
        t0 = time.perf_counter()
        sync(device)
        with HessianOperator(model, x, y, names=names) as H:
            sync(device)
            g = time.perf_counter() - t0
            v = torch.randn(H.n, dtype=torch.float64, device=device)
            layers.append((H.n, g, timed(lambda: H.matvec(v), device)))
    return Units(fwd, line(sizes, tuple(grads)), line(sizes, tuple(hvps)), step, fwd_train, n_l, tuple(layers))


def bezier_step_seconds(model: nn.Module, task: TaskData, b: int, device: torch.device) -> float:
    """One step as analysis.kernels.connectivity.bezier_curve takes it: the curve's point at a t written into
    a copy of the model, a training forward and backward there, the middle point's gradient with weight
    decay, an SGD step of the middle point."""
    a = {k: v.detach() for k, v in model.named_parameters()}
    phi = {k: v.clone().requires_grad_(True) for k, v in a.items()}
    opt = torch.optim.SGD(phi.values(), lr=1e-3, momentum=0.9, foreach=True)
    grad = BezierStep(model, a, phi, a, 5e-4, CLASSIFICATION)
    x, y = task.x_train[:b], task.y_train[:b]

    def step():
        grad(0.5, x, y)
        opt.step()
    step()  # warm-up
    return timed(step, device)


def hutchpp_matvecs(n: int, sketch: int, rtol: float) -> int:
    """Nominal HVPs of analysis.kernels.spectral.hutchpp on an n-parameter block: the exact trace (n) when
    pilot + min_probes ≥ n; with rtol ≥ 1 (the bench's setting) the plain pilot and the fewest fresh probes;
    otherwise the deflated minimum (pilot, sketch, deflated pilot, fewest fresh probes), or the pilot and the
    exact trace where that is cheaper. The real count adapts to the pilot's variance (up to max_probes)."""
    if HUTCHPP_PILOT + HUTCHPP_MIN >= n:
        return n
    if rtol >= 1:
        return HUTCHPP_PILOT + HUTCHPP_MIN
    return min(2 * sketch + 2 * HUTCHPP_PILOT + HUTCHPP_MIN, HUTCHPP_PILOT + n)


def passes(metric: str, params: dict, model: nn.Module, n_train: int, n_test: int, u: Units) -> float:
    """The unit model: seconds of `metric` with `params` on data of these sizes, from the pass costs."""
    p = {**get_metric(metric).params, **params}
    if metric == "performance":
        return (n_train + n_test) * u.fwd
    if metric == "weights":
        return 0.0  # data-free: not a pass count; measured at its defaults instead
    if metric == "hessian":
        n = min(p["n_batches"] * p["batch_size"], n_train)
        dim = sum(size for size, _, _ in u.layers)
        hvps = (min(p["max_iter"], dim) + hutchpp_matvecs(dim, p["sketch"], p["rtol"]) + p["hutchinson_probes"]
                + p["slq_probes"] * min(p["slq_steps"], dim))
        return len(p["splits"]) * (u.grad_s(n) + hvps * u.hvp_s(n))
    if metric == "hessian_layers":
        n = min(p["n_batches"] * p["batch_size"], n_train)
        sg, sh = u.layer_scale(n)
        per_split = sum(g * sg + (min(p["max_iter"], size) + hutchpp_matvecs(size, p["sketch"], p["rtol"])) * h * sh
                        for size, g, h in u.layers)
        return len(p["splits"]) * per_split
    if metric == "cka_logits_test":
        return 2 * min(p["n_batches"] * p["batch_size"], n_test) * u.fwd
    # the path metrics evaluate each point on the training split twice: BatchNorm re-estimation, then eval
    point = n_train * (u.fwd_train + u.fwd)
    if metric == "mc_linear":
        return p["points"] * point
    if metric == "mc_bezier":
        steps = p["epochs"] * math.ceil(n_train / p["batch_size"])
        return steps * u.step * min(p["batch_size"], n_train) / 128 + 5 * point
    raise ValueError(f"no pass count for metric {metric!r}")


def bench_setting(setting: str, device: torch.device, models, data: dict, params: dict, repeats: int,
                  quick: bool, log=print) -> tuple[list[Row], dict, dict]:
    """Rows of every metric on every model; the unit costs; projection-only costs {(model, name): s}."""
    task = random_task(data["n_train"], data["n_test"], device)
    rows, units, extra = [], {}, {}
    for label, arch, arch_params in models:
        a = build_model(arch, SHAPE, CLASSES, arch_params, seed=0).to(device).eval()
        b = build_model(arch, SHAPE, CLASSES, arch_params, seed=1).to(device).eval()
        u = measure_units(a, task, device, quick)
        units[f"{setting} | {label}"] = asdict(u)
        log(f"  {label}: {n_params(a):,} parameters; forward {u.fwd * 1e3:.2f} ms/image, HVP on 64 images "
            f"{u.hvp_s(64):.2f} s, Bézier step {u.step:.2f} s")
        ma, mb = (ModelInput(f"{label} s{s}", m, task, 1) for s, m in ((0, a), (1, b)))
        for name in MODEL_METRICS + PAIR_METRICS:
            metric = get_metric(name).with_params(**params.get(name, {}))
            inputs = (ma,) if name in MODEL_METRICS else (ma, mb)
            skip = (not quick and device.type == "cpu" and name == "hessian_layers"
                    and arch_params.get("width", 64) >= 64)
            measured = None if skip else timed(lambda: metric(*inputs), device, repeats)
            if name == "weights":
                pred = proj = measured if measured is not None else float("nan")
            else:
                pred = passes(name, params.get(name, {}), a, data["n_train"], data["n_test"], u)
                proj = passes(name, {}, a, **CIFAR10, u=u)
            note = (f"not run: {pred / 60:.0f} min by the unit model ({len(u.layers)} blocks, each its gradient and "
                    "the fewest Hutch++ probes); projected only") if skip else ""
            rows.append(Row(setting, label, n_params(a), name, measured, pred, proj, note))
            if name == "mc_bezier":  # PTMZ's own recipe: 10 epochs of CIFAR (the registered default is 100)
                extra[(label, PTMZ_BEZIER)] = passes(name, {"epochs": 10}, a, **CIFAR10, u=u)
            log(f"    {name:16s} " + (f"{measured:8.2f} s" if measured is not None else "      —  ")
                + f"  (unit model {pred:.2f} s; at the defaults on CIFAR-10 {proj:,.0f} s)")
    return rows, units, extra


def zoo_projection(rows: list[Row], extra: dict, setting: str, small_width: int, std_width: int
                   ) -> tuple[dict, float]:
    """Seconds to measure every metric of the 192-model zoo at one epoch on `setting`, per metric (and
    PTMZ_BEZIER from `extra`), from the projected defaults of the two measured widths (module docstring), and
    the exponent p of the per-model totals."""
    mine = [r for r in rows if r.setting == setting]
    by = {(r.model, r.metric): r.projected for r in mine}
    small, std = dict.fromkeys(r.model for r in mine)
    total = lambda m: sum(v for (mm, _), v in by.items() if mm == m)
    p_all = math.log(total(std) / total(small)) / math.log(std_width / small_width)
    by.update(extra)
    out = {}
    for metric in MODEL_METRICS + PAIR_METRICS + (PTMZ_BEZIER,):
        t_s, t_l = by[(small, metric)], by[(std, metric)]
        # clamped to [0, 2]: convolution FLOPs and parameters grow as width², and a cost never falls with width
        p = math.log(t_l / t_s) / math.log(std_width / small_width) if t_s > 0 and t_l > 0 else 0.0
        p = min(max(p, 0.0), 2.0)
        cost = lambda w: t_s * (max(w, small_width) / small_width) ** p
        units = ZOO_BATCHES * ZOO_SEEDS if metric in MODEL_METRICS else ZOO_BATCHES * math.comb(ZOO_SEEDS, 2)
        out[metric] = sum(units * cost(w) for w in ZOO_WIDTHS)
    return out, p_all


def report(res: Result, log=print) -> None:
    settings = list(dict.fromkeys(r.setting for r in res.rows))
    models = list(dict.fromkeys(r.model for r in res.rows))
    metrics = list(dict.fromkeys(r.metric for r in res.rows))
    get = {(r.setting, r.model, r.metric): r for r in res.rows}
    log("\nmeasured seconds per model at the bench parameters (pred/meas: the unit model's check), and the "
        "registered defaults on CIFAR-10 (50,000 train, 10,000 test) projected from unit costs")
    for s in settings:
        head = f"{'[' + s + ']':22s}" + "".join(f"{m:>30s}" for m in models) + f"{'std/small':>11s}"
        log(head)
        log(f"{'metric':22s}" + "".join(f"{'measured  pred/meas  default':>30s}" for _ in models)
            + f"{'meas  dflt':>11s}")
        for metric in metrics:
            cells, vals = [], []
            for m in models:
                r = get[(s, m, metric)]
                meas = f"{r.measured:8.2f} s" if r.measured is not None else f"{'—':>10s}"
                ratio = f"{r.predicted / r.measured:5.2f}" if r.measured and metric != "weights" else "    —"
                cells.append(f"{meas}  {ratio}  {_dur(r.projected):>9s}")
                vals.append(r)
            a, b = vals[0], vals[-1]
            rm = f"{b.measured / a.measured:5.1f}" if a.measured and b.measured else "    —"
            rp = f"{b.projected / a.projected:5.1f}" if a.projected > 0 else "    —"
            log(f"{metric:22s}" + "".join(f"{c:>30s}" for c in cells) + f"{rm:>6s}{rp:>6s}")
        for r in (get[(s, m, mt)] for m in models for mt in metrics):
            if r.note:
                log(f"  {r.model} {r.metric}: {r.note}")
    cpu = [s for s in settings if s.startswith("cpu")]
    gpu = [s for s in settings if s.startswith("cuda")]
    if cpu and gpu:
        log(f"\nGPU/CPU ({gpu[0]} over {cpu[0]}): time ratio per metric, measured / projected default")
        for m in models:
            parts = []
            for metric in metrics:
                c, g = get[(cpu[0], m, metric)], get[(gpu[0], m, metric)]
                meas = f"{g.measured / c.measured:.3f}" if c.measured and g.measured else "—"
                parts.append(f"{metric} {meas}/{g.projected / c.projected:.3f}" if c.projected > 0 else
                             f"{metric} {meas}")
            log(f"  {m}: " + ", ".join(parts))
    log(f"\nprojected: every metric of a published 192-model zoo ({len(ZOO_WIDTHS)} widths {ZOO_WIDTHS[0]}.."
        f"{ZOO_WIDTHS[-1]} × {ZOO_BATCHES} batch sizes × {ZOO_SEEDS} seeds; {len(ZOO_WIDTHS) * ZOO_BATCHES} cells, "
        f"{math.comb(ZOO_SEEDS, 2)} seed pairs each) at one epoch, registered defaults")
    for s in settings:
        z = dict(res.zoo[s])
        ptmz = z.pop(PTMZ_BEZIER)
        hours = sum(z.values()) / 3600
        log(f"  {s}: {hours:,.0f} hours in one process (cost ∝ width^{res.exponent[s]:.2f} between the measured "
            "widths) — " + ", ".join(f"{k} {v / 3600:,.1f} h" for k, v in z.items()))
        log(f"  {s}, mc_bezier at PTMZ's 10 epochs instead of the registered 100: "
            f"{hours - (z['mc_bezier'] - ptmz) / 3600:,.0f} hours (mc_bezier {ptmz / 3600:,.1f} h)")
    if not gpu:
        log("  GPU: no GPU here: not projected")


def _dur(s: float) -> str:
    if not math.isfinite(s):
        return "—"
    return f"{s:.2f} s" if s < 60 else f"{s / 60:.1f} min" if s < 3600 else f"{s / 3600:.1f} h"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                    help="cuda: the GPU, and the CPU at 1 thread beside it for the ratios")
    ap.add_argument("--threads", default="1", help="CPU thread counts, comma-separated; 'all' = every core")
    ap.add_argument("--repeats", type=int, default=3, help="median of this many runs per metric (default 3)")
    ap.add_argument("--quick", action="store_true", help="widths 2 and 4, tiny data and probe sets, 1 repetition")
    ap.add_argument("--out", type=Path, help="also write the results as JSON")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here: run without --device cuda")
        return 2
    models, data, params = (QUICK_MODELS, QUICK_DATA, QUICK_PARAMS) if args.quick else (MODELS, DATA, BENCH_PARAMS)
    repeats = 1 if args.quick else args.repeats
    threads = [(os.cpu_count() or 1) if t == "all" else int(t) for t in args.threads.split(",")]
    machine = (f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
               f"load average {os.getloadavg()[0]:.1f}")
    print(f"{machine}; data: random CIFAR-10-shaped tensors, {data['n_train']} train / {data['n_test']} test; "
          f"median of {repeats} run(s) (one if it takes >= {REPEAT_BELOW:.0f} s)")
    settings = [(f"cpu {t} thread{'s' if t > 1 else ''}", torch.device("cpu"), t) for t in dict.fromkeys(threads)]
    if args.device == "cuda":
        settings.append((f"cuda {torch.cuda.get_device_name(0)}", torch.device("cuda"), threads[0]))
    old = torch.get_num_threads()
    rows, units, extra = [], {}, {}
    try:
        for setting, device, t in settings:
            torch.set_num_threads(t)
            print(f"[{setting}]")
            r, u, e = bench_setting(setting, device, models, data, params, repeats, args.quick)
            rows += r
            units.update(u)
            extra[setting] = e
    finally:
        torch.set_num_threads(old)
    widths = [m[2].get("width", 64) for m in models]
    zoo, expo = {}, {}
    for setting, _, _ in settings:
        zoo[setting], expo[setting] = zoo_projection(rows, extra[setting], setting, widths[0], widths[-1])
    res = Result(tuple(rows), units, zoo, expo, machine)
    report(res)
    if args.out:
        from data.zoo.store import atomic_write
        atomic_write(args.out, lambda tmp: tmp.write_text(json.dumps(asdict(res), indent=1)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
