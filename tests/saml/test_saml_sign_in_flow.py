"""The SP against a real IdP: AuthnRequest by redirect, login over HTTP, the IdP's
auto-POST form back to our ACS, and the verified assertion."""

from __future__ import annotations

import base64
import urllib.error
import urllib.parse
import zlib
from datetime import UTC, datetime

import pytest
from lxml import etree

from authsome import _saml
from authsome.errors import SSOFailed
from tests.saml.conftest import ACS_URL, SP_ENTITY_ID, ReplayCache, Verify
from tests.support.saml_idp import Browser, SamlIdP, new_key_pair


def _sign_in(
    connection: _saml.IdentityProvider, sp: _saml.ServiceProvider, *, relay_state: str = "rs-1"
) -> tuple[dict[str, str], str]:
    url, request_id = _saml.authn_request(
        connection, sp, relay_state=relay_state, now=datetime.now(UTC)
    )
    fields = Browser().sign_in(url, user="ann", password="ann's password")
    return fields, request_id


def test_a_signed_authn_request_round_trips_through_the_idp_to_a_verified_assertion(
    connection: _saml.IdentityProvider, sp: _saml.ServiceProvider, replay: ReplayCache
) -> None:
    fields, request_id = _sign_in(connection, sp, relay_state="handle-42")

    assert fields["RelayState"] == "handle-42"
    verified = _saml.verify_response(
        fields["SAMLResponse"],
        idp=connection,
        sp=sp,
        expected_request_id=request_id,
        now=datetime.now(UTC),
        replay_check=replay,
    )
    assert verified.issuer == connection.entity_id
    assert verified.name_id == "ann-4711"
    assert verified.name_id_format == _saml.NAMEID_PERSISTENT
    assert verified.in_response_to == request_id
    assert ("ann@acme.example",) in verified.attributes.values()
    assert ("Ann",) in verified.attributes.values()
    assert replay.seen == {verified.assertion_id: verified.not_on_or_after + _saml.MAX_CLOCK_SKEW}


def test_the_authn_request_names_our_acs_and_entity_and_is_signed_over_the_query(
    connection: _saml.IdentityProvider, sp: _saml.ServiceProvider
) -> None:
    url, request_id = _saml.authn_request(connection, sp, relay_state="rs", now=datetime.now(UTC))
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    xml = zlib.decompress(base64.b64decode(query["SAMLRequest"]), -15)
    request = etree.fromstring(xml)

    assert url.startswith(connection.sso_url + "?")
    assert request.get("ID") == request_id
    assert request.get("AssertionConsumerServiceURL") == ACS_URL
    assert request.get("Destination") == connection.sso_url
    assert request.findtext(f"{{{_saml.NS_SAML}}}Issuer") == SP_ENTITY_ID
    assert query["SigAlg"] == _saml.SIG_RSA_SHA256
    assert "Signature" in query


def test_the_idp_refuses_a_request_whose_redirect_signature_was_tampered_with(
    connection: _saml.IdentityProvider, sp: _saml.ServiceProvider
) -> None:
    url, _ = _saml.authn_request(connection, sp, relay_state="rs", now=datetime.now(UTC))
    tampered = url.replace("RelayState=rs", "RelayState=other")

    with pytest.raises(urllib.error.HTTPError) as refused:
        Browser().sign_in(tampered, user="ann", password="ann's password")
    refused.value.close()
    assert refused.value.code == 400


def test_an_unsigned_request_is_sent_without_signature_parameters(
    connection: _saml.IdentityProvider, sp: _saml.ServiceProvider
) -> None:
    unsigned_sp = _saml.ServiceProvider(sp.entity_id, sp.acs_url)
    url, _ = _saml.authn_request(connection, unsigned_sp, relay_state="rs", now=datetime.now(UTC))
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))

    assert set(query) == {"SAMLRequest", "RelayState"}


@pytest.mark.parametrize(
    ("sign_response", "sign_assertion"), [(True, False), (True, True), (False, True)]
)
def test_a_signature_on_the_response_or_on_the_assertion_is_accepted(
    idp: SamlIdP, verify: Verify, sign_response: bool, sign_assertion: bool
) -> None:
    response = idp.response(
        "ann",
        sp_entity_id=SP_ENTITY_ID,
        acs_url=ACS_URL,
        in_response_to="_request-1",
        sign_response=sign_response,
        sign_assertion=sign_assertion,
    )

    assert verify(response).name_id == "ann-4711"


def test_during_a_rollover_either_certificate_verifies(
    idp: SamlIdP, connection: _saml.IdentityProvider, verify: Verify
) -> None:
    response = idp.response(
        "ann", sp_entity_id=SP_ENTITY_ID, acs_url=ACS_URL, in_response_to="_request-1"
    )
    rollover = _saml.IdentityProvider(
        connection.entity_id,
        connection.sso_url,
        (new_key_pair("next").certificate_pem, idp.keys.certificate_pem),
    )

    assert verify(response, idp=rollover).name_id == "ann-4711"


def test_an_idp_initiated_response_is_accepted_only_where_allowed(
    idp: SamlIdP, connection: _saml.IdentityProvider, verify: Verify
) -> None:
    response = idp.response("ann", sp_entity_id=SP_ENTITY_ID, acs_url=ACS_URL, in_response_to=None)
    allowing = _saml.IdentityProvider(
        connection.entity_id, connection.sso_url, connection.certificates, allow_idp_initiated=True
    )

    verified = verify(response, idp=allowing, expected_request_id=None)
    assert verified.in_response_to is None
    with pytest.raises(SSOFailed) as refused:
        verify(response, expected_request_id=None)
    assert refused.value.reason == "unsolicited"


def test_a_solicited_response_is_not_taken_as_unsolicited(
    idp: SamlIdP, connection: _saml.IdentityProvider, verify: Verify
) -> None:
    """Where IdP-initiated sign-in is allowed, a response answering some request
    still needs that request's id."""
    response = idp.response(
        "ann", sp_entity_id=SP_ENTITY_ID, acs_url=ACS_URL, in_response_to="_request-1"
    )
    allowing = _saml.IdentityProvider(
        connection.entity_id, connection.sso_url, connection.certificates, allow_idp_initiated=True
    )

    with pytest.raises(SSOFailed):
        verify(response, idp=allowing, expected_request_id=None)


def test_a_relay_state_longer_than_the_binding_allows_is_a_caller_error(
    connection: _saml.IdentityProvider, sp: _saml.ServiceProvider
) -> None:
    with pytest.raises(ValueError, match="relay_state"):
        _saml.authn_request(connection, sp, relay_state="x" * 81, now=datetime.now(UTC))


def test_the_verified_assertion_cannot_be_changed(idp: SamlIdP, verify: Verify) -> None:
    verified = verify(
        idp.response("ann", sp_entity_id=SP_ENTITY_ID, acs_url=ACS_URL, in_response_to="_request-1")
    )
    with pytest.raises(TypeError):
        verified.attributes["role"] = ("admin",)  # type: ignore[index]
    with pytest.raises(AttributeError):
        verified.name_id = "admin"  # type: ignore[misc]


def test_the_idp_refuses_a_wrong_password_and_sends_nothing_back(
    connection: _saml.IdentityProvider, sp: _saml.ServiceProvider
) -> None:
    url, _ = _saml.authn_request(connection, sp, relay_state="rs", now=datetime.now(UTC))
    with pytest.raises(urllib.error.HTTPError) as refused:
        Browser().sign_in(url, user="ann", password="wrong")
    refused.value.close()
    assert refused.value.code == 403
