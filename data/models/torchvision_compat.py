"""Import torchvision beside a CPU torch whose build its compiled ops do not match.

`torchvision==0.28.0` (the release paired with `torch==2.13.0`) installs here without pulling another torch,
but its wheel's `_C` extension is a CUDA build that does not load beside `torch 2.13.0+cpu`. Its Python
package then fails at import time with "operator torchvision::nms does not exist": `torchvision/_meta_registrations.py`
registers fake kernels for ops that `_C` was meant to define. Declaring the two op schemas first (no
kernels) lets that registration pass, and everything the architectures need — the pure-Python models of
`torchvision.models` — works; only the compiled detection ops (nms, roi_align, …) stay unavailable.

The shim is applied only when the plain import fails with exactly that error: where torchvision's `_C` does
load it defines these schemas itself, and defining them again would clash.
"""
from __future__ import annotations

import sys
import threading
from types import ModuleType

import torch

_MISSING_OP = "operator torchvision::nms does not exist"
_SCHEMAS = ("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
            "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
INSTALL_HINT = "pip install torchvision==0.28.0 (the build requirements.txt pins beside torch==2.13.0)"

_lock = threading.Lock()  # two threads importing at once must not define the schemas twice
_library: torch.library.Library | None = None  # kept alive: a collected Library drops its definitions


class TorchvisionUnavailable(ImportError):
    """torchvision is not installed, or does not import even with the shim; the message is one line."""


def _purge() -> None:
    """Forget the half-imported torchvision: a retry must execute its modules afresh, not reuse a stub."""
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def import_torchvision() -> ModuleType:
    """`import torchvision`, with the two-schema shim if (and only if) the plain import needs it."""
    global _library
    with _lock:
        try:
            import torchvision
            return torchvision
        except ModuleNotFoundError as e:
            if e.name == "torchvision":
                raise TorchvisionUnavailable(f"torchvision is not installed; {INSTALL_HINT}") from None
            raise TorchvisionUnavailable(f"torchvision does not import ({_one_line(e)})") from None
        except RuntimeError as e:
            if _MISSING_OP not in str(e):
                raise TorchvisionUnavailable(f"torchvision does not import ({_one_line(e)})") from None
        _purge()
        if _library is None:
            _library = torch.library.Library("torchvision", "DEF")
            for schema in _SCHEMAS:
                _library.define(schema)
        try:
            import torchvision
        except Exception as e:  # noqa: BLE001 — whatever it is, the caller gets one line naming it
            _purge()
            raise TorchvisionUnavailable(f"torchvision does not import even with its op schemas declared "
                                         f"({_one_line(e)}); {INSTALL_HINT}") from None
        return torchvision
