"""Every bench under bench/ has a quick mode that runs and prints its result lines — so no bench can break
silently (issue 19). Parametrised over the files found there: a new bench without an entry in QUICK, or
without a `--quick` flag, fails. Each quick mode runs as a subprocess (its command line, as `make bench`
runs the full one) and its output must hold each result line with well-formed numbers (finite, ≥ 0); no
timing value is asserted (the machine is shared).

Benches whose quick mode another test already runs are entered with `covered_by`: that test must exist and
run the bench's quick mode (checked here), so the suite does not pay for it twice.
"""
from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
NUM = r"([0-9][0-9,]*(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?)"  # a printed number, thousands separators allowed


@dataclass(frozen=True)
class Quick:
    lines: tuple[tuple[str, int], ...]  # (regex with a group per number, how many lines at least must match it)
    args: tuple[str, ...] = ("--quick",)
    rc: int = 0
    covered_by: str | None = None  # a test file that runs this quick mode already
    marks: tuple = field(default=(pytest.mark.slow,))


GPU = torch.cuda.is_available()
QUICK = {
    "bench_generate": Quick((
        (rf"single-thread matmul peak {NUM} GFLOP/s", 1),
        (rf"^\s+sequential: +{NUM} models in +{NUM} tasks, +{NUM} s, +{NUM} models/min, +{NUM} GFLOP/s \(\s*{NUM}%",
         2),
        (rf"^\s+batched: +{NUM} models in +{NUM} tasks, +{NUM} s, +{NUM} models/min, +{NUM} GFLOP/s \(\s*{NUM}%", 2),
        (rf"^\s+ratio: {NUM}x batched over sequential \({NUM} GFLOP useful\)", 2),
        (rf"^twins \(float32\): max \|dweight\| at init {NUM}; after {NUM} epochs median {NUM}, max {NUM}", 1),
    )),
    "bench_hessian": Quick((  # one ratio line per zoo, then the smallest
        (rf"ratio \(PyHessian / ours\): eigenvalue {NUM}x, trace {NUM}x, both {NUM}x", 1),
        (rf"smallest combined ratio over the zoos: {NUM}x", 1),
    )),
    "bench_dashboard": Quick((
        (rf"synthetic zoo: {NUM} catalog rows, {NUM} metric rows", 1),
        (rf"zoo: first phase map in the browser {NUM} s .*metric {NUM} s, epoch {NUM} s, threshold {NUM} s", 2),
        (rf"zoo: first heatmap of the Phase diagram {NUM} s, of a one-heatmap Streamlit page {NUM} s: "
         rf"{NUM}x the floor", 2),
    ), marks=(pytest.mark.slow, pytest.mark.browser,
              pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs Chromium (make chromium)"))),
    "bench_upload": Quick((
        (rf"^\s+width008-batch_size0256-s1\s+\S+\s+{NUM}\s+{NUM}\s+{NUM}×\s+{NUM}$", 1),
        (rf"^data-free report, {NUM}M parameters \({NUM} MB\): {NUM} s", 1),
    )),
    "bench_ray": Quick((
        (rf"^(?:local|ray)\s+[12]\s+{NUM}s\s+{NUM}\s+{NUM}\s+{NUM}s\s+{NUM}\s+{NUM}", 4),
        (rf"one SGD step on this CPU \(2 threads\): {NUM} s", 1),
    )),
    "check_cuda": Quick(
        ((r"CUDA agrees with the CPU", 1),) if GPU else ((r"^no CUDA device here: nothing to check$", 1),),
        rc=0 if GPU else 2, marks=(pytest.mark.slow,) if GPU else ()),
    "bench_load": Quick((), covered_by="tests/test_load.py", marks=()),  # test_server_under_load: the quick size
    "trace_coverage": Quick((), covered_by="tests/test_trace_coverage.py", marks=()),
    "bench_archs": Quick((), covered_by="tests/test_bench_archs.py", marks=()),
}
BENCHES = sorted(p.stem for p in (ROOT / "bench").glob("*.py") if not p.name.startswith("_"))


def numbers(match: re.Match) -> list[float]:
    return [float(g.replace(",", "")) for g in match.groups() if g is not None]


def check_output(out: str, q: Quick) -> None:
    for pattern, count in q.lines:
        found = [m for m in (re.search(pattern, line) for line in out.splitlines()) if m]
        assert len(found) >= count, f"{count} line(s) matching {pattern!r} expected, found {len(found)}:\n{out}"
        for m in found:
            assert all(math.isfinite(v) and v >= 0 for v in numbers(m)), m.group(0)


@pytest.mark.parametrize("name", [pytest.param(b, marks=QUICK[b].marks if b in QUICK else ()) for b in BENCHES])
def test_quick_mode_prints_its_result_lines(name):
    assert name in QUICK, f"bench/{name}.py has no entry in tests/test_benches.py::QUICK: give it a --quick mode"
    q = QUICK[name]
    if q.covered_by:
        text = (ROOT / q.covered_by).read_text()
        assert f"bench/{name}.py" in text or f"bench.{name}" in text, f"{q.covered_by} does not run bench/{name}.py"
        return
    proc = subprocess.run([sys.executable, f"bench/{name}.py", *q.args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=900)
    assert "unrecognized arguments: --quick" not in proc.stderr, f"bench/{name}.py has no --quick mode"
    assert proc.returncode == q.rc, f"exit {proc.returncode}:\n{proc.stdout}\n{proc.stderr[-3000:]}"
    check_output(proc.stdout, q)


def test_the_checker_rejects_missing_lines_and_malformed_numbers():
    q = Quick(((rf"ratio: {NUM}x", 1),))
    check_output("  ratio: 4.12x batched\n", q)
    check_output("ratio: 4.1x\nratio: 3.0x\n", q)  # at least once
    for bad in ("", "ratio: nanx\n", "ratio: -1.0x\n", "ratio: x\n"):
        with pytest.raises(AssertionError):
            check_output(bad, q)


def test_every_bench_is_in_make_bench():
    make = (ROOT / "Makefile").read_text()
    target = make[make.index("\nbench:"):].split("\n\n")[0]
    missing = [b for b in BENCHES if f"bench/{b}.py" not in target and b != "check_cuda"]  # check_cuda: by hand
    assert not missing, f"not in the Makefile's bench target: {missing}"
