"""data.checkpoint.load under attack: memory stays bounded whatever a file declares, every refusal is a CheckpointError
with a short one-line message in plain words, and older but legitimate torch files load.

The hostile files are built here with torch, pickle, zipfile and struct; the memory checks run in one subprocess
(one torch import) and compare its resident memory before each read with its peak during the read (Linux VmHWM, reset
per case through /proc/self/clear_refs; elsewhere getrusage's ru_maxrss). Memory a regressed case frees but the
allocator keeps can hide a later case's growth, so a failure proves a regression, though not always in that case.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import random
import struct
import subprocess
import sys
import tarfile
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as save_safetensors

import data.checkpoint.load as checkpoint
from data.checkpoint.declared import torch_failure
from data.checkpoint.load import CheckpointError, load_checkpoint, read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
MAX_GROWTH_MB = 200  # each hostile file below declares 1-2.4 GB; the reader must refuse it using far less than that


def torch_bytes(obj, legacy: bool = False, protocol: int = 2) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=not legacy, pickle_protocol=protocol)
    return buf.getvalue()


def small_state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"0.weight": torch.randn(4, 3, generator=g), "0.bias": torch.randn(4, generator=g),
            "steps": torch.tensor(7)}


class Stored:
    """Stands for a storage in a hand-written pickle: `numel` is what the pickle claims, `data` what the file holds."""

    def __init__(self, key: str, numel: int, data: bytes, storage_type=torch.FloatStorage):
        self.key, self.numel, self.data, self.storage_type = key, numel, data, storage_type


class View:
    """A tensor in a hand-written pickle, pickled the way torch.save pickles one but with any shape and strides."""

    def __init__(self, storage: Stored, size: tuple, stride: tuple, offset: int = 0):
        self.args = (storage, offset, size, stride, False, OrderedDict())

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, self.args


class Calls:
    """Pickles as a call of `fn` on `args`: how a file makes torch.load run one of its allowlisted functions."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def handmade_pickle(obj, legacy: bool = False) -> tuple[bytes, dict[str, Stored]]:
    stored: dict[str, Stored] = {}

    class Pickler(pickle.Pickler):
        def persistent_id(self, o):
            if not isinstance(o, Stored):
                return None
            stored[o.key] = o
            return ("storage", o.storage_type, o.key, "cpu", o.numel) + ((None,) if legacy else ())

    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue(), stored


def handmade_zip(obj, records: dict[str, bytes] | None = None) -> bytes:
    pkl, stored = handmade_pickle(obj)
    entries = {"data.pkl": pkl, "byteorder": b"little", "version": b"3\n"} | (records or {})
    entries |= {f"data/{s.key}": s.data for s in stored.values()}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, payload in entries.items():
            z.writestr(f"archive/{name}", payload)
    return buf.getvalue()


def handmade_legacy(obj, counts: dict[str, int] | None = None) -> bytes:
    pkl, stored = handmade_pickle(obj, legacy=True)
    head = b"".join(pickle.dumps(x, protocol=2) for x in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}))
    keys = sorted(stored)
    body = b"".join(struct.pack("<q", (counts or {}).get(k, stored[k].numel)) + stored[k].data for k in keys)
    return head + pkl + pickle.dumps(keys, protocol=2) + body


def rezip(data: bytes, replace: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for entry in src.infolist():
            dst.writestr(entry.filename, replace.get(entry.filename, src.read(entry)))
    return out.getvalue()


def assert_plain_message(e: CheckpointError, name: str) -> None:
    text = str(e)
    assert text.startswith(f"{name}: ") and len(text) <= checkpoint.MAX_MESSAGE, text
    assert all(c.isprintable() for c in text), text
    for internal in INTERNAL_TEXT:
        assert internal not in text, text


# Phrases that mean an internal error leaked through as the reason.
INTERNAL_TEXT = ("KeyError", "invalid literal", "Could not run", "weights_only", "codec can't", "has no attribute",
                 "deserialized_objects", "PytorchStreamReader", "Traceback", "object is not", "positional",
                 "enforce fail", "miniz", "unexpected keyword")


# --- memory: refused while allocating far less than declared --------------------------------------------------

MEMORY_SCRIPT = r"""
import io, json, pickle, resource, struct, sys, zipfile
import torch
torch.set_num_threads(1)
from tests.test_checkpoint_limits import Calls, torch_bytes
from data.checkpoint.load import CheckpointError, read_checkpoint

one = torch.zeros(1).expand(300_000_000)  # 1.2 GB declared, 4 bytes stored
block = torch.arange(500_000, dtype=torch.float32)  # 2 MB
memo_bomb = torch_bytes({"w": torch.ones(1)})
with zipfile.ZipFile(io.BytesIO(memo_bomb)) as z:
    name = next(n for n in z.namelist() if n.endswith("data.pkl"))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for e in z.infolist():  # PROTO 2, EMPTY_DICT, LONG_BINPUT 2**28, STOP: a memo index, not a size
            dst.writestr(e.filename, b"\x80\x02}r" + struct.pack("<I", 2**28) + b"." if e.filename == name
                         else z.read(e))
cases = {
    "stride0": lambda: torch_bytes({"w": one}),
    "stride0-legacy": lambda: torch_bytes({"w": one}, legacy=True),
    "aliases": lambda: torch_bytes({f"k{i}": block for i in range(1000)}),
    "views": lambda: torch_bytes({f"k{i}": block[i:] for i in range(1000)}),
    "aliases-legacy": lambda: torch_bytes({f"k{i}": block for i in range(1000)}, legacy=True),
    "bytearray": lambda: torch_bytes({"w": torch.ones(1), "pad": Calls(bytearray, 2**31)}),
    "convert-on-load": lambda: torch_bytes({"w": Calls(torch._utils._rebuild_device_tensor_from_cpu_tensor, one,
                                                       torch.float64, "cpu", False)}),
    "memo-index": lambda: out.getvalue(),
}
def rss_mb(field):
    try:
        return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(field + ":")) / 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux
for case in sys.argv[1:]:
    data = cases[case]()
    try:
        open("/proc/self/clear_refs", "w").write("5")  # peak := current, so each case is measured on its own
    except OSError:
        pass
    before = rss_mb("VmRSS")
    try:
        read_checkpoint(data, case + ".pt")
        message = None
    except CheckpointError as e:
        message = str(e)
    except BaseException as e:
        message = "NOT A CheckpointError: " + type(e).__name__
    growth = rss_mb("VmHWM") - before
    print(json.dumps({"case": case, "bytes": len(data), "message": message, "growth_mb": growth}), flush=True)
"""
MEMORY_CASES = ("stride0", "stride0-legacy", "aliases", "views", "aliases-legacy", "bytearray", "convert-on-load",
                "memo-index")


@pytest.fixture(scope="module")
def memory_results() -> dict[str, dict]:
    env = os.environ | {"OMP_NUM_THREADS": "1", "PHASEZOO_MAX_CHECKPOINT_MB": "256"}
    # cwd=ROOT: `python -c` puts the working directory first on sys.path, so the script imports `tests` too
    run = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, *MEMORY_CASES], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=600)
    results = {r["case"]: r for r in map(json.loads, run.stdout.splitlines())}
    assert set(results) == set(MEMORY_CASES), run.stderr[-2000:]
    return results


@pytest.mark.slow
@pytest.mark.parametrize("case", MEMORY_CASES)
def test_hostile_sizes_are_refused_with_bounded_memory(memory_results, case):
    result = memory_results[case]
    assert result["message"] is not None and result["message"].startswith(f"{case}.pt: "), result
    assert result["growth_mb"] < MAX_GROWTH_MB, result


@pytest.mark.slow
def test_stride0_and_alias_messages_say_why(memory_results):
    assert memory_results["stride0"]["bytes"] < 4000
    for case in ("stride0", "stride0-legacy", "aliases", "views", "aliases-legacy"):
        assert "refused: its tensors would take " in memory_results[case]["message"]
        assert "by aliasing or stride-0 broadcasting" in memory_results[case]["message"]
    assert "bytearray in a way torch.save never does" in memory_results["bytearray"]["message"]
    assert "refused: it holds a device-converted tensor" in memory_results["convert-on-load"]["message"]


def test_budget_is_a_multiple_of_the_size_limit():
    block = torch.arange(10_000, dtype=torch.float32)  # 40 KB stored once, 400 KB as ten names
    data = torch_bytes({f"k{i}": block for i in range(10)})
    assert len(read_checkpoint(data, "ten.pt", limit=400_000 // checkpoint.MAX_EXPANSION + 1).state) == 10
    with pytest.raises(CheckpointError, match=r"^ten\.pt: refused: its tensors would take 390\.6 KB in memory, over "
                                              r"the limit of 195\.3 KB \(2× the size limit\): they view only 39\.1 KB"):
        read_checkpoint(data, "ten.pt", limit=100_000)


def test_tied_weights_within_the_budget_load():
    w = torch.randn(8, 4)
    ckpt = read_checkpoint(torch_bytes({"embed.weight": w, "head.weight": w}), "tied.pt")
    assert torch.equal(ckpt.state["embed.weight"], ckpt.state["head.weight"])


# --- declarations that do not fit --------------------------------------------------------------------------------


def test_view_past_its_storage_is_refused_before_torch_sees_it():
    data = handmade_zip({"w": View(Stored("0", 4, bytes(16)), (10,), (1,))})
    with pytest.raises(CheckpointError, match=r"^v\.pt: is not a readable PyTorch checkpoint \(truncated or corrupt\)"
                                              r": a tensor of shape \(10,\) with strides \(1,\) reaches element 10 of "
                                              r"a storage holding 4$"):
        read_checkpoint(data, "v.pt")


def test_negative_stride_is_refused():
    with pytest.raises(CheckpointError, match=r"a stride is -1, not a non-negative integer"):
        read_checkpoint(handmade_zip({"w": View(Stored("0", 4, bytes(16)), (4,), (-1,), offset=3)}), "n.pt")


def test_storage_missing_from_the_archive():
    data = handmade_zip({"w": View(Stored("0", 2**30, bytes(16)), (4,), (1,))})
    with pytest.raises(CheckpointError, match=r"storage '0' of 4,294,967,296 bytes holds only 16 bytes in the archive"):
        read_checkpoint(data, "m.pt")


def test_legacy_storage_declared_larger_than_its_data():
    # torch's legacy loader allocates each storage at the declared size before reading it
    data = handmade_legacy({"w": View(Stored("0", 2**33, bytes(16)), (4,), (1,))}, counts={"0": 4})
    with pytest.raises(CheckpointError, match=r"^l\.pt: is not a readable PyTorch checkpoint \(truncated or corrupt\)"
                                              r": storage '0' holds 4 elements where its pickle declares "
                                              r"8,589,934,592$"):
        read_checkpoint(data, "l.pt")


def test_handmade_files_that_fit_load():
    values = struct.pack("<4f", 1, 2, 3, 4)
    for data in (handmade_zip({"w": View(Stored("0", 4, values), (2, 2), (2, 1))}),
                 handmade_legacy({"w": View(Stored("0", 4, values), (2, 2), (2, 1))})):
        assert torch.equal(read_checkpoint(data, "ok.pt").state["w"], torch.tensor([[1.0, 2], [3, 4]]))


def test_storage_alignment_that_is_not_a_number():
    data = torch_bytes(small_state())
    data = rezip(data, {"archive/.storage_alignment": b"sixty-four"})
    with pytest.raises(CheckpointError, match=r"truncated or corrupt\): its record '\.storage_alignment' is not one "
                                              r"torch\.save writes$"):
        read_checkpoint(data, "a.pt")


def test_quantized_tensor_is_refused_by_kind():
    q = torch.quantize_per_tensor(torch.ones(3), 0.1, 0, torch.qint8)
    with pytest.raises(CheckpointError, match=r"^q\.pt: refused: it holds a quantized tensor; only dense tensors"):
        read_checkpoint(torch_bytes({"q": q}), "q.pt")


# --- messages ----------------------------------------------------------------------------------------------------


def safetensors_with_dtype(dtype: str) -> bytes:
    header = json.dumps({"w": {"dtype": dtype, "shape": [2], "data_offsets": [0, 2]}}).encode()
    return struct.pack("<Q", len(header)) + header + b"\x7f\x7f"


def test_unknown_safetensors_dtype_is_named():
    with pytest.raises(CheckpointError, match=r"^w\.safetensors: tensor 'w' has the dtype 'F8_E8M0', which this "
                                              r"reader does not support \(it reads F64, F32, ") as e:
        read_checkpoint(safetensors_with_dtype("F8_E8M0"), "w.safetensors")
    assert_plain_message(e.value, "w.safetensors")
    with pytest.raises(CheckpointError, match=r"^w\.safetensors: is not a readable safetensors file: its header names "
                                              r"the unknown dtype 'F9'$"):
        read_checkpoint(safetensors_with_dtype("F9"), "w.safetensors")


def test_huge_and_hostile_keys_make_short_one_line_messages():
    for key in ("k" * 100_000, "evil\x1b[2J\nkey\r"):
        with pytest.raises(CheckpointError) as e:
            read_checkpoint(torch_bytes({"w": torch.ones(1), key: "text"}), "k.pt")
        assert_plain_message(e.value, "k.pt")
        assert "holds a str, not a tensor" in str(e.value)


def test_huge_file_name_is_shortened_and_keeps_its_suffix():
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(b"", "x" * 100_000 + ".pt")
    assert_plain_message(e.value, "x" * 60 + "…" + "x" * 16 + ".pt")
    assert str(e.value).endswith(".pt: is empty (0 bytes)")


def test_messages_name_the_file_without_its_directories(tmp_path):
    (tmp_path / "dir.pt").mkdir()
    os.mkfifo(tmp_path / "fifo.pt")
    for path in (tmp_path / "gone.pt", tmp_path / "dir.pt", tmp_path / "fifo.pt"):
        with pytest.raises(CheckpointError) as e:
            load_checkpoint(path)
        assert str(tmp_path) not in str(e.value) and str(e.value).startswith(f"{path.name}: ")


# --- older formats ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [1, 3, 4, 5])
@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_other_pickle_protocols_load(legacy, protocol):
    state = small_state() | {"tied": small_state()["0.bias"]}
    ckpt = read_checkpoint(torch_bytes(state, legacy=legacy, protocol=protocol), "old.pt")
    assert ckpt.format == ("torch-legacy" if legacy else "torch-zip")
    assert list(ckpt.state) == list(state) and all(torch.equal(ckpt.state[k], v) for k, v in state.items())


def test_other_protocol_wrapper_with_metadata_loads():
    obj = {"state_dict": small_state(), "epoch": 3, "tag": b"\x00\xff", "lrs": {0.1, 0.01}}
    ckpt = read_checkpoint(torch_bytes(obj, legacy=True, protocol=4), "run.ckpt")
    assert list(ckpt.state) == list(small_state()) and ckpt.notes[0] == "unwrapped 'state_dict'"


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_protocol_0_is_named_not_called_corrupt(legacy):
    with pytest.raises(CheckpointError, match=r"^p\.pt: was saved with pickle protocol 0, whose storage references "
                                              r"PyTorch itself cannot read back") as e:
        read_checkpoint(torch_bytes(small_state(), legacy=legacy, protocol=0), "p.pt")
    assert "corrupt" not in str(e.value)


def test_tar_format_is_named():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for member in ("sys_info", "pickle", "storages", "tensors"):
            info = tarfile.TarInfo(member)
            info.size = 4
            tar.addfile(info, io.BytesIO(b"\x80\x02N."))
    with pytest.raises(CheckpointError, match=r"^t\.pt: is a tar archive: PyTorch's pre-1\.0 tar format") as e:
        read_checkpoint(buf.getvalue(), "t.pt")
    assert "corrupt" not in str(e.value)


def test_torchscript_archive_is_named():
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), buf)
    with pytest.raises(CheckpointError, match=r"^s\.pt: is a TorchScript archive \(torch\.jit\.save\), not a state "
                                              r"dict — save a state dict"):
        read_checkpoint(buf.getvalue(), "s.pt")


# --- fuzz: only CheckpointError, whatever the bytes ---------------------------------------------------------------


def mutations(data: bytes, rng: random.Random, n: int):
    for _ in range(n):
        b = bytearray(data)
        op = rng.randrange(4)
        if op == 0:  # overwrite a few bytes
            for i in rng.sample(range(len(b)), rng.randint(1, 4)):
                b[i] = rng.randrange(256)
        elif op == 1:  # cut short
            b = b[: rng.randrange(1, len(b))]
        elif op == 2:  # insert a few random bytes
            i = rng.randrange(len(b))
            b[i:i] = rng.randbytes(rng.randint(1, 8))
        else:  # delete a few bytes
            i = rng.randrange(len(b))
            del b[i: i + rng.randint(1, 8)]
        yield bytes(b)


def test_fuzzed_checkpoints_only_ever_raise_checkpoint_error():
    rng = random.Random(14)
    seeds = [("a.pt", torch_bytes(small_state())), ("b.pt", torch_bytes(small_state(), legacy=True)),
             ("c.ckpt", torch_bytes({"state_dict": small_state(), "epoch": 3})),
             ("d.pt", torch_bytes(small_state(), protocol=4)), ("e.bin", torch_bytes(small_state(), True, 1)),
             ("f.safetensors", save_safetensors(small_state()))]
    outcomes = {"loaded": 0, "refused": 0}
    for name, data in seeds:
        for variant in mutations(data, rng, 150):
            try:
                read_checkpoint(variant, name)
                outcomes["loaded"] += 1
            except CheckpointError as e:
                assert_plain_message(e, name)
                outcomes["refused"] += 1
    assert outcomes["refused"] > 600, outcomes


def test_plain_pickles_are_named_and_code_in_them_refused():
    with pytest.raises(CheckpointError, match=r"^p\.pt: is not a readable PyTorch checkpoint: it is a plain Python "
                                              r"pickle, not a torch\.save file$"):
        read_checkpoint(pickle.dumps({"w": [1.0, 2.0]}, protocol=2), "p.pt")
    with pytest.raises(CheckpointError, match=r"^p\.pt: refused: the pickle calls os\.system, which a weights-only"):
        read_checkpoint(pickle.dumps({"w": Calls(os.system, "true")}, protocol=2), "p.pt")


def test_sizes_beyond_int64_are_refused():
    with pytest.raises(CheckpointError, match=r"truncated or corrupt\): a shape has more than 63 bits$"):
        read_checkpoint(handmade_zip({"w": View(Stored("0", 4, bytes(16)), (10**400,), (0,))}), "big.pt")


def test_torch_failures_never_pass_on_torchs_advice():
    buf = io.BytesIO(torch_bytes({"w": Calls(os.system, "true")}))
    with pytest.raises(Exception) as e:
        torch.load(buf, weights_only=True)
    assert "weights_only" in str(e.value) and "False" in str(e.value)  # torch's own text suggests turning it off
    phrase = torch_failure(e.value)
    assert phrase.startswith("refused: the pickle calls os.system") and "weights_only" not in phrase
    assert torch_failure(RuntimeError("PytorchStreamReader failed reading file data/0: invalid header or archive is "
                                      "corrupted. This is an internal miniz error.")) == \
        "is not a readable PyTorch checkpoint (truncated or corrupt): its archive entry 'data/0' cannot be read"
