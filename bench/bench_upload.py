"""Upload to verdict: how long a checkpoint waits for its phase, and the data-free report of a large model.

    python bench/bench_upload.py [--quick]

1. Default-zoo checkpoints (widths 8, 64 and 256, the widest the slowest; 0.1 % weight noise so none is a
   zoo model's twin and every one is paired with all 3 seeds of its cell), timed from the file's bytes to
   the finished report with the caches off:
   - backend: what the dashboard does, with its warm 2-process worker pool and the zoo's tables already
     read by an earlier upload (median of 3);
   - in-process: the same analysis without workers (median of 3), side by side: the pool's speed-up;
   - cold CLI: `phasezoo verdict FILE --no-cache` in a fresh process (imports, zoo tables and
     worker start-up included; one run).
2. The data-free report of a 10.6M-parameter state dict (four 1582×1582 layers and a 256×256×3×3
   convolution; 42 MB of safetensors) through the same entry point: read, checks, recognition (no zoo
   matches), per-layer statistics, SVDs and power-law fits.
Targets: default-zoo checkpoint ≤ 5 s in the backend and ≤ 8 s from a cold CLI (issue 19); 10M-parameter data-free
report ≤ 20 s.
`--quick` (tests/test_benches.py): the width-8 checkpoint only, one run of each, and a 0.3M-parameter
data-free report; the same lines.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from analysis.upload.verdict import Report, analyse, process_pool  # noqa: E402
from data.zoo.store import Zoo  # noqa: E402

ZOO = ROOT / "data" / "zoos" / "mnist1d-mlp"
MODELS = ("width008-batch_size0256-s1", "width064-batch_size0032-s2", "width256-batch_size0064-s0")


def noisy_copy(model_id: str, out: Path) -> Path:
    g = torch.Generator().manual_seed(0)
    state = load_file(ZOO / "checkpoints" / model_id / "epoch_0300.safetensors")
    path = out / f"{model_id}-noisy.safetensors"
    save_file({k: v + 1e-3 * v.std() * torch.randn(v.shape, generator=g) for k, v in state.items()}, str(path))
    return path


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the width-8 checkpoint once, a 0.3M-parameter report")
    args = ap.parse_args()
    repeats, side = (1, 256) if args.quick else (3, 1582)  # side: of the data-free report's square layers
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp())
    zoos = [Zoo.open(ZOO)]
    files = {m: noisy_copy(m, tmp) for m in (MODELS[:1] if args.quick else MODELS)}
    pool = process_pool(2)
    analyse([files[MODELS[0]]], zoos, executor=pool, cache=False)  # as after the server's first upload
    print("default-zoo checkpoints, bytes to verdict (s)   backend (2 workers)  in-process  speed-up  cold CLI")
    for m, path in files.items():
        item = lambda: [(path.name, path.read_bytes())]  # noqa: E731  (what the uploader hands over)
        warm, (report,) = timed(lambda: analyse(item(), zoos, executor=pool, cache=False), repeats)
        single, _ = timed(lambda: analyse(item(), zoos, executor=None, cache=False), repeats)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "analysis.upload.verdict", str(path), "--zoo", str(ZOO), "--no-cache",
                        "--quiet"], cwd=ROOT, check=True, capture_output=True)
        cold = time.perf_counter() - t
        assert isinstance(report, Report) and report.rule.n_pairs == 3, report
        print(f"  {m:30s} {report.rule.phase:>5s}   {warm:18.2f}  {single:10.2f}  {single / warm:7.2f}×  "
              f"{cold:8.2f}")
    pool.shutdown()

    g = torch.Generator().manual_seed(0)
    big = {f"fc{i}.weight": 0.02 * torch.randn(side, side, generator=g) for i in range(4)}
    big["conv.weight"] = 0.02 * torch.randn(side // 6, side // 6, 3, 3, generator=g)
    path = tmp / "big.safetensors"
    save_file(big, str(path))
    n = sum(v.numel() for v in big.values())
    secs, (report,) = timed(lambda: analyse([path], zoos, cache=False), 1)
    assert isinstance(report, Report) and report.zoo is None and len(report.data_free) == 5
    print(f"data-free report, {n / 1e6:.1f}M parameters ({path.stat().st_size / 2**20:.0f} MB): {secs:.2f} s "
          f"(target 20 s: {20 / secs:.1f}× under)")


if __name__ == "__main__":
    main()
