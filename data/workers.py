"""Worker processes for long jobs (zoo generation, metric runs): the one place that runs a pool."""
from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

# fork is unsafe with torch's thread pools and with CUDA; every pool and queue uses this context
CONTEXT = mp.get_context("spawn")


def run_unordered(fn: Callable[..., Any], jobs: Sequence[tuple], *, workers: int,
                  initializer: Callable[..., None] | None = None, initargs: tuple = (),
                  on_tick: Callable[[], None] = lambda: None) -> Iterator[tuple[int, Any]]:
    """Yield (job index, fn(*job)) as jobs finish, in `workers` spawned processes, submitted in order
    (put the longest first). `on_tick` runs at least twice a second (e.g. to drain a progress queue).

    If a job raises, or the consumer stops early, the jobs not started are cancelled and the pool is shut
    down without waiting for the running ones, so finished results are never held back by a failure.
    """
    pool = ProcessPoolExecutor(workers, mp_context=CONTEXT, initializer=initializer, initargs=initargs)
    futures = {pool.submit(fn, *job): i for i, job in enumerate(jobs)}
    try:
        while futures:
            finished, _ = wait(futures, timeout=0.5, return_when=FIRST_COMPLETED)
            on_tick()
            for fut in finished:
                yield futures.pop(fut), fut.result()
    except BaseException:  # includes GeneratorExit (consumer stopped) and KeyboardInterrupt
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
