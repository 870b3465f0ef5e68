"""A passwordless start takes the same time for a known and an unknown address, by
link and by code alike, so its timing tells nobody who has an account."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest

from authsome.onetime import JourneyPolicy
from authsome.stores import MemoryStore, SQLiteStore
from authsome.testing import Outbox
from tests.conftest import PASSWORD, AuthFactory
from tests.support.timing import median_ratio

EMAIL = "ann@example.com"
IP = "192.0.2.3"


@pytest.mark.parametrize("method", ["link", "code"])
@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_known_and_unknown_addresses_take_the_same_time(
    make_auth: AuthFactory, tmp_path: Path, kind: str, method: Literal["link", "code"]
) -> None:
    store = MemoryStore() if kind == "memory" else SQLiteStore(tmp_path / "auth.db")
    # Every known request really mails (no flood limit to turn it into a decoy).
    auth = make_auth(store=store, mailer=Outbox(), journeys=JourneyPolicy(mails_per_address=10_000))
    auth.users.register(EMAIL, PASSWORD)

    ratio = median_ratio(
        lambda: auth.passwordless.begin(EMAIL, ip=IP, method=method),
        lambda: auth.passwordless.begin("nobody@example.com", ip=IP, method=method),
        rounds=400,
        settle=auth.flush_mail,
    )

    print(f"passwordless {method} timing, {kind}: unknown/known median ratio {ratio:.3f}")
    assert 0.8 <= ratio <= 1.25, ratio
