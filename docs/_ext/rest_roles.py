"""A griffe extension: render the reST markup of authsome's docstrings as Markdown.

The docstrings are written for ``help()`` and Sphinx-style readers (``:class:`X```,
``::`` literal blocks, bare ``>>>`` examples); mkdocstrings renders Markdown. This
rewrites, at load time and for the docs only:

* ``:role:`~pkg.mod.Name``` -> ```Name```, ``:role:`pkg.Name``` -> ```pkg.Name```,
  ``:role:`text <target>``` -> ```text```;
* a paragraph ending in ``::`` -> ``:`` (the indented block after it is code anyway);
* a run of ``>>>``/``...`` lines with their output -> a fenced ``pycon`` block.
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension, Object

_ROLE = re.compile(r":[a-z]+:`(?P<body>[^`]+)`")
_LITERAL = re.compile(r"(?<=\S)::$", re.MULTILINE)


def _role(match: re.Match[str]) -> str:
    body = match.group("body").strip()
    titled = re.fullmatch(r"(?P<title>.+?)\s*<[^>]+>", body)
    if titled:
        return f"`{titled.group('title')}`"
    if body.startswith("~"):
        body = body[1:].rsplit(".", 1)[-1]
    return f"`{body}`"


def _fence_examples(text: str) -> str:
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith(">>>"):
            indent = line[: len(line) - len(line.lstrip())]
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i][len(indent) :])
                i += 1
            out += [f"{indent}```pycon", *(indent + b for b in block), f"{indent}```"]
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def rewrite(text: str) -> str:
    """The Markdown rendering of one docstring."""
    return _fence_examples(_LITERAL.sub(":", _ROLE.sub(_role, text)))


class RestRoles(Extension):
    """Rewrite every docstring griffe loads."""

    def on_instance(self, *, obj: Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
