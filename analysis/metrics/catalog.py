"""The metric catalog: the registry filled with every built-in plug-in, and the lookups over it.

The registry (`analysis.metrics.registry`) declares what a metric is and how one registers; it imports none
of its plug-ins. This module is the one list of plug-ins: importing it registers them all, so whoever looks
a metric up (the runner, the upload pipeline, the views) imports the catalog, and a new plug-in module is
added here.
"""
from __future__ import annotations

import fnmatch

import analysis.metrics.definitions  # noqa: F401  (registers the landscape and weight metrics)
import analysis.metrics.downstream  # noqa: F401  (registers the downstream studies)
from analysis.metrics.outputs import PUBLISHED, Output
from analysis.metrics.registry import REGISTRY, Metric, MetricError


def get_metric(name: str) -> Metric:
    if name not in REGISTRY:
        raise MetricError(f"unknown metric {name!r}; available: {sorted(REGISTRY)}")
    return REGISTRY[name]


def list_metrics(pattern: str = "*", scope: str | None = None) -> list[Metric]:
    """Registered metrics whose name matches a shell-style wildcard pattern, sorted by name."""
    return [m for name, m in sorted(REGISTRY.items())
            if fnmatch.fnmatch(name, pattern) and (scope is None or m.scope == scope)]


def find_output(name: str) -> Output | None:
    """The declaration of an output name (its sign, scale and role): a registered metric's, else that of a
    value only published zoos carry (`outputs.PUBLISHED`); None for a name nobody declares (an ad-hoc
    import)."""
    for m in list_metrics():
        for o in m.outputs:
            if o.name == name:
                return o
    return PUBLISHED.get(name)
