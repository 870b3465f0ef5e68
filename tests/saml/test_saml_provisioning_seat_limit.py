"""A hard seat limit holds for members provisioned just in time by an SSO sign-in,
as it does for ``orgs.add_member``: beyond it the sign-in is refused with the seat's
key and nothing is written; within it the seat is counted once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from authsome import Authsome, ledger
from authsome.bridge import LedgerAdapter
from authsome.errors import FeatureNotEntitled
from authsome.features import Feature, UsageEvent
from tests.conftest import AuthFactory, FakeClock
from tests.support.saml_scene import SP, SamlScene, idp_keys
from tests.support.sso_scene import DOMAIN, TENANT

SEATS = UsageEvent.ORGS_MEMBERS.value
SEAT_LIMIT = 2  # the org's owner and one more


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC))  # the IdP stamps its assertions with real time


@pytest.fixture
def engine() -> Iterator[ledger.Engine]:
    made = ledger.Engine(ledger.MemoryLedgerStore())
    made.define_plan(
        ledger.Plan(
            "business",
            [
                ledger.Feature.boolean(Feature.ORGS.value),
                ledger.Feature.boolean(Feature.SSO.value),
                ledger.Feature.seat(SEATS, limit=SEAT_LIMIT),
            ],
        )
    )
    made.subscribe(TENANT, "business")
    yield made
    made.close()


@pytest.fixture
def scene(make_auth: AuthFactory, engine: ledger.Engine) -> Iterator[SamlScene]:
    auth: Authsome = make_auth(
        ledger=LedgerAdapter(engine),
        enforce_limits=[UsageEvent.ORGS_MEMBERS],
        sso_allow_insecure_loopback=True,
        saml=SP,
    )
    with SamlScene(auth, idp_keys()).running() as made:
        yield made


def test_a_provisioning_sign_in_beyond_the_seat_limit_is_refused_and_writes_nothing(
    scene: SamlScene, engine: ledger.Engine
) -> None:
    [owner] = [m.user_id for m in scene.auth.orgs.members(scene.org.id)]
    ann = scene.sign_in("ann").user  # the last free seat
    assert engine.entitled(TENANT, SEATS).used == SEAT_LIMIT

    with pytest.raises(FeatureNotEntitled) as refused:
        scene.sign_in("bob")

    assert refused.value.feature == SEATS
    assert scene.auth.users.find_by_email(f"bob@{DOMAIN}", tenant=TENANT) is None
    members = {m.user_id for m in scene.auth.orgs.members(scene.org.id)}
    assert members == {owner, ann.id}
    engine.flush()
    assert engine.entitled(TENANT, SEATS).used == SEAT_LIMIT


def test_a_freed_seat_lets_the_next_provisioning_sign_in_through_counted_once(
    scene: SamlScene, engine: ledger.Engine
) -> None:
    ann = scene.sign_in("ann").user
    scene.auth.orgs.remove_member(scene.org.id, ann.id)

    bob = scene.sign_in("bob").user

    assert scene.auth.orgs.role_of(scene.org.id, bob.id) is not None
    engine.flush()
    assert engine.entitled(TENANT, SEATS).used == SEAT_LIMIT
