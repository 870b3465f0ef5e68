"""The examples in the documentation run, so they cannot rot.

* Every fenced ``pycon`` block of every page in ``docs/`` is a doctest and every
  ``python`` block is executed; the blocks of one page run in order in one namespace
  (later examples build on earlier ones), inside a fresh temporary directory. A block
  preceded by ``<!-- not-executed: why -->`` is skipped (a browser ceremony, say).
* Every doctest in a docstring of the package runs too.
* The README's snippets of the sections in ``README_EXECUTED`` run in order, as a
  newcomer would paste them (the others need a browser, a DNS record or an app).
* Every documented password sign-in passes ``ip``, as production code must.
* Nothing may reach the network: socket connections and name lookups raise.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import importlib.util
import pkgutil
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import authsome

DOCS = Path(__file__).resolve().parent.parent / "docs"
README = DOCS.parent / "README.md"
README_EXECUTED = (
    "Quickstart",
    "Organizations",
    "API keys",
    "Plans and metering with the embedded ledger",
)
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
_FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w-]*)[^\n]*$")
_SKIP = re.compile(r"^\s*<!-- not-executed: (?P<why>\S.*?) -->\s*$")
_HEADING = re.compile(r"^#{1,6} (?P<title>.+?)\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    lang: str
    source: str
    line: int  # 1-based line of the first line of code
    skip_reason: str | None


def blocks(page: Path) -> Iterator[Block]:
    """The fenced code blocks of ``page``, in order."""
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, lang = len(opening.group("indent")), opening.group("lang")
        previous = lines[i - 1] if i else ""
        skip = _SKIP.match(previous)
        start = i + 1
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            i += 1
        body = "\n".join(line[indent:] for line in lines[start:i])
        yield Block(lang, body + "\n", start + 1, skip.group("why") if skip else None)
        i += 1


def _pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if "_ext" not in p.parts)


def _executable(page: Path) -> bool:
    return any(b.lang in {"python", "pycon"} for b in blocks(page))


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("the documentation examples must not use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _close_everything(namespace: dict[str, object]) -> None:
    # Examples close what they open where it matters to the reader; engines they
    # leave open for the next example are closed here, so no thread or file leaks.
    from authsome import Authsome
    from authsome import ledger as ledger_pkg

    for value in namespace.values():
        if isinstance(value, Authsome | ledger_pkg.Engine):
            value.close()


@pytest.mark.parametrize(
    "page", [p for p in _pages() if _executable(p)], ids=lambda p: str(p.relative_to(DOCS))
)
def test_page_examples_run(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None
) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    name = str(page.relative_to(DOCS))
    try:
        for block in blocks(page):
            if block.skip_reason is not None or block.lang not in {"python", "pycon"}:
                continue
            where = f"{name}:{block.line}"
            if block.lang == "python":
                exec(compile(block.source, where, "exec"), namespace)  # noqa: S102
                continue
            test = parser.get_doctest(block.source, namespace, where, str(page), block.line - 1)
            test.globs = namespace  # not the copy DocTest makes: functions see later rebinds
            report: list[str] = []
            result = runner.run(test, out=report.append, clear_globs=False)
            assert result.failed == 0, "".join(report)
    finally:
        _close_everything(namespace)


def test_every_page_is_in_the_test() -> None:
    pages = {p.name for p in _pages()}
    assert {"index.md", "quickstart.md", "bridge.md", "ledger.md", "security.md"} <= pages


def test_skipped_blocks_say_why() -> None:
    for page in _pages():
        for block in blocks(page):
            if block.skip_reason is not None:
                assert len(block.skip_reason) > 10, f"{page.name}:{block.line}"


def _modules() -> list[str]:
    """The package's modules whose source holds a doctest prompt.

    Only those are imported: the framework integrations import their framework,
    and Django's lazy settings object does not survive doctest's introspection.
    """
    names = []
    for info in [*pkgutil.walk_packages(authsome.__path__, "authsome."), None]:
        name = "authsome" if info is None else info.name
        spec = importlib.util.find_spec(name)
        origin = None if spec is None else spec.origin
        if origin and origin.endswith(".py") and ">>>" in Path(origin).read_text("utf-8"):
            names.append(name)
    return sorted(names)


def _module_doctests() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder()
    tests = []
    for name in _modules():
        tests += [t for t in finder.find(importlib.import_module(name)) if t.examples]
    return sorted(tests, key=lambda t: t.name)


def test_module_docstring_examples_are_found() -> None:
    assert "authsome.ledger" in {t.name for t in _module_doctests()}


@pytest.mark.parametrize("test", _module_doctests(), ids=lambda t: t.name)
def test_docstring_examples_run(
    test: doctest.DocTest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None
) -> None:
    monkeypatch.chdir(tmp_path)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report: list[str] = []
    result = runner.run(test, out=report.append)
    assert result.failed == 0, "".join(report)


def test_the_main_pages_carry_executed_examples() -> None:
    executed = {str(p.relative_to(DOCS)) for p in _pages() if _executable(p)}
    for page in ("quickstart.md", "bridge.md", "ledger.md", "features/api-keys.md"):
        assert page in executed


# --- the README ------------------------------------------------------------------------


def _readme_sections() -> dict[str, list[Block]]:
    """The README's fenced blocks by the title of the heading they stand under."""
    lines = README.read_text(encoding="utf-8").splitlines()
    titles: list[tuple[int, str]] = []  # (1-based line, title), headings outside fences
    fenced = False
    for number, line in enumerate(lines, start=1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and (heading := _HEADING.match(line)):
            titles.append((number, heading.group("title")))
    sections: dict[str, list[Block]] = {}
    for block in blocks(README):
        title = next(t for n, t in reversed(titles) if n < block.line)
        sections.setdefault(title, []).append(block)
    return sections


def test_readme_snippets_run_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None
) -> None:
    monkeypatch.chdir(tmp_path)
    sections = _readme_sections()
    namespace: dict[str, object] = {"__name__": "__readme__"}
    try:
        for title in README_EXECUTED:
            snippets = [b for b in sections[title] if b.lang == "python"]
            assert snippets, title
            for block in snippets:
                code = compile(block.source, f"README.md:{block.line}", "exec")
                exec(code, namespace)  # noqa: S102
    finally:
        _close_everything(namespace)


def _sources(page: Path) -> Iterator[tuple[str, str]]:
    """(where, code) of every Python example of a page: python blocks and pycon inputs."""
    parser = doctest.DocTestParser()
    for block in blocks(page):
        where = f"{page.name}:{block.line}"
        if block.lang == "python":
            yield where, block.source
        elif block.lang == "pycon":
            for example in parser.get_examples(block.source):
                yield f"{where}+{example.lineno}", example.source


def _sign_ins_without_ip(source: str) -> list[int]:
    calls = [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)]
    return [
        call.lineno
        for call in calls
        if isinstance(call.func, ast.Attribute)
        and call.func.attr == "sign_in"
        and "ip" not in {k.arg for k in call.keywords}
    ]


def test_every_documented_sign_in_passes_the_client_address() -> None:
    missing = []
    found = 0
    for page in [README, *_pages()]:
        for where, source in _sources(page):
            found += source.count("sign_in(")
            missing += [f"{where} (line {n})" for n in _sign_ins_without_ip(source)]
    assert found >= 10  # the check saw the sign-ins it is about
    assert missing == []


def test_the_sign_in_check_sees_a_missing_ip() -> None:
    assert _sign_ins_without_ip('auth.sign_in("a@b.c", "pw", tenant="t")') == [1]
    assert _sign_ins_without_ip('auth.sign_in("a@b.c", "pw", ip="192.0.2.1")') == []
