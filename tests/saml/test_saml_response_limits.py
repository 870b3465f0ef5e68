"""Whatever arrives at the ACS, the only outcome besides a verified assertion is
SSOFailed; and the SP metadata the IdP is given says what the verifier expects."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from authsome import _saml
from authsome.errors import SSOFailed
from tests.saml import _tamper as t
from tests.saml.conftest import ACS_URL, SP_ENTITY_ID, Verify
from tests.support.saml_idp import SamlIdP

FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _refused_reason(verify: Verify, saml_response: object) -> str:
    try:
        verify(saml_response)
    except SSOFailed as refused:
        return refused.reason
    raise AssertionError("accepted")


@FUZZ
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_arbitrary_input_is_refused_with_sso_failed(verify: Verify, data: str | bytes) -> None:
    assert _refused_reason(verify, data)


@FUZZ
@given(st.binary(max_size=400))
def test_arbitrary_base64_documents_are_refused_with_sso_failed(
    verify: Verify, document: bytes
) -> None:
    assert _refused_reason(verify, base64.b64encode(document).decode())


@FUZZ
@given(cut=st.integers(min_value=0, max_value=10_000), junk=st.binary(min_size=1, max_size=8))
def test_a_real_response_damaged_anywhere_is_refused_or_unchanged(
    idp: SamlIdP, verify: Verify, cut: int, junk: bytes
) -> None:
    """Bytes spliced into a real signed response: refused, or (where they land in
    ignorable whitespace) the same assertion."""
    xml = base64.b64decode(_response(idp))
    at = cut % len(xml)
    damaged = base64.b64encode(xml[:at] + junk + xml[at:]).decode()
    try:
        verified = verify(damaged)
    except SSOFailed:
        return
    assert verified.name_id == "ann-4711"


def _response(idp: SamlIdP) -> str:
    return idp.response(
        "ann", sp_entity_id=SP_ENTITY_ID, acs_url=ACS_URL, in_response_to="_request-1"
    )


def test_a_non_str_response_is_refused(verify: Verify) -> None:
    assert _refused_reason(verify, 42) == "malformed"


def test_an_empty_encrypted_assertion_is_refused_not_skipped(idp: SamlIdP, verify: Verify) -> None:
    root = t.decode(_response(idp))
    assertion = t.assertion_of(root)
    encrypted = etree.Element(f"{t.A}EncryptedAssertion")
    root.replace(assertion, encrypted)
    assert _refused_reason(verify, t.encode(root)) == "malformed"


@pytest.mark.parametrize("length", [0, _saml.MAX_ID + 1])
def test_an_empty_or_overlong_assertion_id_is_refused(
    idp: SamlIdP, verify: Verify, length: int
) -> None:
    """Checked before the signature: the id is what the replay store keeps."""
    root = t.decode(_response(idp))
    t.assertion_of(root).set("ID", "a" * length)
    assert _refused_reason(verify, t.encode(root)) == "malformed"


def test_sp_metadata_names_our_entity_acs_and_signing_certificate(
    sp: _saml.ServiceProvider, sp_keys: object
) -> None:
    root = etree.fromstring(_saml.sp_metadata(sp).encode())
    md = f"{{{_saml.NS_MD}}}"
    descriptor = root.find(f"{md}SPSSODescriptor")
    acs = descriptor.find(f"{md}AssertionConsumerService")
    certificate = descriptor.find(
        f"{md}KeyDescriptor/{t.DS}KeyInfo/{t.DS}X509Data/{t.DS}X509Certificate"
    )

    assert root.get("entityID") == SP_ENTITY_ID
    assert (acs.get("Binding"), acs.get("Location")) == (_saml.BINDING_POST, ACS_URL)
    assert descriptor.get("AuthnRequestsSigned") == "true"
    assert descriptor.get("WantAssertionsSigned") == "true"
    assert sp.certificate is not None
    assert base64.b64decode(certificate.text) == _der(sp.certificate)


def test_sp_metadata_without_a_key_has_no_certificate() -> None:
    sp = _saml.ServiceProvider(SP_ENTITY_ID, ACS_URL)
    root = etree.fromstring(_saml.sp_metadata(sp).encode())
    assert root.find(f".//{t.DS}X509Certificate") is None
    assert root.find(f"{{{_saml.NS_MD}}}SPSSODescriptor").get("AuthnRequestsSigned") == "false"


def _der(pem: str) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    return x509.load_pem_x509_certificate(pem.encode()).public_bytes(Encoding.DER)


def test_saml_times_are_utc_with_z() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert _saml.format_datetime(moment) == "2026-01-02T03:04:05Z"
    assert _saml.parse_datetime("2026-01-02T03:04:05.123456789Z") == moment


@pytest.mark.parametrize(
    "text", ["2026-01-02T03:04:05", "2026-01-02T03:04:05+02:00", "2026-13-02T03:04:05Z", None]
)
def test_other_times_are_refused(text: str | None) -> None:
    with pytest.raises(SSOFailed):
        _saml.parse_datetime(text)


def test_a_structured_attribute_value_is_left_out_and_the_rest_kept(
    idp: SamlIdP, verify: Verify
) -> None:
    root = t.decode(_response(idp))
    statement = t.assertion_of(root).find(f"{t.A}AttributeStatement")
    attribute = etree.SubElement(statement, f"{t.A}Attribute", Name="targeted-id")
    value = etree.SubElement(attribute, f"{t.A}AttributeValue")
    etree.SubElement(value, f"{t.A}NameID").text = "opaque"
    etree.SubElement(attribute, f"{t.A}AttributeValue").text = "plain"
    resigned = t.resign_assertion(root, idp.keys.key_pem, idp.keys.certificate_pem)

    verified = verify(t.encode(resigned))
    assert verified.attributes["targeted-id"] == ("plain",)
    assert ("ann@acme.example",) in verified.attributes.values()


def test_a_name_id_with_an_element_inside_is_refused(idp: SamlIdP, verify: Verify) -> None:
    root = t.decode(_response(idp))
    name_id = t.assertion_of(root).find(f"{t.A}Subject/{t.A}NameID")
    etree.SubElement(name_id, f"{t.A}Extra").text = "x"
    resigned = t.resign_assertion(root, idp.keys.key_pem, idp.keys.certificate_pem)
    assert _refused_reason(verify, t.encode(resigned)) == "malformed"


def test_a_re_signed_assertion_is_accepted_so_the_tests_above_test_their_change(
    idp: SamlIdP, verify: Verify
) -> None:
    root = t.resign_assertion(t.decode(_response(idp)), idp.keys.key_pem, idp.keys.certificate_pem)
    assert verify(t.encode(root)).name_id == "ann-4711"
