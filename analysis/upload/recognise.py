"""Which zoo does a state dict belong to? Shape matching against each zoo's architecture family.

For every zoo, the zoo's architecture is asked to infer its parameters from the tensor shapes
(data.models.archs.match_shapes builds that model and compares every key and shape, for the zoo's task input and
class count). A match also needs the parameters the zoo holds fixed (e.g. depth) to equal the spec's; the
grid knobs that are architecture parameters (e.g. width, the load) are read off the shapes, on the grid or
between grid values; an architecture by reference (torchvision:, timm:, factory:; data.models.reference) is
built in each of the zoo's own configurations instead, so it matches on the grid only. Knobs that leave no
trace in the weights (batch size, learning rate) stay unknown here.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from data.models.archs import arch_params, match_shapes
from data.models.reference import is_reference, match_configs
from data.tasks.builtin import TASKS
from data.zoo.store import Zoo

log = logging.getLogger("phasezoo.verdict")


@dataclass(frozen=True)
class ZooMatch:
    zoo: str  # the zoo's name
    root: str  # its directory
    arch: str
    arch_params: Mapping[str, object]  # inferred from the shapes, defaults filled in
    knobs: Mapping[str, object]  # grid knobs read off the shapes (architecture parameters only)
    nearest: Mapping[str, object]  # each of those knobs' nearest grid value (log scale for numbers)
    problems: tuple[str, ...]  # why this zoo does not match; empty for a match

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def on_grid(self) -> bool:
        return self.ok and all(self.knobs[k] == self.nearest[k] for k in self.knobs)

    def to_dict(self) -> dict:
        """Its JSON form (a Report's `matches`), `ok` included for readers of the file."""
        return {"zoo": self.zoo, "root": self.root, "arch": self.arch, "arch_params": dict(self.arch_params),
                "knobs": dict(self.knobs), "nearest": dict(self.nearest), "problems": list(self.problems),
                "ok": self.ok}

    @classmethod
    def from_dict(cls, d: Mapping) -> ZooMatch:
        return cls(d["zoo"], d["root"], d["arch"], dict(d["arch_params"]), dict(d["knobs"]), dict(d["nearest"]),
                   tuple(d["problems"]))


def nearest_value(value, grid: Sequence):
    """The grid value nearest to `value`: in log space for positive numbers (the grids are geometric)."""
    if isinstance(value, (int, float)) and all(isinstance(g, (int, float)) and g > 0 for g in grid) and value > 0:
        return min(grid, key=lambda g: abs(math.log(g) - math.log(value)))
    return value if value in grid else grid[0]


def match_zoo(state: Mapping[str, torch.Tensor], zoo: Zoo) -> ZooMatch:
    spec = zoo.spec
    input_shape, n_out = TASKS[spec.task].shapes(spec.task_params)  # shapes only: imported zoos have no data here
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    if is_reference(spec.arch):  # a constructor's arguments seldom show in shapes: try the zoo's own configurations
        m = match_configs(spec.arch, shapes, input_shape, n_out, (c.get("arch_params") for c in spec.models()))
    else:
        m = match_shapes(spec.arch, shapes, input_shape, n_out)
    base = dict(zoo=zoo.name, root=str(zoo.root), arch=spec.arch)
    if not m.ok:
        return ZooMatch(**base, arch_params=m.params, knobs={}, nearest={},
                        problems=tuple(f"not a {spec.arch} of this zoo's task ({spec.task}: input "
                                       f"{input_shape}, {n_out} outputs): {p}" for p in m.problems))
    fixed = arch_params(spec.arch, spec.arch_params)
    # what the shapes cannot show (an activation, the number of heads) is taken to be the zoo's
    inferred = arch_params(spec.arch, {**fixed, **m.params})
    knobs = {k: inferred[k] for k in spec.grid if k in inferred}
    differ = [f"{k}={inferred[k]} (the zoo has {fixed[k]})" for k in inferred if k not in spec.grid
              and inferred[k] != fixed[k]]
    problems = (f"a {spec.arch} but with {', '.join(differ)}",) if differ else ()
    return ZooMatch(**base, arch_params=inferred, knobs=knobs,
                    nearest={k: nearest_value(v, spec.grid[k]) for k, v in knobs.items()}, problems=problems)


def _match_or_problem(state: Mapping[str, torch.Tensor], zoo: Zoo) -> ZooMatch:
    """match_zoo, where a comparison that raises (whatever the keys: a stranger's) is that zoo not matching."""
    try:
        return match_zoo(state, zoo)
    except Exception:
        log.exception("comparing a state dict with zoo %s failed", zoo.name)
        return ZooMatch(zoo.name, str(zoo.root), zoo.spec.arch, {}, {}, {},
                        ("could not be compared with this zoo (an internal error, logged)",))


def recognise(state: Mapping[str, torch.Tensor], zoos: Sequence[Zoo]) -> list[ZooMatch]:
    """One ZooMatch per zoo: matches first (on-grid before between grid values), in the given order. Any
    key string is safe: a name no architecture has simply does not match."""
    matches = [_match_or_problem(state, z) for z in zoos]
    return sorted(matches, key=lambda m: (not m.ok, not m.on_grid))
