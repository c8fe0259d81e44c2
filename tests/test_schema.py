import polars as pl
import pytest

from data.zoo.schema import CATALOG, SchemaError

KNOBS = {"width": pl.Int64, "batch_size": pl.Int64}


def good() -> pl.DataFrame:
    row = {"model_id": "w1-s0", "arch": "mlp", "seed": 0, "epoch": 0, "n_params": 10, "train_loss": 1.0,
           "train_acc": 0.5, "test_loss": 1.0, "test_acc": 0.5, "checkpoint": None, "width": 1, "batch_size": 8}
    return pl.DataFrame([row], schema={**CATALOG.columns, **KNOBS})


def test_valid_frame_passes_in_canonical_order():
    df = good().select(reversed(good().columns))
    assert CATALOG.validate(df, KNOBS).columns == list({**CATALOG.columns, **KNOBS})


@pytest.mark.parametrize("mutate, message", [
    (lambda df: df.drop("test_acc"), "missing column 'test_acc'"),
    (lambda df: df.drop("width"), "missing column 'width'"),
    (lambda df: df.with_columns(pl.col("epoch").cast(pl.Float64)), "column 'epoch' has dtype Float64"),
    (lambda df: df.with_columns(pl.lit(None, pl.Float64).alias("train_loss")), "column 'train_loss' has 1 null"),
    (lambda df: df.with_columns(pl.lit(1).alias("extra")), "unexpected column(s) ['extra']"),
])
def test_errors_name_the_column(mutate, message):
    with pytest.raises(SchemaError) as e:
        CATALOG.validate(mutate(good()), KNOBS)
    assert message in str(e.value) and "catalog" in str(e.value)


def test_checkpoint_may_be_null():
    assert CATALOG.validate(good(), KNOBS)["checkpoint"].null_count() == 1
