"""Zoo specs built in code: a typed draft that writes the TOML text `data.zoo.spec` reads, and the named
small zoos that the tests and the benches train.

A draft mirrors the file field for field (see data.zoo.spec for what each means) and checks nothing itself:
`parse_spec(draft.toml())` is the one validation, so a draft can also hold a deliberately bad spec.

    tiny_mlp_spec(epochs=40).write(tmp / "spec.toml")
    mnist1d_width_batch("bench", widths=(8, 16), batch_sizes=(32, 64), seeds=(0,), training={...}).toml()
"""
from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from data.zoo.spec import Axis

# MNIST-1D zoos put capacity on the load axis and batch size on the temperature axis; both quantities fall
# as their knob grows (wider = more capacity = lower load; larger batch = less gradient noise = colder).
WIDTH_LOAD = Axis("width", increases=False)
BATCH_TEMPERATURE = Axis("batch_size", increases=False)

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_EMPTY: Mapping[str, Any] = MappingProxyType({})  # a read-only default for mapping arguments


@dataclass(frozen=True)
class SpecDraft:
    """The fields of a zoo spec file, in the file's order; `training` holds checkpoint_epochs and
    analysis_epochs as the file does. Section values are TOML scalars (bool, int, float, str) or lists."""

    name: str
    task: str
    arch: str
    seeds: tuple[int, ...]
    training: Mapping[str, Any]
    grid: Mapping[str, tuple]  # knob -> values, in the spec's (and the model ids') order
    load: Axis
    temperature: Axis
    description: str = ""  # written only when non-empty
    task_params: Mapping[str, Any] = field(default_factory=dict)  # a section is written only when non-empty
    arch_params: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # metric -> parameter overrides

    @classmethod
    def from_toml(cls, text: str) -> SpecDraft:
        """The draft of an existing spec's text (its comments are dropped), e.g. to train a variant of it."""
        raw = tomllib.loads(text)
        axes = raw.pop("axes")
        return cls(**{**raw, "seeds": tuple(raw["seeds"]), "grid": {k: tuple(v) for k, v in raw["grid"].items()}},
                   load=Axis(**axes["load"]), temperature=Axis(**axes["temperature"]))

    def replace(self, **fields: Any) -> SpecDraft:
        """This draft with whole fields replaced: `.replace(arch="cnn1d", seeds=(0,))`."""
        return dataclasses.replace(self, **fields)

    def merged(self, *, task_params: Mapping[str, Any] = _EMPTY, arch_params: Mapping[str, Any] = _EMPTY,
               training: Mapping[str, Any] = _EMPTY, grid: Mapping[str, Any] = _EMPTY) -> SpecDraft:
        """This draft with entries set in its sections, or removed where the value given is None:
        `.merged(training={"epochs": 20, "checkpoint_epochs": None}, grid={"width": (4, 8)})`."""
        def merge(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
            out = {**old, **new}
            return {k: v for k, v in out.items() if v is not None}

        return dataclasses.replace(
            self, task_params=merge(self.task_params, task_params), arch_params=merge(self.arch_params, arch_params),
            training=merge(self.training, training), grid={k: tuple(v) for k, v in merge(self.grid, grid).items()})

    def toml(self) -> str:
        """The spec file's text: top-level fields, then one table per section (empty ones left out)."""
        lines = [f"name = {_value(self.name)}"]
        if self.description:
            lines.append(f"description = {_value(self.description)}")
        lines += [f"task = {_value(self.task)}", f"arch = {_value(self.arch)}", f"seeds = {_value(self.seeds)}"]
        tables = {"task_params": self.task_params, "arch_params": self.arch_params, "training": self.training,
                  "grid": self.grid,
                  "axes.load": {"knob": self.load.knob, "increases": self.load.increases},
                  "axes.temperature": {"knob": self.temperature.knob, "increases": self.temperature.increases},
                  **{f"metrics.{_key(m)}": params for m, params in self.metrics.items()}}
        for header, entries in tables.items():
            if entries or header not in ("task_params", "arch_params"):  # the two optional sections
                lines.append(f"[{header}]")
                lines += [f"{_key(k)} = {_value(v)}" for k, v in entries.items()]
        return "\n".join(lines) + "\n"

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.toml())
        return path


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _value(key)


def _value(v: Any) -> str:
    """A TOML value. bool before int (bool is an int); lists and tuples become arrays, mappings inline tables."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return repr(v)
    if isinstance(v, float):
        return _float(v)
    if isinstance(v, str):
        return '"' + "".join(_char(c) for c in v) + '"'
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"no TOML form for {type(v).__name__} {v!r}")


def _float(v: float) -> str:
    """A float as learning rates and weight decays are written: below 1 in magnitude, the shorter of the
    decimal and the exponent form of its shortest round-trip digits, the exponent form on a tie (1e-3,
    1e-2, 5e-4, 0.1, 0.25); otherwise Python's repr (1.0, 30.0, inf). Either form reads back as the same float."""
    text = repr(v)
    if not 0 < abs(v) < 1:
        return text
    # the fewest mantissa digits that read back exactly (17 significant digits always do): 0.0005 -> "5e-04"
    mantissa, exp = next(s for p in range(17) if float(s := f"{v:.{p}e}") == v).split("e")
    power = f"{mantissa}e{int(exp)}"
    return power if len(power) <= len(text) else text


def _char(c: str) -> str:
    """One character inside a TOML basic string: quote and backslash escaped, control characters (and DEL,
    which TOML also forbids raw) as \\uXXXX."""
    if c in '"\\':
        return "\\" + c
    return f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else c


def mnist1d_width_batch(name: str, *, widths: Iterable[int], batch_sizes: Iterable[int], seeds: Iterable[int],
                        training: Mapping[str, Any], arch: str = "mlp", description: str = "",
                        task_params: Mapping[str, Any] = _EMPTY, arch_params: Mapping[str, Any] = _EMPTY,
                        metrics: Mapping[str, Mapping[str, Any]] = _EMPTY) -> SpecDraft:
    """MNIST-1D models on a width × batch-size grid, with the default zoo's axes (WIDTH_LOAD, BATCH_TEMPERATURE)."""
    return SpecDraft(name, "mnist1d", arch, tuple(seeds), dict(training),
                     {"width": tuple(widths), "batch_size": tuple(batch_sizes)}, WIDTH_LOAD, BATCH_TEMPERATURE,
                     description, dict(task_params), dict(arch_params), dict(metrics))


def tiny_mlp_spec(*, epochs: int = 3, checkpoint_epochs: Iterable[int] = (1,), analysis_epochs: Iterable[int] = (2,),
                  n_train: int = 500, seeds: Iterable[int] = (0, 1), widths: Iterable[int] = (4, 16, 64),
                  batch_sizes: Iterable[int] = (16, 64)) -> SpecDraft:
    """The tiny test zoo: 3 widths × 2 batch sizes × 2 seeds of 2-hidden-layer MLPs, 3 epochs on 500
    examples with 10 % label noise (seconds to train); the keywords are the knobs tests vary."""
    return mnist1d_width_batch(
        "tiny", description="a tiny test zoo", widths=widths, batch_sizes=batch_sizes, seeds=seeds,
        task_params={"n_train": n_train, "label_noise": 0.1}, arch_params={"depth": 2},
        training={"epochs": epochs, "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "batch_size": 32,
                  "checkpoint_epochs": list(checkpoint_epochs), "analysis_epochs": list(analysis_epochs)})


def tiny_seq_spec() -> SpecDraft:
    """A tiny sequence zoo: transformers on modular addition (p = 7), train fraction × learning rate × 2 seeds,
    30 epochs of AdamW with strong weight decay (the grokking recipe, in seconds)."""
    return SpecDraft(
        "tiny-seq", "modular_add", "transformer", (0, 1),
        {"optimizer": "adamw", "weight_decay": 1.0, "epochs": 30, "lr": 1e-2, "batch_size": 64, "eval_every": 5,
         "checkpoint_epochs": [10, 20], "analysis_epochs": [30]},
        {"train_fraction": (0.5, 0.9), "lr": (3e-3, 3e-2)},
        Axis("train_fraction", increases=True), Axis("lr", increases=True),  # more data = more load; higher lr = hotter
        task_params={"p": 7}, arch_params={"width": 8, "heads": 2})


def tiny_pinn_spec() -> SpecDraft:
    """A tiny regression zoo: convection PINNs (tanh MLPs), wave speed β × learning rate × 2 seeds, 20 epochs of Adam."""
    return SpecDraft(
        "tiny-pinn", "convection", "mlp", (0, 1),
        {"optimizer": "adam", "epochs": 20, "lr": 1e-2, "batch_size": 512, "eval_every": 5,
         "checkpoint_epochs": [10, 15], "analysis_epochs": [20]},
        {"beta": (1.0, 30.0), "lr": (1e-3, 1e-2)},
        Axis("beta", increases=True), Axis("lr", increases=True),  # faster waves = harder fit; higher lr = hotter
        task_params={"n_train": 100}, arch_params={"width": 8, "depth": 2, "activation": "tanh"})
