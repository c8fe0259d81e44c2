"""Import a folder of your own checkpoints as a zoo, from a manifest table and a zoo description.

    python -m data.importers.manifest runs/manifest.csv --describe runs/zoo.toml --out data/zoos/my-runs

The manifest (CSV or Parquet) has one row per stored checkpoint (docs/own-models.md):

    checkpoint               the file, relative to the manifest's folder (.safetensors / .pt / .pth / .bin / .ckpt);
                             empty: a logged epoch without stored weights
    <load column>            the load knob's value (e.g. width); the column is the knob's name unless the
    <temperature column>     description's [axes.*] table names another with `column = "..."`
    seed, epoch              integers (epoch 0 is the initialisation)
    train_loss, test_loss,   optional: the catalog's columns (losses NaN, accuracies null where absent)
    train_acc, test_acc
    any other numeric column optional: stored as a metric of that name (params_hash "manifest-import")

The description is a zoo spec without seeds and grid (data.zoo.spec: name, description, task, arch, [task_params],
[arch_params], [training], [axes.load], [axes.temperature]); seeds, grid and checkpoint epochs come from the
manifest, training.epochs defaults to the last epoch and analysis_epochs to [the last epoch].

Every checkpoint is read by the project's safe loader (data.checkpoint.load: no code runs, sizes bounded) and
must fit the architecture exactly (the model is built and `load_state_dict(strict=True)` must succeed). Any bad
row — a missing file, one that does not load, one that does not fit, a duplicate — stops the import with one
line naming the manifest row, and nothing is written (data.importers.zoo_writer: temporary directory, renamed).
The description is trusted configuration like any spec; the manifest and the checkpoints are only data.
"""
from __future__ import annotations

import argparse
import math
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import torch

from data.checkpoint.load import CheckpointError, load_checkpoint
from data.cli import run_cli
from data.importers.ptmz_layout import ImportError_, printable
from data.importers.zoo_writer import check_new_output, model_of, write_zoo
from data.models.archs import n_params
from data.params import SpecError
from data.tasks.builtin import TASKS
from data.zoo.paths import MAX_TABLE_BYTES, MAX_TEXT_BYTES, PathError, read_parquet, read_text, regular_file
from data.zoo.spec import Axis, ZooSpec
from data.zoo.spec_builder import SpecDraft
from data.zoo.store import write_checkpoint

__all__ = ["ImportError_", "ManifestReport", "import_manifest", "main"]
PARAMS_HASH = "manifest-import"
REQUIRED = ("checkpoint", "seed", "epoch")
PERF = {"train_loss": pl.Float64, "test_loss": pl.Float64, "train_acc": pl.Float64, "test_acc": pl.Float64}
DESCRIPTION_KEYS = {"name", "description", "task", "arch", "task_params", "arch_params", "training", "axes", "metrics"}


@dataclass(frozen=True)
class ManifestReport:
    rows: int  # manifest rows imported (one catalog row each)
    models: int  # distinct (knobs, seed)
    checkpoints: int  # checkpoint files converted


@dataclass(frozen=True)
class Description:
    """The zoo description: a spec's fields less seeds and grid, plus the manifest columns of the two knobs."""

    raw: dict
    load: Axis
    temperature: Axis
    load_column: str
    temperature_column: str


def read_description(path: Path, load_column: str | None = None, temperature_column: str | None = None) -> Description:
    try:
        raw = tomllib.loads(read_text(path, MAX_TEXT_BYTES))
    except PathError as e:
        raise ImportError_(f"cannot read the zoo description {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ImportError_(f"{path.name}: not valid TOML ({e})") from None
    if unknown := sorted(set(raw) - DESCRIPTION_KEYS):
        hint = " (seeds and grid come from the manifest)" if {"seeds", "grid"} & set(unknown) else ""
        raise ImportError_(f"{path.name}: unknown field(s) {unknown}{hint}")
    for key in ("name", "task", "arch"):
        if not isinstance(raw.get(key), str):
            raise ImportError_(f"{path.name}: needs {key} = \"...\"")
    axes = raw.get("axes", {})
    parsed = []
    for which, override in (("load", load_column), ("temperature", temperature_column)):
        ax = axes.get(which) if isinstance(axes, dict) else None
        if not isinstance(ax, dict) or not isinstance(ax.get("knob"), str) or not isinstance(ax.get("increases"), bool):
            raise ImportError_(f"{path.name}: [axes.{which}] needs knob = \"<parameter>\" and increases = true|false")
        parsed.append((Axis(ax["knob"], ax["increases"]), override or str(ax.get("column", ax["knob"]))))
    (load, lc), (temp, tc) = parsed
    if load.knob == temp.knob:
        raise ImportError_(f"{path.name}: the load and temperature axes are the same knob {load.knob!r}")
    return Description(raw, load, temp, lc, tc)


def read_manifest(path: Path) -> pl.DataFrame:
    """The manifest as a frame (bounded: a regular file of at most MAX_TABLE_BYTES)."""
    try:
        if regular_file(path, MAX_TABLE_BYTES) is None:
            raise ImportError_(f"{path}: no such manifest")
        if path.suffix == ".parquet":
            return read_parquet(path)
        if path.suffix in (".csv", ".tsv"):
            return pl.read_csv(path, separator="\t" if path.suffix == ".tsv" else ",", infer_schema_length=None)
    except PathError as e:
        raise ImportError_(f"cannot read the manifest {e}") from None
    except pl.exceptions.PolarsError as e:
        raise ImportError_(f"{path.name}: not a readable table ({type(e).__name__}: "
                           f"{printable(str(e).splitlines()[0] if str(e) else '', 160)})") from None
    raise ImportError_(f"{path.name}: a manifest is a .csv, .tsv or .parquet file")


def _knob_values(df: pl.DataFrame, column: str, name: str) -> list:
    s = df[column]
    if s.null_count():
        row = int(s.is_null().arg_max()) + 1
        raise ImportError_(f"{name} row {row}: column {column!r} is empty")
    if s.dtype.is_integer():
        return [int(v) for v in s]
    if s.dtype.is_float():
        vals = [float(v) for v in s]
        bad = next((i for i, v in enumerate(vals) if not math.isfinite(v)), None)
        if bad is not None:
            raise ImportError_(f"{name} row {bad + 1}: column {column!r} is {vals[bad]} (a knob value must be finite)")
        return vals
    raise ImportError_(f"{name}: column {column!r} holds {s.dtype}, expected numbers (a knob value is an int or float)")


def _int_column(df: pl.DataFrame, column: str, name: str) -> list[int]:
    s = df[column]
    if not s.dtype.is_integer() or s.null_count() or (s < 0).any():
        bad = next((i for i, v in enumerate(s.to_list()) if not (isinstance(v, int) and v >= 0)), 0)
        raise ImportError_(f"{name} row {bad + 1}: {column} must be a non-negative integer, "
                           f"found {printable(repr(s[bad]), 40)}")
    return [int(v) for v in s]


def _spec_text(desc: Description, loads: list, temps: list, seeds: list[int], epochs: list[int],
               stored: list[int]) -> str:
    raw = desc.raw
    training = dict(raw.get("training", {}))
    last = max(epochs)
    training.setdefault("epochs", max(1, last))
    training["checkpoint_epochs"] = sorted(set(stored))
    training.setdefault("analysis_epochs", [last])
    return SpecDraft(
        raw["name"], raw["task"], raw["arch"], tuple(sorted(set(seeds))), training,
        {desc.load.knob: tuple(sorted(set(loads))), desc.temperature.knob: tuple(sorted(set(temps)))},
        desc.load, desc.temperature, str(raw.get("description", f"imported from a manifest ({len(seeds)} rows)")),
        dict(raw.get("task_params", {})), dict(raw.get("arch_params", {})), dict(raw.get("metrics", {}))).toml()


def fit_state(model: torch.nn.Module, state: dict[str, torch.Tensor], where: str, arch: str) -> dict[str, torch.Tensor]:
    """`state` cast to the model's dtypes, or a one-line error saying how it does not fit."""
    want = model.state_dict()
    missing = [k for k in want if k not in state]
    extra = [k for k in state if k not in want]
    wrong = [f"{k} {tuple(state[k].shape)} ≠ {tuple(want[k].shape)}" for k in want
             if k in state and tuple(state[k].shape) != tuple(want[k].shape)]
    if missing or extra or wrong:
        parts = ([f"missing {', '.join(map(repr, missing[:3]))}" + (" …" if len(missing) > 3 else "")] if missing else []) \
            + ([f"unexpected {', '.join(map(repr, extra[:3]))}" + (" …" if len(extra) > 3 else "")] if extra else []) \
            + ([f"shapes differ: {'; '.join(wrong[:3])}"] if wrong else [])
        raise ImportError_(f"{where}: does not fit the {arch}: {'; '.join(parts)}")
    state = {k: v.to(want[k].dtype) for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:  # not foreseen by the comparison above; still this row's problem, on one line
        raise ImportError_(f"{where}: does not fit the {arch}: {printable(str(e).splitlines()[0], 160)}") from None
    return state


def import_manifest(manifest: str | Path, describe: str | Path, out: str | Path, *, load_column: str | None = None,
                    temperature_column: str | None = None) -> ManifestReport:
    manifest, out = Path(manifest), Path(out)
    check_new_output(out)
    desc = read_description(Path(describe), load_column, temperature_column)
    if desc.raw["task"] not in TASKS:
        raise ImportError_(f"task: unknown task {desc.raw['task']!r}; available: {sorted(TASKS)}")
    df = read_manifest(manifest)
    name = manifest.name
    need = [*REQUIRED, desc.load_column, desc.temperature_column]
    if missing := [c for c in need if c not in df.columns]:
        raise ImportError_(f"{name}: missing column(s) {missing}; expected {need} (found {df.columns[:12]})")
    if df.is_empty():
        raise ImportError_(f"{name}: no rows")
    loads = _knob_values(df, desc.load_column, name)
    temps = _knob_values(df, desc.temperature_column, name)
    seeds, epochs = _int_column(df, "seed", name), _int_column(df, "epoch", name)
    if df["checkpoint"].dtype not in (pl.String, pl.Null):
        raise ImportError_(f"{name}: column 'checkpoint' holds {df['checkpoint'].dtype}, expected file paths")
    paths = [p if p else None for p in df["checkpoint"].to_list()]
    for col in PERF:
        if col in df.columns and not (df[col].dtype.is_numeric() or df[col].dtype == pl.Null):
            raise ImportError_(f"{name}: column {col!r} holds {df[col].dtype}, expected numbers")
    knob_cols = {desc.load_column, desc.temperature_column}
    extra = [c for c in df.columns if c not in {*REQUIRED, *PERF, *knob_cols} and df[c].dtype.is_numeric()]
    seen: dict[tuple, int] = {}
    for i, key in enumerate(zip(loads, temps, seeds, epochs)):
        if key in seen:
            raise ImportError_(f"{name} row {i + 1}: same {desc.load.knob}, {desc.temperature.knob}, seed and epoch "
                               f"as row {seen[key] + 1}")
        seen[key] = i
    stored = [e for e, p in zip(epochs, paths) if p is not None]
    text = _spec_text(desc, loads, temps, seeds, epochs, stored)
    counts = {"checkpoints": 0}
    ids: dict[tuple, object] = {}  # (load, temperature, seed) -> the spec's ModelConfig, set by fill

    def fill(root: Path, spec: ZooSpec) -> list[dict]:
        ids.update({(dict(c.knobs)[desc.load.knob], dict(c.knobs)[desc.temperature.knob], c.seed): c
                    for c in spec.models()})
        models: dict[str, torch.nn.Module] = {}
        rows = []
        for i, (lv, tv, seed, epoch, rel) in enumerate(zip(loads, temps, seeds, epochs, paths)):
            cfg = ids[lv, tv, seed]
            model = model_of(spec, cfg, models, f"{name} row {i + 1}")
            ckpt = None
            if rel is not None:
                where = f"{name} row {i + 1} ({printable(rel, 80)})"
                try:
                    state = load_checkpoint(manifest.parent / rel).state
                except CheckpointError as e:
                    raise ImportError_(f"{where}: {e}") from None
                state = fit_state(model, state, where, spec.arch)
                ckpt = write_checkpoint(root, cfg.model_id, epoch, state)  # one checkpoint in memory at a time
                counts["checkpoints"] += 1
                del state
            perf = {c: (df[c][i] if c in df.columns else None) for c in PERF}
            for c in ("train_loss", "test_loss"):  # the catalog's losses are never null: NaN = not measured
                perf[c] = math.nan if perf[c] is None else float(perf[c])
            rows.append({"model_id": cfg.model_id, "arch": spec.arch, "seed": seed, "epoch": epoch,
                         "n_params": n_params(model), **perf, "checkpoint": ckpt,
                         desc.load.knob: lv, desc.temperature.knob: tv})
        return rows

    def metrics() -> list[dict]:  # runs after fill
        out_rows = []
        for col in extra:
            for i, v in enumerate(df[col].to_list()):
                if v is None:
                    continue
                v = float(v)
                out_rows.append({"model_id": ids[loads[i], temps[i], seeds[i]].model_id, "other_id": None, "epoch": epochs[i],
                                 "metric": col, "split": None, "layer": None, "coord": None,
                                 "value": v if math.isfinite(v) else None, "stderr": None, "params_hash": PARAMS_HASH,
                                 "error": None if math.isfinite(v) else "not finite in the manifest"})
        return out_rows

    try:
        write_zoo(out, text, fill, metrics, source=f"{Path(describe).name} + {name}")
    except SpecError as e:
        raise ImportError_(str(e)) from None
    return ManifestReport(len(df), len({(lv, tv, s) for lv, tv, s in zip(loads, temps, seeds)}), counts["checkpoints"])


def main(argv: Sequence[str] | None = None, prog: str = "python -m data.importers.manifest") -> int:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    ap.add_argument("manifest", help="the manifest (.csv, .tsv or .parquet); checkpoint paths are relative to its folder")
    ap.add_argument("--describe", required=True, help="the zoo description (TOML: a spec without seeds and grid)")
    ap.add_argument("--out", required=True, help="new zoo directory (must not exist)")
    ap.add_argument("--load-column", help="the manifest column of the load knob (default: the knob's name)")
    ap.add_argument("--temperature-column", help="the manifest column of the temperature knob (default: its name)")
    args = ap.parse_args(argv)

    def body() -> int:
        rep = import_manifest(args.manifest, args.describe, args.out, load_column=args.load_column,
                              temperature_column=args.temperature_column)
        print(f"{args.out}: imported {rep.rows} manifest rows ({rep.models} models, {rep.checkpoints} checkpoints)")
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
