"""Declared parameters: a name, a type, a default and a range check, so bad specs fail before training."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class SpecError(ValueError):
    """A zoo spec (or one of its parameters) is invalid; the message names the field."""


@dataclass(frozen=True)
class Param:
    type: type  # int, float or str
    default: Any = None  # None: required
    check: Callable[[Any], bool] = lambda v: True
    rule: str = ""  # human words for `check`, used in the error message

    def coerce(self, where: str, value: Any) -> Any:
        if value is None:
            if self.default is None:
                raise SpecError(f"{where}: missing (required {self.type.__name__})")
            value = self.default
        ok_type = isinstance(value, self.type) and not isinstance(value, bool)
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok_type = float(value), True
        if not ok_type:
            raise SpecError(f"{where}: expected {self.type.__name__}, got {value!r}")
        if not self.check(value):
            raise SpecError(f"{where}: {value!r} is out of range ({self.rule})")
        return value


def positive(t: type) -> Param:
    return Param(t, check=lambda v: v > 0, rule="must be > 0")


def resolve(where: str, declared: Mapping[str, Param], given: Mapping[str, Any]) -> dict[str, Any]:
    """Check `given` against `declared`: unknown names, missing required values and ranges."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise SpecError(f"{where}: unknown parameter(s) {unknown}; known: {sorted(declared)}")
    return {name: p.coerce(f"{where}.{name}", given.get(name)) for name, p in declared.items()}
