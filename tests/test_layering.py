"""Dependencies run one way: dashboard → analysis → data; only the dashboard imports Streamlit."""
import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

FORBIDDEN = {"data": {"analysis", "dashboard", "streamlit", "plotly"},
             "analysis": {"dashboard", "streamlit", "plotly"}}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layering(package):
    files = list((ROOT / package).rglob("*.py"))
    assert files
    for f in files:
        bad = imports(f) & FORBIDDEN[package]
        assert not bad, f"{f.relative_to(ROOT)} imports {bad}"


def test_views_do_not_import_torch_at_top():
    for f in (ROOT / "dashboard").rglob("*.py"):
        assert "torch" not in imports(f), f"{f.relative_to(ROOT)} imports torch (slow UI start)"
