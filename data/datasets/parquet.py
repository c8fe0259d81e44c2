"""Images in Parquet, as Hugging Face `datasets` stores them (`<path>/train-00000-of-00001.parquet`, `test-…`, or
`train.parquet`, `test.parquet`): one row per image, an image column that is a struct {bytes, path} of the encoded
file (or plain binary) and an integer label column. The image column is `img` or `image`, the label column
`label` or `fine_label`, unless named. Images are decoded exactly as an image folder's (data.datasets.imagefolder:
PIL, RGB, the declared size, no resizing).

Memory: each file's metadata (rows, uncompressed bytes) is read first and its uncompressed size checked against
root.MAX_BYTES before a column is read.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from data.datasets.imagefolder import Blob, decode
from data.datasets.root import Arrays, DatasetError, check_bytes, check_labels, layout_error

IMAGE_COLUMNS, LABEL_COLUMNS = ("img", "image"), ("label", "fine_label")
SPLITS = {"train": ("train",), "test": ("test", "validation", "valid", "val")}


def _files(d: Path, split: str) -> list[Path]:
    for name in SPLITS[split]:
        files = sorted(d.glob(f"{name}-*.parquet")) or ([d / f"{name}.parquet"] if (d / f"{name}.parquet").is_file()
                                                        else [])
        if files:
            return files
    return []


def has_layout(root: Path, path: str = "") -> bool:
    return bool(_files(root / path, "train")) and bool(_files(root / path, "test"))


def _pick(columns: list[str], given: str, candidates: tuple[str, ...], path: Path, what: str) -> str:
    if given:
        if given not in columns:
            raise DatasetError(f"{path}: expected the {what} column {given!r}: found the columns {columns[:8]}")
        return given
    found = next((c for c in candidates if c in columns), None)
    if found is None:
        raise DatasetError(f"{path}: expected an {what} column ({' or '.join(candidates)}): found the columns "
                           f"{columns[:8]}")
    return found


def _read_file(path: Path, image_column: str, label_column: str) -> tuple[list[Blob], np.ndarray]:
    import polars as pl
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path).metadata
        columns = pq.read_schema(path).names
    except Exception as e:
        raise DatasetError(f"{path}: expected a Parquet file: found an unreadable one ({str(e)[:80]})") from None
    check_bytes(sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)), path, "its data")
    img = _pick(columns, image_column, IMAGE_COLUMNS, path, "image")
    lab = _pick(columns, label_column, LABEL_COLUMNS, path, "label")
    try:
        df = pl.read_parquet(path, columns=[img, lab])
    except Exception as e:
        raise DatasetError(f"{path}: expected a Parquet file: found a damaged one ({str(e)[:80]})") from None
    col = df[img]
    if isinstance(col.dtype, pl.Struct) and "bytes" in [f.name for f in col.dtype.fields]:
        col = col.struct.field("bytes")
    if col.dtype != pl.Binary:
        raise DatasetError(f"{path}: expected the image column {img!r} as encoded bytes (struct {{bytes, path}} or "
                           f"binary): found {col.dtype}")
    if not df[lab].dtype.is_integer():
        raise DatasetError(f"{path}: expected the label column {lab!r} as integers: found {df[lab].dtype}")
    if col.null_count() or df[lab].null_count():
        row = int((col.is_null() | df[lab].is_null()).arg_true()[0])
        raise DatasetError(f"{path} row {row}: the image or label is missing")
    blobs = [Blob(f"{path} row {i}", b) for i, b in enumerate(col.to_list())]
    return blobs, df[lab].to_numpy().astype(np.int64)


def read(root: Path, path: str = "", input_shape: tuple[int, int, int] = (3, 32, 32), image_column: str = "",
         label_column: str = "", n_classes: int | None = None) -> Arrays:
    d = root / path
    splits = {split: _files(d, split) for split in ("train", "test")}
    for split, files in splits.items():  # both splits found before any image is decoded
        if not files:
            also = " (or validation-…)" if split == "test" else ""
            raise layout_error(f"{split}-*.parquet or {split}.parquet{also}", d)
    out = []
    for files in splits.values():
        blobs, labels = [], []
        for f in files:
            b, y = _read_file(f, image_column, label_column)
            blobs += b
            labels.append(y)
        if not blobs:
            raise DatasetError(f"{files[0]}: no rows")
        y = np.concatenate(labels)
        x, _ = decode(list(zip(blobs, y.tolist())), input_shape)
        out.append((x, y))
    (x, y), (xt, yt) = out
    n = n_classes or 1 + max(int(y.max(initial=0)), int(yt.max(initial=0)))
    return Arrays(x, check_labels(y, n, d, "train"), xt, check_labels(yt, n, d, "test"))
