"""bench/bench_hessian.py --quick: it runs, and prints every zoo's lines with the accuracies it claims — the
top eigenvalue of both codes within 1e-4 of the dense reference, our trace within its stderr. No timing value
is asserted (the machine is shared)."""
from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from data.zoo.store import builtin_zoos

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # a subprocess of ~30 s
NUM = r"([-+0-9.e]+)"


@pytest.fixture(scope="module")
def quick() -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "bench/bench_hessian.py", "--quick"], cwd=ROOT, capture_output=True,
                         text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


def blocks(out: str) -> dict[str, str]:
    parts = re.split(r"^\[([\w-]+)\] ", out, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def test_every_builtin_zoo_has_its_lines(quick):
    got = blocks(quick)
    assert sorted(got) == sorted(p.name for p in builtin_zoos())
    for zoo, text in got.items():
        assert "(reference: dense Hessian)" in text, zoo
        for line in ("eigenvalue ours", "eigenvalue PyHessian", "trace      ours", "trace      PyHessian",
                     "ratio (PyHessian / ours)"):
            assert line in text, (zoo, line)
        ratios = re.search(rf"eigenvalue {NUM}x, trace {NUM}x, both {NUM}x", text)
        assert ratios and all(math.isfinite(float(r)) and float(r) >= 0 for r in ratios.groups())
    assert re.search(r"smallest combined ratio over the zoos: [0-9.]+x", quick)


def test_accuracy_is_what_the_targets_say(quick):
    for zoo, text in blocks(quick).items():
        for who in ("ours     ", "PyHessian"):
            err = re.search(rf"eigenvalue {who} .*true rel\. error {NUM}", text)
            assert err and float(err.group(1)) <= 1e-4, (zoo, who)
        ours = re.search(rf"trace      ours .*± {NUM}% stderr, true rel\. error {NUM}", text)
        stderr, err = float(ours.group(1)) / 100, float(ours.group(2))
        assert err <= max(4 * stderr, 1e-6), zoo  # exact methods: stderr 0, error at rounding level
    methods = dict(re.findall(r"^\[([\w-]+)\].*\n.*\n.*\n.*\n  trace      ours      (\w+)", quick, flags=re.M))
    assert methods["mnist1d-mlp"] == methods["mnist1d-cnn"] == "exact"  # piecewise linear: Tr H = Tr GGN
    assert methods["convection-pinn"] == "Hutch"  # no Gauss–Newton split for the PINN's loss here
