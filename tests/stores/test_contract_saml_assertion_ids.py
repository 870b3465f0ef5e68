"""Used SAML assertion ids: first use wins, atomically; kept until they expire."""

from __future__ import annotations

from datetime import timedelta

from authsome.stores import Store
from tests.support.race import race

from ._factories import NOW

UNTIL = NOW + timedelta(minutes=8)


def test_an_assertion_id_is_accepted_once_while_kept(store: Store) -> None:
    assert store.use_saml_assertion_id("sso_1", "_a1", UNTIL, NOW) is True
    assert store.use_saml_assertion_id("sso_1", "_a1", UNTIL, NOW) is False
    assert store.use_saml_assertion_id("sso_1", "_a1", UNTIL, UNTIL - timedelta(seconds=1)) is False


def test_ids_are_per_connection(store: Store) -> None:
    assert store.use_saml_assertion_id("sso_1", "_a1", UNTIL, NOW) is True
    assert store.use_saml_assertion_id("sso_2", "_a1", UNTIL, NOW) is True
    assert store.use_saml_assertion_id("sso_1", "_a2", UNTIL, NOW) is True


def test_an_expired_id_is_forgotten(store: Store) -> None:
    """Past ``keep_until`` the verifier refuses the assertion as expired anyway, so the
    store need not keep it."""
    assert store.use_saml_assertion_id("sso_1", "_a1", UNTIL, NOW) is True
    assert store.use_saml_assertion_id("sso_1", "_a1", UNTIL + timedelta(minutes=8), UNTIL) is True
    assert store.use_saml_assertion_id("sso_1", "_a1", UNTIL, UNTIL) is False


def test_concurrent_uses_of_one_id_let_exactly_one_through(store: Store) -> None:
    results = race(lambda _: store.use_saml_assertion_id("sso_1", "_a1", UNTIL, NOW), range(8))
    assert sorted(results) == [False] * 7 + [True]
