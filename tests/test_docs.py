"""The documentation a clone carries is complete: cited sections, linked files and mentioned paths exist.

Pure file reading (no project imports), so it runs in well under a second:
- every `science.md §N` / `stack.md §N` anywhere in the tree names a numbered section of that page;
- every relative Markdown link, `docs/…` path and `X.md` name in the project's Markdown and Python points at a
  file that exists, and every `page.md#section` link at a heading of that page;
- every repository path the docs mention (`analysis/…`, `data/…`, `bench/x.py`, …) and every
  `python -m <project module>` they show exists;
- the README stays a landing page (≤ 200 lines) and every docs/*.md page is reachable from the README or
  docs/index.md.
"""
from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PACKAGES = ("analysis", "data", "dashboard", "phasezoo", "tests", "bench", "docs")
# Not the project's sources: environments, caches, run outputs, the committed checkpoints.
SKIP_DIRS = {".git", ".venv", "__pycache__", ".pytest_cache", ".ray", "runs", "checkpoints", "node_modules",
             ".ruff_cache", ".mypy_cache"}
TEXT_SUFFIXES = {".py", ".md", ".toml", ".ini", ".cfg", ".txt"}
README_MAX_LINES = 200

CITATION = re.compile(r"\b(science|stack)\.md\s*§\s*([0-9]+(?:\.[0-9]+)*)")
# "## 2. Metric definitions", "### 2.3 Mode connectivity": the numbers code cites as §N
SECTION = re.compile(r"^#{1,6}\s+([0-9]+(?:\.[0-9]+)*)\.?\s", re.M)
MD_LINK = re.compile(r"!?\[[^\]\n]*\]\(([^)\s]+)\)")
DOCS_PATH = re.compile(r"(?<![\w/.:-])docs/[\w./-]*[\w-]")
MD_NAME = re.compile(r"(?<![\w/.:-])([\w.-]+\.md)\b")
REPO_PATH = re.compile(r"(?<![\w/.:<-])((?:analysis|data|dashboard|phasezoo|tests|bench|docs)/[^\s`'\"()\[\],;|]*)")
PYTHON_M = re.compile(r"python -m ((?:analysis|data|dashboard|phasezoo)(?:\.\w+)*)")


def _sources() -> list[Path]:
    files = [p for p in ROOT.iterdir() if p.is_file() and (p.suffix in TEXT_SUFFIXES or p.name == "Makefile")]
    for pkg in PACKAGES:
        for p in (ROOT / pkg).rglob("*"):
            if p.is_file() and p.suffix in TEXT_SUFFIXES and not SKIP_DIRS & set(p.relative_to(ROOT).parts):
                files.append(p)
    return sorted(files)


SOURCES = _sources()
MARKDOWN = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "CHANGELOG.md", *sorted(DOCS.glob("*.md"))]
PYTHON = [p for p in SOURCES if p.suffix == ".py"]


@cache
def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def line_of(path: Path, pos: int) -> int:
    return text(path).count("\n", 0, pos) + 1


@cache
def sections(page: str) -> frozenset[str]:
    return frozenset(SECTION.findall(text(DOCS / page)))


def link_target(source: Path, target: str) -> Path | None:
    """The file a relative Markdown link points at, or None for external links and in-page anchors."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
        return None
    return (source.parent / target.split("#", 1)[0]).resolve()


def test_cited_sections_exist():
    """`science.md §2.3` in a docstring or a page must name a section docs/science.md numbers so."""
    assert {"1", "2", "2.3", "3.1", "4", "5"} <= sections("science.md"), "docs/science.md lost its numbering"
    bad = [f"{rel(p)}:{line_of(p, m.start())}: {m.group(0)} (sections: {sorted(sections(m.group(1) + '.md'))})"
           for p in SOURCES if p != Path(__file__) for m in CITATION.finditer(text(p))
           if m.group(2) not in sections(m.group(1) + ".md")]
    assert not bad, "citations of sections that do not exist:\n" + "\n".join(bad)


def test_markdown_links_point_at_files():
    bad = [f"{rel(p)}:{line_of(p, m.start())}: {m.group(1)}" for p in MARKDOWN for m in MD_LINK.finditer(text(p))
           if (t := link_target(p, m.group(1))) is not None and not t.exists()]
    assert not bad, "Markdown links to missing files:\n" + "\n".join(bad)


def anchor(heading: str) -> str:
    """GitHub's id of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@cache
def anchors(page: Path) -> frozenset[str]:
    prose = re.sub(r"```.*?```", "", text(page), flags=re.S)
    return frozenset(anchor(h) for h in re.findall(r"^#{1,6}\s+(.*)$", prose, re.M))


def test_markdown_anchors_exist():
    """`[x](zoos.md#phases-of-the-default-zoo)`: the section a link jumps to is a heading of that page."""
    bad = []
    for p in MARKDOWN:
        for m in MD_LINK.finditer(text(p)):
            target, _, frag = m.group(1).partition("#")
            page = link_target(p, target) if target else p
            if frag and page is not None and page.suffix == ".md" and page.is_file() and frag not in anchors(page):
                bad.append(f"{rel(p)}:{line_of(p, m.start())}: {m.group(1)}")
    assert not bad, "links to sections that do not exist:\n" + "\n".join(bad)


def test_docs_paths_and_md_names_exist():
    """`docs/x.md` (root-relative) and bare `x.md` names, in the Markdown and in code comments and docstrings."""
    bad = []
    for p in [*MARKDOWN, *PYTHON]:
        if p == Path(__file__):
            continue
        for m in DOCS_PATH.finditer(text(p)):
            if not (ROOT / m.group(0)).exists():
                bad.append(f"{rel(p)}:{line_of(p, m.start())}: {m.group(0)}")
        for m in MD_NAME.finditer(text(p)):
            name = m.group(1)
            if not any((d / name).exists() for d in (p.parent, ROOT, DOCS)):
                bad.append(f"{rel(p)}:{line_of(p, m.start())}: {name}")
    assert not bad, "references to documents that do not exist:\n" + "\n".join(bad)


def _mentioned_paths(p: Path):
    """(position, path) of each repository path a page names, without its #anchor; a path an example command
    writes (`--out data/zoos/my-zoo`) is not expected to exist."""
    for m in REPO_PATH.finditer(text(p)):
        path = m.group(1).split("#", 1)[0].rstrip(".:")
        if text(p)[max(0, m.start() - 6):m.start()] == "--out ":
            continue
        if path.endswith("/") or "." in path.rsplit("/", 1)[-1] or path.count("/") > 1:
            yield m.start(), path


def test_repository_paths_in_docs_exist():
    """`analysis/upload/verdict.py`, `data/specs/`, `bench/bench_ray.py`: what the docs name is there. Paths with
    a placeholder (`<name>`, `…`) must exist up to it; a `*` must match something."""
    bad = []
    for p in MARKDOWN:
        for pos, path in _mentioned_paths(p):
            head = re.split(r"[<…{]", path, maxsplit=1)[0]
            if "*" in head:
                ok = any(ROOT.glob(head))
            else:
                ok = (ROOT / head).exists() if head == path else (ROOT / head.rsplit("/", 1)[0]).exists()
            if not ok:
                bad.append(f"{rel(p)}:{line_of(p, pos)}: {path}")
    assert not bad, "paths named in the docs that do not exist:\n" + "\n".join(bad)


def test_python_m_modules_in_docs_exist():
    bad = []
    for p in MARKDOWN:
        for m in PYTHON_M.finditer(text(p)):
            base = ROOT.joinpath(*m.group(1).split("."))
            if not (base.with_suffix(".py").is_file() or (base / "__main__.py").is_file()):
                bad.append(f"{rel(p)}:{line_of(p, m.start())}: python -m {m.group(1)}")
    assert not bad, "`python -m` forms of modules that do not exist:\n" + "\n".join(bad)


def test_readme_is_a_landing_page():
    n = len(text(ROOT / "README.md").splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines (≤ {README_MAX_LINES}): move the detail into docs/"


def test_every_docs_page_is_reachable():
    """From the README or docs/index.md, following Markdown links: no page of the manual is orphaned."""
    seen, todo = set(), [ROOT / "README.md", DOCS / "index.md"]
    while todo:
        page = todo.pop().resolve()
        if page in seen or not page.is_file() or page.suffix != ".md":
            continue
        seen.add(page)
        todo += [t for m in MD_LINK.finditer(text(page)) if (t := link_target(page, m.group(1))) is not None]
    orphans = [rel(p) for p in sorted(DOCS.glob("*.md")) if p.resolve() not in seen]
    assert not orphans, f"docs pages no link reaches from README.md or docs/index.md: {orphans}"


@pytest.mark.parametrize("page", ["science.md", "stack.md"])
def test_cited_pages_exist(page):
    assert (DOCS / page).is_file(), f"the code cites {page}: it must be in docs/"
