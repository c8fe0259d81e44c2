"""Per-metric costs measured on a zoo (<zoo>/costs.json): what the runner's and the uploads' estimates read.

Each metric keeps (parameters, seconds) points measured on its costliest and cheapest model, where and on which
machine; a cost is predicted by the line through them in parameter count (small models cost mostly fixed
overhead, large ones arithmetic).
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

from data.zoo.store import atomic_write

COSTS_FILE = "costs.json"  # per-metric costs measured on this zoo, for estimates (the dashboard's too)


def record_costs(root: Path, measured: dict[str, list[tuple[float, str, int]]]) -> dict[str, dict]:
    """Merge measured per-metric costs into <zoo>/costs.json (atomic) and return them: (parameters, seconds)
    points, where, and the machine — an estimate from another machine is labelled as such."""
    costs = read_costs(root)
    when = time.strftime("%Y-%m-%d")
    for name, pts in measured.items():
        costs[name] = {"points": sorted([n, round(s, 4)] for s, _, n in pts),
                       "measured_on": [w for _, w, _ in pts], "host": platform.node(), "date": when}
    atomic_write(Path(root) / COSTS_FILE, lambda tmp: tmp.write_text(json.dumps(costs, indent=1, sort_keys=True)))
    return costs


def read_costs(root: Path) -> dict[str, dict]:
    path = Path(root) / COSTS_FILE
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        return {}  # unreadable: no estimate, never an error


def predicted_seconds(costs: dict[str, dict], metric: str, n_params: int) -> float | None:
    """A metric's cost on a model of `n_params`: the line through its measured (parameters, seconds) points
    (one point: proportional), never below the cheapest measurement; None if never measured."""
    c = costs.get(metric)
    if c is None:
        return None
    (n0, s0), (n1, s1) = c["points"][0], c["points"][-1]
    if n1 == n0:
        return s1 * n_params / max(n1, 1)
    return max(s0 + (s1 - s0) * (n_params - n0) / (n1 - n0), min(s0, s1))
