"""A real SAML IdP (pysaml2) on 127.0.0.1 and our SP facing it, shared by the SAML tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from authsome import _saml
from tests.support.saml_idp import IdPUser, KeyPair, SamlIdP, new_key_pair

SP_ENTITY_ID = "https://app.example/sso/saml/metadata"
ACS_URL = "https://app.example/sso/saml/acs"
USERS = {
    "ann": IdPUser(
        password="ann's password",
        name_id="ann-4711",
        attributes={"mail": ["ann@acme.example"], "givenName": ["Ann"]},
    ),
    "mallory": IdPUser(
        password="mallory's password",
        name_id="user@evil.com.example.com",
        attributes={"mail": ["user@evil.com.example.com"]},
    ),
}


@pytest.fixture(scope="package")
def sp_keys() -> KeyPair:
    return new_key_pair("authsome-sp")


@pytest.fixture(scope="package")
def sp(sp_keys: KeyPair) -> _saml.ServiceProvider:
    return _saml.ServiceProvider(
        SP_ENTITY_ID, ACS_URL, signing_key=sp_keys.key, certificate=sp_keys.certificate_pem
    )


@pytest.fixture(scope="package")
def idp(sp: _saml.ServiceProvider) -> Iterator[SamlIdP]:
    server = SamlIdP(
        _saml.sp_metadata(sp), users=USERS, keys=new_key_pair(), want_signed_requests=True
    )
    with server.running():
        yield server


@pytest.fixture(scope="package")
def other_idp(sp: _saml.ServiceProvider) -> Iterator[SamlIdP]:
    """An IdP with the same users but its own key: the attacker's."""
    server = SamlIdP(_saml.sp_metadata(sp), users=USERS, keys=new_key_pair("attacker"))
    with server.running():
        yield server


@pytest.fixture
def connection(idp: SamlIdP) -> _saml.IdentityProvider:
    return _saml.IdentityProvider(idp.entity_id, idp.sso_url, (idp.keys.certificate_pem,))


class ReplayCache:
    """First use wins, like the store's: what ``verify_response`` is given."""

    def __init__(self) -> None:
        self.seen: dict[str, datetime] = {}

    def __call__(self, assertion_id: str, keep_until: datetime) -> bool:
        if assertion_id in self.seen:
            return False
        self.seen[assertion_id] = keep_until
        return True


@pytest.fixture
def replay() -> ReplayCache:
    return ReplayCache()


Verify = Callable[..., _saml.VerifiedAssertion]


@pytest.fixture
def verify(
    connection: _saml.IdentityProvider, sp: _saml.ServiceProvider, replay: ReplayCache
) -> Verify:
    """``verify_response`` with this package's SP, IdP and replay cache; keywords
    override any of them."""

    def run(saml_response: str, **overrides: object) -> _saml.VerifiedAssertion:
        arguments: dict[str, object] = {
            "idp": connection,
            "sp": sp,
            "expected_request_id": "_request-1",
            "now": datetime.now(UTC),
            "replay_check": replay,
        }
        arguments.update(overrides)
        return _saml.verify_response(saml_response, **arguments)  # type: ignore[arg-type]

    return run
