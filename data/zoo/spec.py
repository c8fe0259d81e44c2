"""Zoo specs: a TOML file that says what to train (task, architecture, grid) and what the axes mean.

    name = "mnist1d-mlp"
    task = "mnist1d"
    arch = "mlp"
    seeds = [0, 1, 2]
    [task_params]   the task's own (data.tasks.builtin): n_train, label_noise, data_seed; p, train_fraction; beta
    [arch_params]   e.g. depth, activation, heads
    [training]      epochs, lr, batch_size, optimizer (sgd | adam | adamw), momentum (sgd), beta2 (adam),
                    weight_decay, eval_every, checkpoint_epochs, analysis_epochs
    [grid]          knob = [values...]  (each knob is a task, architecture or training parameter)
    [axes.load]         knob = "width",      increases = false  # load falls as capacity grows
    [axes.temperature]  knob = "batch_size", increases = false  # larger batch = colder
    [metrics.mc_bezier] lr = 1e-3           # optional: this zoo's parameters of a registered metric
    data_root = "/data"                     # optional: where its task's data is (docs/datasets.md)

`increases` says whether the physical quantity (load or temperature) rises with the knob's value; views
use it to orient the axes (capacity growing to the right, hottest row on top) without knowing knob names.

A spec may come from a stranger (a zoo directory typed into the dashboard), so its size is bounded before
anything is built from it: at most MAX_SPEC_CHARS of text, MAX_NESTING levels of tables and arrays (the TOML
parser recurses per level), MAX_LIST entries in any list, and MAX_MODELS models (seeds × the product of the
grid's value counts, counted before any model config exists).
"""
from __future__ import annotations

import itertools
import re
import reprlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from data.models.archs import arch_def, arch_params
from data.params import Param, SpecError, positive, resolve
from data.tasks.builtin import task_def, task_params
from data.training.train import OPTIMIZERS
from data.zoo.paths import PathError, read_text
from data.zoo.schema import KNOB_DTYPES

TRAINING_PARAMS = {
    "epochs": positive(int),
    "lr": positive(float),
    "momentum": Param(float, 0.0, lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
    "weight_decay": Param(float, 0.0, lambda v: v >= 0.0, "must be >= 0"),
    "batch_size": positive(int),
    # "sgd" (momentum, L2 weight decay), "adam" (L2 weight decay) or "adamw" (decoupled weight decay)
    "optimizer": Param(str, "sgd", lambda v: v in OPTIMIZERS, f"one of {list(OPTIMIZERS)}"),
    "beta2": Param(float, 0.999, lambda v: 0.0 <= v < 1.0, "Adam's second-moment decay, in [0, 1)"),
    # epochs between logged evaluations of the full splits (checkpoint epochs and the last are always logged)
    "eval_every": Param(int, 1, lambda v: v > 0, "must be > 0"),
}

# Bounds on what a spec may declare (the built-in specs: ~2 kB, depth 3, lists of <= 8, <= 192 models).
MAX_SPEC_CHARS = 256 * 1024
MAX_NESTING = 16  # tables and arrays inside one another
MAX_LIST = 1024  # entries of seeds, of one grid knob, of checkpoint_epochs and analysis_epochs
MAX_MODELS = 10_000  # seeds × grid points: far beyond a trainable zoo, and ~10 MB of model configs

# The tokens that matter for nesting: strings and comments (whose brackets do not count) and brackets. A
# multi-line string may end with one or two extra quotes before its closing delimiter (TOML 1.0).
_TOKENS = re.compile("|".join([
    r'"""(?:[^\\]|\\.)*?"""(?!")',  # multi-line basic string (escapes, newlines)
    r"'''.*?'''(?!')",  # multi-line literal string
    r'"(?:[^"\\\n]|\\.)*"',  # basic string
    r"'[^'\n]*'",  # literal string
    r"#[^\n]*",  # comment
    r"[\[\]{}]",  # brackets: tables, arrays, inline tables
]), re.S)


@dataclass(frozen=True)
class Axis:
    knob: str
    increases: bool  # does the physical quantity (load, temperature) rise with the knob value?


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to train one model of the grid, reproducibly."""

    model_id: str
    seed: int
    knobs: tuple[tuple[str, Any], ...]  # the grid coordinates, in spec order
    task_params: tuple[tuple[str, Any], ...]
    arch_params: tuple[tuple[str, Any], ...]
    training: tuple[tuple[str, Any], ...]

    def get(self, section: str) -> dict[str, Any]:
        return dict(getattr(self, section))


@dataclass(frozen=True)
class ZooSpec:
    name: str
    description: str
    task: str
    arch: str
    seeds: tuple[int, ...]
    task_params: Mapping[str, Any]
    arch_params: Mapping[str, Any]  # base values; grid knobs override them
    training: Mapping[str, Any]
    checkpoint_epochs: tuple[int, ...]  # always includes 0, the analysis epochs and the last epoch
    analysis_epochs: tuple[int, ...]
    grid: Mapping[str, tuple]
    load: Axis
    temperature: Axis
    # metric name -> parameter overrides (checked against the registry by analysis.runner.run: data knows no metrics)
    # (not part of a zoo's identity: a resumed zoo may change them)
    metric_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, compare=False)
    # where the task's data is read from (data.datasets), "" = $PHASEZOO_DATA; a relative path is relative to
    # the zoo directory. Not part of the zoo's identity either: the same zoo may sit beside its data anywhere.
    data_root: str = field(default="", compare=False)

    @property
    def knob_dtypes(self) -> dict[str, pl.DataType]:
        return {k: KNOB_DTYPES[type(v[0])] for k, v in self.grid.items()}

    @property
    def n_models(self) -> int:
        n = len(self.seeds)
        for values in self.grid.values():
            n *= len(values)
        return n

    def models(self) -> list[ModelConfig]:
        """Expand the grid × seeds into per-model configs (deterministic order)."""
        digits = {k: max(len(str(v)) for v in vals) for k, vals in self.grid.items()}
        out = []
        for combo in itertools.product(*self.grid.values()):
            knobs = dict(zip(self.grid, combo))
            sections = {"task_params": dict(self.task_params), "arch_params": dict(self.arch_params),
                        "training": dict(self.training)}
            for k, v in knobs.items():
                sections[_section_of(self, k)][k] = v
            stem = "-".join(_fmt(k, v, digits[k]) for k, v in knobs.items())
            for seed in self.seeds:
                out.append(ModelConfig(f"{stem}-s{seed}", seed, tuple(knobs.items()),
                                       *(tuple(sections[s].items()) for s in ("task_params", "arch_params", "training"))))
        return out


def _fmt(knob: str, value: Any, digits: int) -> str:
    return f"{knob}{value:0{digits}d}" if isinstance(value, int) else f"{knob}{value!r}"


def _section_of(spec: ZooSpec, knob: str) -> str:
    """The section a grid knob belongs to (`_build` has checked that there is one)."""
    return next(s for s in ("training", "arch_params", "task_params") if knob in getattr(spec, s))


def parse_spec(text: str, source: str = "<spec>") -> ZooSpec:
    """Parse and fully validate a spec; every error names the offending field."""
    if len(text) > MAX_SPEC_CHARS:
        raise SpecError(f"{source}: {len(text)} characters, more than the {MAX_SPEC_CHARS} a spec may have")
    if _bracket_depth(text) > MAX_NESTING:
        raise SpecError(f"{source}: tables or arrays nested more than {MAX_NESTING} deep")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{source}: not valid TOML ({e})") from None
    except RecursionError:  # unreachable while _bracket_depth is exact; kept so no spec can crash a page
        raise SpecError(f"{source}: nested too deeply") from None
    if _depth(raw) > MAX_NESTING:  # dotted keys (a.b.c... = 1) nest without a bracket
        raise SpecError(f"{source}: tables nested more than {MAX_NESTING} deep")
    try:
        return _build(raw)
    except SpecError as e:
        raise SpecError(f"{source}: {e}") from None


def _bracket_depth(text: str) -> int:
    """The deepest nesting of [ and { outside strings and comments (a lexical count; tomllib recurses per level),
    up to the first level beyond MAX_NESTING: a hostile spec is refused after reading only its first brackets."""
    depth = deepest = 0
    for m in _TOKENS.finditer(text):
        c = m.group()
        if c in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_NESTING:
                break
        elif c in "]}":
            depth = max(depth - 1, 0)
    return deepest


def _depth(value: Any) -> int:
    """Nesting depth of parsed TOML (tables and arrays), walked with a stack: no recursion on hostile input."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict | list):
            deepest = max(deepest, d + 1)
            if d + 1 <= MAX_NESTING:  # deeper is refused anyway: stop walking
                stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return deepest


def load_spec(path: str | Path) -> ZooSpec:
    path = Path(path)
    try:  # a regular file of bounded size: a FIFO or /dev/zero named as a spec must not hang or fill memory
        text = read_text(path, 4 * MAX_SPEC_CHARS)  # UTF-8: at most 4 bytes a character
    except PathError as e:
        raise SpecError(f"cannot read spec {e}") from None
    return parse_spec(text, str(path))


def trust_spec_factory(path: str | Path) -> None:
    """A spec file the user names on the command line (`phasezoo generate SPEC`) is trusted configuration: the
    model factory its `arch` names may be imported, here and in the workers (docs/architectures.md). A spec
    found in a zoo directory is not: those need `--factory` or $PHASEZOO_FACTORIES."""
    try:
        arch = tomllib.loads(read_text(Path(path), 4 * MAX_SPEC_CHARS)).get("arch")
    except (PathError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return  # load_spec reports what is wrong with the file
    if isinstance(arch, str) and arch.startswith("factory:"):
        from data.models.reference import allow_factory  # torchvision and timm load only for such archs

        allow_factory(arch)


def data_root_for(spec: ZooSpec, zoo_dir: str | Path, flag: str | Path | None = None) -> Path | None:
    """The data root a zoo's task is read from, by precedence: the command's `--data-root` (`flag`), else the
    spec's `data_root` (relative to the zoo directory), else None ($PHASEZOO_DATA; docs/datasets.md)."""
    if flag is not None and str(flag) != "":
        return Path(flag).expanduser()
    if spec.data_root:
        return Path(zoo_dir) / Path(spec.data_root).expanduser()  # an absolute data_root stays as it is
    return None


def _require(raw: Mapping, key: str, kind: type) -> Any:
    if key not in raw:
        raise SpecError(f"missing field {key!r}")
    if not isinstance(raw[key], kind):
        raise SpecError(f"field {key!r} must be a {kind.__name__}, got {reprlib.repr(raw[key])}")
    if kind is list and len(raw[key]) > MAX_LIST:
        raise SpecError(f"{key}: {len(raw[key])} entries, more than the {MAX_LIST} allowed")
    return raw[key]


def _optional(raw: Mapping, key: str, kind: type, default: Any) -> Any:
    """`raw[key]` if given (checked as `_require` does), else `default`."""
    return _require(raw, key, kind) if key in raw else default


def _build(raw: Mapping) -> ZooSpec:
    known = {"name", "description", "task", "arch", "seeds", "task_params", "arch_params", "training",
             "grid", "axes", "metrics", "data_root"}
    if unknown := sorted(set(raw) - known):
        raise SpecError(f"unknown field(s) {unknown}")
    name, task, arch = (_require(raw, k, str) for k in ("name", "task", "arch"))
    seeds = tuple(_require(raw, "seeds", list))
    if not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise SpecError(f"seeds: must be distinct non-negative integers, got {reprlib.repr(list(seeds))}")
    grid_raw = _require(raw, "grid", dict)
    if not grid_raw:
        raise SpecError("grid: needs at least one knob")
    grid = {}
    n_models = len(seeds)
    for knob, values in grid_raw.items():
        if not isinstance(values, list) or not values or len({type(v) for v in values}) != 1 \
                or type(values[0]) not in KNOB_DTYPES or len(set(values)) != len(values):
            raise SpecError(f"grid.{knob}: must be a non-empty list of distinct ints or of distinct floats")
        if len(values) > MAX_LIST:
            raise SpecError(f"grid.{knob}: {len(values)} values, more than the {MAX_LIST} allowed")
        grid[knob] = tuple(values)
        n_models *= len(values)  # counted before any value is checked or any model config is built
        if n_models > MAX_MODELS:
            raise SpecError(f"grid: seeds × grid points exceed {MAX_MODELS} models (at grid.{knob}: "
                            f"{n_models}); split the zoo")

    # Every grid value must itself pass its parameter's range check, before any training starts.
    tp_given, ap_given = dict(_optional(raw, "task_params", dict, {})), dict(_optional(raw, "arch_params", dict, {}))
    tr_given = dict(_require(raw, "training", dict))
    ckpt = tuple(_optional(tr_given, "checkpoint_epochs", list, ()))
    analysis = tuple(_optional(tr_given, "analysis_epochs", list, ()))
    tr_given.pop("checkpoint_epochs", None), tr_given.pop("analysis_epochs", None)
    sections = {"task_params": (tp_given, lambda g: task_params(task, g)),
                "arch_params": (ap_given, lambda g: arch_params(arch, g)),
                "training": (tr_given, lambda g: resolve("training", TRAINING_PARAMS, g))}
    declared = {"task_params": set(task_def(task).params), "arch_params": set(arch_def(arch).params),
                "training": set(TRAINING_PARAMS)}
    resolved = {}
    for section, (given, check) in sections.items():
        knobs_here = [k for k in grid if k in declared[section]]
        resolved[section] = check({**given, **{k: grid[k][0] for k in knobs_here}})
        for k in knobs_here:
            # every grid value, and a value the section also sets (overridden, but still a mistake if bad)
            for v in (*grid[k], *((given[k],) if k in given else ())):
                check({**given, k: v})
    for knob in grid:
        if not any(knob in d for d in declared.values()):
            raise SpecError(f"grid.{knob}: not a parameter of the task, the architecture or the training")

    momenta = grid.get("momentum", (resolved["training"]["momentum"],))
    if resolved["training"]["optimizer"] != "sgd" and any(momenta):
        raise SpecError(f"training.momentum: applies to sgd only; {resolved['training']['optimizer']} "
                        "has its own (beta2 and the fixed beta1 = 0.9)")
    epochs = resolved["training"]["epochs"]
    if "epochs" in grid:
        raise SpecError("grid.epochs: epochs cannot be a grid knob (checkpoint epochs must be shared)")
    for e in ckpt + analysis:
        if not isinstance(e, int) or not 0 <= e <= epochs:
            raise SpecError(f"training: checkpoint/analysis epoch {e!r} outside [0, {epochs}]")
    if not analysis:
        raise SpecError("training.analysis_epochs: name at least one analysis epoch")
    ckpt = tuple(sorted({0, epochs, *ckpt, *analysis}))

    axes = _require(raw, "axes", dict)
    parsed_axes = []
    for which in ("load", "temperature"):
        ax = axes.get(which)
        if not isinstance(ax, dict) or not isinstance(ax.get("knob"), str) or not isinstance(ax.get("increases"), bool):
            raise SpecError(f"axes.{which}: needs knob = \"<grid knob>\" and increases = true|false")
        if ax["knob"] not in grid:
            raise SpecError(f"axes.{which}.knob: {ax['knob']!r} is not a grid knob; grid knobs: {list(grid)}")
        parsed_axes.append(Axis(ax["knob"], ax["increases"]))
    metric_params = _optional(raw, "metrics", dict, {})
    if not all(isinstance(v, dict) for v in metric_params.values()):
        raise SpecError("metrics: each entry must be a table of parameters, e.g. [metrics.mc_bezier] lr = 0.001")
    spec = ZooSpec(name, str(raw.get("description", "")), task, arch, seeds, resolved["task_params"],
                   resolved["arch_params"], resolved["training"], ckpt, tuple(sorted(set(analysis))), grid,
                   *parsed_axes, metric_params, _optional(raw, "data_root", str, ""))
    ids = [m.model_id for m in spec.models()]
    if len(set(ids)) != len(ids):
        raise SpecError("grid: two grid points give the same model id; make the values distinct")
    return spec
