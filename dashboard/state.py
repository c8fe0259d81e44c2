"""The view in the URL: `?zoo=…&epoch=…&metric=…&cell=…` (and the thresholds when changed), on every page, so
a copied link opens exactly the view it was copied from.

One codec per query parameter (`EPOCH`, `METRIC`, …: its text ↔ a widget's value, refusing what the zoo lacks) and one
table of the widget keys each page draws (`BINDINGS`), so pages keep their own keys and need no code for the
sync. The router (app.py) calls, each run:

  `restore()`       before the zoo picker: a URL that changed from outside (first run, a pasted link) becomes
                    the session's view; a zoo the path policy refuses is one st.error and the default view;
  `seed(page, zoo)` after it: a new zoo drops every bound widget's value (each zoo opens at its own defaults,
                    nothing carries over), then the page's widgets that have no value yet (just opened) or a
                    pasted link's get the view's;
  `sync(page, zoo)` before and after the page ran: the view from the page's widgets, written to the URL;
  `report(page)`    after: a linked value the page's widget refused (Streamlit resets a select box whose value
                    is not among its options) becomes a one-line warning.

A page switch clears the browser's query string; the session's view carries it to the next page.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import streamlit as st

from dashboard.text import literal
from data.zoo.paths import zoo_roots
from data.zoo.spec import ZooSpec
from data.zoo.store import Zoo, builtin_zoos

VIEW_KEY = "url_view"  # {query parameter: text}: the session's view, the URL's source
SENT_KEY = "url_sent"  # the query parameters last written to the URL (a different incoming URL is a pasted link)
ZOO_SEEN_KEY = "url_zoo"  # the zoo directory the view belongs to
PASTED_KEY = "url_pasted"  # this run restores a link: its values override the widgets'
SEEDED_KEY = "url_seeded"  # {widget key: value} seeded from a link this run, checked by `report`
REFUSED_KEY = "url_refused"  # one-line warnings of this run
DEFAULTS_KEY = "url_defaults"  # {widget key: default}: a value equal to it stays out of the URL
ZOO_PARAM = "zoo"
# pages whose address is never rewritten: the glossary's links end in an #anchor that a query string written
# by the page would drop before the browser scrolls to it (the view still carries on to the next page)
UNLINKED = frozenset({"glossary"})
MAX_TEXT = 120  # characters of a parameter's value kept (a metric name, a cell, a number: < 60)


@dataclass(frozen=True)
class Codec:
    """A query parameter: `encode` a widget value as the URL's text, `decode` it back for a zoo's spec
    (ValueError with one line when the text is malformed or the zoo lacks the value). `when_changed`: written
    only while the value differs from its page's declared default (`default`)."""

    name: str
    encode: Callable[[Any], str]
    decode: Callable[[str, ZooSpec], Any]
    when_changed: bool = False


def _epoch(text: str, spec: ZooSpec) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        raise ValueError(f"epoch {text!r} is not a whole number")
    return int(text)  # which epochs exist is the page's widget's to say (logged, analysis or embedded)


def _metric_key(value: tuple) -> str:
    """(metric, split, coord) as `metric[:split[:coord]]`; the split and coord only where set."""
    name, split, coord = value
    parts = [name, split or "", "" if coord is None else repr(float(coord))]  # repr: exact round trip
    while parts[-1] == "":
        parts.pop()
    return ":".join(parts)


def _metric(text: str, spec: ZooSpec) -> tuple:
    name, split, coord = (text.split(":") + ["", ""])[:3]
    if not name or text.count(":") > 2:
        raise ValueError(f"metric {text!r} is not `name[:split[:coord]]`")
    try:
        return name, split or None, float(coord) if coord else None
    except ValueError:
        raise ValueError(f"metric {text!r}: its coordinate is not a number") from None


def _cell(text: str, spec: ZooSpec) -> tuple:
    knobs = (spec.load.knob, spec.temperature.knob)
    parts = text.split(",")
    if len(parts) != 2:
        raise ValueError(f"cell {text!r} is not `{knobs[0]},{knobs[1]}`")
    values = []
    for knob, part in zip(knobs, parts):
        grid = spec.grid[knob]
        try:
            v = type(grid[0])(part)
        except ValueError:
            v = None
        if v not in grid:
            raise ValueError(f"cell {text!r}: {knob} = {part} is not in this zoo's grid {list(grid)}")
        values.append(v)
    return tuple(values)


def _number(name: str, lo: float, hi: float, log10: bool = False) -> Codec:
    """A threshold slider's value; `log10`: the slider is log₁₀ of the threshold, the URL the threshold itself
    (in its quantity's units), rounded to the slider's 0.01 step on the way back."""
    def decode(text: str, spec: ZooSpec) -> float:
        try:
            x = float(text)
        except ValueError:
            raise ValueError(f"{name} {text!r} is not a number") from None
        if not (math.isfinite(x) and lo <= x <= hi):
            raise ValueError(f"{name} = {text} is outside {lo:g} – {hi:g}")
        return round(math.log10(x), 2) if log10 else x

    encode = (lambda v: f"{10 ** v:.4g}") if log10 else (lambda v: f"{v:g}")
    return Codec(name, encode, decode, when_changed=True)


EPOCH = Codec("epoch", str, _epoch)
METRIC = Codec("metric", _metric_key, _metric)  # a (metric, split, coord) select box
RESULT = Codec("metric", str, lambda text, spec: _metric(text, spec)[0])  # a select box of names only
CELL = Codec("cell", lambda v: f"{v[0]},{v[1]}", _cell)
TAU_LOSS = _number("tau_loss", 1e-12, 10.0, log10=True)  # the slider spans log₁₀ τ_L ≤ 1
EPS = _number("eps", 0.0, 10.0)
TAU_CKA = _number("tau_cka", 0.0, 1.0)
PARAMS = (ZOO_PARAM, *dict.fromkeys(c.name for c in (EPOCH, METRIC, CELL, TAU_LOSS, EPS, TAU_CKA)))


@dataclass(frozen=True)
class Binding:
    """The widget(s) `keys` of the page at `page` (its url_path) that show `codec`'s query parameter: one
    key, or one per knob (the cell: load, temperature)."""

    page: str
    codec: Codec
    keys: tuple[str, ...]


BINDINGS = (
    Binding("overview", EPOCH, ("overview_epoch",)),
    Binding("phases", EPOCH, ("phases_epoch",)),
    Binding("phases", METRIC, ("phases_metric",)),
    Binding("phases", TAU_LOSS, ("phases_tau_loss",)),
    Binding("phases", EPS, ("phases_eps",)),
    Binding("phases", TAU_CKA, ("phases_tau_cka",)),
    Binding("cell", EPOCH, ("cell_epoch",)),
    Binding("cell", CELL, ("cell_load", "cell_temperature")),
    Binding("spectra", EPOCH, ("spectra_epoch",)),
    Binding("weights", EPOCH, ("weights_epoch",)),
    Binding("training", CELL, ("training_load", "training_temperature")),
    Binding("groups", EPOCH, ("groups_epoch",)),
    Binding("groups", METRIC, ("groups_metric",)),
    Binding("compare", METRIC, ("compare_metric",)),
    Binding("downstream", EPOCH, ("downstream_epoch",)),
    Binding("downstream", RESULT, ("downstream_metric",)),
)


def _value(b: Binding) -> Any:
    return tuple(st.session_state[k] for k in b.keys) if len(b.keys) > 1 else st.session_state[b.keys[0]]


def _set(b: Binding, value: Any) -> None:
    for k, v in zip(b.keys, value if len(b.keys) > 1 else (value,)):
        st.session_state[k] = v


def zoo_text(root: str | Path) -> str:
    """The URL's zoo: a built-in zoo by its name, any other by its directory."""
    named = {str(p): p.name for p in builtin_zoos()}
    return named.get(str(root), str(root))


def zoo_choice(text: str) -> str:
    """The zoo directory the URL's `zoo` names (a built-in name, else the text as a directory)."""
    named = {p.name: str(p) for p in builtin_zoos()}
    return named.get(text, text)


def refuse(message: str) -> None:
    st.session_state.setdefault(REFUSED_KEY, []).append(message)


def default(key: str, value: Any) -> None:
    """Declare the default of widget `key` (a threshold's, computed by its page): equal to it, it stays out
    of the URL."""
    st.session_state.setdefault(DEFAULTS_KEY, {})[key] = value


def within(key: str, lo: float, hi: float) -> None:
    """Before a slider spanning lo – hi is drawn: a linked value outside its range is refused (a slider would
    raise on it), and the slider opens at its default."""
    v = st.session_state.get(key)
    if v is not None and not lo <= v <= hi:
        del st.session_state[key]
        st.session_state.get(SEEDED_KEY, {}).pop(key, None)
        refuse(f"A threshold of {v:g} is outside its slider's range {lo:g} – {hi:g} here: showing its default.")


def restore(zoo_key: str, custom_key: str, other: str, open_zoo: Callable[[str], Zoo]) -> None:
    """A URL that changed from outside becomes the view, its zoo the picker's choice (`zoo_key`, or `other`
    with the directory in `custom_key`). A zoo `open_zoo` refuses: one st.error, the default view."""
    st.session_state[REFUSED_KEY], st.session_state[SEEDED_KEY] = [], {}
    incoming = st.query_params.to_dict()
    sent = st.session_state.get(SENT_KEY)
    st.session_state[PASTED_KEY] = pasted = bool(incoming) and incoming != sent
    if not pasted:
        return
    # a value longer than any this view writes is cut (it is refused below, in a message of bounded length)
    view = {k: v[:MAX_TEXT] for k, v in incoming.items() if k in PARAMS and k != ZOO_PARAM}
    st.session_state[VIEW_KEY] = view
    if ZOO_PARAM not in incoming:
        return
    path = zoo_choice(incoming[ZOO_PARAM])
    try:
        if zoo_roots() is None and path == incoming[ZOO_PARAM]:  # not a built-in name
            # an unrestricted server opens any directory typed in its picker, but a link is someone else's
            # text: it may name a directory only where $PHASEZOO_ZOO_ROOTS says which ones are allowed
            raise ValueError(f"{path}: a link names a built-in zoo, or a directory under PHASEZOO_ZOO_ROOTS")
        root = str(open_zoo(path).root)
    except (ValueError, OSError) as e:  # ZooError and PathError are ValueErrors
        why = str(e) if len(str(e)) <= 2 * MAX_TEXT else str(e)[:2 * MAX_TEXT] + "…"
        st.error(literal(f"The link's zoo cannot be opened ({why}): showing the default view."))
        st.session_state[VIEW_KEY] = {}
        return
    builtin = [str(p) for p in builtin_zoos()]
    st.session_state[zoo_key] = root if root in builtin else other
    if root not in builtin:
        st.session_state[custom_key] = path


def seed(page: str, zoo: Zoo) -> None:
    """Give the page's widgets the view's values: those without a value yet, or all of them for a pasted
    link. A pasted link or a zoo other than the view's first drops every bound widget's value (what the link
    leaves out opens at its default; nothing carries over from another zoo), and a new zoo the view (but a
    link's)."""
    root, pasted = str(zoo.root), st.session_state.get(PASTED_KEY, False)
    if pasted or st.session_state.get(ZOO_SEEN_KEY) != root:
        for b in BINDINGS:
            for k in b.keys:
                st.session_state.pop(k, None)
        if not pasted:
            st.session_state[VIEW_KEY] = {}
        st.session_state[ZOO_SEEN_KEY] = root
    view = st.session_state.setdefault(VIEW_KEY, {})
    for b in BINDINGS:
        if b.page != page or b.codec.name not in view or not (pasted or any(k not in st.session_state for k in b.keys)):
            continue
        try:
            value = b.codec.decode(view[b.codec.name], zoo.spec)
        except ValueError as e:
            if pasted:
                refuse(f"Not shown: {e}.")
            continue
        _set(b, value)
        if pasted:
            st.session_state[SEEDED_KEY][b.keys[0]] = (b, value)


def params(page: str, zoo_root: str | None) -> dict[str, str]:
    """The view with the page's widgets' current values, as query parameters (zoo first)."""
    view = dict(st.session_state.get(VIEW_KEY, {}))
    defaults = st.session_state.get(DEFAULTS_KEY, {})
    for b in BINDINGS:
        if b.page != page or any(k not in st.session_state for k in b.keys):
            continue
        value, codec = _value(b), b.codec
        if codec.when_changed and b.keys[0] in defaults and value == defaults[b.keys[0]]:
            view.pop(codec.name, None)
        else:
            view[codec.name] = codec.encode(value)
    st.session_state[VIEW_KEY] = view
    return ({ZOO_PARAM: zoo_text(zoo_root)} if zoo_root else {}) | dict(sorted(view.items()))


def sync(page: str, zoo_root: str | None) -> dict[str, str]:
    """Write the view to the URL (only when it changed; never on a page of UNLINKED); returns its query
    parameters."""
    qp = params(page, zoo_root)
    if page not in UNLINKED and st.query_params.to_dict() != qp:
        st.query_params.from_dict(qp)  # raises StopException after a st.stop(): then nothing was sent
    st.session_state[SENT_KEY] = qp
    return qp


def link(qp: dict[str, str]) -> str:
    """The full link of the view (st.context.url is the page's address without its query string)."""
    base = st.context.url or ""
    return f"{base}?{urlencode(qp, safe=':,')}" if qp else base  # `metric=a:b`, `cell=16,64` kept readable


def report() -> None:
    """After the page ran: a linked value its widget refused (reset to its default) becomes a warning; then
    every warning of this run, one line each."""
    for key, (b, value) in st.session_state.get(SEEDED_KEY, {}).items():
        if key in st.session_state and _value(b) != value:
            refuse(f"This zoo has no {b.codec.name} {b.codec.encode(value)} here: showing "
                   f"{b.codec.encode(_value(b))}.")
    for message in st.session_state.get(REFUSED_KEY, []):
        st.warning(literal(message), icon=":material/link_off:")  # it quotes the URL's text
