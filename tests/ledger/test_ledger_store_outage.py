"""A ledger store outage never slows an auth call, and with a spool loses nothing.

Through the bridge adapter no call waits on the store: with ``durability="spool"``
events go to the spool on disk while the store is down, and every one is counted
once it is back; with ``durability="memory"`` a full buffer fails ``record_usage``
at once (the auth engine logs and counts it).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from authsome import Authsome, PasswordHashing, UsageEvent, ledger
from authsome.bridge import LedgerContext
from authsome.bridge.ledgeradapter import LedgerAdapter
from authsome.errors import LedgerUnavailable
from authsome.stores import MemoryStore
from tests.ledger.ledger_doubles import FlakyStore

EVENT = UsageEvent.APIKEYS_VALIDATED.value
PLAN = ledger.Plan("p", [ledger.Feature.metered(EVENT, limit=None)])
DOWN = 10**9


def _engine(store: ledger.LedgerStore, **options: object) -> ledger.Engine:
    eng = ledger.Engine(
        store=store,
        flush_interval=0.05,
        retry_backoff=(0.01, 0.05),
        max_buffer=500,
        batch_size=100,
        buffer_timeout=30.0,  # what a direct meter() would wait; the adapter never does
        **options,  # type: ignore[arg-type]
    )
    eng.define_plan(PLAN)
    eng.subscribe("acme", "p")
    return eng


def test_with_a_spool_every_validation_is_counted_once_the_store_is_back(
    tmp_path: Path,
) -> None:
    store = FlakyStore(ledger.SQLiteStore(tmp_path / "ledger.db"), failures=DOWN)
    eng = _engine(store, durability="spool", spool_path=tmp_path / "spool")
    auth = Authsome(
        store=MemoryStore(),
        ledger=LedgerAdapter(eng),
        password_hashing=PasswordHashing.fast_insecure_for_tests(),
    )
    user = auth.users.register("ann@example.com", "a long passphrase 1", tenant="acme")
    secret = auth.api_keys.create(user.id, "ci", scopes=["read"]).secret
    before = eng.unflushed  # the sign-up's own usage
    for _ in range(10_000):
        auth.api_keys.validate(secret)
    assert eng.unflushed - before == 10_000  # 500 in memory at most, the rest on disk
    assert any(tmp_path.joinpath("spool").glob("spill-*.log"))
    store.failures = 0  # the store is back
    eng.close()
    used = sum(r.used for r in store.inner.usage_records("acme") if r.feature == EVENT)
    assert used == 10_000
    assert not list(tmp_path.joinpath("spool").glob("*.log"))  # all released
    store.inner.close()


def test_with_memory_durability_a_full_buffer_fails_the_record_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FlakyStore(ledger.MemoryStore(), failures=DOWN)
    eng = _engine(store)
    adapter = LedgerAdapter(eng)
    for i in range(500):
        adapter.record_usage(LedgerContext("acme", event_id=f"e{i}"), EVENT)
    started = time.monotonic()
    with pytest.raises(LedgerUnavailable) as info:
        adapter.record_usage(LedgerContext("acme", event_id="one-too-many"), EVENT)
    assert time.monotonic() - started < 10  # far below the 30 s a direct meter() waits
    assert isinstance(info.value.__cause__, ledger.BufferFull)
    auth = Authsome(ledger=adapter, password_hashing=PasswordHashing.fast_insecure_for_tests())
    caplog.set_level(logging.WARNING, logger="authsome.ledger")
    user = auth.users.register("bob@example.com", "a long passphrase 1", tenant="acme")
    secret = auth.api_keys.create(user.id, "ci", scopes=["read"]).secret
    assert auth.api_keys.validate(secret)  # the call itself succeeds
    assert any("ledger" in r.name for r in caplog.records)
    store.failures = 0
    eng.close()
    assert eng.unflushed == 0


def test_a_spool_that_cannot_grow_refuses_the_event_with_a_clear_error(tmp_path: Path) -> None:
    """A file-size limit stands in for a full disk (the same short or failed write)."""
    script = textwrap.dedent(
        f"""
        import resource, signal
        from authsome import ledger
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        store = ledger.MemoryStore()
        eng = ledger.Engine(store=store, durability="spool", spool_path={str(tmp_path)!r},
                            flush_interval=3600)
        hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
        resource.setrlimit(resource.RLIMIT_FSIZE, (2000, hard))
        ok = 0
        try:
            for i in range(1000):
                eng.meter("acme", "api", event_id="e%d" % i)
                ok += 1
        except ledger.SpoolError as exc:
            print("refused:", exc)
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
        eng.close()
        print("acknowledged", ok, "stored", sum(r.used for r in store.usage_records("acme")))
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "refused: cannot append to the spool (disk full?)" in out
    assert "the event was not recorded" in out
    acknowledged, stored = (int(w) for w in out.split("acknowledged ")[1].split(" stored "))
    assert 0 < acknowledged == stored < 1000
