"""The notebook bridge: every chart's "copy as Python" — the few lines of Polars that load, from the zoo's
own directory, exactly the rows the chart is drawn from.

A `Slice` is a filter on one of the zoo's tables (catalog, metrics, embeddings, phase ensembles). Its code is the only
definition of what it loads: `Slice.load` runs that very code, so a test that compares `load` with the
chart's table checks the snippet a user copies, not a paraphrase of it.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from analysis.studies.embed import EMBEDDINGS_FILE
from analysis.studies.phase_ensembles import PHASE_ENSEMBLES_FILE
from data.zoo.store import CATALOG_FILE, METRICS_FILE

FILES = {"catalog": CATALOG_FILE, "metrics": METRICS_FILE, "embeddings": EMBEDDINGS_FILE,
         "phase_ensembles": PHASE_ENSEMBLES_FILE}


@dataclass(frozen=True)
class Slice:
    """Rows of `table` (a key of FILES) of the zoo at `root` where every (column, value) of `where` holds —
    a list or tuple value means "one of these", None means "is null" — restricted to `columns` (() = all),
    sorted by `sort`. `then` are further lines of Python on `frame` (an aggregation the chart shows: they
    may call PhaseZoo's own functions), run after the load."""

    root: str
    table: str
    where: tuple[tuple[str, object], ...] = ()
    columns: tuple[str, ...] = ()
    sort: tuple[str, ...] = ()
    then: str = ""

    @staticmethod
    def of(root: str | Path, table: str, where: Mapping[str, object] | None = None, *,
           columns: Sequence[str] = (), sort: Sequence[str] = (), then: str = "") -> Slice:
        if table not in FILES:
            raise ValueError(f"no zoo table {table!r}; tables: {', '.join(FILES)}")
        frozen = tuple((k, tuple(v) if isinstance(v, list | tuple) else v) for k, v in (where or {}).items())
        return Slice(str(root), table, frozen, tuple(columns), tuple(sort), then)

    def _condition(self, column: str, value: object) -> str:
        col = f"pl.col({column!r})"
        if value is None:
            return f"{col}.is_null()"
        if isinstance(value, tuple):
            return f"{col}.is_in({list(_plain(v) for v in value)!r})"
        return f"({col} == {_plain(value)!r})"

    def code(self) -> str:
        """Python source that leaves the slice in `frame` (a Polars DataFrame)."""
        lines = ["import polars as pl", "",
                 f"frame = (pl.scan_parquet({str(Path(self.root) / FILES[self.table])!r})"]
        lines += [f"         .filter({self._condition(k, v)})" for k, v in self.where]
        if self.columns:
            lines.append(f"         .select({list(self.columns)!r})")
        if self.sort:
            lines.append(f"         .sort({list(self.sort)!r})")
        lines[-1] += "\n         .collect())"
        return "\n".join(lines) + ("\n" + self.then.strip() if self.then.strip() else "") + "\n"

    def load(self) -> pl.DataFrame:
        """Run `code()` (our own generated source: every value in it is a repr of a zoo's own value)."""
        scope: dict = {}
        exec(compile(self.code(), f"<slice of {self.table}>", "exec"), scope)  # noqa: S102
        return scope["frame"]


def _plain(value: object) -> object:
    """A NumPy or Polars scalar as the Python value its repr should show (np.int64(8) → 8)."""
    return value.item() if hasattr(value, "item") else value
