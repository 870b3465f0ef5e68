"""``sessions.revoke_all`` signs the user out everywhere: live sessions and sign-ins
waiting for their second factor alike, on every store."""

from __future__ import annotations

import pytest

from authsome import Authsome, InvalidToken
from authsome.stores import Store
from tests.conftest import PASSWORD, AuthFactory, FakeClock
from tests.test_engine_stores import STORES
from tests.test_mfa import code, enrol

EMAIL = "ann@example.com"


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest) -> Store:
    return STORES[request.param](request)


def test_revoke_all_ends_pending_mfa_sign_ins(
    make_auth: AuthFactory, store: Store, clock: FakeClock
) -> None:
    auth: Authsome = make_auth(store=store)
    ann = auth.users.register(EMAIL, PASSWORD, tenant="acme")
    other = auth.users.register("bob@example.com", PASSWORD, tenant="acme")
    setup, _ = enrol(auth, ann, clock)
    other_setup, _ = enrol(auth, other, clock)
    pending = [auth.sign_in(EMAIL, PASSWORD, tenant="acme").ticket for _ in range(2)]
    bobs = auth.sign_in("bob@example.com", PASSWORD, tenant="acme").ticket
    assert None not in pending and bobs is not None

    auth.sessions.revoke_all(ann.id)

    for ticket in pending:
        assert ticket is not None
        with pytest.raises(InvalidToken):
            auth.mfa.verify(ticket, code(setup, clock))
    # Another user's pending sign-in is untouched.
    assert auth.mfa.verify(bobs, code(other_setup, clock)).user.id == other.id
