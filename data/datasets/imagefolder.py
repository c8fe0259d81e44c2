"""Image trees: a class-per-sub-directory folder (torchvision's ImageFolder) and TinyImageNet's own layout.

Image folder, `<root>/<path>/`:
    train/<class>/**/<image>    val/<class>/**/<image> (or test/)
Classes are the sorted sub-directory names of train/ → 0, 1, … (torchvision's `find_classes`); the held-out
split must use the same class names (a name not in train/ is refused rather than silently re-indexed). Files
are those with torchvision's IMG_EXTENSIONS, case-insensitive, in sorted order.

TinyImageNet (cs231n, http://cs231n.stanford.edu/tiny-imagenet-200.zip), `<root>/tiny-imagenet-200/`:
    wnids.txt   train/<wnid>/images/*.JPEG   val/images/*.JPEG   val/val_annotations.txt
`val_annotations.txt` is tab-separated: file, wnid, x0, y0, x1, y1. Labels are the wnids' line numbers in
wnids.txt, as the Phase-Transition Model Zoo's tiny_imagenet_helpers.py (`self.ids.index(nid)`) indexes them
— not sorted order; the validation split is the zoo's test split, in the annotation file's order.

Every image is decoded with PIL and converted to RGB (TinyImageNet has greyscale JPEGs; `C` = 1 converts to
"L"); one whose size is not the declared input shape is refused naming the file (no resizing: the published
zoos did not resize). Memory: each header's size must be the declared H × W before a pixel is decoded (PIL's
decompression-bomb guard, raised to an error, refuses absurd headers), and the split's [N, C, H, W] uint8 array is
checked against root.MAX_BYTES before it is allocated.
"""
from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.datasets.root import Arrays, DatasetError, check_bytes, layout_error

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's
TINY = "tiny-imagenet-200"


def _images(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.suffix.lower() in IMG_EXTENSIONS and p.is_file())


def _held_out(d: Path) -> Path | None:
    return next((d / s for s in ("val", "test") if (d / s).is_dir()), None)


def has_layout(root: Path, path: str = "") -> bool:
    d = root / path
    return (d / "train").is_dir() and _held_out(d) is not None


def read(root: Path, path: str = "", input_shape: tuple[int, int, int] = (3, 32, 32)) -> Arrays:
    """An image-folder tree under `root / path` as [N, C, H, W] uint8 arrays of `input_shape` and [N] labels."""
    d = root / path
    held = _held_out(d)
    if not (d / "train").is_dir() or held is None:
        raise layout_error("an image folder with train/ and val/ (or test/), one sub-directory per class", d)
    classes = sorted(p.name for p in (d / "train").iterdir() if p.is_dir())
    if not classes:
        raise layout_error("one sub-directory per class", d / "train")
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(p.name for p in held.iterdir() if p.is_dir() and p.name not in index)
    if unknown:
        raise DatasetError(f"{held}: class director{'ies' if len(unknown) > 1 else 'y'} {', '.join(unknown[:4])} "
                           f"not among train/'s {len(classes)} classes")
    splits = []
    for split in (d / "train", held):
        files = [(f, index[c]) for c in classes if (split / c).is_dir() for f in _images(split / c)]
        empty = [c for c in classes if split.name == "train" and not _images(split / c)]
        if empty:
            raise DatasetError(f"{split / empty[0]}: a class directory with no image ({', '.join(IMG_EXTENSIONS)})")
        if not files:
            raise layout_error("images in one sub-directory per class", split)
        splits.append(decode(files, input_shape))
    (x, y), (xt, yt) = splits
    return Arrays(x, y, xt, yt)


def has_tiny(root: Path) -> bool:
    d = root / TINY
    return all(p.exists() for p in (d / "wnids.txt", d / "train", d / "val" / "images", d / "val" / "val_annotations.txt"))


def read_tiny(root: Path, input_shape: tuple[int, int, int] = (3, 64, 64)) -> Arrays:
    """TinyImageNet's train/ and val/ (its test/ has no labels) as [N, 3, 64, 64] uint8 and [N] labels."""
    d = root / TINY
    if not has_tiny(root):
        where = d if d.is_dir() else root
        raise layout_error(f"{TINY}/ with wnids.txt, train/<wnid>/images/, val/images/ and val/val_annotations.txt",
                           where)
    wnids = [w.strip() for w in (d / "wnids.txt").read_text(errors="replace").splitlines() if w.strip()]
    index = {w: i for i, w in enumerate(wnids)}
    if len(index) != len(wnids):
        raise DatasetError(f"{d / 'wnids.txt'}: a wnid is listed twice")
    train = []
    for w in wnids:
        imgs = d / "train" / w / "images"
        if not imgs.is_dir():
            raise layout_error(f"train/{w}/images/ for every wnid in wnids.txt", d / "train")
        train += [(f, index[w]) for f in _images(imgs)]
    val, ann = [], d / "val" / "val_annotations.txt"
    for row, line in enumerate(ann.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) != 6:
            raise DatasetError(f"{ann} line {row}: expected 6 tab-separated columns (file, wnid, x0, y0, x1, y1): "
                               f"found {len(cols)}")
        if cols[1] not in index:
            raise DatasetError(f"{ann} line {row}: wnid {cols[1][:20]!r} is not in wnids.txt")
        f = d / "val" / "images" / cols[0]
        if "/" in cols[0] or "\\" in cols[0] or not f.is_file():
            raise DatasetError(f"{ann} line {row}: the image {cols[0][:40]!r} is not in {d / 'val' / 'images'}")
        val.append((f, index[cols[1]]))
    if not train or not val:
        raise layout_error("JPEG images in train/<wnid>/images/ and val/images/", d)
    (x, y), (xt, yt) = decode(train, input_shape), decode(val, input_shape)
    return Arrays(x, y, xt, yt)


@dataclass(frozen=True)
class Blob:
    """An encoded image held in memory (a Parquet cell): `where` names it in messages."""
    where: str
    data: bytes

    def __str__(self) -> str:
        return self.where


def decode(files: list[tuple[Path | Blob, int]], input_shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """[N, C, H, W] uint8 pixels and [N] int64 labels of `files` (path or blob, label), each exactly H × W."""
    from PIL import Image

    c, h, w = input_shape
    if c not in (1, 3):
        raise DatasetError(f"an image folder gives 1 (greyscale) or 3 (RGB) channels, not the {c} of the input "
                           f"shape {input_shape}")
    check_bytes(len(files) * math.prod(input_shape), files[0][0], f"{len(files):,} images of {input_shape}")
    x = np.empty((len(files), c, h, w), dtype=np.uint8)
    mode = "RGB" if c == 3 else "L"
    with warnings.catch_warnings():
        # PIL warns above MAX_IMAGE_PIXELS (89 M) and raises above twice that: refuse both from the header alone
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        for i, (f, _) in enumerate(files):
            try:
                with Image.open(io.BytesIO(f.data) if isinstance(f, Blob) else f) as im:  # the header only
                    if im.size != (w, h):  # PIL's size is (width, height); checked before any pixel is decoded
                        raise DatasetError(f"{f}: expected a {w}×{h} image for the input shape {input_shape}: "
                                           f"found {im.size[0]}×{im.size[1]}")
                    pixels = np.asarray(im.convert(mode))
            except DatasetError:
                raise
            except (Image.DecompressionBombError, Image.DecompressionBombWarning):
                raise DatasetError(f"{f}: refused: its header declares more than {Image.MAX_IMAGE_PIXELS:,} pixels "
                                   f"(PIL's decompression-bomb guard); expected {w}×{h}") from None
            except Exception as e:  # UnidentifiedImageError, a truncated file (OSError), …
                raise DatasetError(f"{f}: not a readable image ({str(e)[:80]})") from None
            x[i] = pixels[None] if c == 1 else pixels.transpose(2, 0, 1)
    return x, np.fromiter((lab for _, lab in files), dtype=np.int64, count=len(files))
