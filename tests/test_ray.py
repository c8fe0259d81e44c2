"""Ray behind the generator and the metric runner: the same zoo byte for byte, the same metric rows, a
worker killed mid-task retried with nothing lost or duplicated, and bad input named before any work.

A local Ray with 2 CPUs (token auth disabled, its session files under the project's .ray/) is started
once for this module and shut down after it.
"""
import hashlib
import os
import signal
import threading
import time
from pathlib import Path

import polars as pl
import pytest
import ray  # a requirement (requirements.txt): these tests run in CI, never skip

from analysis.runner.run import resolve_metrics, run
from data.training.generate import generate
from data.training.generate import main as generate_main
from data.training.workers import Executor, ExecutorError, ray_connect, run_unordered
from data.zoo.spec import load_spec
from data.zoo.spec_builder import tiny_mlp_spec
from data.zoo.store import read_catalog, read_metrics

pytestmark = pytest.mark.slow  # a local Ray cluster for the module (autouse)

RAY = Executor("ray")
METRICS = ["performance", "weights", "hessian_trace_exact", "cka_logits_test", "mc_linear"]


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray_connect(RAY, workers=2)
    yield
    ray.shutdown()


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".lock"}


def sorted_metrics(root: Path) -> pl.DataFrame:
    return read_metrics(root).sort("model_id", "other_id", "epoch", "metric", "split", "layer", "coord",
                                   nulls_last=True)


@pytest.fixture(scope="module")
def local_zoo(tmp_path_factory, tiny_spec) -> Path:
    """The tiny zoo and its metrics with the local process pool: the reference."""
    out = tmp_path_factory.mktemp("local") / "zoo"
    generate(tiny_spec, out, workers=2, progress=False)
    run(out, resolve_metrics(METRICS), workers=2, progress=False)
    return out


def test_ray_gives_the_same_zoo_and_metrics(local_zoo, tiny_spec, tmp_path):
    out = tmp_path / "zoo"
    rep = generate(tiny_spec, out, workers=2, progress=False, executor=RAY)
    assert rep.trained == load_spec(tiny_spec).n_models
    files = digest(out)
    # metrics come next; costs.json holds timings, which differ from run to run
    reference = {k: v for k, v in digest(local_zoo).items() if k not in ("metrics.parquet", "costs.json")}
    assert files == reference  # checkpoints and catalog, byte for byte
    run(out, resolve_metrics(METRICS), workers=2, progress=False, executor=RAY)
    assert (out / "costs.json").exists()
    ours, theirs = sorted_metrics(out), sorted_metrics(local_zoo)
    assert ours.height == theirs.height and ours["error"].is_null().all()
    assert ours.equals(theirs)
    # a rerun on Ray skips everything already there (the same resume semantics)
    assert generate(tiny_spec, out, workers=2, progress=False, executor=RAY).trained == 0
    assert run(out, resolve_metrics(METRICS), workers=2, progress=False, executor=RAY).tasks == 0


def _ray_task_pids() -> list[int]:
    """Ray worker processes executing a task right now (Ray titles them `ray::<function>` while busy)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if cmd.startswith(b"ray::_call"):
                pids.append(int(proc.name))
    return pids


def test_a_worker_killed_mid_task_is_retried(tmp_path):
    """SIGKILL one Ray worker while it trains a group: Ray re-runs that task, and the zoo equals the local one
    with every model once."""
    spec = tmp_path / "slow.toml"
    tiny_mlp_spec(epochs=40, checkpoint_epochs=(20,), analysis_epochs=(40,)).write(spec)
    killed: list[int] = []

    def killer():
        deadline = time.time() + 120
        while not killed and time.time() < deadline:
            for pid in _ray_task_pids():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                break
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    generate(spec, tmp_path / "ray", workers=2, progress=False, executor=RAY)
    thread.join()
    assert killed, "no Ray task was seen running"
    generate(spec, tmp_path / "local", workers=2, progress=False)
    assert digest(tmp_path / "ray") == digest(tmp_path / "local")  # (no metrics run: no costs.json)
    cat = read_catalog(tmp_path / "ray", load_spec(spec))
    assert cat.select("model_id", "epoch").is_unique().all()


def _square_or_fail(x: int, marks: str | None = None) -> int:
    """x², leaving a mark; x = 2 waits until jobs 0 and 1 have left theirs (a worker may start slowly on a
    busy machine), then fails."""
    if x == 2:
        deadline = time.time() + 60
        while not all((Path(marks) / str(j)).exists() for j in (0, 1)) and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # their results reach the driver first
        raise ValueError("bad input 2")
    if marks:
        (Path(marks) / str(x)).touch()
    return x * x


def test_a_failing_task_is_named_and_finished_work_kept(tmp_path):
    got = []
    with pytest.raises(ExecutorError, match=r"job #2 failed on Ray: ValueError: bad input 2.*finished work is kept"):
        for i, r in run_unordered(_square_or_fail, [(j, str(tmp_path)) for j in range(4)], workers=2,
                                  executor=RAY, describe=lambda i: f"job #{i}"):
            got.append((i, r))
    assert {(0, 0), (1, 1)} <= set(got)  # what finished before the failure reached the caller


def test_missing_resources_are_refused_before_any_work(tmp_path, tiny_spec):
    with pytest.raises(ExecutorError, match=r"lacks the requested resources: GPU 1 per task \(the cluster has 0\)"):
        list(run_unordered(_square_or_fail, [(0,)], workers=2, executor=Executor("ray", gpus=1)))
    with pytest.raises(ExecutorError, match=r"CPU 64 per task \(the cluster has 2\)"):
        generate(tiny_spec, tmp_path / "zoo", workers=2, progress=False, executor=Executor("ray", cpus=64))
    assert not list((tmp_path / "zoo").rglob("*.safetensors"))


def test_unreachable_address_is_a_clear_error(tiny_spec, tmp_path, capsys):
    """A cluster that does not answer: one line naming it, in seconds, nothing written."""
    t = time.time()
    code = generate_main([str(tiny_spec), "--out", str(tmp_path / "zoo"), "--executor", "ray",
                          "--address", "127.0.0.1:9", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot reach the Ray cluster at '127.0.0.1:9'" in err and "--executor local" in err
    assert time.time() - t < 30
    assert not list((tmp_path / "zoo").rglob("*.safetensors"))
    assert generate_main([str(tiny_spec), "--out", str(tmp_path / "z2"), "--address", "h:1"]) == 2
    assert "--address needs --executor ray" in capsys.readouterr().err
