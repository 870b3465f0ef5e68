"""SAML connection settings: IdP metadata import, certificate rollover, IdP-initiated
sign-in switch, expiry warnings, and the plan gate."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from authsome import (
    Authsome,
    Feature,
    FeatureNotEntitled,
    SAMLConnection,
    SSOProtocol,
    ValidationError,
    _saml,
)
from authsome.testing import DenyingLedger, RecordingLedger
from tests.conftest import PASSWORD, AuthFactory
from tests.support.saml_idp import SamlIdP, new_key_pair
from tests.test_sso import VALID_PEM, make_pem

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)  # the FakeClock's start
EXPIRED_PEM = make_pem(datetime(2024, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
SOON_PEM = make_pem(datetime(2025, 1, 1, tzinfo=UTC), NOW + timedelta(days=10))


def _body(pem: str) -> str:
    return "".join(line for line in pem.strip().splitlines() if "CERTIFICATE" not in line)


def metadata(*certificates: str, sso_url: str = "https://idp.acme.example/sso") -> str:
    keys = "".join(
        '<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data>'
        f"<ds:X509Certificate>{_body(pem)}</ds:X509Certificate>"
        "</ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
        for pem in certificates
    )
    return (
        '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata"'
        ' xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="https://idp.acme.example">'
        '<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        f'{keys}<md:KeyDescriptor use="encryption"><ds:KeyInfo><ds:X509Data>'
        f"<ds:X509Certificate>{_body(EXPIRED_PEM)}</ds:X509Certificate>"
        "</ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
        '<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"'
        ' Location="https://idp.acme.example/post"/>'
        '<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"'
        f' Location="{sso_url}"/>'
        "</md:IDPSSODescriptor></md:EntityDescriptor>"
    )


def _org_id(auth: Authsome) -> str:
    user = auth.users.register("ann@example.com", PASSWORD, tenant="acme")
    return auth.orgs.create(user.id, "ann corp").id


def test_metadata_of_a_real_idp_gives_its_entity_sso_url_and_certificate() -> None:
    sp = _saml.ServiceProvider("https://app.example/sp", "https://app.example/acs")
    idp = SamlIdP(_saml.sp_metadata(sp), users={}, keys=new_key_pair())

    connection = SAMLConnection.from_metadata(idp.metadata(), domains=("acme.example",))

    assert connection.entity_id == idp.entity_id
    assert connection.sso_url == idp.sso_url
    assert connection.x509_certificate == idp.keys.certificate_pem
    assert connection.rollover_x509_certificate is None
    assert connection.domains == ("acme.example",)
    assert connection.allow_idp_initiated is False


def test_metadata_takes_the_redirect_endpoint_and_only_signing_keys() -> None:
    connection = SAMLConnection.from_metadata(metadata(VALID_PEM).encode())

    assert connection.entity_id == "https://idp.acme.example"
    assert connection.sso_url == "https://idp.acme.example/sso"
    assert connection.x509_certificate == VALID_PEM


def test_metadata_with_two_signing_certificates_is_a_rollover() -> None:
    connection = SAMLConnection.from_metadata(metadata(VALID_PEM, SOON_PEM))

    assert connection.x509_certificate == VALID_PEM
    assert connection.rollover_x509_certificate == SOON_PEM


@pytest.mark.parametrize(
    "document",
    [
        metadata(),  # no signing certificate
        metadata(VALID_PEM) + "<x/>",  # not well-formed
        metadata(VALID_PEM).replace("HTTP-Redirect", "SOAP"),  # no redirect endpoint
        metadata(VALID_PEM).replace("IDPSSODescriptor", "SPSSODescriptor"),  # an SP
        '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/hostname">]>' + metadata(VALID_PEM),
        metadata(VALID_PEM).replace(_body(VALID_PEM), "bm90IGEgY2VydGlmaWNhdGU="),
    ],
    ids=["no-certificate", "not-xml", "no-redirect", "sp", "dtd", "bad-certificate"],
)
def test_unusable_metadata_is_a_validation_error(document: str) -> None:
    with pytest.raises(ValidationError):
        SAMLConnection.from_metadata(document)


def test_more_than_two_signing_certificates_are_refused() -> None:
    third = make_pem(datetime(2025, 1, 1, tzinfo=UTC), datetime(2027, 6, 1, tzinfo=UTC))
    with pytest.raises(ValidationError):
        SAMLConnection.from_metadata(metadata(VALID_PEM, SOON_PEM, third))


def test_imported_settings_are_configured_and_read_back(make_auth: AuthFactory) -> None:
    auth = make_auth(ledger=RecordingLedger())
    imported = SAMLConnection.from_metadata(
        metadata(VALID_PEM, SOON_PEM), domains=("acme.example",), allow_idp_initiated=True
    )

    info = auth.sso.configure(_org_id(auth), imported)

    assert info.protocol is SSOProtocol.SAML
    assert auth.sso.get(info.id) == info
    assert info.rollover_x509_certificate == SOON_PEM
    assert info.allow_idp_initiated is True
    trusted = _saml.identity_provider(info)
    assert trusted.certificates == (VALID_PEM, SOON_PEM)
    assert trusted.allow_idp_initiated is True


def test_an_expired_rollover_certificate_is_refused(make_auth: AuthFactory) -> None:
    auth = make_auth(ledger=RecordingLedger())
    connection = SAMLConnection.from_metadata(metadata(VALID_PEM, EXPIRED_PEM))

    with pytest.raises(ValidationError, match="rollover_x509_certificate"):
        auth.sso.configure(_org_id(auth), connection)


def test_the_idp_initiated_switch_must_be_a_bool(make_auth: AuthFactory) -> None:
    auth = make_auth(ledger=RecordingLedger())
    connection = SAMLConnection.from_metadata(metadata(VALID_PEM))
    with pytest.raises(TypeError):
        auth.sso.configure(
            _org_id(auth),
            SAMLConnection(
                connection.entity_id,
                connection.sso_url,
                connection.x509_certificate,
                allow_idp_initiated="yes",  # type: ignore[arg-type]
            ),
        )


def test_a_certificate_close_to_expiry_is_logged_as_a_warning(
    make_auth: AuthFactory, caplog: pytest.LogCaptureFixture
) -> None:
    auth = make_auth(ledger=RecordingLedger())
    org_id = _org_id(auth)
    caplog.set_level(logging.WARNING, logger="authsome.sso")

    auth.sso.configure(org_id, SAMLConnection.from_metadata(metadata(VALID_PEM)))
    assert not [r for r in caplog.records if "expires soon" in r.getMessage()]
    auth.sso.configure(org_id, SAMLConnection.from_metadata(metadata(SOON_PEM)))

    warnings = [r for r in caplog.records if "expires soon" in r.getMessage()]
    assert len(warnings) == 1
    assert (NOW + timedelta(days=10)).date().isoformat() in warnings[0].getMessage()


def test_configuring_from_metadata_is_refused_under_a_denying_ledger(
    make_auth: AuthFactory,
) -> None:
    store_owner = make_auth(ledger=RecordingLedger())
    org_id = _org_id(store_owner)
    denied = make_auth(store=store_owner.store, ledger=DenyingLedger(Feature.SSO))

    with pytest.raises(FeatureNotEntitled):
        denied.sso.configure(org_id, SAMLConnection.from_metadata(metadata(VALID_PEM)))
    assert denied.sso.list(org_id) == []
