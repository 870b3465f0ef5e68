"""Every public function, class, method and property of the public modules has a docstring.

The API reference is generated from docstrings, so a missing one is a hole in the docs.
"""

from __future__ import annotations

import enum
import importlib
import inspect
from collections.abc import Iterator

import pytest

PUBLIC_MODULES = (
    "authsome",
    "authsome.bridge",
    "authsome.bridge.ledgeradapter",
    "authsome.integrations",
    "authsome.integrations.django",
    "authsome.integrations.fastapi",
    "authsome.integrations.flask",
    "authsome.ledger",
    "authsome.ledger.stores",
    "authsome.stores",
    "authsome.testing",
)

# Members every class gets from Python itself (enums, NamedTuples, dataclasses).
_INHERITED_FROM_BUILTINS = frozenset(dir(object)) | {"count", "index"}


def _public_objects() -> Iterator[tuple[str, object]]:
    seen: set[int] = set()
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if id(obj) in seen or not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            seen.add(id(obj))
            yield f"{module_name}.{name}", obj
            if inspect.isclass(obj):
                yield from _public_members(f"{module_name}.{name}", obj)


def _public_members(qualname: str, cls: type) -> Iterator[tuple[str, object]]:
    for name, member in vars(cls).items():
        if name.startswith("_") or name in _INHERITED_FROM_BUILTINS:
            continue
        if issubclass(cls, enum.Enum) and isinstance(member, cls):
            continue  # enum members are documented by the enum's docstring
        if isinstance(member, staticmethod | classmethod):
            member = member.__func__
        if inspect.isfunction(member) or isinstance(member, property):
            yield f"{qualname}.{name}", (cls, name)


def _protocols() -> tuple[type, ...]:
    from authsome.ledger.stores import LedgerStore
    from authsome.stores import Store

    return (Store, LedgerStore)


def _docstring(obj: object) -> str | None:
    if not isinstance(obj, tuple):
        return inspect.getdoc(obj)
    cls, name = obj  # (class, member name): follow the MRO like help() does
    doc = inspect.getdoc(getattr(cls, name))
    if doc:
        return doc
    # A store implementing the Store Protocol structurally: the Protocol's docstring
    # is the contract, written once, and the implementation follows it.
    for protocol in _protocols():
        if name in vars(protocol) and _implements(cls, protocol):
            return inspect.getdoc(getattr(protocol, name))
    return None


def _implements(cls: type, protocol: type) -> bool:
    members = [m for m in vars(protocol) if not m.startswith("_")]
    return all(callable(getattr(cls, m, None)) for m in members if callable(vars(protocol)[m]))


ALL_PUBLIC = sorted(_public_objects(), key=lambda item: item[0])


def test_the_walk_finds_the_api() -> None:
    names = {name for name, _ in ALL_PUBLIC}
    assert "authsome.Authsome" in names
    assert "authsome.Authsome.sign_in" in names
    assert "authsome.ledger.Engine.meter" in names
    assert "authsome.bridge.Ledger.check_entitlement" in names
    assert "authsome.testing.RecordingLedger.usage" in names
    assert len(names) > 150


@pytest.mark.parametrize(("name", "obj"), ALL_PUBLIC, ids=[name for name, _ in ALL_PUBLIC])
def test_public_api_has_a_docstring(name: str, obj: object) -> None:
    doc = _docstring(obj)
    assert doc and doc.strip(), f"{name} has no docstring"


def test_service_modules_document_their_public_api() -> None:
    # The services reached as attributes of Authsome (auth.users, auth.orgs, ...) are
    # part of the API too, though not exported by name.
    from authsome import Authsome

    auth = Authsome()
    missing = []
    for attr in ("users", "sessions", "orgs", "domains", "api_keys", "sso", "mfa", "passkeys"):
        cls = type(getattr(auth, attr))
        if not inspect.getdoc(cls):
            missing.append(cls.__qualname__)
        for name, member in _public_members(cls.__qualname__, cls):
            if not _docstring(member):
                missing.append(name)
    assert not missing, missing
