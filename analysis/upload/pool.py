"""Where an upload's slow metrics run: a pool of worker processes, and what one upload will cost there."""
from __future__ import annotations

from concurrent.futures import Executor, ProcessPoolExecutor

import torch

from analysis.runner.costs import predicted_seconds, read_costs
from analysis.upload.measure import HESSIAN, PAIRS, QUICK
from data.training.workers import CONTEXT
from data.zoo.store import Zoo


def _init_worker() -> None:
    torch.set_num_threads(1)  # the workers share the machine's cores: one thread each


def _warm() -> None:
    import analysis.metrics.catalog  # noqa: F401  (the registered metrics and their kernels)


def process_pool(workers: int = 2) -> Executor:
    """Worker processes for the slow metrics; they start (imports, ~1 s) at once, while the caller reads."""
    pool = ProcessPoolExecutor(workers, mp_context=CONTEXT, initializer=_init_worker)
    for _ in range(workers):
        pool.submit(_warm)
    return pool


def upload_estimate(zoo: Zoo) -> tuple[float, float, str] | None:
    """Seconds of compute for one upload of the zoo's smallest and largest model, predicted from the costs
    `analysis.runner.run` measured on this zoo (costs.json; interpolated in parameter count), and where they
    were measured; None before any were measured. The pairs are the seeds of a cell."""
    costs = read_costs(zoo.root)
    own, paired = (*QUICK, HESSIAN[0]), PAIRS
    if any(m not in costs for m in (*own, *paired) if m != "hessian_trace_exact"):  # that one: ReLU MLPs only
        return None

    def total(n: int) -> float:
        return (sum(predicted_seconds(costs, m, n) or 0.0 for m in own)
                + len(zoo.spec.seeds) * sum(predicted_seconds(costs, m, n) for m in paired))
    sizes = zoo.catalog["n_params"]
    return total(int(sizes.min())), total(int(sizes.max())), costs[HESSIAN[0]]["host"]
