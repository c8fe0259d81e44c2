"""Reading the published layout of the Phase-Transition Model Zoo (Schürholt et al. 2025; science.md §3.1):
one trial directory at a time, as untrusted input. data.importers.ptmz builds our zoo from what this returns.

    <trial>/params.json or config.json    flat "::"-namespaced config (nested objects are flattened to it)
    <trial>/result.json                   JSON lines: line k = epoch k (line 0 = untrained)
    <trial>/checkpoint_000115/checkpoints torch.save(state_dict), read through data.checkpoint.load

Every file must be a regular file under a size limit before a byte is read (a FIFO would block a reader
forever), JSON is depth-bounded, config knobs are range-checked, and checkpoints go through the upload reader
and must fit our ResNet width variant (data.models.resnet) exactly. A problem is an ImportError_ with a one-line
message naming the trial directory and file, or, where it skips only a result line or a checkpoint, such a line
added to `problems`. The keys read and their mapping: docs/import.md.
"""
from __future__ import annotations

import json
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import torch

from data.checkpoint.load import CheckpointError, max_bytes, read_checkpoint
from data.models.archs import build_model, n_params
from data.tasks.builtin import TASKS

ARCH_NAMES = {"Resnet18_width": "resnet18_width", "Resnet50_width": "resnet50_width"}
CONFIG_FILES = ("params.json", "config.json")  # Ray Tune writes params.json; the published README draws config.json
# Size limits in bytes. A config is ~5 KB and a result.json of 150 epochs with its nested configs < 1 MB.
MAX_CONFIG_BYTES, MAX_RESULT_BYTES = 2**20, 8 * 2**20
MAX_JSON_DEPTH = 16  # the deepest the layout uses is 3 (line → list of models → list of eigenvalues)
# Knob ranges: far beyond the published grids (widths 2–256, batch sizes 8–2048), refusing only the absurd.
# key -> (type, default (None: required), lowest, highest)
KNOBS = {"model::width": (int, None, 1, 4096), "model::o_dim": (int, None, 1, 100_000),
         "training::batchsize": (int, None, 1, 2**20), "seed": (int, None, 0, 2**32 - 1),
         "optim::lr": (float, 0.1, 1e-12, 100.0), "optim::wd": (float, 0.0, 0.0, 100.0),
         "training::epochs_train": (int, 0, 0, 100_000)}
MAX_EPOCH = 100_000

# Scalar key -> (our metric, split, coord, exponentiate?). Suffix _train = training set, _val = test set; the
# bare names are the other split of their pair (log_hessian_trace: test, log_hessian_top_ev: train). "hessina"
# is the publishers' misspelling of the raw (not logged) Hessian trace; *_mean and *_list are what their
# hessian_metric.py writes (means and lists over the models of one run: one model per trial here). Per
# (metric, split, coord) the first key in this order that a line has wins: logged before raw before mean.
KEY_MAP = {
    "log_hessian_trace_train": ("hessian_trace_hutchinson", "train", None, True),
    "log_hessian_trace": ("hessian_trace_hutchinson", "test", None, True),
    "hessina_trace_train": ("hessian_trace_hutchinson", "train", None, False),
    "hessina_trace": ("hessian_trace_hutchinson", "test", None, False),
    "log_hessian_top_ev": ("hessian_top_eigenvalue", "train", 1.0, True),
    "log_hessian_top_ev_val": ("hessian_top_eigenvalue", "test", 1.0, True),
    "hessian_trace_train_mean": ("hessian_trace_hutchinson", "train", None, False),
    "hessian_trace_val_mean": ("hessian_trace_hutchinson", "test", None, False),
    "curve_mc_train_error": ("mc_bezier", "train", None, False),
    "curve_mc_test_error": ("mc_bezier", "test", None, False),
    "representation_similarity": ("cka_logits_test", "test", None, False),
    "wiseft_acc_test_delta": ("wiseft_acc_test_delta", "test", None, False),
    "gitrebasin_acc_test_delta": ("gitrebasin_acc_test_delta", "test", None, False),
}
# List key -> (metric, split, coord, False). hessina_trace_*_list: [trace of each model];
# hessian_top_eigenvalues_*_list: [[top-k eigenvalues] of each model] (rank r gets coord r). Read after the
# scalar keys, before the means of the eigenvalues: such a mean pools all k eigenvalues, so it is the top
# eigenvalue only for PyHessian's default k = 1.
LIST_KEYS = {"hessina_trace_train_list": ("hessian_trace_hutchinson", "train", None, False),
             "hessina_trace_val_list": ("hessian_trace_hutchinson", "test", None, False),
             "hessian_top_eigenvalues_train_list": ("hessian_top_eigenvalue", "train", 1.0, False),
             "hessian_top_eigenvalues_val_list": ("hessian_top_eigenvalue", "test", 1.0, False)}
MEAN_LAST = {"hessian_top_eigenvalues_train_mean": ("hessian_top_eigenvalue", "train", 1.0, False),
             "hessian_top_eigenvalues_val_mean": ("hessian_top_eigenvalue", "test", 1.0, False)}
# hessian_metric.py's own keys: their *_val_* is the split its "dataloader_val" names; a *_mean is over its *_list
HESSIAN_METRIC = {*LIST_KEYS, *MEAN_LAST, "hessian_trace_train_mean", "hessian_trace_val_mean"}
MEAN_OF = {k: k.replace("_mean", "_list").replace("hessian_trace", "hessina_trace") for k in HESSIAN_METRIC
           if k.endswith("_mean")}
PERF = {"train_loss": "train", "train_acc": "train", "test_loss": "test", "test_acc": "test"}
LOSSES = ("train_loss", "test_loss")  # the catalog requires them; accuracies may be null
# Understood and deliberately not imported: the validation split (no catalog column), which split *_val means,
# and Ray Tune's bookkeeping.
IGNORED = frozenset({
    "val_loss", "val_acc", "dataloader_val", "config", "training_iteration", "trial_id", "experiment_id", "date",
    "timestamp", "time_this_iter_s", "time_total_s", "time_since_restore", "timesteps_total", "timesteps_since_restore",
    "iterations_since_restore", "episodes_total", "pid", "hostname", "node_ip", "done", "experiment_tag",
    "warmup_time", "should_checkpoint", "checkpoint_dir_name", "episode_reward_mean", "episode_reward_max",
    "episode_reward_min", "episode_len_mean", "episodes_this_iter"})
KNOWN = frozenset(PERF) | set(KEY_MAP) | set(LIST_KEYS) | set(MEAN_LAST) | IGNORED
NOT_FINITE = "not finite in the published result.json"


class ImportError_(ValueError):
    """A trial or file of the published layout cannot be imported (the message names which)."""


@dataclass(frozen=True)
class Line:
    perf: dict[str, float | None]  # PERF key -> value (accuracies None where not finite)
    values: tuple[tuple, ...]  # (metric, split, coord, value or None, error or None)


@dataclass(frozen=True)
class Trial:
    name: str
    arch: str
    width: int
    batch_size: int
    seed: int
    n_classes: int
    lr: float
    weight_decay: float
    epochs: int
    lines: dict[int, Line]  # epoch -> its result line
    checkpoints: dict[int, Path]  # epoch -> checkpoint file, read only when the zoo is written


@dataclass(frozen=True)
class ImportReport:
    trials: int  # trial directories found
    imported: int  # trials in the zoo
    problems: tuple[str, ...]  # one line each: "trial/file: what — consequence"


def printable(text: object, n: int = 240) -> str:
    """Names and values come from the files: one line, no control characters, bounded length."""
    s = "".join(c if c.isprintable() else "?" for c in str(text))
    return s if len(s) <= n else s[: n - 1] + "…"


def _read_bytes(path: Path, where: str, limit: int) -> bytes:
    """At most `limit` bytes of a regular file. The type is checked before opening (a FIFO would block an
    open, a device never end), and again on the opened descriptor, which O_NONBLOCK keeps from blocking."""
    try:
        st = path.stat()
        if stat.S_ISREG(st.st_mode):
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ImportError_(f"{where}: missing") from None
    except OSError as e:
        raise ImportError_(f"{where}: cannot be read ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ImportError_(f"{where}: is not a regular file ({_kind(st.st_mode)})")
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # replaced between stat and open
            raise ImportError_(f"{where}: is not a regular file ({_kind(st.st_mode)})")
        if st.st_size > limit:
            raise ImportError_(f"{where}: is {st.st_size:,} bytes, over the limit of {limit:,}")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(limit + 1)  # it may have grown since fstat
    except OSError as e:
        raise ImportError_(f"{where}: cannot be read ({e.strerror})") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ImportError_(f"{where}: is over the limit of {limit:,} bytes")
    return data


def _kind(mode: int) -> str:
    kinds = {stat.S_ISDIR: "a directory", stat.S_ISFIFO: "a FIFO", stat.S_ISSOCK: "a socket",
             stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device"}
    return next((k for test, k in kinds.items() if test(mode)), "not a plain file")


def _loads(text: str, where: str) -> object:
    """json.loads, its nesting bounded: CPython's parser raises RecursionError at the interpreter's recursion
    limit, and anything deeper than MAX_JSON_DEPTH is refused after. NaN and ±Infinity are read as floats (the
    callers check them); an integer literal over sys.get_int_max_str_digits() digits is refused."""
    try:
        obj = json.loads(text)
    except RecursionError:
        raise ImportError_(f"{where}: is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except json.JSONDecodeError as e:
        at = f"line {e.lineno}, column {e.colno}" if "\n" in text.strip() else f"column {e.colno}"
        raise ImportError_(f"{where}: is not valid JSON ({at})") from None
    except ValueError:
        raise ImportError_(f"{where}: holds a number too long to read") from None
    stack = [(obj, 1)] if isinstance(obj, (dict, list)) else []
    while stack:  # iterative: the check itself must not recurse
        o, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ImportError_(f"{where}: is nested deeper than {MAX_JSON_DEPTH} levels")
        stack += [(c, depth + 1) for c in (o.values() if isinstance(o, dict) else o) if isinstance(c, (dict, list))]
    return obj


def _flatten(obj: dict, prefix: str = "") -> dict:
    # a nested config {"model": {"width": 64}} is the flat {"model::width": 64} of params.json
    out = {}
    for k, v in obj.items():
        if isinstance(v, dict) and prefix.count("::") < MAX_JSON_DEPTH:
            out.update(_flatten(v, f"{prefix}{k}::"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _float(value: int | float) -> float:
    """A JSON number as a float; an integer literal beyond the float range (1e309 written out) is inf."""
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _knob(p: dict, key: str, where: str) -> int | float:
    kind, default, lo, hi = KNOBS[key]
    value = p.get(key, default)
    if value is None:
        raise ImportError_(f"{where}: missing key {key!r}")
    shown = printable(repr(value), 40)
    if not _number(value):
        raise ImportError_(f"{where}: {key} = {shown} is not a number")
    if not math.isfinite(_float(value)):
        raise ImportError_(f"{where}: {key} = {shown} is not a finite number")
    if kind is int and value != int(value):
        raise ImportError_(f"{where}: {key} = {shown} is not a whole number")
    if not lo <= value <= hi:
        raise ImportError_(f"{where}: {key} = {_float(value):g} is out of range ({lo:g} to {hi:g})")
    return kind(value)


def _read_params(trial: Path, task: str) -> dict:
    name = next((n for n in CONFIG_FILES if os.path.lexists(trial / n)), CONFIG_FILES[0])
    where = f"{printable(trial.name)}/{name}"
    raw = _read_bytes(trial / name, where, MAX_CONFIG_BYTES)
    params = _loads(raw.decode("utf-8", "replace"), where)
    if not isinstance(params, dict):
        raise ImportError_(f"{where}: holds a JSON {type(params).__name__}, not an object of config keys")
    params = _flatten(params)
    if params.get("model::type") not in ARCH_NAMES:
        raise ImportError_(f"{where}: model::type {printable(repr(params.get('model::type')), 40)} is not one of "
                           f"{sorted(ARCH_NAMES)}")
    out = {"arch": ARCH_NAMES[params["model::type"]], **{k: _knob(params, k, where) for k in KNOBS}}
    n_out = TASKS[task].shapes({})[1]
    if out["model::o_dim"] != n_out:
        raise ImportError_(f"{where}: model::o_dim = {out['model::o_dim']} but task {task} has {n_out} classes "
                           "(choose the task with --task)")
    return out


def _spans(numbers: list[int]) -> str:
    """[1, 3, 4, 5] -> "lines 1, 3–5" (one problem line for many result lines)."""
    runs: list[list[int]] = []
    for k in numbers:
        if runs and k == runs[-1][1] + 1:
            runs[-1][1] = k
        else:
            runs.append([k, k])
    text = ", ".join(f"{a}" if a == b else f"{a}–{b}" for a, b in runs[:10]) + (", …" if len(runs) > 10 else "")
    return f"line{'s' if len(numbers) > 1 else ''} {text}"


def _read_lines(trial: Path, problems: list[str], unknown: dict[str, list[str]]) -> dict[int, Line]:
    name = printable(trial.name)
    text = _read_bytes(trial / "result.json", f"{name}/result.json", MAX_RESULT_BYTES).decode("utf-8", "replace")
    lines: dict[int, Line] = {}
    issues: dict[str, list[int]] = {}  # problem -> the line numbers that have it
    for k, raw in enumerate(text.splitlines()):
        if k > MAX_EPOCH:
            problems.append(f"{name}/result.json: lines beyond epoch {MAX_EPOCH:,} — ignored")
            break
        if not raw.strip():
            continue
        try:
            row = _loads(raw, "line")
            if not isinstance(row, dict):
                raise ImportError_(f"line: is a JSON {type(row).__name__}, not an object")
            noted: list[str] = []
            lines[k] = _line(row, noted.append)
            for what in noted:
                issues.setdefault(what, []).append(k)
        except ImportError_ as e:
            issues.setdefault(f"skipped ({str(e).removeprefix('line: ')})", []).append(k)
            continue
        for key in row.keys() - KNOWN:
            seen = unknown.setdefault(key, [])
            if not seen or seen[-1] != name:
                seen.append(name)
    for what, ks in issues.items():
        problems.append(f"{name}/result.json {_spans(ks)}: {what}")
    if not lines:
        raise ImportError_(f"{name}/result.json: no readable epoch line")
    return lines


def _line(row: dict, note) -> Line:
    """Check one result line; `note(text)` records a problem of this line that does not skip it."""
    missing = [key for key in PERF if not _number(row.get(key))]
    if missing:
        raise ImportError_(f"line: {', '.join(missing)} missing or not a number")
    perf = {key: v if math.isfinite(v := _float(row[key])) else None for key in PERF}
    bad = [key for key in LOSSES if perf[key] is None]
    if bad:  # the catalog has no null loss: a diverged line cannot be a catalog row
        raise ImportError_(f"line: {', '.join(bad)} not finite")
    for key in (k for k, v in perf.items() if v is None):
        note(f"{key} not finite — stored as null")
    values, taken = [], set()
    val_split = "val" if row.get("dataloader_val") == "val" else "test"  # which split hessian_metric's *_val is
    for key, (metric, split, coord, exp) in [*KEY_MAP.items(), *LIST_KEYS.items(), *MEAN_LAST.items()]:
        if key not in row:
            continue
        split = val_split if key in HESSIAN_METRIC and "_val_" in key else split
        many = row.get(MEAN_OF.get(key, ""))
        if isinstance(many, list) and len(many) > 1:
            note(f"{key} is a mean over {len(many)} models, not this trial's — ignored")
            continue
        found = _list_values(key, row[key], note) if key in LIST_KEYS else [(coord, row[key])]
        for c, value in found:
            if (metric, split, c) in taken:
                continue
            if not _number(value):
                note(f"{key} holds a {type(value).__name__}, not a number — ignored")
                continue
            taken.add((metric, split, c))
            value = _float(value)
            if math.isfinite(value) and (not exp or value < 709.0):  # exp overflows a float above ~709.78
                values.append((metric, split, c, math.exp(value) if exp else value, None))
            else:
                note(f"{key} not finite{' once exponentiated' if math.isfinite(value) else ''} — stored as null")
                values.append((metric, split, c, None, NOT_FINITE))
    return Line(perf, tuple(values))


def _list_values(key: str, value: object, note) -> list[tuple]:
    """(coord, value) pairs of a one-model hessian_metric list: [trace] or [[top-k eigenvalues]] (also [ev])."""
    if not isinstance(value, list) or len(value) != 1:
        what = f"{len(value)} models' values" if isinstance(value, list) else f"a {type(value).__name__}"
        note(f"{key} holds {what}, not one model's — ignored")
        return []
    if "eigenvalues" not in key:
        return [(None, value[0])]
    evs = value[0] if isinstance(value[0], list) else value
    return [(float(r), v) for r, v in enumerate(evs[:64], start=1)]  # PyHessian's top-k: k is small


def reference_state(arch: str, task: str, n_classes: int, width: int) -> tuple[dict[str, torch.Tensor], int]:
    """The model's state dict on the meta device (names, shapes and dtypes at no memory cost) and its size."""
    with torch.device("meta"):
        model = build_model(arch, TASKS[task].input_shape, n_classes, {"width": width})
    return dict(model.state_dict()), n_params(model)


def load_checkpoint(path: Path, where: str, ref: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One published checkpoint, through the upload reader (size and zip-bomb checks, weights-only unpickling,
    DataParallel prefixes stripped, finite values), converted to the model's dtypes as load_state_dict would."""
    limit = max_bytes()
    data = _read_bytes(path, where, limit)
    try:  # the reader picks torch.load by the suffix; the published file has none
        state = read_checkpoint(data, "checkpoints.pt", limit=limit).state
    except CheckpointError as e:
        raise ImportError_(f"{where}: {str(e).removeprefix('checkpoints.pt: ')}") from None
    want = ref
    missing, extra = sorted(want.keys() - state.keys()), sorted(state.keys() - want.keys())
    if missing or extra:
        raise ImportError_(f"{where}: does not fit the trial's model: {len(missing)} key(s) missing "
                           f"{printable(missing[:3])}, {len(extra)} unexpected {printable(extra[:3])}")
    for k, t in want.items():
        if state[k].shape != t.shape:
            raise ImportError_(f"{where}: {printable(k)} has shape {tuple(state[k].shape)}, the model's is "
                               f"{tuple(t.shape)}")
    return {k: state[k].to(t.dtype).contiguous() for k, t in want.items()}


def read_trial(trial: Path, task: str, problems: list[str], unknown: dict[str, list[str]]) -> Trial:
    p = _read_params(trial, task)
    lines = _read_lines(trial, problems, unknown)
    checkpoints = {}
    for ck in sorted(trial.glob("checkpoint_*")):
        where = f"{printable(trial.name)}/{printable(ck.name)}"
        digits = ck.name.removeprefix("checkpoint_")
        if not (digits.isascii() and digits.isdigit() and len(digits) <= 6) or int(digits) > MAX_EPOCH:
            problems.append(f"{where}: not a checkpoint_<epoch> directory name — skipped")
        elif int(digits) not in lines:
            problems.append(f"{where}: result.json has no readable line for epoch {int(digits)} — skipped")
        else:
            checkpoints[int(digits)] = ck / "checkpoints"
    return Trial(printable(trial.name), p["arch"], p["model::width"], p["training::batchsize"], p["seed"],
                 p["model::o_dim"], p["optim::lr"], p["optim::wd"], p["training::epochs_train"], lines, checkpoints)
