"""The `phasezoo` command: one entry point over every layer's commands (the top layer; nothing imports it).

Also the Python API (phasezoo.api; docs/api.md): `open_zoo`, `compute_metrics`, `label_cells`, `verdict`.
They are loaded on first use (a module `__getattr__`, PEP 562), so `phasezoo --help` still imports no torch.
"""
from __future__ import annotations

API = ("ApiError", "VerdictError", "ZooFrames", "compute_metrics", "label_cells", "open_zoo", "verdict")
__all__ = list(API)


def __getattr__(name: str):
    if name in API:
        from phasezoo import api

        return getattr(api, name)
    raise AttributeError(f"module 'phasezoo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *API])
