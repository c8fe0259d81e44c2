"""Worker processes for long jobs (zoo generation, metric runs): the one place that runs a pool.

Two executors behind one function, `run_unordered`:

- `local` (default): a spawned process pool on this machine.
- `ray`: each job is a Ray task (Moritz et al. 2018, *Ray: A Distributed Framework for Emerging AI
  Applications*), on an existing cluster (`address`) or a local Ray started on demand. Ray schedules the
  tasks on the cluster's CPUs and GPUs (`cpus`/`gpus` per task) and re-runs a task whose worker died
  (`max_retries`); an exception raised by the job itself is not retried (it would fail again) and stops the
  run with a message naming the job.

Either way the caller's main process receives every result and is the only writer, so the zoo directory
ends up byte for byte the same and a rerun skips finished work with either executor.

Stopping (docs/long-jobs.md): inside `stop_on_signals()` SIGINT and SIGTERM raise `Interrupted` in the main
process; `run_unordered` then terminates its worker processes (they ignore SIGINT themselves, so Ctrl-C on
a terminal's process group leaves the decision to the main process) and the caller flushes what finished.
A worker that dies (SIGKILL, out of memory) ends the run with an ExecutorError saying so.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# fork is unsafe with torch's thread pools and with CUDA; every pool and queue uses this context
CONTEXT = mp.get_context("spawn")
ROOT = Path(__file__).resolve().parents[2]


class ExecutorError(RuntimeError):
    """A cluster that cannot be reached or lacks the requested resources, or a job that keeps failing."""


@dataclass(frozen=True)
class Executor:
    kind: str = "local"  # "local" or "ray"
    address: str | None = None  # ray: "host:port" or "ray://host:10001" of a running cluster; None = start one
    cpus: float = 1.0  # ray: CPUs per task
    gpus: float | None = None  # ray: GPUs per task; None = 1 when the cluster has GPUs, else 0
    max_retries: int = 3  # ray: re-runs of a task whose worker process died
    temp_dir: str | None = None  # ray: a local Ray's session files (default: <repo>/.ray, or $PHASEZOO_RAY_TMP)

    def __post_init__(self):
        if self.kind not in ("local", "ray"):
            raise ExecutorError(f"executor must be 'local' or 'ray', got {self.kind!r}")
        if self.cpus <= 0 or (self.gpus is not None and self.gpus < 0) or self.max_retries < 0:
            raise ExecutorError(f"resources per task must be positive (cpus {self.cpus}, gpus {self.gpus}, "
                                f"max_retries {self.max_retries})")


LOCAL = Executor()


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM reached the main process inside `stop_on_signals()`. A KeyboardInterrupt, so code
    that catches Exception does not swallow it; `exit_status` is the shell's convention, 128 + signal."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum, self.signame = signum, signal.Signals(signum).name
        self.exit_status = 128 + signum  # 130 for SIGINT, 143 for SIGTERM


_signals = {"deferring": 0, "pending": None, "raised": False}  # the main process's state in stop_on_signals()


@contextmanager
def stop_on_signals():
    """While the block runs (in the main thread), the first SIGINT or SIGTERM raises Interrupted (at once, or
    at the end of a `signals_deferred()` block); later ones are ignored, so the shutdown that follows
    (stopping workers, flushing finished work) is not cut short. SIGKILL still stops at once and loses
    only unflushed work (every file is written atomically)."""
    def handler(signum, frame):
        if _signals["raised"]:
            return
        if _signals["deferring"]:
            _signals["pending"] = signum
            return
        _signals["raised"] = True
        raise Interrupted(signum)

    _signals.update(deferring=0, pending=None, raised=False)
    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextmanager
def signals_deferred():
    """A signal arriving inside the block raises its Interrupted when the block ends, so that e.g. one
    finished group is written whole (checkpoints and catalog rows) rather than dropped half-way."""
    _signals["deferring"] += 1
    try:
        yield
    finally:
        _signals["deferring"] -= 1
    if not _signals["deferring"] and _signals["pending"] is not None and not _signals["raised"]:
        _signals["raised"] = True
        raise Interrupted(_signals["pending"])


def format_duration(s: float) -> str:
    """Seconds for humans, as the cost estimates print them."""
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


def add_executor_args(ap) -> None:
    """The executor options shared by the generator's and the metric runner's command lines."""
    g = ap.add_argument_group("executor")
    g.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local process pool (default) or Ray: a local Ray started on demand, or --address")
    g.add_argument("--address", help="Ray: address of a running cluster (host:port or ray://host:10001)")
    g.add_argument("--cpus-per-task", type=float, default=1.0, help="Ray: CPUs per task (default 1)")
    g.add_argument("--gpus-per-task", type=float, default=None,
                   help="Ray: GPUs per task (default: 1 when the cluster has GPUs, else 0)")
    g.add_argument("--max-retries", type=int, default=3, help="Ray: re-runs of a task whose worker died (default 3)")


def executor_from_args(args) -> Executor:
    if args.executor == "local" and args.address:
        raise ExecutorError("--address needs --executor ray")
    return Executor(args.executor, args.address, args.cpus_per_task, args.gpus_per_task, args.max_retries)


def run_unordered(fn: Callable[..., Any], jobs: Sequence[tuple], *, workers: int,
                  initializer: Callable[..., None] | None = None, initargs: tuple = (),
                  on_tick: Callable[[], None] = lambda: None, executor: Executor = LOCAL,
                  describe: Callable[[int], str] = lambda i: f"job {i}") -> Iterator[tuple[int, Any]]:
    """Yield (job index, fn(*job)) as jobs finish, submitted in order (put the longest first). `on_tick`
    runs at least twice a second (e.g. to drain a progress queue); `describe(i)` names job i in errors.

    Local: `workers` spawned processes, `initializer(*initargs)` once in each. Ray: `workers` is the number
    of CPUs of a local Ray started on demand (a cluster has its own), `initializer` runs once per Ray
    worker process. If a job raises, a worker dies (ExecutorError), or the consumer stops early (close the
    generator, e.g. `with contextlib.closing(run_unordered(...))`, so that this happens at once and not when
    it is garbage-collected), the jobs not started are cancelled and the running ones terminated, so
    finished results are never held back by a failure and no worker outlives the run.
    """
    if executor.kind == "ray":
        yield from _run_ray(fn, jobs, workers, initializer, initargs, on_tick, executor, describe)
        return
    pool = ProcessPoolExecutor(workers, mp_context=CONTEXT, initializer=_init_local,
                               initargs=(initializer, *initargs))
    futures = {pool.submit(fn, *job): i for i, job in enumerate(jobs)}
    try:
        while futures:
            finished, _ = wait(futures, timeout=0.5, return_when=FIRST_COMPLETED)
            on_tick()
            for fut in finished:
                try:
                    result = fut.result()
                except BrokenProcessPool:  # set on every unfinished job: which one the dead worker ran is unknown
                    first = min(futures.values())  # jobs start in order: the earliest unfinished one ran
                    raise ExecutorError(f"a worker process died (killed, or out of memory); {len(futures)} job(s) "
                                        f"unfinished, first {describe(first)}; finished work is kept — rerun to "
                                        "resume") from None
                yield futures.pop(fut), result
    except BaseException:  # includes GeneratorExit (consumer stopped), KeyboardInterrupt and Interrupted
        _stop(pool)
        raise
    pool.shutdown(wait=True)


def _init_local(initializer: Callable[..., None] | None, *initargs: Any) -> None:
    """In a local worker: leave SIGINT to the main process (a terminal sends it to the whole process group;
    the main process stops the workers itself), then the caller's initializer."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if initializer is not None:
        initializer(*initargs)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel the jobs not started and terminate the running ones now: their results would be thrown away,
    and a worker left running outlives its parent (with the resource tracker it keeps alive). Python 3.11
    has no public call for this (3.14 adds terminate_workers), hence the pool's process table.

    The pool's manager thread is joined here, not left to the interpreter's exit: `shutdown(wait=False)`
    drops the pool's handle on it, so a later `shutdown(wait=True)` waits for nothing, and a thread still
    closing its wake-up pipe when the process exits races concurrent.futures' exit hook, which then writes
    to the closed pipe ("Exception ignored ... Bad file descriptor" on stderr after the one-line message)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    manager = getattr(pool, "_executor_manager_thread", None)
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=10)
        if p.is_alive():  # stuck in uninterruptible I/O or ignoring SIGTERM
            p.kill()
            p.join()
    if manager is not None:
        manager.join(timeout=30)  # it ends once its processes are gone: it sees them dead and closes its pipes


# ----------------------------------------------------------------------------- Ray
_initialised: set[int] = set()  # in a Ray worker process: the initializers already run there


def _call(fn: Callable[..., Any], initializer: Callable[..., None] | None, initargs: tuple, *args: Any) -> Any:
    """A job in a Ray worker: the pool initializer once per process (Ray reuses worker processes), then fn."""
    if initializer is not None and id(initializer) not in _initialised:
        initializer(*initargs)
        _initialised.add(id(initializer))
    return fn(*args)


def ray_connect(executor: Executor, workers: int) -> None:
    """Connect to the cluster at `executor.address`, or start a local Ray with `workers` CPUs (once per
    process). Token authentication is disabled for the local one; its files stay in the project's folder."""
    import ray

    if executor.address and executor.address != "auto":
        _check_reachable(executor.address)  # ray.init would retry an unreachable address for minutes
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    try:
        if executor.address:
            ray.init(address=executor.address, log_to_driver=False, logging_level="ERROR")
        else:
            temp = Path(executor.temp_dir or os.environ.get("PHASEZOO_RAY_TMP", ROOT / ".ray")).resolve()
            temp.mkdir(parents=True, exist_ok=True)
            # the local Ray's worker processes inherit this environment (the project is installed): one thread
            os.environ.setdefault("OMP_NUM_THREADS", "1")
            ray.init(num_cpus=workers, include_dashboard=False, _temp_dir=str(temp), log_to_driver=False,
                     logging_level="ERROR", object_store_memory=256 * 2**20)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
        where = f"the Ray cluster at {executor.address!r}" if executor.address else "a local Ray"
        raise ExecutorError(f"cannot start or reach {where}: {str(e).splitlines()[0] if str(e) else e!r}; "
                            "finished work is kept — rerun with --executor local to go on here") from None


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A TCP connection to the cluster's head (GCS or Ray Client port) within `timeout` seconds."""
    import socket

    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ExecutorError(f"Ray address {address!r} is not host:port or ray://host:port")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise ExecutorError(f"cannot reach the Ray cluster at {address!r}: {e.strerror or e}; finished work is "
                            "kept — rerun with --executor local to go on here") from None


def task_slots(executor: Executor, workers: int) -> tuple[int, str]:
    """How many tasks run at once, and what they run on: `workers` local processes, or as many as the Ray
    cluster fits with the requested CPUs per task (connecting first)."""
    if executor.kind == "local":
        return workers, "worker(s)"
    import ray

    ray_connect(executor, workers)
    return max(1, int(ray.cluster_resources().get("CPU", 1) // executor.cpus)), "Ray task slot(s)"


def _resources(executor: Executor) -> dict[str, float]:
    """Per-task resources, checked against the cluster before anything is submitted."""
    import ray

    have = ray.cluster_resources()
    gpus = executor.gpus if executor.gpus is not None else (1.0 if have.get("GPU", 0) >= 1 else 0.0)
    want = {"CPU": executor.cpus, "GPU": gpus}
    missing = [f"{k} {v:g} per task (the cluster has {have.get(k, 0):g})" for k, v in want.items()
               if v > have.get(k, 0)]
    if missing:
        raise ExecutorError(f"the Ray cluster lacks the requested resources: {'; '.join(missing)}")
    return {"num_cpus": executor.cpus, "num_gpus": gpus}


def _run_ray(fn, jobs, workers, initializer, initargs, on_tick, executor: Executor, describe):
    import ray
    from ray.exceptions import RayTaskError, TaskCancelledError

    ray_connect(executor, workers)
    remote = ray.remote(_call).options(**_resources(executor), max_retries=executor.max_retries,
                                       retry_exceptions=False)
    shared = [ray.put(fn), ray.put(initializer), ray.put(initargs)]  # once, not once per task
    refs = {remote.remote(*shared, *job): i for i, job in enumerate(jobs)}
    try:
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=0.5)
            on_tick()
            for ref in ready:
                i = refs.pop(ref)
                try:
                    result = ray.get(ref)
                except RayTaskError as e:  # the job itself raised: re-running would raise again
                    cause = e.cause if getattr(e, "cause", None) is not None else e
                    raise ExecutorError(f"{describe(i)} failed on Ray: {type(cause).__name__}: {cause}; finished "
                                        "work is kept — fix the cause and rerun (locally or on Ray)") from None
                except TaskCancelledError:
                    raise
                except ray.exceptions.RayError as e:  # its worker died more than max_retries times, or its node
                    raise ExecutorError(f"{describe(i)} failed on Ray after {executor.max_retries} retries: "
                                        f"{type(e).__name__}: {str(e).splitlines()[0]}; finished work is kept — "
                                        "rerun to resume (locally: --executor local)") from None
                yield i, result
    except BaseException:
        for ref in refs:
            ray.cancel(ref, force=True)
        raise
