"""data.checkpoint.load: hostile and broken uploads are refused with a message naming the problem, and nothing in them runs;
ordinary state dicts in every accepted format load intact."""
from __future__ import annotations

import builtins
import hashlib
import io
import os
import random
import struct
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as save_safetensors

import data.checkpoint.load as checkpoint
from data.checkpoint.load import (
    DEFAULT_MAX_BYTES,
    SUFFIXES,
    CheckpointError,
    load_checkpoint,
    max_bytes,
    read_checkpoint,
)


class RunsShell:
    """Unpickling this runs a shell command: the classic malicious checkpoint."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class RunsExec:
    def __init__(self, source: str):
        self.source = source

    def __reduce__(self):
        return builtins.exec, (self.source,)


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 2)


def torch_bytes(obj, legacy: bool = False) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def small_state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"0.weight": torch.randn(4, 3, generator=g), "0.bias": torch.randn(4, generator=g),
            "1.weight": torch.randn(2, 4, generator=g)}


def deflated_zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, payload in entries.items():
            z.writestr(name, payload)
    return buf.getvalue()


# --- code execution is refused and nothing runs ------------------------------------------------------------------


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_os_system_is_refused_and_not_run(tmp_path, legacy):
    marker = tmp_path / "pwned"
    path = write(tmp_path, "evil.pt", torch_bytes({"w": RunsShell(f"touch {marker}")}, legacy=legacy))
    with pytest.raises(CheckpointError, match=r"^evil\.pt: refused: the pickle calls os\.system, .*state_dict"):
        load_checkpoint(path)
    assert not marker.exists()


def test_exec_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = write(tmp_path, "evil.pth", torch_bytes(RunsExec(f"open({str(marker)!r}, 'w').close()")))
    with pytest.raises(CheckpointError, match=r"^evil\.pth: refused: the pickle calls builtins\.exec, .*weights-only"):
        load_checkpoint(path)
    assert not marker.exists()


def test_whole_nn_module_is_refused_with_state_dict_advice(tmp_path):
    path = write(tmp_path, "model.pt", torch_bytes(torch.nn.Sequential(torch.nn.Linear(3, 2))))
    with pytest.raises(CheckpointError, match=r"whole model object \(torch\.nn\.modules\.container\.Sequential\).*"
                                              r"model\.state_dict\(\)"):
        load_checkpoint(path)


def test_custom_class_is_refused_by_name(tmp_path):
    with pytest.raises(CheckpointError, match=r"needs the class tests\.test_checkpoint\.Net.*state_dict"):
        read_checkpoint(torch_bytes(Net()), "net.bin")


# --- unreadable files ------------------------------------------------------------------------------------------


def test_truncated_safetensors(tmp_path):
    data = save_safetensors(small_state())
    with pytest.raises(CheckpointError, match=r"^w\.safetensors: is not a readable safetensors file: its header "
                                              r"length field says \d+ bytes but only \d+ follow \(truncated"):
        load_checkpoint(write(tmp_path, "w.safetensors", data[: len(data) // 2]))
    with pytest.raises(CheckpointError, match=r"^w\.safetensors: is not a readable safetensors file: incomplete"):
        read_checkpoint(data[:-4], "w.safetensors")  # header intact, tensor data cut short


def test_safetensors_header_length_beyond_file(tmp_path):
    data = struct.pack("<Q", 10**6) + b'{"a": 1}'
    with pytest.raises(CheckpointError, match=r"header length field says 1000000 bytes but only 8 follow"):
        load_checkpoint(write(tmp_path, "w.safetensors", data))


def test_safetensors_with_broken_json_header():
    header = b"{not json}"
    with pytest.raises(CheckpointError, match=r"^w\.safetensors: is not a readable safetensors file"):
        read_checkpoint(struct.pack("<Q", len(header)) + header, "w.safetensors")


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_truncated_pt(tmp_path, legacy):
    data = torch_bytes(small_state(), legacy=legacy)
    with pytest.raises(CheckpointError, match=r"^w\.pt: is not a readable PyTorch checkpoint \(truncated or corrupt\)"):
        load_checkpoint(write(tmp_path, "w.pt", data[: len(data) - 50]))


@pytest.mark.parametrize("name", ["w.safetensors", "w.pt"])
def test_empty_file(tmp_path, name):
    with pytest.raises(CheckpointError, match=rf"^{name}: is empty"):
        load_checkpoint(write(tmp_path, name, b""))


def test_random_bytes_pt(tmp_path):
    data = b"\x00" + random.Random(0).randbytes(2000)  # no zip or pickle magic: neither reader's happy path
    with pytest.raises(CheckpointError, match=r"^noise\.pt: is not a readable PyTorch checkpoint"):
        load_checkpoint(write(tmp_path, "noise.pt", data))


def test_random_bytes_safetensors(tmp_path):
    data = random.Random(1).randbytes(2000)
    with pytest.raises(CheckpointError, match=r"^noise\.safetensors: is not a readable safetensors file"):
        load_checkpoint(write(tmp_path, "noise.safetensors", data))


def test_mangled_files_only_ever_raise_checkpoint_error():
    """Truncations and byte flips of valid files: whatever breaks inside torch or safetensors comes out as a
    CheckpointError (or, where the damage missed everything, as a checkpoint)."""
    rng = random.Random(2)
    for name, data in [("a.pt", torch_bytes(small_state())), ("b.pt", torch_bytes(small_state(), legacy=True)),
                       ("c.safetensors", save_safetensors(small_state()))]:
        variants = [data[:n] for n in rng.sample(range(1, len(data)), 25)]
        for _ in range(25):
            flipped = bytearray(data)
            for i in rng.sample(range(len(data)), 3):
                flipped[i] = rng.randrange(256)
            variants.append(bytes(flipped))
        for variant in variants:
            try:
                read_checkpoint(variant, name)
            except CheckpointError as e:
                assert str(e).startswith(f"{name}: ") and "\n" not in str(e)


# --- names and formats -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, fragment", [("weights.txt", "its suffix '.txt' is not"),
                                            ("weights", "it has no suffix, which is not"),
                                            ("weights.npy", "its suffix '.npy' is not")])
def test_wrong_suffix(tmp_path, name, fragment):
    with pytest.raises(CheckpointError, match=rf"^{name}: {fragment} a checkpoint suffix; accepted: "
                                              r"\.safetensors, \.pt, \.pth, \.bin, \.ckpt"):
        load_checkpoint(write(tmp_path, name, torch_bytes(small_state())))


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_torch_file_named_safetensors(tmp_path, legacy):
    with pytest.raises(CheckpointError, match=r"looks like a PyTorch file; rename it \.pt"):
        load_checkpoint(write(tmp_path, "w.safetensors", torch_bytes(small_state(), legacy=legacy)))


def test_safetensors_file_named_pt(tmp_path):
    with pytest.raises(CheckpointError, match=r"looks like a safetensors file; rename it \.safetensors"):
        load_checkpoint(write(tmp_path, "w.pt", save_safetensors(small_state())))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CheckpointError, match=r"^gone\.pt: no such file"):
        load_checkpoint(tmp_path / "gone.pt")
    (tmp_path / "dir.pt").mkdir()
    with pytest.raises(CheckpointError, match=r"^dir\.pt: is a directory"):
        load_checkpoint(tmp_path / "dir.pt")
    with pytest.raises(CheckpointError, match=r"^a\?b\.pt: cannot be read: .*null byte"):
        load_checkpoint(tmp_path / "a\0b.pt")


# --- sizes and zip bombs ---------------------------------------------------------------------------------------


def test_over_limit_argument(tmp_path):
    data = torch_bytes(small_state())
    with pytest.raises(CheckpointError, match=r"^w\.pt: is 2\.\d KB, over the limit of 1000 bytes "
                                              r"\(set PHASEZOO_MAX_CHECKPOINT_MB to raise it\)"):
        read_checkpoint(data, "w.pt", limit=1000)
    with pytest.raises(CheckpointError, match=r"over the limit of 1000 bytes"):
        load_checkpoint(write(tmp_path, "w.pt", data), limit=1000)


def test_over_env_limit_is_refused_by_stat_without_reading(tmp_path, monkeypatch):
    path = tmp_path / "huge.pt"
    with open(path, "wb") as f:
        f.truncate(8 * 2**30)  # sparse: 8 GB by stat, nothing on disk

    def no_reading(*args, **kwargs):
        raise AssertionError("the file was opened")

    monkeypatch.setenv("PHASEZOO_MAX_CHECKPOINT_MB", "1")
    monkeypatch.setattr(checkpoint, "open", no_reading, raising=False)  # shadows the builtin inside the module
    with pytest.raises(CheckpointError, match=r"^huge\.pt: is 8192\.0 MB, over the limit of 1\.0 MB "
                                              r"\(set PHASEZOO_MAX_CHECKPOINT_MB"):
        load_checkpoint(path)


def test_bad_env_limit_names_the_variable(monkeypatch):
    monkeypatch.setenv("PHASEZOO_MAX_CHECKPOINT_MB", "lots")
    with pytest.raises(CheckpointError, match=r"PHASEZOO_MAX_CHECKPOINT_MB='lots' is not a positive number"):
        max_bytes()
    with pytest.raises(CheckpointError, match=r"^w\.pt: cannot check its size: PHASEZOO_MAX_CHECKPOINT_MB="):
        read_checkpoint(torch_bytes(small_state()), "w.pt")


def test_zip_bomb(tmp_path):
    data = deflated_zip({"archive/data.pkl": bytes(50 * 2**20)})  # 50 MB of zeros deflate to ~50 KB
    assert len(data) < 2**20
    with pytest.raises(CheckpointError, match=r"^bomb\.pt: refused: zip entry 'archive/data\.pkl' decompresses to "
                                              r"50\.0 MB from .* \(a zip bomb"):
        load_checkpoint(write(tmp_path, "bomb.pt", data))


def test_zip_declaring_more_than_the_limit(tmp_path):
    # Random bits deflate about 8:1, far from bomb ratios, yet 300 KB of them exceed a 100 KB limit.
    bits = bytes(b & 1 for b in random.Random(3).randbytes(300 * 2**10))
    data = deflated_zip({"archive/data/0": bits})
    assert len(data) < 100 * 2**10
    with pytest.raises(CheckpointError, match=r"^big\.pt: refused: its zip archive decompresses to 300\.0 KB, "
                                              r"over the limit of 100\.0 KB"):
        load_checkpoint(write(tmp_path, "big.pt", data), limit=100 * 2**10)


def test_zip_that_is_not_readable():
    data = torch_bytes(small_state())
    with pytest.raises(CheckpointError, match=r"truncated or corrupt\): its zip archive cannot be read"):
        read_checkpoint(data[:300], "cut.ckpt")


# --- structure -------------------------------------------------------------------------------------------------


def test_top_level_list():
    with pytest.raises(CheckpointError, match=r"^l\.pt: holds a list, not a state dict \(a mapping of parameter"):
        read_checkpoint(torch_bytes(list(small_state().values())), "l.pt")


def test_top_level_tensor():
    with pytest.raises(CheckpointError, match=r"holds a single tensor, not a state dict"):
        read_checkpoint(torch_bytes(torch.ones(3)), "t.pt")


def test_non_tensor_value():
    with pytest.raises(CheckpointError, match=r"^x\.pt: key 'x' holds a str, not a tensor"):
        read_checkpoint(torch_bytes({"w": torch.ones(2), "x": "hello"}), "x.pt")


def test_nested_dict_is_not_flattened():
    with pytest.raises(CheckpointError, match=r"key 'encoder' holds a dict, not a tensor"):
        read_checkpoint(torch_bytes({"w": torch.ones(2), "encoder": {"w": torch.ones(2)}}), "n.pt")


def test_empty_dict(tmp_path):
    with pytest.raises(CheckpointError, match=r"^e\.pt: holds no tensors \(it is an empty mapping\)"):
        load_checkpoint(write(tmp_path, "e.pt", torch_bytes({})))


def test_metadata_only():
    with pytest.raises(CheckpointError, match=r"holds no tensors \(its keys: 'epoch', 'lr'\)"):
        read_checkpoint(torch_bytes({"epoch": 3, "lr": 0.1}), "m.pt")


def test_two_wrapped_state_dicts():
    obj = {"model": small_state(), "state_dict": small_state(), "epoch": 1}
    with pytest.raises(CheckpointError, match=r"holds several state dicts \('state_dict', 'model'\)"):
        read_checkpoint(torch_bytes(obj), "two.pt")


def test_non_string_key():
    with pytest.raises(CheckpointError, match=r"has a non-string key 0 \(int\)"):
        read_checkpoint(torch_bytes({"a": torch.ones(1), 0: torch.ones(1)}), "k.pt")


@pytest.mark.parametrize("bad, count", [(float("nan"), 3), (float("inf"), 1)], ids=["nan", "inf"])
def test_non_finite_values(tmp_path, bad, count):
    state = small_state()
    state["1.weight"].view(-1)[:count] = bad
    with pytest.raises(CheckpointError, match=rf"^w\.safetensors: tensor '1\.weight' has {count} NaN/Inf values? "
                                              r"\(of 8\)"):
        load_checkpoint(write(tmp_path, "w.safetensors", save_safetensors(state)))


def test_nan_in_float16_pt():
    state = {"w": torch.tensor([1.0, float("-inf")], dtype=torch.float16)}
    with pytest.raises(CheckpointError, match=r"tensor 'w' has 1 NaN/Inf value \(of 2\)"):
        read_checkpoint(torch_bytes(state), "h.pt")


def test_complex_tensor():
    with pytest.raises(CheckpointError, match=r"^c\.pt: tensor 'z' is complex \(torch\.complex64\)"):
        read_checkpoint(torch_bytes({"w": torch.ones(2), "z": torch.ones(2, dtype=torch.complex64)}), "c.pt")


def test_sparse_tensor():
    with pytest.raises(CheckpointError, match=r"^s\.pt: refused: it holds a tensor that is torch\.sparse_coo "
                                              r"\(not dense\)"):
        read_checkpoint(torch_bytes({"s": torch.eye(3).to_sparse()}), "s.pt")


# --- good paths ------------------------------------------------------------------------------------------------


def assert_same(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert list(state) == list(expected)
    for key, t in expected.items():
        assert state[key].dtype == t.dtype and torch.equal(state[key], t)
        assert state[key].device.type == "cpu" and state[key].is_contiguous()


def test_safetensors_round_trip(tmp_path):
    expected = small_state() | {"h": torch.arange(4, dtype=torch.float16), "b": torch.ones(2, dtype=torch.bfloat16),
                                "steps": torch.tensor(7, dtype=torch.int64)}
    data = save_safetensors(expected)
    ckpt = load_checkpoint(write(tmp_path, "w.safetensors", data))
    assert (ckpt.name, ckpt.format, ckpt.n_bytes, ckpt.notes) == ("w.safetensors", "safetensors", len(data), ())
    assert ckpt.sha256 == hashlib.sha256(data).hexdigest()
    assert_same(dict(sorted(ckpt.state.items())), dict(sorted(expected.items())))


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_pt_state_dict(tmp_path, legacy):
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    data = torch_bytes(model.state_dict(), legacy=legacy)
    ckpt = load_checkpoint(write(tmp_path, "model.pt", data))
    assert ckpt.format == ("torch-legacy" if legacy else "torch-zip") and ckpt.notes == ()
    assert_same(ckpt.state, dict(model.state_dict()))
    torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)).load_state_dict(ckpt.state)


def test_float16_keeps_dtype():
    state = {k: v.half() for k, v in small_state().items()}
    ckpt = read_checkpoint(torch_bytes(state), "half.bin")
    assert_same(ckpt.state, state)


def test_data_parallel_prefix_stripped(tmp_path):
    state = small_state()
    ckpt = load_checkpoint(write(tmp_path, "dp.pth", torch_bytes({f"module.{k}": v for k, v in state.items()})))
    assert_same(ckpt.state, state)
    assert ckpt.notes == ("stripped prefix 'module.' from 3 keys",)


def test_compiled_data_parallel_prefixes_stripped():
    state = small_state()
    ckpt = read_checkpoint(torch_bytes({f"_orig_mod.module.{k}": v for k, v in state.items()}), "c.pt")
    assert_same(ckpt.state, state)
    assert ckpt.notes == ("stripped prefix '_orig_mod.' from 3 keys", "stripped prefix 'module.' from 3 keys")


def test_prefix_on_some_keys_stays():
    # Stripping only where every key has the prefix means it can never merge two keys: here nothing is stripped.
    state = {"module.a": torch.ones(1), "a": torch.zeros(1)}
    ckpt = read_checkpoint(torch_bytes(state), "mixed.pt")
    assert_same(ckpt.state, state)
    assert ckpt.notes == ()


def test_wrapper_unwrapped(tmp_path):
    state = small_state()
    obj = {"epoch": 3, "state_dict": state, "optimizer": {"lr": 0.1}}
    ckpt = load_checkpoint(write(tmp_path, "run.ckpt", torch_bytes(obj)))
    assert_same(ckpt.state, state)
    assert ckpt.notes == ("unwrapped 'state_dict'", "ignored 2 other entries beside it: 'epoch', 'optimizer'")


def test_wrapper_with_prefixes():
    obj = {"model_state_dict": {f"module.{k}": v for k, v in small_state().items()}}
    ckpt = read_checkpoint(torch_bytes(obj, legacy=True), "w.pt")
    assert_same(ckpt.state, small_state())
    assert ckpt.notes == ("unwrapped 'model_state_dict'", "stripped prefix 'module.' from 3 keys")


def test_shared_and_strided_tensors_become_independent():
    base = torch.arange(12.0).reshape(3, 4)
    state = {"w": base, "tied": base, "col": base[:, 1], "row": base[1]}
    ckpt = read_checkpoint(torch_bytes(state), "tied.pt")
    assert_same(ckpt.state, {k: v.contiguous() for k, v in state.items()})
    ptrs = {t.untyped_storage().data_ptr() for t in ckpt.state.values()}
    assert len(ptrs) == 4
    save_safetensors(ckpt.state)  # refuses tensors that share memory


def test_name_loses_directories_and_suffix_case_is_ignored():
    ckpt = read_checkpoint(torch_bytes(small_state()), "C:\\Users\\me\\Model.PT")
    assert ckpt.name == "Model.PT" and ckpt.format == "torch-zip"
    with pytest.raises(CheckpointError, match=r"^a\?b\.pt: is empty"):  # no control characters in a message
        read_checkpoint(b"", "uploads/a\x1bb.pt")


def test_limits(monkeypatch):
    monkeypatch.delenv("PHASEZOO_MAX_CHECKPOINT_MB", raising=False)
    assert max_bytes() == DEFAULT_MAX_BYTES
    monkeypatch.setenv("PHASEZOO_MAX_CHECKPOINT_MB", "0.5")
    assert max_bytes() == 2**19
    data = torch_bytes(small_state())
    assert read_checkpoint(data, "w.pt").n_bytes == len(data)
    assert read_checkpoint(data, "w.pt", limit=len(data)).n_bytes == len(data)
    assert ".safetensors" in SUFFIXES
