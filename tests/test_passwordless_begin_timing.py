"""A passwordless start takes the same time for a known and an unknown address, by
link and by code alike, with sign-up by e-mail off (the unknown address gets no
mail) and on (it gets a sign-up mail), so its timing tells nobody who has an
account."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest

from authsome import Authsome
from authsome.onetime import JourneyPolicy
from authsome.stores import MemoryStore, SQLiteStore
from authsome.testing import Outbox
from tests.conftest import PASSWORD, AuthFactory
from tests.support.timing import median_ratio

EMAIL = "ann@example.com"
IP = "192.0.2.3"
Method = Literal["link", "code"]


def _ratio(auth: Authsome, method: Method, *, rounds: int) -> float:
    """The median time of a start for an unknown address over one for ``EMAIL``."""
    return median_ratio(
        lambda: auth.passwordless.begin(EMAIL, ip=IP, method=method),
        lambda: auth.passwordless.begin("nobody@example.com", ip=IP, method=method),
        rounds=rounds,
        settle=auth.flush_mail,
    )


@pytest.mark.parametrize("method", ["link", "code"])
@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_known_and_unknown_addresses_take_the_same_time(
    make_auth: AuthFactory, tmp_path: Path, kind: str, method: Method
) -> None:
    store = MemoryStore() if kind == "memory" else SQLiteStore(tmp_path / "auth.db")
    # Every known request really mails (no flood limit to turn it into a decoy).
    auth = make_auth(
        store=store,
        mailer=Outbox(),
        journeys=JourneyPolicy(mails_per_address=10_000, mails_per_ip=10_000),
    )
    auth.users.register(EMAIL, PASSWORD)

    ratio = _ratio(auth, method, rounds=400)

    print(f"passwordless {method} timing, {kind}: unknown/known median ratio {ratio:.3f}")
    assert 0.8 <= ratio <= 1.25, ratio


@pytest.mark.parametrize("method", ["link", "code"])
def test_with_sign_up_known_and_unknown_addresses_take_the_same_time(
    make_auth: AuthFactory, tmp_path: Path, method: Method
) -> None:
    auth = make_auth(
        store=SQLiteStore(tmp_path / "auth.db"),
        mailer=Outbox(),
        journeys=JourneyPolicy(
            sign_up_by_email=True, mails_per_address=10_000, mails_per_ip=10_000
        ),
    )
    auth.users.register(EMAIL, PASSWORD)

    ratio = _ratio(auth, method, rounds=300)

    print(f"sign-up {method} timing: unknown/known median ratio {ratio:.3f}")
    assert 0.8 <= ratio <= 1.25, ratio
