"""Datasets from disk (data.datasets): tiny datasets built in tmp_path in each real layout, byte for byte as their
tools write them, read back exactly; every bad input a one-line DatasetError that names the file.

Oracles: the arrays the fixture was built from (CIFAR's pickles and records, the .mat, PNG trees, the .npz),
PIL's own decoding of the same JPEG (lossy), Python's pickle reading our Python-2-style pickle, and
torchvision's ToTensor + Normalize arithmetic written out.
"""
from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from data.datasets import (
    DATASETS,
    NORMALISATION,
    DatasetError,
    available,
    data_root,
    load_arrays,
    load_normalised,
    normalise,
    pickles,
)
from data.datasets import root as root_mod
from data.params import SpecError

RNG = np.random.default_rng(0)
N_BATCH = 3  # images per CIFAR batch: 5 × 3 training images, 3 test images


def one_line(e: pytest.ExceptionInfo, *needles: str) -> str:
    msg = str(e.value)
    assert "\n" not in msg and msg, msg
    for n in needles:
        assert n in msg, (n, msg)
    return msg


# ---- Python 2 cPickle, protocol 2: how CIFAR's own python batches are written -----------------------------------

def _py2(obj) -> bytes:
    """Opcodes as Python 2's cPickle.dump(obj, f, 2) writes them for CIFAR's batches: str as SHORT_BINSTRING/
    BINSTRING, a BINPUT after every memoised object, ints as BININT1/BININT2/BININT, and an array as numpy < 2's
    `numpy.core.multiarray._reconstruct` + BUILD (shape as TUPLE2, dtype("u1", 0, 1) + BUILD, fortran NEWFALSE)."""
    out, memo = io.BytesIO(), [0]

    def put():
        memo[0] += 1
        out.write(b"q" + bytes([memo[0] % 256]) if memo[0] < 256 else b"r" + struct.pack("<I", memo[0]))

    def s(b: bytes):  # a Python 2 str
        out.write(b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<I", len(b)) + b)
        put()

    def i(n: int):
        if 0 <= n < 256:
            out.write(b"K" + bytes([n]))
        elif 0 <= n < 65536:
            out.write(b"M" + struct.pack("<H", n))
        else:
            out.write(b"J" + struct.pack("<i", n))

    def g(module: bytes, name: bytes):
        out.write(b"c" + module + b"\n" + name + b"\n")
        put()

    def w(x):
        if isinstance(x, dict):
            out.write(b"}")
            put()
            out.write(b"(")
            for k, v in x.items():
                w(k), w(v)
            out.write(b"u")
        elif isinstance(x, list):
            out.write(b"]")
            put()
            out.write(b"(")
            for v in x:
                w(v)
            out.write(b"e")
        elif isinstance(x, bytes):
            s(x)
        elif isinstance(x, int):
            i(x)
        elif isinstance(x, np.ndarray):
            g(b"numpy.core.multiarray", b"_reconstruct")
            g(b"numpy", b"ndarray")
            out.write(b"K\x00\x85")
            s(b"b")
            out.write(b"\x87R")
            put()
            out.write(b"(K\x01")
            for n in x.shape:
                i(n)
            out.write({1: b"\x85", 2: b"\x86", 3: b"\x87"}[x.ndim])
            g(b"numpy", b"dtype")
            s(x.dtype.str[1:].encode())
            out.write(b"K\x00K\x01\x87R")
            put()
            out.write(b"(K\x03")
            s(x.dtype.str[:1].encode())
            out.write(b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89")
            s(x.tobytes())
            out.write(b"tb")
        else:
            raise TypeError(type(x))

    out.write(b"\x80\x02")
    w(obj)
    out.write(b".")
    return out.getvalue()


def _images(n: int) -> np.ndarray:
    return RNG.integers(0, 256, (n, 3072), dtype=np.uint8)


def make_cifar10_py(root: Path, dump=_py2) -> tuple[np.ndarray, ...]:
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    xs, ys = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x, y = _images(N_BATCH), [int(v) for v in RNG.integers(0, 10, N_BATCH)]
        batch = {b"batch_label": b"training batch 1 of 5", b"labels": y, b"data": x,
                 b"filenames": [f"img_{k}.png".encode() for k in range(N_BATCH)]}
        (d / name).write_bytes(dump(batch))
        xs.append(x), ys.append(y)
    (d / "batches.meta").write_bytes(dump({b"num_cases_per_batch": 10000, b"num_vis": 3072,
                                           b"label_names": [f"c{k}".encode() for k in range(10)]}))
    (d / "readme.html").write_text("<html></html>")
    return (np.concatenate(xs[:5]).reshape(-1, 3, 32, 32), np.concatenate(ys[:5]),
            xs[5].reshape(-1, 3, 32, 32), np.array(ys[5]))


def test_py2_pickle_is_what_python_reads():
    x = _images(2)
    back = pickle.loads(_py2({b"data": x, b"labels": [1, 2]}), encoding="bytes")
    np.testing.assert_array_equal(back[b"data"], x)
    assert back[b"labels"] == [1, 2]


def test_cifar10_python_batches_exact(tmp_path):
    want = make_cifar10_py(tmp_path)
    a = load_arrays("cifar10", tmp_path)
    for got, exp in zip(a, want):
        np.testing.assert_array_equal(got, exp)
    assert a.x_train.dtype == np.uint8 and a.y_train.dtype == np.int64 and a.x_train.shape == (15, 3, 32, 32)
    # the R, G, B planes: the first 1024 bytes of a row are channel 0, row-major
    raw = pickle.loads((tmp_path / "cifar-10-batches-py" / "data_batch_1").read_bytes(), encoding="bytes")[b"data"]
    assert a.x_train[0, 1, 2, 5] == raw[0, 1024 + 2 * 32 + 5]


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_python3_pickles(tmp_path, protocol):
    """Re-saved with Python 3 and numpy 2.4 (numpy._core…, _frombuffer at protocol 5, _codecs.encode at 2)."""
    want = make_cifar10_py(tmp_path, lambda o: pickle.dumps(o, protocol=protocol))
    for got, exp in zip(load_arrays("cifar10", tmp_path), want):
        np.testing.assert_array_equal(got, exp)


def test_cifar100_python(tmp_path):
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    parts = {}
    for name, n in (("train", 5), ("test", 4)):
        x, fine = _images(n), [int(v) for v in RNG.integers(0, 100, n)]
        parts[name] = (x, fine)
        (d / name).write_bytes(_py2({b"filenames": [b"a.png"] * n, b"batch_label": b"train", b"fine_labels": fine,
                                     b"coarse_labels": [v // 5 for v in fine], b"data": x}))
    (d / "meta").write_bytes(_py2({b"fine_label_names": [b"f"] * 100, b"coarse_label_names": [b"c"] * 20}))
    a = load_arrays("cifar100", tmp_path)
    np.testing.assert_array_equal(a.x_train, parts["train"][0].reshape(-1, 3, 32, 32))
    np.testing.assert_array_equal(a.y_test, parts["test"][1])


def test_cifar_binary(tmp_path):
    d = tmp_path / "cifar-10-batches-bin"
    d.mkdir()
    recs = {}
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        r = np.concatenate([RNG.integers(0, 10, (2, 1)), _images(2)], 1).astype(np.uint8)
        (d / name).write_bytes(r.tobytes())
        recs[name] = r
    a = load_arrays("cifar10", tmp_path)
    train = np.concatenate([recs[f"data_batch_{i}.bin"] for i in range(1, 6)])
    np.testing.assert_array_equal(a.x_train, train[:, 1:].reshape(-1, 3, 32, 32))
    np.testing.assert_array_equal(a.y_train, train[:, 0])
    np.testing.assert_array_equal(a.y_test, recs["test_batch.bin"][:, 0])
    # CIFAR-100: coarse, fine label bytes; the fine one is the label
    d = tmp_path / "cifar-100-binary"
    d.mkdir()
    r = np.concatenate([[[3, 77], [1, 99]], _images(2)], 1).astype(np.uint8)
    for name in ("train.bin", "test.bin"):
        (d / name).write_bytes(r.tobytes())
    b = load_arrays("cifar100", tmp_path)
    np.testing.assert_array_equal(b.y_train, [77, 99])
    np.testing.assert_array_equal(b.x_test, r[:, 2:].reshape(-1, 3, 32, 32))
    # a record count that does not divide the file, a label out of range
    (d / "test.bin").write_bytes(r.tobytes()[:-1])
    one_line(pytest.raises(DatasetError, load_arrays, "cifar100", tmp_path), "test.bin", "6,147 bytes",
             "3,074-byte records")
    bad = recs["test_batch.bin"].copy()
    bad[1, 0] = 10
    (tmp_path / "cifar-10-batches-bin" / "test_batch.bin").write_bytes(bad.tobytes())
    one_line(pytest.raises(DatasetError, load_arrays, "cifar10", tmp_path), "test_batch.bin", "label 10 at index 1",
             "[0, 10)")


def test_cifar_wrong_layouts(tmp_path):
    one_line(pytest.raises(DatasetError, load_arrays, "cifar10", tmp_path),
             "expected cifar-10-batches-py/ or cifar-10-batches-bin/ under", "found an empty directory")
    make_cifar10_py(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    one_line(pytest.raises(DatasetError, load_arrays, "cifar10", tmp_path), "cifar-10-batches-py",
             "missing data_batch_3")
    assert not available("cifar10", tmp_path)


def _batch_file(tmp_path: Path, payload: bytes) -> Path:
    make_cifar10_py(tmp_path)
    p = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    p.write_bytes(payload)
    return p


class _Hostile:
    def __init__(self, flag: Path):
        self.flag = flag

    def __reduce__(self):
        return os.system, (f"touch {self.flag}",)


def test_hostile_pickle_runs_nothing(tmp_path):
    flag = tmp_path / "pwned"
    _batch_file(tmp_path, pickle.dumps({b"data": _Hostile(flag), b"labels": []}, protocol=2))
    msg = one_line(pytest.raises(DatasetError, load_arrays, "cifar10", tmp_path), "data_batch_2",
                   "names the global os.system", "refused")
    assert not flag.exists(), msg
    cases = ((np.zeros((2, 3072)), "dtype 'f8'"), (np.array([b"x", None], dtype=object), "dtype 'O8'"),
             ({1, 2}, "builtins.set"), (np.zeros(2, dtype=[("a", "u1")]), "dtype 'V1'"))
    for i, (obj, needle) in enumerate(cases):
        _batch_file(tmp_path / f"case{i}", pickle.dumps({b"data": obj, b"labels": []}, protocol=2))
        with pytest.raises(DatasetError) as e:
            load_arrays("cifar10", tmp_path / f"case{i}")
        one_line(e, "refused", needle)


def test_truncated_and_oversized_pickles(tmp_path):
    full = _py2({b"data": _images(3), b"labels": [1, 2, 3]})
    p = _batch_file(tmp_path, full[: len(full) // 2])
    one_line(pytest.raises(DatasetError, pickles.load, p), str(p), "not a readable pickle", "ends early")
    # a declared shape far beyond the file: refused before its data is looked at
    huge = full.replace(b"K\x01K\x03M\x00\x0c", b"K\x01J\x00\xca\x9a\x3bM\x00\x0c")  # (3, 3072) → (10**9, 3072)
    assert huge != full
    p.write_bytes(huge)
    one_line(pytest.raises(DatasetError, pickles.load, p), "declares shape (1000000000, 3072)", "more than the file")
    p.write_bytes(full.replace(b"K\x01K\x03M\x00\x0c", b"K\x01K\x02M\x00\x0c"))  # declares fewer bytes than it holds
    one_line(pytest.raises(DatasetError, pickles.load, p), "needs 6,144 bytes, its data has 9,216")
    p.write_bytes(full.replace(b"NNNJ", b"NK\x01NJ"))  # a dtype state with fields in it
    one_line(pytest.raises(DatasetError, pickles.load, p), "refused", "structured or subarray dtype")
    p.write_bytes(b"not a pickle at all")
    one_line(pytest.raises(DatasetError, pickles.load, p), "not a readable pickle")
    p.write_bytes(_py2({b"data": _images(3), b"labels": [1, 2]}))
    one_line(pytest.raises(DatasetError, load_arrays, "cifar10", tmp_path), "3 images but 2 labels")
    p.write_bytes(_py2({b"pixels": _images(3)}))
    one_line(pytest.raises(DatasetError, load_arrays, "cifar10", tmp_path), "key 'data'", "found the keys")
    p.write_bytes(_py2([_images(3)]))
    one_line(pytest.raises(DatasetError, load_arrays, "cifar10", tmp_path), "expected a CIFAR batch (a dict)")
    p.write_bytes(_py2({b"data": _images(2), b"labels": [b"cat", b"dog"]}))
    one_line(pytest.raises(DatasetError, load_arrays, "cifar10", tmp_path), "labels as a list of integers")
    p.write_bytes(_py2({b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]}))
    one_line(pytest.raises(DatasetError, load_arrays, "cifar10", tmp_path), "[N, 3072] uint8", "shape (2, 1024)")
    p.write_bytes(full)
    (tmp_path / "cifar-10-batches-py" / "batches.meta").write_bytes(_py2({b"label_names": [b"x"] * 9}))
    one_line(pytest.raises(DatasetError, load_arrays, "cifar10", tmp_path), "batches.meta",
             "expected 10 label_names: found 9")


# ---- SVHN ----------------------------------------------------------------------------------------------------------

def make_svhn(d: Path, compress: bool = False) -> dict:
    d.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, n in (("train_32x32.mat", 5), ("test_32x32.mat", 3)):
        X = RNG.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = np.array([[10], [1], [9], [10], [4]][:n], dtype=np.float64)  # SVHN stores y as double
        scipy.io.savemat(d / name, {"X": X, "y": y}, do_compression=compress)
        out[name] = (X, y)
    return out


@pytest.mark.parametrize("sub,compress", [("svhn", False), ("", True)])
def test_svhn_exact(tmp_path, sub, compress):
    m = make_svhn(tmp_path / sub, compress)
    a = load_arrays("svhn", tmp_path)
    X, y = m["train_32x32.mat"]
    np.testing.assert_array_equal(a.x_train, X.transpose(3, 2, 0, 1))  # [N, C, H, W]
    assert a.x_train[1, 2, 7, 9] == X[7, 9, 2, 1]
    np.testing.assert_array_equal(a.y_train, [0, 1, 9, 0, 4])  # 10 is the digit 0
    np.testing.assert_array_equal(a.y_test, [0, 1, 9])


def test_svhn_bad_inputs(tmp_path, monkeypatch):
    one_line(pytest.raises(DatasetError, load_arrays, "svhn", tmp_path), "expected SVHN's train_32x32.mat",
             "found an empty directory")
    d = tmp_path / "svhn"
    make_svhn(d)
    for y, needle in (([[11], [1], [1], [1], [1]], "label 11 at index 0 is outside SVHN's range 1–10"),
                      ([[1], [0], [1], [1], [1]], "label 0 at index 1"), ([[1], [2]], "expected y as 5×1"),
                      ([[1.5], [1], [1], [1], [1]], "non-integer")):
        scipy.io.savemat(d / "train_32x32.mat", {"X": np.zeros((32, 32, 3, 5), np.uint8), "y": np.array(y)})
        one_line(pytest.raises(DatasetError, load_arrays, "svhn", tmp_path), "train_32x32.mat", needle)
    scipy.io.savemat(d / "train_32x32.mat", {"X": np.zeros((28, 28, 3, 5), np.uint8), "y": np.ones((5, 1))})
    one_line(pytest.raises(DatasetError, load_arrays, "svhn", tmp_path), "expected X as a 32×32×3×N uint8 array",
             "28×28×3×5")
    (d / "train_32x32.mat").write_bytes(b"MATLAB 5.0 junk" * 3)
    one_line(pytest.raises(DatasetError, load_arrays, "svhn", tmp_path), "train_32x32.mat", "MATLAB v5")
    make_svhn(d)
    monkeypatch.setattr(root_mod, "MAX_BYTES", 1000)
    one_line(pytest.raises(DatasetError, load_arrays, "svhn", tmp_path), "X declares 15,360 bytes")


# ---- image folders and TinyImageNet -------------------------------------------------------------------------------

def _png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def test_imagefolder_exact(tmp_path):
    d = tmp_path / "mine"
    want = {"train": [], "val": []}
    for split, n in (("train", 2), ("val", 1)):
        for c in ("zebra", "ant", "moth"):  # sorted: ant 0, moth 1, zebra 2
            for k in range(n):
                px = RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)  # H 6, W 5
                _png(d / split / c / f"{k}.PNG", px)
                want[split].append((c, k, px))
    (d / "train" / "ant" / "notes.txt").write_text("not an image")
    a = load_arrays("imagefolder", tmp_path, path="mine", input_shape=[3, 6, 5])
    order = sorted(want["train"], key=lambda t: (t[0], t[1]))
    np.testing.assert_array_equal(a.x_train, np.stack([px.transpose(2, 0, 1) for *_, px in order]))
    np.testing.assert_array_equal(a.y_train, [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(a.y_test, [0, 1, 2])
    grey = load_arrays("imagefolder", tmp_path, path="mine", input_shape=[1, 6, 5])
    lum = np.asarray(Image.open(d / "val" / "ant" / "0.PNG").convert("L"))
    np.testing.assert_array_equal(grey.x_test[0, 0], lum)
    assert available("imagefolder", tmp_path, path="mine") and not available("imagefolder", tmp_path, path="x")


def test_imagefolder_bad_inputs(tmp_path):
    d = tmp_path / "mine"
    one_line(pytest.raises(DatasetError, load_arrays, "imagefolder", tmp_path, path="mine"),
             "expected an image folder with train/ and val/", "found nothing")
    _png(d / "train" / "a" / "0.png", np.zeros((4, 4, 3), np.uint8))
    _png(d / "test" / "a" / "0.png", np.zeros((4, 4, 3), np.uint8))
    _png(d / "train" / "b" / "big.png", np.zeros((8, 4, 3), np.uint8))
    one_line(pytest.raises(DatasetError, load_arrays, "imagefolder", tmp_path, path="mine", input_shape=[3, 4, 4]),
             "big.png", "expected a 4×4 image", "found 4×8")
    (d / "train" / "b" / "big.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    one_line(pytest.raises(DatasetError, load_arrays, "imagefolder", tmp_path, path="mine", input_shape=[3, 4, 4]),
             "big.png", "not a readable image")
    (d / "train" / "b" / "big.png").unlink()
    one_line(pytest.raises(DatasetError, load_arrays, "imagefolder", tmp_path, path="mine", input_shape=[3, 4, 4]),
             "train/b", "no image")
    _png(d / "train" / "b" / "0.png", np.zeros((4, 4, 3), np.uint8))
    _png(d / "test" / "c" / "0.png", np.zeros((4, 4, 3), np.uint8))
    one_line(pytest.raises(DatasetError, load_arrays, "imagefolder", tmp_path, path="mine", input_shape=[3, 4, 4]),
             "class directory c not among train/'s 2 classes")
    for shape in ([3, 4], [2, 4, 4], "3x4x4"):
        with pytest.raises(DatasetError) as e:
            load_arrays("imagefolder", tmp_path, path="mine", input_shape=shape)
        one_line(e)
    one_line(pytest.raises(SpecError, load_arrays, "imagefolder", tmp_path, path="mine", colour=True),
             "unknown parameter", "colour")


def make_tiny(root: Path) -> dict:
    d = root / "tiny-imagenet-200"
    wnids = ["n09999999", "n01443537", "n05555555"]  # not sorted: labels follow wnids.txt
    (d / "val" / "images").mkdir(parents=True)
    (d / "wnids.txt").write_text("\n".join(wnids) + "\n")
    files = {"train": [], "val": []}
    for w in wnids:
        for k in range(2):
            f = d / "train" / w / "images" / f"{w}_{k}.JPEG"
            _png_jpeg(f, grey=(k == 1))
            files["train"].append((f, wnids.index(w)))
        (d / "train" / w / f"{w}_boxes.txt").write_text("")
    lines = []
    for k, w in enumerate(["n05555555", "n09999999", "n05555555"]):
        f = d / "val" / "images" / f"val_{k}.JPEG"
        _png_jpeg(f)
        lines.append(f"val_{k}.JPEG\t{w}\t0\t0\t63\t63")
        files["val"].append((f, wnids.index(w)))
    (d / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return files


def _png_jpeg(path: Path, grey: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    px = RNG.integers(0, 256, (64, 64) if grey else (64, 64, 3), dtype=np.uint8)
    Image.fromarray(px).save(path, format="JPEG")


def test_tinyimagenet_exact(tmp_path):
    files = make_tiny(tmp_path)
    a = load_arrays("tinyimagenet", tmp_path)
    for x, y, split in ((a.x_train, a.y_train, "train"), (a.x_test, a.y_test, "val")):
        oracle = np.stack([np.asarray(Image.open(f).convert("RGB")).transpose(2, 0, 1) for f, _ in files[split]])
        np.testing.assert_array_equal(x, oracle)
        np.testing.assert_array_equal(y, [lab for _, lab in files[split]])
    np.testing.assert_array_equal(a.y_test, [2, 0, 2])
    assert a.x_train.shape == (6, 3, 64, 64) and available("tinyimagenet", tmp_path)


def test_tinyimagenet_bad_inputs(tmp_path):
    one_line(pytest.raises(DatasetError, load_arrays, "tinyimagenet", tmp_path), "expected tiny-imagenet-200/")
    make_tiny(tmp_path)
    ann = tmp_path / "tiny-imagenet-200" / "val" / "val_annotations.txt"
    good = ann.read_text()
    ann.write_text(good.replace("val_1.JPEG\tn09999999", "val_1.JPEG\tn00000000"))
    one_line(pytest.raises(DatasetError, load_arrays, "tinyimagenet", tmp_path), "val_annotations.txt line 2",
             "'n00000000' is not in wnids.txt")
    ann.write_text(good.replace("val_2.JPEG", "val_9.JPEG"))
    one_line(pytest.raises(DatasetError, load_arrays, "tinyimagenet", tmp_path), "line 3", "'val_9.JPEG'")
    ann.write_text(good.replace("\t0\t0\t63\t63", " 0 0 63 63"))
    one_line(pytest.raises(DatasetError, load_arrays, "tinyimagenet", tmp_path), "line 1",
             "6 tab-separated columns")
    ann.write_text(good)
    wn = tmp_path / "tiny-imagenet-200" / "wnids.txt"
    wn.write_text(wn.read_text() + "n01443537\n")
    one_line(pytest.raises(DatasetError, load_arrays, "tinyimagenet", tmp_path), "wnids.txt", "listed twice")
    wn.write_text(wn.read_text().replace("n01443537\n", "n01443537\nn07777777\n", 1).rsplit("n01443537", 1)[0])
    one_line(pytest.raises(DatasetError, load_arrays, "tinyimagenet", tmp_path), "train/n07777777/images/")
    wn.write_text("n09999999\nn01443537\nn05555555\n")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "tiny-imagenet-200" / "val" / "images"
                                                         / "val_0.JPEG", format="JPEG")
    one_line(pytest.raises(DatasetError, load_arrays, "tinyimagenet", tmp_path), "val_0.JPEG",
             "expected a 64×64 image for the input shape (3, 64, 64): found 32×32")


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width × height RGB pixels, with no image data: what a decompression bomb's
    header looks like to Image.open."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def test_decompression_bomb_refused(tmp_path):
    _png(tmp_path / "m" / "train" / "a" / "0.png", np.zeros((4, 4, 3), np.uint8))
    _png(tmp_path / "m" / "val" / "a" / "0.png", np.zeros((4, 4, 3), np.uint8))
    bomb = tmp_path / "m" / "train" / "a" / "1.png"
    for side, needle in ((4000, "found 4000×4000"), (12000, "decompression-bomb"), (20000, "decompression-bomb")):
        bomb.write_bytes(_png_header(side, side))  # 16 M, 144 M (PIL warns), 400 M pixels (PIL raises)
        one_line(pytest.raises(DatasetError, load_arrays, "imagefolder", tmp_path, path="m", input_shape=[3, 4, 4]),
                 "1.png", needle)


# ---- .npz ------------------------------------------------------------------------------------------------------------

def make_npz(path: Path, **over) -> dict:
    a = {"x_train": RNG.integers(0, 256, (6, 1, 4, 4), dtype=np.uint8), "y_train": np.array([0, 1, 2, 0, 1, 2]),
         "x_test": RNG.integers(0, 256, (2, 1, 4, 4), dtype=np.uint8), "y_test": np.array([2, 1])}
    a.update(over)
    np.savez_compressed(path, **a)
    return a


def test_npz_exact(tmp_path):
    want = make_npz(tmp_path / "dataset.npz")
    a = load_arrays("npz", tmp_path)
    for k in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, k), want[k])
    assert a.y_train.dtype == np.int64 and available("npz", tmp_path) and not available("npz", tmp_path, file="o.npz")
    xs, ys, xt, yt = load_normalised("npz", tmp_path)
    assert xs.dtype == np.float32
    np.testing.assert_array_equal(xs, want["x_train"].astype(np.float32) / np.float32(255))


def test_npz_bad_inputs(tmp_path, monkeypatch):
    p = tmp_path / "d.npz"
    one_line(pytest.raises(DatasetError, load_arrays, "npz", tmp_path, file="d.npz"), "expected d.npz")
    make_npz(p, y_test=np.array([2, 3]))
    one_line(pytest.raises(DatasetError, load_arrays, "npz", tmp_path, file="d.npz", n_classes=3), "d.npz",
             "y_test label 3 at index 1 is outside the class range [0, 3)")
    make_npz(p, y_test=np.array([b"x", None], dtype=object))
    one_line(pytest.raises(DatasetError, load_arrays, "npz", tmp_path, file="d.npz"), "y_test is an object array")
    make_npz(p, x_test=np.zeros((2, 1, 5, 4), np.uint8))
    one_line(pytest.raises(DatasetError, load_arrays, "npz", tmp_path, file="d.npz"), "x_train is uint8 [N, 1, 4, 4]",
             "x_test is uint8 [N, 1, 5, 4]")
    make_npz(p, y_train=np.array([0, 1]))
    one_line(pytest.raises(DatasetError, load_arrays, "npz", tmp_path, file="d.npz"), "y_train has shape (2,)")
    np.savez(p, x_train=np.zeros(2), y_train=np.zeros(2))
    one_line(pytest.raises(DatasetError, load_arrays, "npz", tmp_path, file="d.npz"), "missing x_test, y_test")
    p.write_bytes(b"PK\x03\x04 truncated zip")
    one_line(pytest.raises(DatasetError, load_arrays, "npz", tmp_path, file="d.npz"), "unreadable")
    make_npz(p)
    monkeypatch.setattr(root_mod, "MAX_BYTES", 64)
    one_line(pytest.raises(DatasetError, load_arrays, "npz", tmp_path, file="d.npz"), "x_train declares 96 bytes")
    # a member whose header declares 10**12 elements in a few bytes: refused from its header alone
    with zipfile.ZipFile(p, "w") as z:
        hdr = io.BytesIO()
        np.lib.format.write_array_header_1_0(hdr, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
        for k in ("x_train", "y_train", "x_test", "y_test"):
            z.writestr(f"{k}.npy", hdr.getvalue())
    monkeypatch.setattr(root_mod, "MAX_BYTES", 4 * 2**30)
    one_line(pytest.raises(DatasetError, load_arrays, "npz", tmp_path, file="d.npz"), "declares 8,000,000,000,000")


# ---- the data root, the registry, preprocessing ------------------------------------------------------------------

def test_data_root(tmp_path, monkeypatch):
    monkeypatch.delenv("PHASEZOO_DATA", raising=False)
    one_line(pytest.raises(DatasetError, data_root), "no data root", "PHASEZOO_DATA")
    monkeypatch.setenv("PHASEZOO_DATA", str(tmp_path / "gone"))
    one_line(pytest.raises(DatasetError, data_root), "gone", "$PHASEZOO_DATA", "does not exist")
    assert data_root(tmp_path) == tmp_path  # an explicit root overrides the variable
    monkeypatch.setenv("PHASEZOO_DATA", str(tmp_path))
    assert data_root() == tmp_path
    (tmp_path / "f").write_text("")
    one_line(pytest.raises(DatasetError, data_root, tmp_path / "f"), "not a directory")
    assert not available("cifar10", tmp_path / "gone") and not available("nope")
    one_line(pytest.raises(DatasetError, load_arrays, "mnist", tmp_path), "unknown dataset 'mnist'")
    assert isinstance(DatasetError("x"), SpecError)  # the CLIs' one-line handling of spec errors applies


def test_registry_covers_the_published_tasks():
    from data.tasks.builtin import TASKS

    for name in ("cifar10", "cifar100", "svhn", "tinyimagenet"):
        ds = DATASETS[name]
        assert (ds.n_classes, ds.input_shape) == (TASKS[name].n_classes, TASKS[name].input_shape)
        assert ds.normalisation is NORMALISATION[name]


def test_normalise_is_totensor_then_normalize(tmp_path):
    """torchvision: ToTensor = from_numpy(hwc).permute(2, 0, 1).float().div(255); Normalize = (t − m) / s with
    m, s as float32 tensors — written out, compared bit for bit."""
    make_cifar10_py(tmp_path)
    a = load_arrays("cifar10", tmp_path)
    xs, ys, xt, yt = load_normalised("cifar10", tmp_path)
    n = NORMALISATION["cifar10"]
    for i in range(3):
        hwc = torch.from_numpy(a.x_test[i].transpose(1, 2, 0).copy())
        t = hwc.permute(2, 0, 1).contiguous().to(torch.float32).div(255)
        m = torch.as_tensor(n.mean, dtype=torch.float32)[:, None, None]
        s = torch.as_tensor(n.std, dtype=torch.float32)[:, None, None]
        assert torch.equal(torch.from_numpy(xt[i]), t.sub(m).div(s))
    np.testing.assert_allclose(xs, (a.x_train / 255 - np.array(n.mean)[:, None, None]) / np.array(n.std)[:, None, None],
                               rtol=0, atol=2e-6)
    assert xs.dtype == np.float32 and ys.dtype == np.int64
    assert n.mean[0] == 125.3 / 255 and NORMALISATION["tinyimagenet"].std == (0.229, 0.224, 0.225)
    one_line(pytest.raises(DatasetError, normalise, np.zeros((1, 1, 2, 2), np.uint8), n), "3 channels")


def test_published_tasks_read_the_data_root(tmp_path, monkeypatch):
    """The hook in data.tasks.builtin: cifar10 is available exactly when the data root holds its layout, and
    load_task gives the normalised arrays (with the task's own n_train subset and label noise on top)."""
    from data.tasks.builtin import TASKS, load_task

    monkeypatch.delenv("PHASEZOO_DATA", raising=False)
    assert not TASKS["cifar10"].available
    one_line(pytest.raises(SpecError, load_task, "cifar10"), "task cifar10", "no data root")
    monkeypatch.setenv("PHASEZOO_DATA", str(tmp_path))
    assert not TASKS["cifar10"].available
    one_line(pytest.raises(DatasetError, load_task, "cifar10"), "expected cifar-10-batches-py/")
    make_cifar10_py(tmp_path)
    assert TASKS["cifar10"].available and not TASKS["svhn"].available
    t = load_task("cifar10")
    xs, ys, xt, yt = load_normalised("cifar10", tmp_path)
    assert torch.equal(t.x_test, torch.from_numpy(xt)) and torch.equal(t.y_train, torch.from_numpy(ys))
    assert t.n_classes == 10 and t.input_shape == (3, 32, 32)
    assert len(load_task("cifar10", n_train=4).y_train) == 4


# ---- Parquet (Hugging Face datasets' layout) ------------------------------------------------------------------------

def _encoded(px: np.ndarray) -> bytes:
    b = io.BytesIO()
    Image.fromarray(px).save(b, format="PNG")
    return b.getvalue()


def test_parquet_exact(tmp_path):
    import polars as pl

    d = tmp_path / "cifar10-hf" / "plain_text"
    d.mkdir(parents=True)
    want = {}
    for split, n in (("train", 4), ("test", 2)):
        px = RNG.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8)
        y = RNG.integers(0, 3, n)
        pl.DataFrame({"img": [{"bytes": _encoded(p), "path": None} for p in px], "label": y}).write_parquet(
            d / f"{split}-00000-of-00001.parquet")
        want[split] = (px.transpose(0, 3, 1, 2), y)
    a = load_arrays("parquet", tmp_path, path="cifar10-hf/plain_text", input_shape=[3, 4, 4], n_classes=3)
    np.testing.assert_array_equal(a.x_train, want["train"][0])
    np.testing.assert_array_equal(a.y_test, want["test"][1])
    assert available("parquet", tmp_path, path="cifar10-hf/plain_text")
    # bad inputs: a wrong size names the row, a label out of range, a missing column, no test split
    one_line(pytest.raises(DatasetError, load_arrays, "parquet", tmp_path, path="cifar10-hf/plain_text",
                           input_shape=[3, 8, 8]), "train-00000-of-00001.parquet row 0", "expected a 8×8 image")
    one_line(pytest.raises(DatasetError, load_arrays, "parquet", tmp_path, path="cifar10-hf/plain_text",
                           input_shape=[3, 4, 4], n_classes=1), "outside the class range [0, 1)")
    one_line(pytest.raises(DatasetError, load_arrays, "parquet", tmp_path, path="cifar10-hf/plain_text",
                           input_shape=[3, 4, 4], label_column="coarse"), "expected the label column 'coarse'")
    pl.DataFrame({"img": ["not bytes"], "label": [0]}).write_parquet(d / "test-00000-of-00001.parquet")
    one_line(pytest.raises(DatasetError, load_arrays, "parquet", tmp_path, path="cifar10-hf/plain_text",
                           input_shape=[3, 4, 4]), "test-00000-of-00001.parquet", "as encoded bytes", "found String")
    (d / "test-00000-of-00001.parquet").write_bytes(b"PAR1 garbage")
    one_line(pytest.raises(DatasetError, load_arrays, "parquet", tmp_path, path="cifar10-hf/plain_text",
                           input_shape=[3, 4, 4]), "expected a Parquet file: found an unreadable one")
    (d / "test-00000-of-00001.parquet").unlink()
    one_line(pytest.raises(DatasetError, load_arrays, "parquet", tmp_path, path="cifar10-hf/plain_text"),
             "expected test-*.parquet or test.parquet")
