"""Plans from a TOML file, for ``authsome plans load``.

The schema (every table may hold only the keys listed; anything else is an error, so a
typo such as ``limt = 10`` cannot pass silently)::

    [[plans]]
    key = "starter"            # required: the plan key tenants subscribe to
    name = "Starter"           # optional: display name (defaults to the key)
    interval = "monthly"       # optional: billing cycle, "monthly" or "yearly"

    [[plans.features]]
    key = "reports.export"     # required
    kind = "boolean"           # required: "boolean", "metered" or "seat"
    enabled = false            # boolean only; default true

    [[plans.features]]
    key = "api.calls"
    kind = "metered"
    limit = 1000               # metered and seat; omitted means unlimited
    soft_limit = 800           # metered and seat; uses past it are overage
    period = "monthly"         # metered only: "monthly" (default), "yearly" or "none"
    aggregation = "sum"        # metered only: "sum" (default) or "unique" (distinct users)

    [[plans.features]]
    key = "projects"
    kind = "seat"
    limit = 5

Every error names where it is, e.g. ``plans[1].features[3].limit: must be an integer
>= 0, got a string``; the whole file is checked before anything is stored.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from authsome.errors import ValidationError
from authsome.ledger import Feature, LedgerError, Plan

__all__ = ["load_plans_file", "parse_plans"]

_MAX_INT = 2**63 - 1  # what every database's BIGINT holds
_PLAN_KEYS = frozenset({"key", "name", "interval", "features"})
_FEATURE_KEYS = {
    "boolean": frozenset({"key", "kind", "enabled"}),
    "metered": frozenset({"key", "kind", "limit", "soft_limit", "period", "aggregation"}),
    "seat": frozenset({"key", "kind", "limit", "soft_limit"}),
}
_TYPE_NAMES = {
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a float",
    list: "an array",
    dict: "a table",
}


def _kind_of(value: object) -> str:
    return _TYPE_NAMES.get(type(value), f"a {type(value).__name__}")


def _fail(where: str, message: str) -> ValidationError:
    return ValidationError(f"{where}: {message}")


def _table(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _fail(where, f"must be a table, got {_kind_of(value)}")
    return value


def _array_of_tables(value: object, where: str) -> list[Mapping[str, Any]]:
    if not isinstance(value, list):
        raise _fail(where, f"must be an array of tables ([[{where}]]), got {_kind_of(value)}")
    return [_table(item, f"{where}[{i}]") for i, item in enumerate(value)]


def _only(doc: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(doc) - allowed)
    if unknown:
        choices = ", ".join(sorted(allowed))
        raise _fail(f"{where}.{unknown[0]}", f"unknown key (allowed here: {choices})")


def _string(doc: Mapping[str, Any], name: str, where: str, default: str | None = None) -> str:
    value = doc.get(name, default)
    if value is None:
        raise _fail(where, f"missing required key {name!r}")
    if not isinstance(value, str):
        raise _fail(f"{where}.{name}", f"must be a string, got {_kind_of(value)}")
    return value


def _count(doc: Mapping[str, Any], name: str, where: str) -> int | None:
    value = doc.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_INT:
        shown = value if isinstance(value, int) and not isinstance(value, bool) else None
        got = f"got {shown}" if shown is not None else f"got {_kind_of(value)}"
        raise _fail(f"{where}.{name}", f"must be an integer from 0 to {_MAX_INT}, {got}")
    return value


def _feature(doc: Mapping[str, Any], where: str) -> Feature:
    kind = _string(doc, "kind", where)
    allowed = _FEATURE_KEYS.get(kind)
    if allowed is None:
        choices = ", ".join(repr(k) for k in _FEATURE_KEYS)
        raise _fail(f"{where}.kind", f"must be one of {choices}, got {kind!r}")
    _only(doc, allowed, where)
    key = _string(doc, "key", where)
    where = f"{where} ({key!r})"
    try:
        if kind == "boolean":
            enabled = doc.get("enabled", True)
            if not isinstance(enabled, bool):
                raise _fail(f"{where}.enabled", f"must be true or false, got {_kind_of(enabled)}")
            return Feature.boolean(key, enabled=enabled)
        limit, soft = _count(doc, "limit", where), _count(doc, "soft_limit", where)
        if kind == "seat":
            return Feature.seat(key, limit, soft_limit=soft)
        period = _string(doc, "period", where, "monthly")
        aggregation = _string(doc, "aggregation", where, "sum")
        return Feature.metered(key, limit, period=period, aggregation=aggregation, soft_limit=soft)
    except LedgerError as exc:  # the ledger's own checks: key length, soft_limit <= limit...
        raise _fail(where, str(exc)) from None


def _plan(doc: Mapping[str, Any], where: str) -> Plan:
    _only(doc, _PLAN_KEYS, where)
    key = _string(doc, "key", where)
    where = f"{where} ({key!r})"
    name = _string(doc, "name", where, "")
    interval = _string(doc, "interval", where, "monthly")
    features: list[Feature] = []
    seen: set[str] = set()
    for i, item in enumerate(_array_of_tables(doc.get("features", []), f"{where}.features")):
        feature = _feature(item, f"{where}.features[{i}]")
        if feature.key in seen:
            raise _fail(f"{where}.features[{i}]", f"feature {feature.key!r} is listed twice")
        seen.add(feature.key)
        features.append(feature)
    try:
        return Plan(key, features, name=name, interval=interval)
    except LedgerError as exc:
        raise _fail(where, str(exc)) from None


def parse_plans(text: str) -> list[Plan]:
    """The plans of a TOML document (see the module docstring for the schema).

    Raises :class:`tomllib.TOMLDecodeError` for malformed TOML and
    :class:`~authsome.errors.ValidationError` naming the first invalid value's location.
    """
    doc = tomllib.loads(text)
    _only(doc, frozenset({"plans"}), "file")
    if "plans" not in doc:
        raise _fail("file", "no plans: add at least one [[plans]] table")
    plans: list[Plan] = []
    seen: set[str] = set()
    for i, item in enumerate(_array_of_tables(doc["plans"], "plans")):
        plan = _plan(item, f"plans[{i}]")
        if plan.key in seen:
            raise _fail(f"plans[{i}]", f"plan {plan.key!r} is defined twice")
        seen.add(plan.key)
        plans.append(plan)
    if not plans:
        raise _fail("file", "no plans: add at least one [[plans]] table")
    return plans


def load_plans_file(path: str | Path) -> list[Plan]:
    """The plans of the TOML file at ``path``; errors are prefixed with the file name.

    :class:`OSError` if it cannot be read; :class:`~authsome.errors.ValidationError`
    for anything wrong inside it (not UTF-8, malformed TOML, an invalid value).
    """
    raw = Path(path).read_bytes()
    try:
        return parse_plans(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValidationError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError(f"{path}: malformed TOML: {exc}") from None
    except ValidationError as exc:
        raise ValidationError(f"{path}: {exc}") from None
