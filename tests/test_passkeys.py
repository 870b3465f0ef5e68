"""``auth.passkeys``: real WebAuthn ceremonies against a software authenticator.

Every response here is built by :mod:`tests.support.webauthn_authenticator` from the
specification and verified by py_webauthn; nothing is mocked. "Nothing stored" is
checked by reading the SQLite file directly.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authsome import (
    AlreadyExists,
    Authsome,
    ExtraNotInstalled,
    Feature,
    FeatureNotEntitled,
    InvalidCredentials,
    NotFound,
    Passkey,
    UsageEvent,
    User,
    ValidationError,
)
from authsome import passkeys as passkeys_module
from authsome.bridge import LedgerContext
from authsome.stores import MemoryStore, SQLiteStore
from authsome.testing import DenyingLedger, RecordingLedger
from tests.conftest import FAST, PASSWORD, AuthFactory, FakeClock
from tests.support.webauthn_authenticator import (
    FLAG_AT,
    FLAG_UP,
    SoftwareAuthenticator,
    b64url,
    unb64url,
)

RP_ID = "example.com"
ORIGIN = "https://example.com"
RP = {"rp_id": RP_ID, "rp_name": "Example", "origin": ORIGIN}
PASSKEYS = Feature.PASSKEYS.value


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "auth.db"


@pytest.fixture
def auth(make_auth: AuthFactory, ledger: RecordingLedger, db: Path) -> Authsome:
    """An engine on a SQLite file, so tests can look at the rows themselves."""
    return make_auth(store=SQLiteStore(db), ledger=ledger)


@pytest.fixture
def ann(auth: Authsome, ledger: RecordingLedger) -> User:
    user = auth.users.register("ann@example.com", PASSWORD, tenant="acme")
    ledger.clear()
    return user


@pytest.fixture
def device() -> SoftwareAuthenticator:
    return SoftwareAuthenticator()


_COUNT = {
    table: f"SELECT count(*) FROM {table}"  # noqa: S608 - fixed table names
    for table in ("passkeys", "passkey_challenges", "sessions")
}


def _rows(db: Path, table: str) -> int:
    """Rows in ``table``, read with a connection of its own (not through the store)."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return int(conn.execute(_COUNT[table]).fetchone()[0])


def _register(auth: Authsome, user: User, device: SoftwareAuthenticator) -> Passkey:
    options = auth.passkeys.begin_registration(user.id, **RP)
    return auth.passkeys.finish_registration(user.id, device.register(options, origin=ORIGIN))


def _sign_in_options(auth: Authsome, **kwargs: str) -> str:
    kwargs.setdefault("tenant", "acme")
    return auth.passkeys.begin_authentication(rp_id=RP_ID, origin=ORIGIN, **kwargs)


def _stored(auth: Authsome, passkey: Passkey) -> Passkey:
    found = auth.store.get_passkey(passkey.credential_id)
    assert found is not None
    return found


# -- the whole thing, end to end -----------------------------------------------------


@pytest.mark.parametrize("store_kind", ["memory", "sqlite"])
def test_register_then_sign_in_records_a_sign_in_like_any_other(
    make_auth: AuthFactory, ledger: RecordingLedger, db: Path, store_kind: str
) -> None:
    store = MemoryStore() if store_kind == "memory" else SQLiteStore(db)
    auth = make_auth(store=store, ledger=ledger)
    ann = auth.users.register("ann@example.com", PASSWORD, tenant="acme")
    device = SoftwareAuthenticator()
    ledger.clear()

    passkey = _register(auth, ann, device)
    assert [c.feature_key for c in ledger.calls] == [PASSKEYS, PASSKEYS]
    assert ledger.usage() == []  # registering a passkey is no usage event
    assert passkey.user_id == ann.id and passkey.tenant == "acme" and passkey.rp_id == RP_ID
    assert passkey.transports == ("hybrid", "internal")
    assert auth.passkeys.list_for_user(ann.id) == [passkey]
    assert unb64url(passkey.credential_id) in device.credentials
    ledger.clear()

    signed_in = auth.passkeys.finish_authentication(
        device.authenticate(_sign_in_options(auth), origin=ORIGIN)
    )

    assert signed_in.user == ann
    assert signed_in.tokens is not None
    session = signed_in.tokens.session
    assert auth.sessions.validate(signed_in.tokens.access_token) == session
    ctx = LedgerContext(tenant="acme", user_id=ann.id, event_id=session.id)
    assert [(c.feature_key, c.ctx) for c in ledger.calls] == [
        (UsageEvent.SESSIONS_CREATED, ctx),
        (UsageEvent.USERS_ACTIVE, ctx),
    ]
    assert _stored(auth, passkey).sign_count == 1


def test_sign_in_with_email_allows_only_that_users_passkeys(
    auth: Authsome, ann: User, device: SoftwareAuthenticator, ledger: RecordingLedger
) -> None:
    first = _register(auth, ann, device)
    second = _register(auth, ann, SoftwareAuthenticator())
    bob = auth.users.register("bob@example.com", PASSWORD, tenant="acme")
    _register(auth, bob, SoftwareAuthenticator())

    options = json.loads(_sign_in_options(auth, email="ANN@example.com"))

    assert sorted(c["id"] for c in options["allowCredentials"]) == sorted(
        [first.credential_id, second.credential_id]
    )
    assert options["userVerification"] == "required"
    assert options["rpId"] == RP_ID


def _shape(options: dict[str, object]) -> dict[str, object]:
    """What an observer can compare between two options: keys, credential count,
    each credential's keys and id length (the challenge is random anyway)."""
    credentials = options["allowCredentials"]
    assert isinstance(credentials, list)
    return {
        "keys": sorted(options),
        "credentials": [
            (sorted(c), len(unb64url(c["id"])), c.get("transports")) for c in credentials
        ],
    }


def test_unknown_email_looks_like_a_user_with_one_passkey(
    auth: Authsome, ann: User, device: SoftwareAuthenticator
) -> None:
    _register(auth, ann, device)
    bob = auth.users.register("bob@example.com", PASSWORD, tenant="acme")  # no passkey

    known = json.loads(_sign_in_options(auth, email="ann@example.com"))
    unknown = json.loads(_sign_in_options(auth, email="nobody@example.com"))
    without = json.loads(_sign_in_options(auth, email=bob.email))

    assert len(known["allowCredentials"]) == 1
    assert _shape(unknown) == _shape(known)
    assert _shape(without) == _shape(known)
    assert unknown["allowCredentials"] != without["allowCredentials"]


def test_decoy_credentials_are_stable_and_keyed(
    make_auth: AuthFactory, auth: Authsome, ann: User
) -> None:
    def decoy(engine: Authsome, email: str, **kwargs: str) -> object:
        options = json.loads(_sign_in_options(engine, email=email, **kwargs))
        return options["allowCredentials"]

    first = decoy(auth, "nobody@example.com")
    assert decoy(auth, "NOBODY@example.com") == first  # normalized like every e-mail
    assert decoy(auth, "nobody@example.com", tenant="other") != first
    assert decoy(auth, "nobody2@example.com") != first
    assert decoy(make_auth(), "nobody@example.com") != first  # another store, another key

    key = bytes(range(32))
    keyed = decoy(make_auth(secret_key=key), "nobody@example.com")
    assert decoy(make_auth(secret_key=key), "nobody@example.com") == keyed  # restarts
    assert decoy(make_auth(secret_key=bytes(32)), "nobody@example.com") != keyed


def test_a_decoy_credential_cannot_sign_in(
    auth: Authsome, ann: User, device: SoftwareAuthenticator, ledger: RecordingLedger
) -> None:
    _register(auth, ann, device)
    options = json.loads(_sign_in_options(auth, email="nobody@example.com"))
    decoy_id = unb64url(options["allowCredentials"][0]["id"])
    # Even an authenticator holding a key under the decoy id (never registered
    # with the server) gets nowhere.
    device.register(
        auth.passkeys.begin_registration(ann.id, **RP), origin=ORIGIN, credential_id=decoy_id
    )
    with pytest.raises(InvalidCredentials):
        auth.passkeys.finish_authentication(
            device.authenticate(json.dumps(options), origin=ORIGIN, credential_id=decoy_id)
        )
    assert ledger.usage(UsageEvent.USERS_ACTIVE) == []


def test_registration_options_exclude_the_users_passkeys(
    auth: Authsome, ann: User, device: SoftwareAuthenticator
) -> None:
    passkey = _register(auth, ann, device)

    options = json.loads(auth.passkeys.begin_registration(ann.id, **RP))

    assert [c["id"] for c in options["excludeCredentials"]] == [passkey.credential_id]
    assert options["rp"] == {"id": RP_ID, "name": "Example"}
    assert unb64url(options["user"]["id"]) == ann.id.encode()  # no e-mail on the device
    assert options["authenticatorSelection"]["userVerification"] == "required"


def test_an_authenticator_without_a_counter_signs_in_again_and_again(
    auth: Authsome, ann: User, ledger: RecordingLedger
) -> None:
    device = SoftwareAuthenticator(counter_step=0)
    passkey = _register(auth, ann, device)
    for _ in range(2):
        auth.passkeys.finish_authentication(
            device.authenticate(_sign_in_options(auth), origin=ORIGIN)
        )
    assert _stored(auth, passkey).sign_count == 0
    assert len(ledger.usage(UsageEvent.USERS_ACTIVE)) == 2


def test_passkeys_survive_reopening_the_store(
    make_auth: AuthFactory, db: Path, device: SoftwareAuthenticator
) -> None:
    first = make_auth(store=SQLiteStore(db))
    ann = first.users.register("ann@example.com", PASSWORD, tenant="acme")
    passkey = _register(first, ann, device)
    first.close()

    second = make_auth(store=SQLiteStore(db))
    signed_in = second.passkeys.finish_authentication(
        device.authenticate(_sign_in_options(second), origin=ORIGIN)
    )
    assert signed_in.user == ann
    assert _stored(second, passkey).sign_count == 1


def test_a_passkey_can_be_removed_by_its_owner_only(
    auth: Authsome, ann: User, device: SoftwareAuthenticator
) -> None:
    bob = auth.users.register("bob@example.com", PASSWORD, tenant="acme")
    passkey = _register(auth, ann, device)

    assert auth.passkeys.remove(bob.id, passkey.credential_id) is False
    assert auth.passkeys.list_for_user(ann.id) == [passkey]
    assert auth.passkeys.remove(ann.id, passkey.credential_id) is True

    assert auth.passkeys.list_for_user(ann.id) == []
    with pytest.raises(InvalidCredentials):
        auth.passkeys.finish_authentication(
            device.authenticate(_sign_in_options(auth), origin=ORIGIN)
        )


# -- the entitlement gate ------------------------------------------------------------


def test_denied_begin_registration_stores_nothing(
    make_auth: AuthFactory, db: Path, ann: User
) -> None:
    denying = DenyingLedger(PASSKEYS)
    gated = make_auth(store=SQLiteStore(db), ledger=denying)

    with pytest.raises(FeatureNotEntitled) as raised:
        gated.passkeys.begin_registration(ann.id, **RP)

    assert raised.value.feature == PASSKEYS
    assert [(c.kind, c.feature_key) for c in denying.calls] == [("check_entitlement", PASSKEYS)]
    assert denying.calls[0].ctx == LedgerContext(tenant="acme", user_id=ann.id)
    assert _rows(db, "passkey_challenges") == 0
    assert _rows(db, "passkeys") == 0


def test_denied_finish_registration_stores_nothing(
    make_auth: AuthFactory, auth: Authsome, db: Path, ann: User, device: SoftwareAuthenticator
) -> None:
    options = auth.passkeys.begin_registration(ann.id, **RP)  # allowed, then the plan changes
    response = device.register(options, origin=ORIGIN)
    denying = DenyingLedger(PASSKEYS)
    gated = make_auth(store=SQLiteStore(db), ledger=denying)

    with pytest.raises(FeatureNotEntitled) as raised:
        gated.passkeys.finish_registration(ann.id, response)

    assert raised.value.feature == PASSKEYS
    assert [(c.kind, c.feature_key) for c in denying.calls] == [("check_entitlement", PASSKEYS)]
    assert denying.calls[0].ctx == LedgerContext(tenant="acme", user_id=ann.id)
    assert _rows(db, "passkeys") == 0
    assert _rows(db, "passkey_challenges") == 1  # checked before the challenge was touched


def test_passkey_sign_in_is_not_gated(
    make_auth: AuthFactory, auth: Authsome, db: Path, ann: User, device: SoftwareAuthenticator
) -> None:
    # A tenant that downgrades keeps signing in with the passkeys it has.
    _register(auth, ann, device)
    denying = DenyingLedger(PASSKEYS)
    gated = make_auth(store=SQLiteStore(db), ledger=denying)

    gated.passkeys.finish_authentication(
        device.authenticate(_sign_in_options(gated), origin=ORIGIN)
    )
    assert denying.checks() == []


# -- registration failures: typed errors, nothing stored -----------------------------


def _assert_nothing_registered(db: Path, ledger: RecordingLedger) -> None:
    assert _rows(db, "passkeys") == 0
    assert ledger.usage() == []


def test_a_response_to_another_challenge_is_refused_and_the_real_one_still_works(
    auth: Authsome, ann: User, device: SoftwareAuthenticator, db: Path, ledger: RecordingLedger
) -> None:
    options = auth.passkeys.begin_registration(ann.id, **RP)
    forged = device.register(options, origin=ORIGIN, challenge=b"\x01" * 32)

    with pytest.raises(InvalidCredentials):
        auth.passkeys.finish_registration(ann.id, forged)
    _assert_nothing_registered(db, ledger)

    # A forger who never saw the challenge cannot burn it.
    auth.passkeys.finish_registration(ann.id, device.register(options, origin=ORIGIN))
    assert _rows(db, "passkeys") == 1


@pytest.mark.parametrize(
    "fault",
    [
        {"origin": "https://evil.example"},
        {"origin": "https://login.example.com"},  # a sibling origin, not the one bound
        {"origin": ORIGIN, "rp_id": "evil.example"},
        {"origin": ORIGIN, "flags": FLAG_UP | FLAG_AT},  # no user verification
    ],
    ids=["other-origin", "subdomain-origin", "other-rp-id", "no-user-verification"],
)
def test_a_faulty_registration_is_refused_and_burns_the_challenge(
    auth: Authsome,
    ann: User,
    device: SoftwareAuthenticator,
    db: Path,
    ledger: RecordingLedger,
    fault: dict[str, object],
) -> None:
    options = auth.passkeys.begin_registration(ann.id, **RP)

    with pytest.raises(InvalidCredentials) as raised:
        auth.passkeys.finish_registration(ann.id, device.register(options, **fault))  # type: ignore[arg-type]

    assert str(raised.value) == "invalid credentials"
    _assert_nothing_registered(db, ledger)
    assert _rows(db, "passkey_challenges") == 0
    with pytest.raises(InvalidCredentials):
        auth.passkeys.finish_registration(ann.id, device.register(options, origin=ORIGIN))
    _assert_nothing_registered(db, ledger)


def test_a_registration_challenge_is_used_once(
    auth: Authsome, ann: User, device: SoftwareAuthenticator, db: Path
) -> None:
    options = auth.passkeys.begin_registration(ann.id, **RP)
    auth.passkeys.finish_registration(ann.id, device.register(options, origin=ORIGIN))

    with pytest.raises(InvalidCredentials):
        auth.passkeys.finish_registration(ann.id, device.register(options, origin=ORIGIN))
    assert _rows(db, "passkeys") == 1


@pytest.mark.parametrize(("age", "accepted"), [(299.999, True), (300, False)])
def test_a_registration_challenge_expires_after_five_minutes(
    auth: Authsome,
    ann: User,
    device: SoftwareAuthenticator,
    clock: FakeClock,
    db: Path,
    age: float,
    accepted: bool,
) -> None:
    options = auth.passkeys.begin_registration(ann.id, **RP)
    clock.advance(seconds=age)
    response = device.register(options, origin=ORIGIN)

    if accepted:
        auth.passkeys.finish_registration(ann.id, response)
    else:
        with pytest.raises(InvalidCredentials):
            auth.passkeys.finish_registration(ann.id, response)
    assert _rows(db, "passkeys") == int(accepted)


def test_a_registration_challenge_is_bound_to_its_user(
    auth: Authsome, ann: User, device: SoftwareAuthenticator, db: Path
) -> None:
    bob = auth.users.register("bob@example.com", PASSWORD, tenant="acme")
    options = auth.passkeys.begin_registration(ann.id, **RP)

    with pytest.raises(InvalidCredentials):
        auth.passkeys.finish_registration(bob.id, device.register(options, origin=ORIGIN))
    assert _rows(db, "passkeys") == 0


def test_a_sign_in_challenge_cannot_register(
    auth: Authsome, ann: User, device: SoftwareAuthenticator, db: Path
) -> None:
    sign_in = json.loads(_sign_in_options(auth, email="ann@example.com"))
    options = auth.passkeys.begin_registration(ann.id, **RP)

    response = device.register(options, origin=ORIGIN, challenge=unb64url(sign_in["challenge"]))
    with pytest.raises(InvalidCredentials):
        auth.passkeys.finish_registration(ann.id, response)
    assert _rows(db, "passkeys") == 0


def test_a_registered_credential_id_cannot_be_registered_again(
    auth: Authsome, ann: User, db: Path
) -> None:
    bob = auth.users.register("bob@example.com", PASSWORD, tenant="acme")
    passkey = _register(auth, ann, SoftwareAuthenticator())
    copycat = SoftwareAuthenticator()
    options = auth.passkeys.begin_registration(bob.id, **RP)
    response = copycat.register(
        options, origin=ORIGIN, credential_id=unb64url(passkey.credential_id)
    )

    with pytest.raises(AlreadyExists):
        auth.passkeys.finish_registration(bob.id, response)
    assert auth.passkeys.list_for_user(bob.id) == []
    assert _stored(auth, passkey) == passkey


def test_the_reported_id_must_be_the_attested_one(
    auth: Authsome, ann: User, device: SoftwareAuthenticator, db: Path
) -> None:
    options = auth.passkeys.begin_registration(ann.id, **RP)
    response = json.loads(device.register(options, origin=ORIGIN))
    response["id"] = response["rawId"] = b64url(b"another id")

    with pytest.raises(InvalidCredentials):
        auth.passkeys.finish_registration(ann.id, json.dumps(response))
    assert _rows(db, "passkeys") == 0


# -- sign-in failures: generic error, nothing recorded, challenge burned -------------


@pytest.fixture
def ann_passkey(auth: Authsome, ann: User, device: SoftwareAuthenticator) -> Passkey:
    return _register(auth, ann, device)


def _assert_no_sign_in(
    auth: Authsome, db: Path, ledger: RecordingLedger, passkey: Passkey, count: int = 0
) -> None:
    assert ledger.usage() == []
    assert _rows(db, "sessions") == 0
    assert _stored(auth, passkey).sign_count == count


@pytest.mark.parametrize(
    "fault",
    [
        {"origin": "https://evil.example"},
        {"origin": ORIGIN, "rp_id": "evil.example"},
        {"origin": ORIGIN, "corrupt_signature": True},
        {"origin": ORIGIN, "flags": FLAG_UP},  # no user verification
        {"origin": ORIGIN, "user_handle": b"usr_somebody_else"},
    ],
    ids=["other-origin", "other-rp-id", "bad-signature", "no-user-verification", "user-handle"],
)
def test_a_faulty_assertion_is_refused_records_nothing_and_burns_the_challenge(
    auth: Authsome,
    ann_passkey: Passkey,
    device: SoftwareAuthenticator,
    db: Path,
    ledger: RecordingLedger,
    fault: dict[str, object],
) -> None:
    options = _sign_in_options(auth)
    ledger.clear()

    with pytest.raises(InvalidCredentials) as raised:
        auth.passkeys.finish_authentication(device.authenticate(options, **fault))  # type: ignore[arg-type]

    assert str(raised.value) == "invalid credentials"
    _assert_no_sign_in(auth, db, ledger, ann_passkey)
    assert _rows(db, "passkey_challenges") == 0
    with pytest.raises(InvalidCredentials):  # the honest answer comes too late
        auth.passkeys.finish_authentication(device.authenticate(options, origin=ORIGIN))
    _assert_no_sign_in(auth, db, ledger, ann_passkey)


def test_an_assertion_for_an_unissued_challenge_is_refused(
    auth: Authsome,
    ann_passkey: Passkey,
    device: SoftwareAuthenticator,
    db: Path,
    ledger: RecordingLedger,
) -> None:
    options = _sign_in_options(auth)
    ledger.clear()
    forged = device.authenticate(options, origin=ORIGIN, challenge=b"\x02" * 32)

    with pytest.raises(InvalidCredentials):
        auth.passkeys.finish_authentication(forged)
    assert ledger.usage() == []
    assert _rows(db, "sessions") == 0


def test_a_replayed_assertion_signs_in_once(
    auth: Authsome,
    ann_passkey: Passkey,
    device: SoftwareAuthenticator,
    db: Path,
    ledger: RecordingLedger,
) -> None:
    response = device.authenticate(_sign_in_options(auth), origin=ORIGIN)
    auth.passkeys.finish_authentication(response)
    ledger.clear()

    with pytest.raises(InvalidCredentials):
        auth.passkeys.finish_authentication(response)
    assert ledger.usage() == []
    assert _rows(db, "sessions") == 1


@pytest.mark.parametrize(("age", "accepted"), [(299.999, True), (300, False)])
def test_a_sign_in_challenge_expires_after_five_minutes(
    auth: Authsome,
    ann_passkey: Passkey,
    device: SoftwareAuthenticator,
    clock: FakeClock,
    ledger: RecordingLedger,
    age: float,
    accepted: bool,
) -> None:
    options = _sign_in_options(auth)
    clock.advance(seconds=age)
    response = device.authenticate(options, origin=ORIGIN)

    if accepted:
        auth.passkeys.finish_authentication(response)
    else:
        with pytest.raises(InvalidCredentials):
            auth.passkeys.finish_authentication(response)
    assert len(ledger.usage(UsageEvent.USERS_ACTIVE)) == int(accepted)


@pytest.mark.parametrize("replayed_count", [5, 4, 0])
def test_a_sign_count_that_does_not_move_forward_is_refused(
    auth: Authsome,
    ann_passkey: Passkey,
    device: SoftwareAuthenticator,
    db: Path,
    ledger: RecordingLedger,
    replayed_count: int,
) -> None:
    auth.passkeys.finish_authentication(
        device.authenticate(_sign_in_options(auth), origin=ORIGIN, sign_count=5)
    )
    sessions_before = _rows(db, "sessions")
    options = _sign_in_options(auth)
    ledger.clear()

    # A cloned authenticator would present a counter the original has already used.
    with pytest.raises(InvalidCredentials):
        auth.passkeys.finish_authentication(
            device.authenticate(options, origin=ORIGIN, sign_count=replayed_count)
        )
    assert ledger.usage() == []
    assert _rows(db, "sessions") == sessions_before
    assert _stored(auth, ann_passkey).sign_count == 5


def test_a_challenge_bound_to_a_user_refuses_another_users_passkey(
    auth: Authsome, ann_passkey: Passkey, db: Path, ledger: RecordingLedger
) -> None:
    bob = auth.users.register("bob@example.com", PASSWORD, tenant="acme")
    bobs_device = SoftwareAuthenticator()
    bobs_passkey = _register(auth, bob, bobs_device)
    options = _sign_in_options(auth, email="ann@example.com")
    ledger.clear()

    with pytest.raises(InvalidCredentials):
        auth.passkeys.finish_authentication(
            bobs_device.authenticate(
                options, origin=ORIGIN, credential_id=unb64url(bobs_passkey.credential_id)
            )
        )
    assert ledger.usage() == []
    assert _stored(auth, bobs_passkey).sign_count == 0


def test_a_passkey_of_another_tenant_is_refused(
    auth: Authsome, ann_passkey: Passkey, device: SoftwareAuthenticator, ledger: RecordingLedger
) -> None:
    options = _sign_in_options(auth, tenant="globex")
    ledger.clear()

    with pytest.raises(InvalidCredentials):
        auth.passkeys.finish_authentication(device.authenticate(options, origin=ORIGIN))
    assert ledger.usage() == []


def test_a_registration_challenge_cannot_sign_in(
    auth: Authsome, ann: User, ann_passkey: Passkey, device: SoftwareAuthenticator
) -> None:
    registration = json.loads(auth.passkeys.begin_registration(ann.id, **RP))
    options = _sign_in_options(auth)

    response = device.authenticate(
        options, origin=ORIGIN, challenge=unb64url(registration["challenge"])
    )
    with pytest.raises(InvalidCredentials):
        auth.passkeys.finish_authentication(response)


def test_an_unknown_credential_is_refused(
    make_auth: AuthFactory, auth: Authsome, ann: User, ledger: RecordingLedger
) -> None:
    elsewhere = make_auth()  # registered with another deployment's store
    stranger = SoftwareAuthenticator()
    _register(elsewhere, elsewhere.users.register("x@example.com", PASSWORD), stranger)
    ledger.clear()

    with pytest.raises(InvalidCredentials):
        auth.passkeys.finish_authentication(
            stranger.authenticate(_sign_in_options(auth), origin=ORIGIN)
        )
    assert ledger.usage() == []


# -- bad input: typed errors, never a raw exception, nothing stored ------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
_REJECTED = (InvalidCredentials, ValidationError)


@st.composite
def _mutations(draw: st.DrawFn, fields: list[str]) -> tuple[str, str, object]:
    """(field path, how, argument): one change to one security-relevant field."""
    path = draw(st.sampled_from(fields))
    how = draw(st.sampled_from(["replace", "flip", "truncate", "delete"]))
    argument: object = draw(_JSON) if how == "replace" else draw(st.integers(0, 10_000))
    return path, how, argument


def _mutate(response_json: str, mutation: tuple[str, str, object]) -> str:
    path, how, argument = mutation
    response = json.loads(response_json)
    *parents, key = path.split(".")
    holder = response
    for parent in parents:
        holder = holder[parent]
    if how == "delete":
        del holder[key]
    elif how == "replace" or not isinstance(holder[key], str):
        holder[key] = argument
    else:
        raw = unb64url(holder[key])
        assert isinstance(argument, int)
        at = argument % len(raw)
        changed = raw[:at] + bytes([raw[at] ^ 0x5A]) + raw[at + 1 :]
        holder[key] = b64url(changed if how == "flip" else raw[:at])
    return json.dumps(response)


_SIGNED_ASSERTION_FIELDS = [
    "id",
    "rawId",
    "type",
    "response",
    "response.clientDataJSON",
    "response.authenticatorData",
    "response.signature",
]


@given(garbage=st.text(max_size=300) | _JSON.map(json.dumps))
@settings(max_examples=150, deadline=None)
def test_garbage_never_signs_in_or_registers(garbage: str) -> None:
    auth = Authsome(store=MemoryStore(), ledger=RecordingLedger(), password_hashing=FAST)
    user = auth.users.register("ann@example.com", PASSWORD)
    auth.passkeys.begin_registration(user.id, **RP)
    _sign_in_options(auth)

    with pytest.raises(_REJECTED):
        auth.passkeys.finish_registration(user.id, garbage)
    with pytest.raises(_REJECTED):
        auth.passkeys.finish_authentication(garbage)
    assert auth.passkeys.list_for_user(user.id) == []


def test_any_change_to_a_signed_assertion_is_refused(
    auth: Authsome,
    ann_passkey: Passkey,
    device: SoftwareAuthenticator,
    db: Path,
    ledger: RecordingLedger,
) -> None:
    @given(mutation=_mutations(_SIGNED_ASSERTION_FIELDS))
    @settings(max_examples=120, deadline=None)
    def check(mutation: tuple[str, str, object]) -> None:
        ledger.clear()
        honest = device.authenticate(_sign_in_options(auth), origin=ORIGIN)
        with pytest.raises(_REJECTED):
            auth.passkeys.finish_authentication(_mutate(honest, mutation))
        _assert_no_sign_in(auth, db, ledger, ann_passkey)

    check()


def test_a_changed_registration_is_refused_or_stored_as_verified(
    auth: Authsome, ann: User, db: Path
) -> None:
    # "none" attestation signs nothing, so some changes (an AAGUID byte) still verify:
    # the property is that the outcome is typed and the store holds only what passed.
    fields = ["id", "rawId", "type", "response", "response.clientDataJSON"]
    fields.append("response.attestationObject")

    @given(mutation=_mutations(fields))
    @settings(max_examples=120, deadline=None)
    def check(mutation: tuple[str, str, object]) -> None:
        before = auth.passkeys.list_for_user(ann.id)
        options = auth.passkeys.begin_registration(ann.id, **RP)
        response = _mutate(SoftwareAuthenticator().register(options, origin=ORIGIN), mutation)
        try:
            passkey = auth.passkeys.finish_registration(ann.id, response)
        except _REJECTED:
            assert auth.passkeys.list_for_user(ann.id) == before
        else:
            assert auth.store.get_passkey(passkey.credential_id) == passkey

    check()


@pytest.mark.parametrize(
    "rp_id",
    ["", "Example.com", "example..com", "-example.com", "127.0.0.1", "exämple.com", "a" * 254],
)
def test_a_bad_rp_id_is_a_validation_error(auth: Authsome, ann: User, rp_id: str) -> None:
    with pytest.raises(ValidationError):
        auth.passkeys.begin_registration(ann.id, rp_id=rp_id, rp_name="x", origin=ORIGIN)
    with pytest.raises(ValidationError):
        auth.passkeys.begin_authentication(rp_id=rp_id, origin=ORIGIN)


@pytest.mark.parametrize(
    "origin",
    [
        "http://example.com",  # plain http only for localhost
        "https://example.com/login",
        "https://example.com?x=1",
        "https://user@example.com",
        "https://notexample.com",
        "https://example.com.evil.test",
        "ftp://example.com",
        "example.com",
        "https://example.com:99999",
    ],
)
def test_a_bad_origin_is_a_validation_error(
    auth: Authsome, ann: User, db: Path, ledger: RecordingLedger, origin: str
) -> None:
    with pytest.raises(ValidationError):
        auth.passkeys.begin_registration(ann.id, rp_id=RP_ID, rp_name="x", origin=origin)
    with pytest.raises(ValidationError):
        auth.passkeys.begin_authentication(rp_id=RP_ID, origin=origin)
    assert ledger.calls == []
    assert _rows(db, "passkey_challenges") == 0


@pytest.mark.parametrize(
    ("rp_id", "origin", "normalized"),
    [
        ("example.com", "https://example.com/", "https://example.com"),
        ("example.com", "https://EXAMPLE.com:443", "https://example.com"),
        ("example.com", "https://login.example.com:8443", "https://login.example.com:8443"),
        ("localhost", "http://localhost:8000", "http://localhost:8000"),
    ],
)
def test_origins_are_bound_as_browsers_send_them(
    make_auth: AuthFactory, rp_id: str, origin: str, normalized: str
) -> None:
    auth = make_auth()
    ann = auth.users.register("ann@example.com", PASSWORD)
    device = SoftwareAuthenticator()
    options = auth.passkeys.begin_registration(ann.id, rp_id=rp_id, rp_name="x", origin=origin)
    auth.passkeys.finish_registration(ann.id, device.register(options, origin=normalized))
    options = auth.passkeys.begin_authentication(rp_id=rp_id, origin=origin)
    assert auth.passkeys.finish_authentication(device.authenticate(options, origin=normalized))


@given(origin=st.text(max_size=60))
@settings(max_examples=200, deadline=None)
def test_any_origin_is_refused_or_bound_to_the_rp(origin: str) -> None:
    auth = Authsome(store=MemoryStore(), password_hashing=FAST)
    try:
        options = json.loads(auth.passkeys.begin_authentication(rp_id=RP_ID, origin=origin))
    except ValidationError:
        return
    assert options["rpId"] == RP_ID


def test_wrong_types_and_unknown_users_fail_before_the_gate(
    auth: Authsome, ann: User, ledger: RecordingLedger
) -> None:
    with pytest.raises(TypeError):
        auth.passkeys.begin_registration(42, **RP)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        auth.passkeys.finish_registration(ann.id, {"id": "x"})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        auth.passkeys.finish_authentication(b"{}")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        auth.passkeys.begin_authentication(rp_id=RP_ID, origin=None)  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        auth.passkeys.begin_registration("usr_nobody", **RP)
    with pytest.raises(NotFound):
        auth.passkeys.finish_registration("usr_nobody", "{}")
    with pytest.raises(ValidationError):
        auth.passkeys.finish_authentication("x" * (passkeys_module.MAX_RESPONSE + 1))
    with pytest.raises(ValidationError):
        auth.passkeys.begin_registration(ann.id, rp_id=RP_ID, rp_name="  ", origin=ORIGIN)
    assert ledger.calls == []


# -- the optional extra --------------------------------------------------------------


def _calls_of_every_method(auth: Authsome, user: User) -> list[object]:
    return [
        lambda: auth.passkeys.begin_registration(user.id, **RP),
        lambda: auth.passkeys.finish_registration(user.id, "{}"),
        lambda: auth.passkeys.begin_authentication(rp_id=RP_ID, origin=ORIGIN),
        lambda: auth.passkeys.finish_authentication("{}"),
    ]


def _assert_extra_missing(auth: Authsome, user: User, ledger: RecordingLedger, db: Path) -> None:
    for call in _calls_of_every_method(auth, user):
        with pytest.raises(ExtraNotInstalled) as raised:
            call()  # type: ignore[operator]
        assert isinstance(raised.value, ImportError)
        assert raised.value.extra == "passkeys"
        assert 'pip install "authsome-engine[passkeys]"' in str(raised.value)
    assert ledger.calls == []
    assert _rows(db, "passkey_challenges") == 0


def test_without_the_extra_every_method_says_what_to_install(
    auth: Authsome, ann: User, ledger: RecordingLedger, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing(name: str) -> object:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    monkeypatch.setattr(passkeys_module, "_import_module", missing)
    _assert_extra_missing(auth, ann, ledger, db)


def test_an_unimportable_webauthn_is_reported_as_the_missing_extra(
    auth: Authsome, ann: User, ledger: RecordingLedger, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "webauthn", None)  # what import sees when it is absent
    _assert_extra_missing(auth, ann, ledger, db)


# -- no secret leaks -----------------------------------------------------------------


def test_no_token_or_key_material_in_reprs_errors_or_logs(
    auth: Authsome,
    ann: User,
    device: SoftwareAuthenticator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    passkey = _register(auth, ann, device)
    response = device.authenticate(_sign_in_options(auth), origin=ORIGIN)
    signed_in = auth.passkeys.finish_authentication(response)
    assert signed_in.tokens is not None
    errors: list[BaseException] = []
    for replay in (response, device.authenticate(_sign_in_options(auth), origin="https://x.io")):
        with pytest.raises(InvalidCredentials) as raised:
            auth.passkeys.finish_authentication(replay)
        errors.append(raised.value)

    secrets_ = [
        signed_in.tokens.access_token,
        signed_in.tokens.refresh_token,
        json.loads(response)["response"]["signature"],
        passkey.public_key.hex(),
        b64url(passkey.public_key),
    ]
    texts = [repr(signed_in), str(signed_in), repr(passkey), str(passkey), caplog.text]
    texts += [repr(auth.passkeys.list_for_user(ann.id))]
    texts += [str(e) for e in errors] + [repr(e) for e in errors]
    for secret in secrets_:
        for text in texts:
            assert secret not in text
