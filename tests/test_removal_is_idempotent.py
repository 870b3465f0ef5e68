"""One convention for every removal, on every store: ``True`` when something was
removed, ``False`` when there was nothing to remove, and another user's or tenant's
record answered exactly like an absent one (and left in place).

Refusals that are not about absence keep their errors: the last owner of an org
(``Conflict``) and a wrong code for ``mfa.disable`` (``InvalidCredentials``).
"""

from __future__ import annotations

from collections.abc import Callable

import pyotp
import pytest

from authsome import (
    Authsome,
    Conflict,
    InvalidCredentials,
    InvalidToken,
    OIDCConnection,
    OrgRole,
    User,
)
from authsome.stores import MemoryStore, SQLiteStore, Store
from tests.conftest import PASSWORD, AuthFactory, FakeClock
from tests.stores.conftest import postgres_store
from tests.support.webauthn_authenticator import SoftwareAuthenticator

StoreFactory = Callable[[pytest.FixtureRequest], Store]
STORES: dict[str, StoreFactory] = {
    "memory": lambda _request: MemoryStore(),
    "postgres": postgres_store,
    "sqlite": lambda request: SQLiteStore(request.getfixturevalue("tmp_path") / "auth.db"),
}
ORIGIN = "https://example.com"


@pytest.fixture(params=sorted(STORES))
def auth(request: pytest.FixtureRequest, make_auth: AuthFactory) -> Authsome:
    return make_auth(store=STORES[request.param](request))


@pytest.fixture
def ann(auth: Authsome) -> User:
    return auth.users.register("ann@example.com", PASSWORD, tenant="acme")


@pytest.fixture
def bob(auth: Authsome) -> User:
    return auth.users.register("bob@example.com", PASSWORD, tenant="acme")


def _signed_in(auth: Authsome, email: str, tenant: str) -> str:
    tokens = auth.sign_in(email, PASSWORD, tenant=tenant, ip="198.51.100.7").tokens
    assert tokens is not None
    return tokens.access_token


def test_sessions_revoke(auth: Authsome, ann: User) -> None:
    access = _signed_in(auth, "ann@example.com", "acme")

    assert auth.sessions.revoke(access, tenant="globex") is False  # not this tenant's
    assert auth.sessions.validate(access).user_id == ann.id
    assert auth.sessions.revoke(access, tenant="acme") is True
    assert auth.sessions.revoke(access) is False
    assert auth.sessions.revoke("no-such-token") is False
    with pytest.raises(InvalidToken):
        auth.sessions.validate(access)


def test_api_keys_revoke(auth: Authsome, ann: User) -> None:
    created = auth.api_keys.create(ann.id, "ci")

    assert auth.api_keys.revoke(created.key.id) is True
    assert auth.api_keys.revoke(created.key.id) is False
    assert auth.api_keys.revoke("key_nope") is False
    with pytest.raises(InvalidToken):
        auth.api_keys.validate(created.secret)


def test_orgs_remove_member(auth: Authsome, ann: User, bob: User) -> None:
    org = auth.orgs.create(ann.id, "Acme")
    auth.orgs.add_member(org.id, bob.id)

    assert auth.orgs.remove_member(org.id, bob.id) is True
    assert auth.orgs.remove_member(org.id, bob.id) is False
    assert auth.orgs.remove_member("org_nope", bob.id) is False
    assert auth.orgs.remove_member(org.id, "usr_nope") is False
    with pytest.raises(Conflict, match="last owner"):
        auth.orgs.remove_member(org.id, ann.id)
    assert [(m.user_id, m.role) for m in auth.orgs.members(org.id)] == [(ann.id, OrgRole.OWNER)]


def test_orgs_remove_member_of_another_org_removes_nothing(
    auth: Authsome, ann: User, bob: User
) -> None:
    first = auth.orgs.create(ann.id, "First")
    second = auth.orgs.create(bob.id, "Second")
    auth.orgs.add_member(first.id, bob.id)

    assert auth.orgs.remove_member(second.id, ann.id) is False
    assert auth.orgs.role_of(first.id, bob.id) is OrgRole.MEMBER


def test_sso_delete(auth: Authsome, ann: User) -> None:
    org = auth.orgs.create(ann.id, "Acme")
    info = auth.sso.configure(
        org.id,
        OIDCConnection(
            issuer="https://idp.acme.example",
            client_id="acme-client",
            client_secret="s3cret-value",
            domains=("acme.example",),
        ),
    )

    assert auth.sso.delete(info.id) is True
    assert auth.sso.delete(info.id) is False
    assert auth.sso.delete("sso_nope") is False
    assert auth.sso.list(org.id) == []


def test_domains_remove(auth: Authsome) -> None:
    challenge = auth.domains.add("login.acme.example", tenant="acme")

    assert auth.domains.remove(challenge.domain.id) is True
    assert auth.domains.remove(challenge.domain.id) is False
    assert auth.domains.remove("dom_nope") is False
    assert auth.domains.list(tenant="acme") == []


def test_passkeys_remove(auth: Authsome, ann: User, bob: User) -> None:
    device = SoftwareAuthenticator()
    options = auth.passkeys.begin_registration(
        ann.id, rp_id="example.com", rp_name="Example", origin=ORIGIN
    )
    passkey = auth.passkeys.finish_registration(ann.id, device.register(options, origin=ORIGIN))

    assert auth.passkeys.remove(bob.id, passkey.credential_id) is False  # not Bob's
    assert auth.passkeys.list_for_user(ann.id) == [passkey]
    assert auth.passkeys.remove(ann.id, passkey.credential_id) is True
    assert auth.passkeys.remove(ann.id, passkey.credential_id) is False
    assert auth.passkeys.remove("usr_nope", passkey.credential_id) is False
    assert auth.passkeys.list_for_user(ann.id) == []


def test_mfa_disable(auth: Authsome, ann: User, bob: User, clock: FakeClock) -> None:
    setup = auth.mfa.begin_totp(ann.id)
    auth.mfa.confirm_totp(ann.id, pyotp.TOTP(setup.secret).at(clock.now))
    clock.advance(seconds=30)  # a fresh step: the confirming code is spent
    current = pyotp.TOTP(setup.secret).at(clock.now)
    wrong = f"{(int(current) + 1) % 1_000_000:06d}"

    assert auth.mfa.disable(bob.id, current) is False  # Bob has no factor: Ann's stays
    with pytest.raises(InvalidCredentials):
        auth.mfa.disable(ann.id, wrong)
    assert auth.mfa.disable(ann.id, current) is True
    assert auth.mfa.disable(ann.id, current) is False
    assert auth.mfa.disable("usr_nope", current) is False
    assert auth.mfa.factors(ann.id) == []


@pytest.mark.parametrize(
    "remove",
    [
        pytest.param(lambda a: a.sessions.revoke(None), id="sessions.revoke"),
        pytest.param(lambda a: a.api_keys.revoke(None), id="api_keys.revoke"),
        pytest.param(lambda a: a.orgs.remove_member(None, "usr_x"), id="orgs.remove_member"),
        pytest.param(lambda a: a.sso.delete(None), id="sso.delete"),
        pytest.param(lambda a: a.domains.remove(None), id="domains.remove"),
        pytest.param(lambda a: a.passkeys.remove("usr_x", None), id="passkeys.remove"),
        pytest.param(lambda a: a.mfa.disable(None, "123456"), id="mfa.disable"),
    ],
)
def test_an_argument_of_the_wrong_type_is_still_an_error(
    make_auth: AuthFactory, remove: Callable[[Authsome], bool]
) -> None:
    with pytest.raises(TypeError):
        remove(make_auth())
