"""The notebook bridge (dashboard.notebook): a chart's "copy as Python" snippet loads exactly the rows asked
for, and `load` runs the very snippet a user copies."""
import numpy as np
import polars as pl
import pytest

from dashboard.notebook import Slice
from tests.conftest import DEFAULT_ZOO


def test_snippet_loads_the_filtered_rows():
    s = Slice.of(DEFAULT_ZOO, "catalog", {"epoch": np.int64(300), "width": [8, 16]},
                 columns=["model_id", "width", "test_acc"], sort=["model_id"])
    code = s.code()
    assert "scan_parquet" in code and "is_in([8, 16])" in code and "np." not in code  # plain values
    want = (pl.read_parquet(DEFAULT_ZOO / "catalog.parquet")
            .filter((pl.col("epoch") == 300) & pl.col("width").is_in([8, 16]))
            .select("model_id", "width", "test_acc").sort("model_id"))
    got = s.load()
    assert got.height == want.height > 0 and got.equals(want)


def test_null_filters_and_further_lines():
    s = Slice.of(DEFAULT_ZOO, "metrics", {"metric": "test_acc", "other_id": None},
                 then="frame = frame.group_by('epoch').agg(pl.col('value').mean()).sort('epoch')")
    got = s.load()
    raw = pl.read_parquet(DEFAULT_ZOO / "metrics.parquet")
    want = (raw.filter((pl.col("metric") == "test_acc") & pl.col("other_id").is_null())
            .group_by("epoch").agg(pl.col("value").mean()).sort("epoch"))
    assert got.equals(want) and got.height > 0


def test_unknown_table_is_one_line_error():
    with pytest.raises(ValueError, match="no zoo table 'checkpoints'"):
        Slice.of(DEFAULT_ZOO, "checkpoints")


def test_a_hostile_directory_name_or_value_stays_data(tmp_path):
    """Quotes, newlines and code in a zoo's path or a filter value are repr'd into the snippet: loading it
    reads the file and runs nothing else."""
    import shutil

    root = tmp_path / "we'ird\nname\"); import os; os.system('touch pwned'); (\""
    root.mkdir()
    shutil.copy(DEFAULT_ZOO / "catalog.parquet", root / "catalog.parquet")
    hostile = "x'); open('pwned', 'w'); ('"
    s = Slice.of(root, "catalog", {"model_id": hostile})
    assert s.load().height == 0  # no model has that id: the filter compared it as a string
    assert Slice.of(root, "catalog", {"epoch": 0}).load().height > 0
    assert not list(tmp_path.glob("pwned")) and not (root.parent / "pwned").exists()
