"""The zoo picker and PHASEZOO_ZOO on a public server (issue 14): hostile directories are refused with one line
in the page, a directory is opened by its path (never mistaken for a built-in zoo of the same name), and
PHASEZOO_ZOO_ROOTS confines "Other directory…" after resolving symlinks and `..`."""
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from data.zoo.paths import PathError, allowed_zoo_dir
from data.zoo.store import Zoo, ZooError, builtin_zoos
from tests.conftest import DEFAULT_ZOO, ROOT

APP = str(ROOT / "dashboard" / "app.py")
HANG_S = 90  # a page that has not finished by then is blocked (on a FIFO): fail rather than wait forever


@pytest.fixture
def zoo(tiny_zoo, tmp_path) -> Path:
    """A private copy of the tiny zoo, to be damaged."""
    return Path(shutil.copytree(tiny_zoo, tmp_path / "zoo"))


def snapshot(root: Path) -> dict[str, tuple[int, float]]:
    """Every entry under `root` (not followed into links) with its size and mtime: to see that nothing is written."""
    return {str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime) for p in root.rglob("*")}


def run_page(monkeypatch, env: dict[str, str], fifos=(), page: str | None = None, other: str | None = None) -> AppTest:
    """Run the app in a thread with `env` set; if it blocks past HANG_S, open every FIFO in `fifos` for writing
    (the blocked reader gets EOF and the run ends), then fail. `other`: pick "Other directory…" and type it."""
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    at = AppTest.from_file(APP, default_timeout=HANG_S)
    failure = []

    def target():
        try:
            if page:
                at.switch_page(page)
            at.run()
            if other is not None:
                at.selectbox(key="zoo_choice").set_value("Other directory…").run()
                at.text_input(key="zoo_custom_path").set_value(other).run()
        except Exception as e:  # AppTest's own timeout, or a crash of the harness
            failure.append(e)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(HANG_S + 30)
    if t.is_alive():
        for f in fifos:
            os.close(os.open(f, os.O_WRONLY | os.O_NONBLOCK))  # a reader is waiting: this cannot block
        t.join(30)
        pytest.fail(f"the page blocked (env {env})")
    assert not failure, failure
    assert not at.exception, at.exception
    return at


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def one_error(at: AppTest, *words: str) -> str:
    (msg,) = errors(at)
    assert all(w in msg for w in words) and "\n" not in msg, msg
    return msg


# ----------------------------------------------------------------------------- FIFOs, devices, loops
@pytest.mark.parametrize("name, page", [
    ("catalog.parquet", None), ("metrics.parquet", None), ("phases.parquet", None),
    ("embeddings.parquet", "views/weights.py"), ("spec.toml", None),
])
def test_a_fifo_among_the_zoo_files_is_refused_without_blocking(zoo, monkeypatch, name, page):
    (zoo / name).unlink(missing_ok=True)
    os.mkfifo(zoo / name)
    before = snapshot(zoo)
    at = run_page(monkeypatch, {"PHASEZOO_ZOO": str(zoo)}, fifos=[zoo / name], page=page)
    one_error(at, "Cannot open this zoo", name, "a FIFO, not a regular file")
    assert snapshot(zoo) == before  # nothing written


def test_a_device_as_catalog_is_refused(zoo, monkeypatch):
    (zoo / "catalog.parquet").unlink()
    (zoo / "catalog.parquet").symlink_to("/dev/zero")  # read without end before the fix
    at = run_page(monkeypatch, {"PHASEZOO_ZOO": str(zoo)})
    one_error(at, "catalog.parquet", "a device, not a regular file")


@pytest.mark.parametrize("where", ["zoo", "spec.toml", "catalog.parquet"])
def test_symlink_loops_are_refused(zoo, tmp_path, monkeypatch, where):
    if where == "zoo":  # the zoo directory is a link to itself
        target = tmp_path / "loop"
        target.symlink_to(target)
    else:
        (zoo / where).unlink()
        (zoo / where).symlink_to(zoo / where)
        target = zoo
    at = run_page(monkeypatch, {"PHASEZOO_ZOO": str(target)})
    one_error(at, "a symbolic-link loop")


@pytest.mark.parametrize("spec_text, words", [
    ("seeds = " + "[" * 5000 + "]" * 5000, ("nested more than 16 deep",)),
    # 400 seeds × 500 widths × 500 batch sizes = 1e8 models in 6 kB: MemoryError before the fix
    (f'name = "x"\ntask = "mnist1d"\narch = "mlp"\nseeds = {list(range(400))}\n[arch_params]\ndepth = 2\n'
     "[training]\nepochs = 1\nlr = 0.1\nbatch_size = 8\nanalysis_epochs = [1]\n"
     f"[grid]\nwidth = {list(range(1, 501))}\nbatch_size = {list(range(1, 501))}\n"
     '[axes.load]\nknob = "width"\nincreases = false\n[axes.temperature]\nknob = "batch_size"\nincreases = false\n',
     ("exceed 10000 models",)),
])
def test_a_hostile_spec_is_one_line_in_the_page(zoo, monkeypatch, spec_text, words):
    (zoo / "spec.toml").write_text(spec_text)
    at = run_page(monkeypatch, {"PHASEZOO_ZOO": str(zoo)})
    one_error(at, "Cannot open this zoo", *words)


def test_a_catalog_cannot_name_a_checkpoint_outside_the_zoo(zoo):
    import polars as pl

    cat = pl.read_parquet(zoo / "catalog.parquet")
    cat.with_columns(pl.when(pl.col("checkpoint").is_not_null()).then(pl.lit("../../../../etc/passwd"))
                     .otherwise(None).alias("checkpoint")).write_parquet(zoo / "catalog.parquet")
    z = Zoo.open(zoo)
    with pytest.raises(ZooError, match="a path outside the zoo"):
        z.load_state_dict(z.catalog["model_id"][0], 0)


# ----------------------------------------------------------------------------- identity by path, not by name
def test_a_directory_named_like_a_builtin_zoo_shows_its_own_data(tiny_zoo, tmp_path, monkeypatch):
    """/elsewhere/mnist1d-mlp used to open the built-in mnist1d-mlp: the user saw the wrong data."""
    twin = Path(shutil.copytree(tiny_zoo, tmp_path / "elsewhere" / "mnist1d-mlp"))
    at = run_page(monkeypatch, {"PHASEZOO_ZOO": str(twin)})
    assert at.title[0].value == "Zoo: tiny"
    monkeypatch.delenv("PHASEZOO_ZOO")
    at = run_page(monkeypatch, {}, other=str(twin))  # typed under "Other directory…"
    assert at.title[0].value == "Zoo: tiny"


def test_builtin_zoos_are_picked_by_name_or_by_any_path_to_them(tmp_path, monkeypatch):
    link = tmp_path / "link"
    link.symlink_to(DEFAULT_ZOO.parent / "mnist1d-cnn")
    for value in ("mnist1d-cnn", str(link), str(DEFAULT_ZOO / ".." / "mnist1d-cnn")):
        at = run_page(monkeypatch, {"PHASEZOO_ZOO": value})
        assert at.selectbox(key="zoo_choice").value == str((DEFAULT_ZOO.parent / "mnist1d-cnn").resolve())
        assert at.title[0].value == "Zoo: mnist1d-cnn"


# ----------------------------------------------------------------------------- PHASEZOO_ZOO_ROOTS
@pytest.fixture
def roots(tiny_zoo, tmp_path) -> tuple[Path, Path, Path]:
    """(an allowed root holding a zoo, a zoo outside it, a link inside the root to the outside zoo)."""
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    shutil.copytree(tiny_zoo, allowed / "zoo")
    shutil.copytree(tiny_zoo, outside / "zoo")
    (allowed / "escape").symlink_to(outside / "zoo")
    return allowed, outside / "zoo", allowed / "escape"


@pytest.mark.slow
def test_roots_confine_the_typed_directory(roots, monkeypatch):
    allowed, outside, escape = roots
    env = {"PHASEZOO_ZOO_ROOTS": os.pathsep.join([str(allowed), "/nonexistent-root"])}
    at = run_page(monkeypatch, env, other=str(allowed / "zoo"))
    assert not errors(at) and at.title[0].value == "Zoo: tiny"
    dotdot = (allowed / ".." / "outside" / "zoo", allowed / "zoo" / ".." / ".." / "outside" / "zoo")
    for hostile in (outside, escape, *dotdot):
        at = run_page(monkeypatch, env, other=str(hostile))
        one_error(at, "not allowed on this server", "PHASEZOO_ZOO_ROOTS")
        assert not at.title  # no page content from the refused zoo


def test_roots_set_but_empty_leave_only_the_builtin_zoos(roots, monkeypatch):
    allowed, _, _ = roots
    at = run_page(monkeypatch, {"PHASEZOO_ZOO_ROOTS": ""})
    assert at.title[0].value == "Zoo: mnist1d-mlp"  # the built-in zoos stay open
    at = run_page(monkeypatch, {"PHASEZOO_ZOO_ROOTS": ""}, other=str(allowed / "zoo"))
    one_error(at, "only the built-in zoos")


def test_roots_apply_to_the_compare_pages_extra_directories(roots, monkeypatch):
    allowed, outside, _ = roots
    at = run_page(monkeypatch, {"PHASEZOO_ZOO_ROOTS": str(allowed)}, page="views/compare.py")
    at.text_input(key="compare_extra").set_value(str(outside)).run()
    assert not at.exception
    assert any("not allowed on this server" in e for e in errors(at)), errors(at)


def test_allowed_zoo_dir_resolves_before_comparing(roots, monkeypatch):
    allowed, outside, escape = roots
    monkeypatch.delenv("PHASEZOO_ZOO_ROOTS", raising=False)
    assert allowed_zoo_dir(escape) == outside.resolve()  # unset: open, but still resolved
    monkeypatch.setenv("PHASEZOO_ZOO_ROOTS", str(allowed))
    assert allowed_zoo_dir(allowed / "zoo" / "checkpoints" / "..") == (allowed / "zoo").resolve()
    for p in (escape, allowed / ".." / "outside" / "zoo", allowed.parent):
        with pytest.raises(PathError):
            allowed_zoo_dir(p)
    assert allowed_zoo_dir(outside, trusted=[escape]) == outside.resolve()  # PHASEZOO_ZOO's and built-ins
    assert [allowed_zoo_dir(p, trusted=builtin_zoos()) for p in builtin_zoos()] == builtin_zoos()


def test_the_procfile_restricts_a_deployment_by_default():
    """The Procfile's command, with the server replaced by a print of the variable it would see."""
    (line,) = [x for x in (ROOT / "Procfile").read_text().splitlines() if x.startswith("web:")]
    show = "import os; print(repr(os.environ.get('PHASEZOO_ZOO_ROOTS')))"
    cmd = line.removeprefix("web:").replace("python -m streamlit run", f'{sys.executable} -c "{show}"')
    env = {k: v for k, v in os.environ.items() if k != "PHASEZOO_ZOO_ROOTS"} | {"PORT": "8000"}
    out = subprocess.run(["bash", "-c", cmd], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "''"  # set and empty: only the built-in zoos
    out = subprocess.run(["bash", "-c", cmd], env=env | {"PHASEZOO_ZOO_ROOTS": "/srv/zoos"}, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "'/srv/zoos'"  # an operator's roots are kept


@pytest.mark.parametrize("reader, name", [
    ("data.zoo.store:read_metrics", "metrics.parquet"), ("analysis.studies.embed:read_embeddings", "embeddings.parquet"),
    ("analysis.studies.phase_ensembles:read_phase_ensembles", "phase_ensembles.parquet"),
])
def test_table_readers_refuse_a_fifo_swapped_in_after_the_zoo_was_opened(zoo, reader, name):
    """The pages read these tables after Zoo.open has checked the directory: each read checks again."""
    import importlib

    module, fn = reader.split(":")
    read = getattr(importlib.import_module(module), fn)
    (zoo / name).unlink(missing_ok=True)
    os.mkfifo(zoo / name)
    raised = []

    def target():
        try:
            read(zoo)
        except ValueError as e:  # ZooError and PathError
            raised.append(e)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(HANG_S)
    if t.is_alive():
        os.close(os.open(zoo / name, os.O_WRONLY | os.O_NONBLOCK))
        t.join(30)
        pytest.fail(f"{reader} blocked on a FIFO")
    assert raised and "a FIFO, not a regular file" in str(raised[0])
