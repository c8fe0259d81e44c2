"""Stopping long jobs: SIGTERM, a dead worker, a full disk and a killed runner's temporaries.

Each ends with the workers gone, the finished work on disk, one line on stderr naming what happened and
what to do (no traceback), and a rerun that completes to the uninterrupted result (docs/long-jobs.md).
Processes are found through /proc (psutil is not a requirement); the disk is never really filled: the
writer is made to raise what a full disk raises.
"""
import errno
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import polars as pl
import pytest
from safetensors import SafetensorError

from analysis.runner.run import main as run_main
from analysis.runner.run import resolve_metrics, run
from data.training.generate import generate
from data.training.generate import main as generate_main
from data.training.workers import ExecutorError, run_unordered
from data.zoo.store import METRICS_FILE, read_metrics
from tests.conftest import ROOT
from tests.test_resume_kill import (
    ENV,
    KILL_SPEC,
    N_MODELS,
    catalog_models,
    checkpointed_groups,
    flushed_groups,
    group_pids,
    kill_spec,
    reference,
    reference_zoo,
    start,
    tree_digest,
    wait_gone,
    wait_until,
)

pytestmark = pytest.mark.slow  # every test trains a zoo or runs metrics and stops them part-way (3 s or more)

__all__ = ["kill_spec", "reference", "reference_zoo"]  # fixtures shared with test_resume_kill
METRICS = "performance,weights,hessian_trace_exact"


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def workers_of(pgid: int) -> list[int]:
    """The pool's worker processes in a process group (spawned: `... spawn_main ...`; not the tracker)."""
    out = []
    for pid in group_pids(pgid):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmd and b"resource_tracker" not in cmd:
            out.append(pid)
    return out


def test_sigterm_stops_the_generator_and_keeps_finished_groups(kill_spec, reference, tmp_path):
    out = tmp_path / "zoo"
    # --flush-every 1000: the finished groups are on disk only as checkpoints until the flush on SIGTERM
    proc = start(kill_spec, out, "--workers", "2", "--flush-every", "1000")
    wait_until(lambda: checkpointed_groups(out, KILL_SPEC) >= 1 and len(workers_of(proc.pid)) == 2, proc,
               "a finished group")
    os.kill(proc.pid, signal.SIGTERM)  # the main process only, as a scheduler or `kill PID` does
    _, err = proc.communicate(timeout=120)
    assert not wait_gone(proc.pid), "workers or the resource tracker outlived the generator"
    assert proc.returncode == 143
    assert one_line(err).startswith("interrupted by SIGTERM: finished groups are kept in")
    assert 2 <= catalog_models(out) < N_MODELS  # the finished, unflushed group was flushed
    assert not list(out.rglob("*.tmp"))
    generate(kill_spec, out, workers=2, progress=False)
    assert tree_digest(out) == reference


def test_sigterm_stops_the_metric_runner_and_keeps_finished_rows(reference_zoo, tmp_path):
    zoo, clean = tmp_path / "zoo", tmp_path / "clean"
    shutil.copytree(reference_zoo, zoo)
    shutil.copytree(reference_zoo, clean)
    proc = subprocess.Popen([sys.executable, "-m", "analysis.runner.run", str(zoo), "--metrics", METRICS, "--workers", "2",
                             "--flush-every", "0", "--quiet"], env=ENV, cwd=ROOT, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # the rows measured for the estimate are flushed before the workers start
    wait_until(lambda: (zoo / METRICS_FILE).exists() and len(workers_of(proc.pid)) == 2, proc, "running workers")
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert not wait_gone(proc.pid), "workers or the resource tracker outlived the metric runner"
    assert proc.returncode == 143
    assert one_line(err).startswith("interrupted by SIGTERM: finished metric rows are kept in")
    kept = read_metrics(zoo)
    assert kept.height > 0 and not list(zoo.rglob("*.tmp"))
    metrics = resolve_metrics(METRICS.split(","))
    rep = run(zoo, metrics, workers=2, progress=False)
    assert 0 < rep.tasks  # the rest, not everything again
    run(clean, metrics, workers=2, progress=False)
    key = ["model_id", "other_id", "epoch", "metric", "split", "layer", "coord"]
    a, b = (read_metrics(z).sort(key, nulls_last=True) for z in (zoo, clean))
    assert a.equals(b) and a["error"].is_null().all()


def _square_or_die(x: int) -> int:
    if x == 1:
        os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer would
    return x * x


def test_a_dead_worker_is_one_clear_error_and_stops_the_pool():
    got = []
    with pytest.raises(ExecutorError, match=r"^a worker process died \(killed, or out of memory\); 2 job\(s\) "
                                            r"unfinished, first job 1; finished work is kept — rerun to resume$"):
        for i, r in run_unordered(_square_or_die, [(0,), (1,), (2,)], workers=1):
            got.append((i, r))
    assert got == [(0, 0)]  # what finished first came back
    assert not mp.active_children()


def _slow_square(x: int) -> int:
    time.sleep(0.3 * x)
    return x * x


def test_a_stopped_run_leaves_no_pool_thread_for_the_exit_to_race():
    """The pool's manager thread is joined when a run stops early. Left running, it closes its wake-up pipe
    while the interpreter's exit hook writes to it: "Exception ignored ... Bad file descriptor" after the
    one-line message of a Ctrl-C (a CI failure of tests/test_resume_kill.py's SIGINT case)."""
    with closing(run_unordered(_slow_square, [(0,), (5,), (5,)], workers=1)) as results:
        assert next(results) == (0, 0)
    managers = [t for t in threading.enumerate() if type(t).__name__ == "_ExecutorManagerThread"]
    assert not managers and not mp.active_children()


def test_a_worker_killed_under_the_generator_ends_in_one_line(kill_spec, reference, tmp_path):
    out = tmp_path / "zoo"
    proc = start(kill_spec, out, "--workers", "1", "--flush-every", "0")
    wait_until(lambda: flushed_groups(out, KILL_SPEC) >= 1 and workers_of(proc.pid), proc, "a flushed group")
    os.kill(workers_of(proc.pid)[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert not wait_gone(proc.pid)
    assert proc.returncode == 2
    line = one_line(err)
    assert line.startswith("error: a worker process died") and "first training group 2/4" in line and "rerun" in line
    assert 2 <= catalog_models(out) < N_MODELS
    generate(kill_spec, out, workers=1, progress=False)
    assert tree_digest(out) == reference


DISK_FULL = [OSError(errno.ENOSPC, "No space left on device"),
             SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: '
                             '"No space left on device" })')]


@pytest.mark.parametrize("exc", DISK_FULL, ids=["OSError", "SafetensorError"])
def test_disk_full_while_writing_checkpoints(exc, kill_spec, reference, tmp_path, monkeypatch, capsys):
    import data.zoo.store

    real = data.zoo.store.save_file

    def save_file(state, path):  # the disk fills up while the second group (batch size 8) is written
        if "batch_size08" in path:
            raise exc
        return real(state, path)

    monkeypatch.setattr(data.zoo.store, "save_file", save_file)
    out = tmp_path / "zoo"
    code = generate_main([str(kill_spec), "--out", str(out), "--workers", "1", "--quiet"])
    line = one_line(capsys.readouterr().err)
    assert code == 2 and line.startswith(f"error: cannot write {out}/checkpoints/width04-batch_size08-s0/")
    assert "No space left on device" in line and line.endswith("finished work is kept — rerun to resume")
    assert catalog_models(out) == 2  # the group written before (batch size 4, the longest, first)
    assert not list(out.rglob("*.tmp"))
    monkeypatch.setattr(data.zoo.store, "save_file", real)  # space freed
    generate(kill_spec, out, workers=1, progress=False)
    assert tree_digest(out) == reference


def test_disk_full_while_writing_metrics(reference_zoo, tmp_path, monkeypatch, capsys):
    zoo = tmp_path / "zoo"
    shutil.copytree(reference_zoo, zoo)
    run(zoo, resolve_metrics(["weights"]), workers=1, progress=False)
    before = (zoo / METRICS_FILE).read_bytes()
    real = pl.DataFrame.write_parquet

    def write_parquet(self, file, *a, **k):
        if METRICS_FILE in str(file):
            raise pl.exceptions.ComputeError("failed to write: No space left on device (os error 28)")
        return real(self, file, *a, **k)

    monkeypatch.setattr(pl.DataFrame, "write_parquet", write_parquet)
    code = run_main([str(zoo), "--metrics", "performance", "--workers", "1", "--quiet"])
    line = one_line(capsys.readouterr().err)
    assert code == 2 and line.startswith(f"error: cannot write {zoo}/{METRICS_FILE}: failed to write: No space")
    assert line.endswith("rerun to resume")
    assert (zoo / METRICS_FILE).read_bytes() == before and not list(zoo.rglob("*.tmp"))


def test_the_metric_runner_removes_its_stale_temporaries(reference_zoo, tmp_path):
    zoo = tmp_path / "zoo"
    shutil.copytree(reference_zoo, zoo)
    (zoo / f".{METRICS_FILE}.x1y2.tmp").write_bytes(b"half a table")  # a runner killed mid-flush
    (zoo / ".embeddings.parquet.abcd.tmp").write_bytes(b"not ours")  # another tool's, maybe still writing
    run(zoo, resolve_metrics(["weights"]), models="width04*", workers=1, progress=False)
    assert sorted(p.name for p in zoo.glob(".*.tmp")) == [".embeddings.parquet.abcd.tmp"]
    assert read_metrics(zoo).height > 0
