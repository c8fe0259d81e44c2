"""Interrupted + resumed = uninterrupted, byte for byte: real kills of the generator CLI at several points.

A batched model's numbers depend on its training group, so a resume must train exactly the groups of an
uninterrupted run and a group must reach the catalog whole (docs/long-jobs.md). Each case kills
`python -m data.training.generate` (SIGKILL or SIGINT to its process group, as a kill of the job or a terminal's
Ctrl-C does) when the files on disk show it has reached a given point, resumes it, and compares every file
(catalog, checkpoints, spec) with an uninterrupted run.
"""
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from data.training.generate import generate, plan_groups
from data.zoo.spec import parse_spec
from data.zoo.spec_builder import tiny_mlp_spec
from data.zoo.store import CATALOG_FILE
from tests.conftest import ROOT

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
# 4 groups of 2 widths (one per batch size), from ~3 s down to ~0.3 s on one thread: a kill that waits for
# k flushed groups lands before the last one. Seed 0 only: the seeds would only make groups bigger.
KILL_SPEC = tiny_mlp_spec(n_train=2000, batch_sizes=(4, 8, 16, 32), seeds=(0,), widths=(4, 16)).toml()
N_MODELS = 8


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under root but the (empty) lock file."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".lock"}


def group_pids(pgid: int) -> list[int]:
    """Live processes of a process group, from /proc (field 5 of /proc/PID/stat; zombies excluded)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                pids.append(int(d.name))
    return pids


def wait_until(cond, proc: subprocess.Popen, what: str, timeout: float = 240) -> None:
    """Poll the files on disk until `cond()`; the run must still be going (else the kill point is missed)."""
    deadline = time.time() + timeout
    while not cond():
        assert proc.poll() is None, f"the run ended (status {proc.returncode}) before {what}"
        assert time.time() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.01)


def wait_gone(pgid: int, timeout: float = 60) -> list[int]:
    """The group's processes still alive after waiting up to `timeout` s for them to exit (a limit, not a
    timing assertion: a correct run leaves none however long it took)."""
    deadline = time.time() + timeout
    while (left := group_pids(pgid)) and time.time() < deadline:
        time.sleep(0.05)
    return left


def start(spec: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "data.training.generate", str(spec), "--out", str(out), "--quiet",
                             *extra], env=ENV, cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def catalog_models(out: Path) -> int:
    try:
        return pl.read_parquet(out / CATALOG_FILE)["model_id"].n_unique()
    except Exception:  # not there yet
        return 0


def flushed_groups(out: Path, spec: str) -> int:
    """How many of the spec's groups the catalog names (whole or in part)."""
    try:
        ids = set(pl.read_parquet(out / CATALOG_FILE)["model_id"])
    except Exception:
        return 0
    s = parse_spec(spec)
    return sum(any(c.model_id in ids for c in g.configs) for g in plan_groups(s, s.models()))


def checkpointed_groups(out: Path, spec: str) -> int:
    """How many groups have checkpoints on disk (flushed to the catalog or not)."""
    folder = out / "checkpoints"
    ids = {p.parent.name for p in folder.rglob("*.safetensors")} if folder.is_dir() else set()
    s = parse_spec(spec)
    return sum(any(c.model_id in ids for c in g.configs) for g in plan_groups(s, s.models()))


@pytest.fixture(scope="module")
def kill_spec(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "kill.toml"
    path.write_text(KILL_SPEC)
    return path


@pytest.fixture(scope="module")
def reference_zoo(kill_spec, tmp_path_factory) -> Path:
    """The uninterrupted zoo (one worker, as the killed runs); read it, never write it."""
    out = tmp_path_factory.mktemp("ref") / "zoo"
    generate(kill_spec, out, workers=1, progress=False)
    return out


@pytest.fixture(scope="module")
def reference(reference_zoo) -> dict[str, str]:
    return tree_digest(reference_zoo)


def test_the_spec_has_groups_of_several_models(kill_spec):
    """The premise of the cases below: a kill can land between the models of one group."""
    s = parse_spec(KILL_SPEC)
    groups = plan_groups(s, s.models())
    assert len(groups) == 4 and all(len(g.configs) == 2 for g in groups) and s.n_models == N_MODELS


# (signal, how it is sent, --flush-every, the point on disk at which it is sent); SIGTERM to the main
# process, with the checks on its children and its message: tests/test_signals.py
CASES = {
    # with the catalog rewritten after every group: between the models of a group if those were flushed apart
    "sigkill-after-2-flushed-groups": (signal.SIGKILL, "0", lambda out: flushed_groups(out, KILL_SPEC) >= 2),
    # checkpoints of a finished group on disk, its catalog rows not yet flushed: orphans for the resume
    "sigkill-mid-group-write": (signal.SIGKILL, "1000", lambda out: checkpointed_groups(out, KILL_SPEC) >= 1),
    "sigint-after-1-flushed-group": (signal.SIGINT, "0", lambda out: flushed_groups(out, KILL_SPEC) >= 1),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_killed_and_resumed_equals_uninterrupted(case, kill_spec, reference, tmp_path):
    sig, flush, point = CASES[case]
    out = tmp_path / "zoo"
    proc = start(kill_spec, out, "--workers", "1", "--flush-every", flush)
    wait_until(lambda: point(out), proc, f"the kill point of {case}")
    os.killpg(proc.pid, sig)  # the whole process group, as a terminal's Ctrl-C or a kill of the job
    _, err = proc.communicate(timeout=120)
    assert not wait_gone(proc.pid), "processes of the killed run are still alive"
    partial = catalog_models(out)
    assert partial < N_MODELS, "the kill landed after the run had finished: no resume tested"
    if sig == signal.SIGINT:  # a graceful stop: status 130, one line, the finished group flushed
        assert proc.returncode == 130 and partial >= 2 and len(err.strip().splitlines()) == 1, err

    report = generate(kill_spec, out, workers=1, progress=False)  # the resume (in-process: no second start-up)
    assert report.skipped == partial and report.trained == N_MODELS - partial
    assert tree_digest(out) == reference  # byte for byte: catalog, every checkpoint, no orphan, no temporary


@pytest.mark.slow
def test_sequential_is_reproducible_with_itself(kill_spec, tmp_path):
    """--sequential (one model per group, `train_one`) has its own float rounding, fixed by the seed."""
    a, b = tmp_path / "a", tmp_path / "b"
    generate(kill_spec, a, workers=1, progress=False, batched=False)
    generate(kill_spec, b, workers=2, progress=False, batched=False)
    assert tree_digest(a) == tree_digest(b)
