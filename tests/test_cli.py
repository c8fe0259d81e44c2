"""The `phasezoo` command: its command table, the shared one-line error exit, the old `python -m` aliases,
and docs/cli.md being what the code renders."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dashboard.picker import ZOO_ENV
from data.cli import run_cli
from data.training.workers import Interrupted
from phasezoo import dashboard, downstream
from phasezoo.cli import COMMANDS, main
from phasezoo.reference import DOC, REGENERATE, command_help, render
from tests.conftest import ROOT

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def test_help_lists_every_command_without_importing_torch():
    script = ("import sys; from phasezoo.cli import main; rc = main(['--help']); "
              "print('torch imported' if 'torch' in sys.modules else 'no torch'); sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=ENV, cwd="/")
    assert r.returncode == 0, r.stderr
    assert r.stdout.rstrip().endswith("no torch"), "`phasezoo --help` imports torch (seconds of start-up)"
    for c in COMMANDS:
        assert f"  {c.name}  " in r.stdout and c.summary in r.stdout


def test_the_console_script_is_installed():
    script = Path(sys.executable).parent / "phasezoo"
    assert script.exists(), "no .venv/bin/phasezoo: install the project (`make test` does, or `pip install -e .`)"
    r = subprocess.run([str(script), "--help"], capture_output=True, text=True, env=ENV, cwd="/")
    assert r.returncode == 0 and r.stdout.startswith("usage: phasezoo <command>"), r.stderr


def test_no_command_or_an_unknown_one_is_a_usage_error(capsys):
    assert main([]) == 2 and "usage: phasezoo" in capsys.readouterr().err
    assert main(["nope"]) == 2
    assert capsys.readouterr().err.startswith("phasezoo: error: unknown command 'nope'")


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.name)
def test_each_command_has_help(command):
    assert command_help(command).startswith(f"usage: phasezoo {command.name} ")


BAD_INPUT = {  # the one-line `error:` exit (data.cli.run_cli) of each command on a missing input
    "generate": ["missing.toml", "--out", "{tmp}/zoo"],
    "import": ["{tmp}/missing", "--out", "{tmp}/zoo"],
    "run": ["{tmp}/missing"],
    "recompute": ["{tmp}/missing"],
    "mc-recompute": ["{tmp}/missing"],
    "phases": ["--zoo", "{tmp}/missing"],
    "classifier": ["{tmp}/missing"],
    "embed": ["{tmp}/missing"],
    "ensembles": ["{tmp}/missing"],
    "findings": ["{tmp}/missing"],
    "downstream": ["{tmp}/missing"],
    "verdict": ["{tmp}/missing.pt", "--zoo", "{tmp}/missing"],
    "import-manifest": ["{tmp}/missing.csv", "--describe", "{tmp}/zoo.toml", "--out", "{tmp}/zoo"],
    "import-smallcnn": ["{tmp}/missing", "--out", "{tmp}/zoo"],
    "export": ["{tmp}/missing", "--out", "{tmp}/zoo"],
    "advise": ["--zoo", "{tmp}/missing", "--cell", "1,1"],
    "benchmark": ["{tmp}/missing"],
    "coverage": ["--zoo", "missing={tmp}/missing"],
}


def test_every_command_that_reads_input_has_a_bad_input_case():
    assert set(BAD_INPUT) == {c.name for c in COMMANDS} - {"dashboard", "reference"}


@pytest.mark.parametrize("name", sorted(BAD_INPUT))
def test_bad_input_is_one_error_line_and_status_2(name, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path) for a in BAD_INPUT[name]]
    assert main([name, *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert not (tmp_path / "zoo").exists()


@pytest.mark.slow
@pytest.mark.parametrize("argv", [["run", "/nonexistent"], ["generate", "missing.toml", "--out", "{tmp}/zoo"]])
def test_bad_input_from_the_shell(argv, tmp_path):
    r = subprocess.run([str(Path(sys.executable).parent / "phasezoo"), *[a.format(tmp=tmp_path) for a in argv]],
                       capture_output=True, text=True, env=ENV, cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and r.stderr.startswith("error: "), r.stderr


@pytest.mark.slow
def test_an_old_python_m_alias_still_works():
    r = subprocess.run([sys.executable, "-m", "analysis.run", "--help"], capture_output=True, text=True, env=ENV,
                       cwd=ROOT)
    assert r.returncode == 0 and "--metrics" in r.stdout, r.stderr


def test_run_cli_turns_errors_into_one_line(capsys):
    def bad() -> int:
        raise ValueError("first line\n  second line")
    assert run_cli(bad) == 2 and capsys.readouterr().err == "error: first line second line\n"

    def interrupted() -> int:
        raise Interrupted(15)
    assert run_cli(interrupted, interrupted_hint="rows are kept in z") == 143
    assert capsys.readouterr().err == ("interrupted by SIGTERM: rows are kept in z — rerun the same command "
                                       "to resume\n")

    def bug() -> int:
        raise KeyError("a bug keeps its traceback")
    with pytest.raises(KeyError):
        run_cli(bug)


def test_downstream_runs_the_three_steps_in_order_and_stops_at_a_failure(monkeypatch):
    calls = []

    def step(name, status):
        return lambda argv, prog: calls.append((name, list(argv), prog)) or status
    monkeypatch.setattr(downstream.run, "main", step("run", 0))
    monkeypatch.setattr(downstream.phase_ensembles, "main", step("ensembles", 0))
    monkeypatch.setattr(downstream.findings, "main", step("findings", 0))
    assert downstream.main(["z"], prog="phasezoo downstream") == 0
    assert calls == [("run", ["z", "--metrics", downstream.DOWNSTREAM_METRICS, "--epochs", "last"],
                      "phasezoo downstream (run)"),
                     ("ensembles", ["z"], "phasezoo downstream (ensembles)"),
                     ("findings", ["z"], "phasezoo downstream (findings)")]
    calls.clear()
    monkeypatch.setattr(downstream.run, "main", step("run", 1))  # some metric rows are errors: stop, as make does
    assert downstream.main(["z", "--workers", "2"]) == 1 and [c[0] for c in calls] == ["run"]
    assert calls[0][1][-2:] == ["--workers", "2"]


def test_dashboard_serves_the_installed_app(monkeypatch):
    seen = {}
    monkeypatch.setattr(os, "execve", lambda path, cmd, env: seen.update(cmd=cmd, env=env))
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    dashboard.main(["--port", "9999", "--zoo", "mnist1d-cnn", "--", "--server.address", "0.0.0.0"])
    cmd, env = seen["cmd"], seen["env"]
    assert cmd[1:4] == ["-m", "streamlit", "run"] and Path(cmd[4]) == ROOT / "dashboard" / "app.py"
    assert cmd[5:] == ["--server.headless", "true", "--server.port", "9999", "--server.address", "0.0.0.0"]
    assert env["MALLOC_ARENA_MAX"] == "2" and env[ZOO_ENV] == "mnist1d-cnn"


def test_cli_reference_is_current():
    assert DOC.exists() and DOC.read_text() == render(), (
        f"{DOC.relative_to(ROOT)} differs from what the code renders (a command's options or a metric's "
        f"declaration changed): regenerate it with `{REGENERATE}` and commit it")
