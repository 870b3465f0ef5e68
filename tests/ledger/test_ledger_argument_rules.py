"""One rule for every argument of every entry point (``check_key``/``check_quantity``):
bad input is a typed error at the door, and nothing is recorded."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest

from authsome import ledger
from authsome.ledger.plans import check_key
from conftest import EngineFactory


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tenant": "a" * 257},
        {"key": "k" * 257},
        {"user_id": "   "},
        {"user_id": ""},
        {"event_id": " "},
        {"user_id": "u" * 10_000},
        {"event_id": "e" * 257},
    ],
)
def test_meter_validates_like_every_other_entry_point(
    make_engine: EngineFactory, kwargs: dict[str, Any]
) -> None:
    eng = make_engine()
    args = {"tenant": "acme", "key": "api", **kwargs}
    with pytest.raises(ledger.InvalidArgument):
        eng.meter(args.pop("tenant"), args.pop("key"), **args)
    with pytest.raises(ledger.InvalidArgument):
        eng.consume(**{"tenant": "acme", "key": "api", **kwargs})
    assert eng.unflushed == 0
    eng.meter("a" * 256, "k" * 256, user_id="u" * 256, event_id="e" * 256)  # the bound itself
    assert eng.unflushed == 1


def test_quantities_are_capped_with_a_typed_error(make_engine: EngineFactory) -> None:
    eng = make_engine()
    eng.define_plan(
        ledger.Plan("p", [ledger.Feature.metered("api", 10), ledger.Feature.seat("seats", 5)])
    )
    eng.subscribe("acme", "p")
    for call in (eng.meter, eng.consume, eng.release):
        with pytest.raises(ledger.InvalidArgument):
            call("acme", "api", 2**63)
        with pytest.raises(ledger.InvalidArgument):
            call("acme", "api", ledger.MAX_QUANTITY + 1)
    assert eng.unflushed == 0


@pytest.mark.parametrize("where", ["tenant", "key", "user_id", "event_id"])
def test_text_utf8_cannot_encode_is_refused_at_the_door(
    make_engine: EngineFactory, tmp_path: Path, where: str
) -> None:
    args: dict[str, Any] = {"tenant": "acme", "key": "api"}
    args[where] = "bad\ud800"
    for eng in (make_engine(), make_engine(durability="spool", spool_path=tmp_path / "sp")):
        with pytest.raises(ledger.InvalidArgument):
            eng.meter(**args)
        with pytest.raises(ledger.InvalidArgument):
            eng.consume(**args)
        assert eng.unflushed == 0
    with pytest.raises(ledger.InvalidArgument):
        ledger.Plan("bad\ud800")


@pytest.mark.parametrize("where", ["tenant", "key", "user_id", "event_id"])
@pytest.mark.parametrize("text", ["bad\x00", "\x00", "caf\xe9\x00"])
def test_nul_characters_are_refused_at_the_door(
    make_engine: EngineFactory, tmp_path: Path, where: str, text: str
) -> None:
    """PostgreSQL text cannot hold NUL: refuse it up front, for every store alike."""
    eng_plan = ledger.Plan("p", [ledger.Feature.metered("api"), ledger.Feature.seat("seats", 5)])
    args: dict[str, Any] = {"tenant": "acme", "key": "api"}
    args[where] = text
    for eng in (make_engine(), make_engine(durability="spool", spool_path=tmp_path / "sp")):
        eng.define_plan(eng_plan)
        eng.subscribe("acme", "p")
        with pytest.raises(ledger.InvalidArgument, match="NUL"):
            eng.meter(**args)
        with pytest.raises(ledger.InvalidArgument, match="NUL"):
            eng.consume(**args)
        if where != "user_id":
            release = {**args, "key": "seats"} if where != "key" else args
            with pytest.raises(ledger.InvalidArgument, match="NUL"):
                eng.release(**release)
        assert eng.unflushed == 0
    for make in (
        lambda: ledger.Plan(text),
        lambda: ledger.Feature.metered(text),
        lambda: check_key(text),
    ):
        with pytest.raises(ledger.InvalidArgument, match="NUL"):
            make()


def test_cache_ttl_of_the_wrong_type_is_a_typed_error() -> None:
    with pytest.raises(ledger.InvalidArgumentType):
        ledger.Engine(cache_ttl="5")  # type: ignore[arg-type]


def _engine(store: ledger.LedgerStore | None = None, **options: Any) -> ledger.Engine:
    eng = ledger.Engine(store=store, flush_interval=3600, **options)
    eng.define_plan(ledger.Plan("p", [ledger.Feature.metered("api")]))
    eng.subscribe("acme", "p")
    eng.subscribe("bad", "p")
    eng.subscribe("beta", "p")
    return eng


class _TenantId(str):
    __slots__ = ()


class _Count(int):
    pass


def test_a_key_that_becomes_unique_is_refused_without_a_user_at_once() -> None:
    eng = _engine()
    try:
        eng.meter("acme", "api", event_id="e1")
        eng.define_plan(ledger.Plan("p", [ledger.Feature.metered("api", aggregation="unique")]))
        with pytest.raises(ledger.InvalidArgument, match="user_id is required"):
            eng.meter("acme", "api", event_id="e3")
        eng.meter("acme", "api", user_id="ann", event_id="e4")
    finally:
        eng.close()


class _Key(StrEnum):
    TENANT = "acme"
    API = "api"


class _Tricky(str):
    """A str subclass whose own methods lie: only its characters may count."""

    __slots__ = ()

    def __str__(self) -> str:
        return "someone-else"

    def __hash__(self) -> int:
        return 0

    def __eq__(self, other: object) -> bool:
        return True


class _Quantity(int):
    def __int__(self) -> int:
        return 1_000


def test_str_and_int_subclasses_are_taken_as_their_plain_values_everywhere() -> None:
    eng = _engine()
    try:
        eng.meter(_Key.TENANT, _Key.API, _Count(2), user_id=_TenantId("u"), event_id=_Key.API)
        eng.meter("acme", "api", 2, event_id="api")  # the same event id: counted once
        assert eng.consume(_TenantId("acme"), _Key.API, _Quantity(1)).used == 3
        eng.release(_Key.TENANT, _Key.API, _Quantity(1))
        assert eng.entitled(_TenantId("acme"), _Key.API).used == 2
        assert eng.usage(_Key.TENANT, _Key.API) == 2
        eng.meter(_Tricky("beta"), "api", event_id=_Tricky("x"))
        eng.meter(_Tricky("beta"), "api", event_id=_Tricky("y"))  # not "equal" to x here
        eng.flush()
        assert eng.usage("beta", "api") == 2
        assert eng.usage("someone-else", "api") == 0
        assert {r.feature for r in eng.store.usage_records("acme")} == {"api"}
    finally:
        eng.close()


@pytest.mark.parametrize("bad", [True, 1.0, b"acme", None])
def test_a_value_that_is_no_str_or_int_is_a_type_error_everywhere(bad: object) -> None:
    eng = _engine()
    try:
        for call in (
            lambda: eng.meter(bad, "api"),  # type: ignore[arg-type]
            lambda: eng.consume("acme", bad),  # type: ignore[arg-type]
            lambda: eng.release(bad, "api"),  # type: ignore[arg-type]
            lambda: eng.entitled("acme", bad),  # type: ignore[arg-type]
        ):
            with pytest.raises(ledger.InvalidArgumentType):
                call()
        with pytest.raises(ledger.InvalidArgumentType):
            eng.meter("acme", "api", bad)  # type: ignore[arg-type]
        assert eng.unflushed == 0
    finally:
        eng.close()
