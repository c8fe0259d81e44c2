"""bench/bench_archs.py: the quick mode's table has a row per metric and model with finite times, its nominal
pass counts match the kernels they count, and both CUDA entry points refuse cleanly where there is no GPU.
No timing value is asserted: the machine is shared."""
from __future__ import annotations

import json
import math

import pytest
import torch

from analysis.kernels.spectral import hutchpp
from bench.bench_archs import (
    CIFAR10,
    MODEL_METRICS,
    PAIR_METRICS,
    PTMZ_BEZIER,
    QUICK_MODELS,
    Units,
    hutchpp_matvecs,
    line,
    main,
    passes,
)

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message where there is no GPU")


@pytest.mark.slow
def test_quick_mode_has_a_row_per_metric_and_model(tmp_path, capsys):
    out_file = tmp_path / "archs.json"
    assert main(["--quick", "--out", str(out_file)]) == 0
    out = capsys.readouterr().out
    res = json.loads(out_file.read_text())
    metrics = MODEL_METRICS + PAIR_METRICS
    want = {(label, m) for label, _, _ in QUICK_MODELS for m in metrics}
    got = [(r["model"], r["metric"]) for r in res["rows"]]
    assert sorted(got) == sorted(want)  # each exactly once
    for r in res["rows"]:
        for key in ("measured", "predicted", "projected"):
            assert r[key] is not None and math.isfinite(r[key]) and r[key] >= 0, (r["model"], r["metric"], key)
    # the printed table: one line per metric with a column per model, then the zoo projection
    table = out[out.index("measured seconds per model"):]
    for m in metrics:
        assert sum(line.split()[0] == m for line in table.splitlines() if line.strip()) == 1, m
    header = next(line for line in table.splitlines() if line.startswith("[cpu 1 thread]"))
    assert all(label in header for label, _, _ in QUICK_MODELS)
    zoo = res["zoo"]["cpu 1 thread"]
    assert set(zoo) == {*metrics, PTMZ_BEZIER} and all(math.isfinite(v) and v > 0 for v in zoo.values())
    if not torch.cuda.is_available():
        assert "no GPU here: not projected" in out


def test_hutchpp_counts_match_the_kernel():
    """The nominal Hutch++ counts: exact (n) for a small block, pilot + fewest probes at the bench's rtol, and
    the deflated minimum a lower bound where deflation runs (three outliers over a small bulk)."""
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(200, 200, generator=g, dtype=torch.float64))
    eig = torch.cat([torch.tensor([50.0, 20.0, 8.0], dtype=torch.float64),
                     0.3 * torch.randn(197, generator=g, dtype=torch.float64)])
    A = q @ torch.diag(eig) @ q.T
    for n in (12, 40):
        assert hutchpp(lambda v: A[:n, :n] @ v, n, sketch=2).matvecs == hutchpp_matvecs(n, 2, 0.02) == n
    assert hutchpp(lambda v: A @ v, 200, sketch=2, rtol=1e6).matvecs == hutchpp_matvecs(200, 2, 1e6) == 40
    deflated = hutchpp(lambda v: A @ v, 200, sketch=20, rtol=0.02)
    assert deflated.matvecs >= hutchpp_matvecs(200, 20, 0.02) == 90


def test_unit_model():
    """a + b·n lines never fall below zero, and the pass counts of the data-only metrics are exact sums."""
    assert line((8, 32), (1.0, 4.0)) == (0.0, 0.125)  # through the origin: proportional
    assert line((8, 32), (2.0, 1.0)) == (1.0, 0.0)  # a falling line (timing noise): flat
    assert line((8, 32), (1.0, 2.0)) == pytest.approx((2 / 3, 1 / 24))
    u = Units(fwd=1e-3, grad=(0.0, 1e-2), hvp=(0.0, 2e-2), step=0.5, fwd_train=1e-3)
    model = torch.nn.Linear(2, 2)
    assert passes("performance", {}, model, **CIFAR10, u=u) == pytest.approx(60.0)
    assert passes("mc_linear", {}, model, **CIFAR10, u=u) == pytest.approx(11 * 2 * 50_000e-3)
    assert passes("cka_logits_test", {}, model, **CIFAR10, u=u) == pytest.approx(2.0)  # 8 batches × 125
    # 100 epochs × 391 steps of batch 128, then 5 points × (BatchNorm pass + evaluation) of the training split
    assert passes("mc_bezier", {}, model, **CIFAR10, u=u) == pytest.approx(100 * 391 * 0.5 + 5 * 2 * 50.0)
    with pytest.raises(ValueError, match="no pass count for metric 'grokking'"):
        passes("grokking", {}, model, **CIFAR10, u=u)


@no_cuda
def test_cuda_refused_without_a_gpu(capsys):
    from bench.check_cuda import main as check_cuda
    assert main(["--device", "cuda"]) == 2
    assert capsys.readouterr().out.strip() == "no CUDA device here: run without --device cuda"
    assert check_cuda([]) == 2
    assert capsys.readouterr().out.strip() == "no CUDA device here: nothing to check"
