"""Signing in through a SAML connection, end to end against a real IdP.

The IdP is pysaml2's on 127.0.0.1 (``tests/support/saml_idp.py``): ``auth.sso.begin``
gives the AuthnRequest URL, the IdP's login form is driven over HTTP like a
browser, and the form its page would POST to our ACS goes to ``auth.sso.complete``.
The engine's clock starts at the real time, since the IdP stamps its assertions
with it.
"""

from __future__ import annotations

import base64
import urllib.parse
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime

import pyotp
import pytest
from lxml import etree

from authsome import Authsome
from authsome.errors import FeatureNotEntitled, NotFound, ValidationError
from authsome.features import Feature, UsageEvent
from authsome.models import OrgRole
from authsome.sso import SAMLConnection
from authsome.testing import DenyingLedger, RecordingLedger
from tests.conftest import AuthFactory, FakeClock
from tests.support.saml_idp import encrypt_assertion
from tests.support.saml_scene import SP, SP_KEYS, SamlScene, idp_keys
from tests.support.sso_scene import DOMAIN, IP, PASSWORD, TENANT, prove, refused


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC))


def _auth(make_auth: AuthFactory, ledger: RecordingLedger) -> Authsome:
    return make_auth(ledger=ledger, sso_allow_insecure_loopback=True, saml=SP)


@pytest.fixture
def scene(make_auth: AuthFactory, ledger: RecordingLedger) -> Iterator[SamlScene]:
    made = SamlScene(_auth(make_auth, ledger), idp_keys())
    with made.running():
        ledger.clear()
        yield made


@pytest.fixture
def idp_initiated(make_auth: AuthFactory, ledger: RecordingLedger) -> Iterator[SamlScene]:
    made = SamlScene(_auth(make_auth, ledger), idp_keys(), allow_idp_initiated=True)
    with made.running():
        ledger.clear()
        yield made


def _events(ledger: RecordingLedger, key: str) -> list[str | None]:
    return [call.ctx.event_id for call in ledger.usage(key)]


# -- the journey -------------------------------------------------------------------------


def test_a_first_sign_in_provisions_the_user_into_the_org_and_records_each_event_once(
    scene: SamlScene, ledger: RecordingLedger
) -> None:
    signed_in = scene.sign_in("ann")

    assert signed_in.tokens is not None and not signed_in.mfa_required
    user = signed_in.user
    assert (user.tenant, user.email, user.name) == (TENANT, f"ann@{DOMAIN}", "Ann Example")
    session = scene.auth.sessions.validate(signed_in.tokens.access_token, tenant=TENANT)
    assert session.user_id == user.id
    assert scene.auth.orgs.role_of(scene.org.id, user.id) == OrgRole.MEMBER
    [identity] = scene.auth.sso.identities(user.id)
    assert (identity.provider, identity.subject) == (scene.connection.id, "ann-4711")
    session_id = signed_in.tokens.session.id
    assert _events(ledger, UsageEvent.USERS_CREATED) == [user.id]
    assert len(_events(ledger, UsageEvent.ORGS_MEMBERS)) == 1
    assert _events(ledger, UsageEvent.SESSIONS_CREATED) == [session_id]
    assert _events(ledger, UsageEvent.USERS_ACTIVE) == [session_id]


def test_the_next_sign_in_finds_the_linked_user_and_records_only_the_session(
    scene: SamlScene, ledger: RecordingLedger
) -> None:
    first = scene.sign_in("ann")
    ledger.clear()

    again = scene.sign_in("ann")

    assert again.user.id == first.user.id
    assert again.tokens is not None
    assert _events(ledger, UsageEvent.USERS_CREATED) == []
    assert _events(ledger, UsageEvent.ORGS_MEMBERS) == []
    assert _events(ledger, UsageEvent.SESSIONS_CREATED) == [again.tokens.session.id]
    assert _events(ledger, UsageEvent.USERS_ACTIVE) == [again.tokens.session.id]


def test_the_authn_request_is_signed_and_its_relay_state_is_the_handle(
    scene: SamlScene,
) -> None:
    redirect = scene.auth.sso.begin(scene.connection.id, tenant=TENANT)

    assert redirect.url.startswith(scene.idp.sso_url + "?")
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(redirect.url).query))
    assert query["RelayState"] == redirect.handle
    assert {"SigAlg", "Signature"} <= set(query)
    request = etree.fromstring(zlib.decompress(base64.b64decode(query["SAMLRequest"]), -15))
    assert request.get("AssertionConsumerServiceURL") == scene.acs_url
    assert request.findtext("{urn:oasis:names:tc:SAML:2.0:assertion}Issuer") == scene.entity_id


def test_a_first_sign_in_goes_only_by_an_address_in_a_proven_domain_of_the_connection(
    make_auth: AuthFactory, ledger: RecordingLedger, caplog: pytest.LogCaptureFixture
) -> None:
    made = SamlScene(_auth(make_auth, ledger), idp_keys(), proven=False)
    with made.running():
        with refused(caplog, "outside the domains this provider owns"):
            made.sign_in("ann")

        prove(made.auth.store)
        signed_in = made.sign_in("ann")

    assert signed_in.user.email_verified_at is not None


def test_a_member_of_an_admin_group_is_provisioned_as_admin(
    make_auth: AuthFactory, ledger: RecordingLedger
) -> None:
    made = SamlScene(_auth(make_auth, ledger), idp_keys(), admin_groups=("acme-admins",))
    with made.running():
        bob = made.sign_in("bob").user
        ann = made.sign_in("ann").user

    assert made.auth.orgs.role_of(made.org.id, bob.id) == OrgRole.ADMIN
    assert made.auth.orgs.role_of(made.org.id, ann.id) == OrgRole.MEMBER


def test_named_attributes_replace_the_usual_names(
    make_auth: AuthFactory, ledger: RecordingLedger
) -> None:
    # pysaml2 sends "mail" under its LDAP OID, as IdPs with the urn:oid format do.
    mail = "urn:oid:0.9.2342.19200300.100.1.3"
    made = SamlScene(_auth(make_auth, ledger), idp_keys(), name_attribute=mail)
    with made.running():
        ann = made.sign_in("ann").user

    assert ann.name == f"ann@{DOMAIN}"


def test_an_existing_user_is_linked_only_once_they_verified_their_address(
    scene: SamlScene, caplog: pytest.LogCaptureFixture
) -> None:
    existing = scene.auth.users.register(f"ann@{DOMAIN}", PASSWORD, tenant=TENANT)

    # Whoever registered it never proved the address: perhaps a squatter.
    with refused(caplog, "has not verified the address here"):
        scene.sign_in("ann")
    assert scene.auth.sso.identities(existing.id) == []

    scene.auth.store.mark_email_verified(existing.id, existing.email, datetime.now(UTC))
    assert scene.sign_in("ann").user.id == existing.id


def test_a_user_with_a_second_factor_gets_a_ticket_and_no_session_until_the_code(
    scene: SamlScene, ledger: RecordingLedger
) -> None:
    user = scene.sign_in("ann").user
    setup = scene.auth.mfa.begin_totp(user.id)
    scene.auth.mfa.confirm_totp(user.id, pyotp.TOTP(setup.secret).now())
    ledger.clear()

    challenged = scene.sign_in("ann")

    assert challenged.mfa_required and challenged.tokens is None and challenged.ticket
    assert ledger.usage() == []


# -- refusals ----------------------------------------------------------------------------


def test_a_replayed_form_is_refused_at_complete(
    scene: SamlScene, ledger: RecordingLedger, caplog: pytest.LogCaptureFixture
) -> None:
    form, handle = scene.posted("ann")
    scene.auth.sso.complete(form, handle=handle, tenant=TENANT, ip=IP)
    ledger.clear()

    with refused(caplog, "unknown, used or expired state handle"):
        scene.auth.sso.complete(form, handle=handle, tenant=TENANT, ip=IP)
    with refused(caplog, "unsolicited"):  # nor as an unsolicited response
        scene.auth.sso.complete(form, connection_id=scene.connection.id, tenant=TENANT, ip=IP)
    assert ledger.usage() == []


def test_a_replayed_assertion_is_refused_even_where_unsolicited_ones_are_accepted(
    idp_initiated: SamlScene, ledger: RecordingLedger, caplog: pytest.LogCaptureFixture
) -> None:
    form = idp_initiated.unsolicited("ann")
    connection_id = idp_initiated.connection.id
    idp_initiated.auth.sso.complete(form, connection_id=connection_id, tenant=TENANT, ip=IP)
    ledger.clear()

    with refused(caplog, "replayed"):
        idp_initiated.auth.sso.complete(form, connection_id=connection_id, tenant=TENANT, ip=IP)
    assert ledger.usage() == []


def test_an_unsolicited_response_is_refused_when_the_connection_does_not_allow_it(
    scene: SamlScene, caplog: pytest.LogCaptureFixture
) -> None:
    with refused(caplog, "unsolicited"):
        scene.auth.sso.complete(
            scene.unsolicited("ann"), connection_id=scene.connection.id, tenant=TENANT, ip=IP
        )
    assert scene.auth.store.find_user_by_email(TENANT, f"ann@{DOMAIN}") is None


def test_an_unsolicited_response_signs_in_when_the_connection_allows_it(
    idp_initiated: SamlScene, ledger: RecordingLedger
) -> None:
    signed_in = idp_initiated.auth.sso.complete(
        idp_initiated.unsolicited("ann"),
        connection_id=idp_initiated.connection.id,
        tenant=TENANT,
        ip=IP,
    )

    assert signed_in.tokens is not None
    assert signed_in.user.email == f"ann@{DOMAIN}"
    assert _events(ledger, UsageEvent.USERS_ACTIVE) == [signed_in.tokens.session.id]


def test_an_assertion_encrypted_for_the_service_provider_key_signs_in(
    idp_initiated: SamlScene,
) -> None:
    form = idp_initiated.unsolicited("ann")
    encrypted = encrypt_assertion(form["SAMLResponse"], SP_KEYS.certificate_pem)
    assert "EncryptedAssertion" in base64.b64decode(encrypted).decode()

    signed_in = idp_initiated.auth.sso.complete(
        {"SAMLResponse": encrypted},
        connection_id=idp_initiated.connection.id,
        tenant=TENANT,
        ip=IP,
    )

    assert signed_in.user.email == f"ann@{DOMAIN}"


def test_a_solicited_response_still_needs_its_handle_where_unsolicited_ones_are_accepted(
    idp_initiated: SamlScene, caplog: pytest.LogCaptureFixture
) -> None:
    form, _ = idp_initiated.posted("ann")

    with refused(caplog, "in_response_to"):
        idp_initiated.auth.sso.complete(
            form, connection_id=idp_initiated.connection.id, tenant=TENANT, ip=IP
        )


def test_a_response_that_travelled_with_another_relay_state_is_refused(
    scene: SamlScene, caplog: pytest.LogCaptureFixture
) -> None:
    form, _ = scene.posted("ann")
    _, other_handle = scene.posted("ann")

    with refused(caplog, "RelayState is not this sign-in's handle"):
        scene.auth.sso.complete(form, handle=other_handle, tenant=TENANT, ip=IP)


def test_a_response_posted_to_another_connections_acs_is_refused(
    scene: SamlScene, caplog: pytest.LogCaptureFixture
) -> None:
    form, handle = scene.posted("ann")

    with refused(caplog, "another connection's ACS"):
        scene.auth.sso.complete(form, handle=handle, connection_id="sso_other", tenant=TENANT)


def test_a_handle_of_another_tenant_is_refused(
    scene: SamlScene, caplog: pytest.LogCaptureFixture
) -> None:
    form, handle = scene.posted("ann")

    with refused(caplog, "unknown, used or expired state handle"):
        scene.auth.sso.complete(form, handle=handle, tenant="other", ip=IP)


def test_a_response_arriving_after_the_assertion_expired_is_refused(
    scene: SamlScene, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    form, handle = scene.posted("ann")
    clock.advance(minutes=9)  # the handle lives 10 minutes, the assertion 5 (+3 skew)

    with refused(caplog, "expired"):
        scene.auth.sso.complete(form, handle=handle, tenant=TENANT, ip=IP)


# -- plans and settings ------------------------------------------------------------------


def test_a_plan_without_sso_refuses_configuring_and_signing_in_before_anything_is_written(
    make_auth: AuthFactory,
) -> None:
    ledger = DenyingLedger(Feature.SSO)
    ledger.denied = frozenset()  # allowed while the connection is configured
    made = SamlScene(_auth(make_auth, ledger), idp_keys())
    with made.running():
        form, handle = made.posted("ann")
        ledger.denied = frozenset({Feature.SSO.value})
        ledger.clear()

        with pytest.raises(FeatureNotEntitled):
            made.auth.sso.complete(form, handle=handle, tenant=TENANT, ip=IP)
        with pytest.raises(FeatureNotEntitled):
            made.auth.sso.begin(made.connection.id, tenant=TENANT)
        with pytest.raises(FeatureNotEntitled):
            made.auth.sso.configure(made.org.id, made.settings)
        with pytest.raises(FeatureNotEntitled):
            made.auth.sso.update(made.connection.id, made.settings)

    assert made.auth.store.find_user_by_email(TENANT, f"ann@{DOMAIN}") is None
    assert ledger.usage() == []
    assert len(made.auth.sso.list(made.org.id)) == 1


def test_the_metadata_names_the_connections_entity_id_acs_and_certificate(
    scene: SamlScene,
) -> None:
    root = etree.fromstring(scene.metadata.encode("utf-8"))
    md = "{urn:oasis:names:tc:SAML:2.0:metadata}"
    acs = root.find(f"{md}SPSSODescriptor/{md}AssertionConsumerService")

    assert root.get("entityID") == scene.entity_id
    assert acs is not None and acs.get("Location") == scene.acs_url
    body = "".join(SP_KEYS.certificate_pem.strip().splitlines()[1:-1])
    assert body in scene.metadata
    assert root.find(f"{md}SPSSODescriptor").get("AuthnRequestsSigned") == "true"


def test_metadata_and_begin_are_tenant_bound(scene: SamlScene) -> None:
    with pytest.raises(NotFound):
        scene.auth.sso.saml_metadata(scene.connection.id, tenant="other")
    with pytest.raises(NotFound):
        scene.auth.sso.begin(scene.connection.id, tenant="other")


def test_an_http_idp_url_needs_the_loopback_option(
    make_auth: AuthFactory, ledger: RecordingLedger
) -> None:
    auth = make_auth(ledger=ledger, saml=SP)
    owner = auth.users.register(f"owner@{DOMAIN}", PASSWORD, tenant=TENANT)
    org = auth.orgs.create(owner.id, "Acme")
    keys = idp_keys()

    with pytest.raises(ValidationError, match="sso_url"):
        auth.sso.configure(
            org.id,
            SAMLConnection("http://127.0.0.1/idp", "http://127.0.0.1:9/sso", keys.certificate_pem),
        )


def test_without_service_provider_settings_saml_sign_in_is_a_configuration_error(
    make_auth: AuthFactory, ledger: RecordingLedger
) -> None:
    auth = make_auth(ledger=ledger)
    owner = auth.users.register(f"owner@{DOMAIN}", PASSWORD, tenant=TENANT)
    org = auth.orgs.create(owner.id, "Acme")
    connection = auth.sso.configure(
        org.id,
        SAMLConnection(
            "https://idp.example/", "https://idp.example/sso", idp_keys().certificate_pem
        ),
    )

    with pytest.raises(RuntimeError, match="SAMLServiceProvider"):
        auth.sso.begin(connection.id, tenant=TENANT)
