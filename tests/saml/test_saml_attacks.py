"""The classic SAML attacks, each refused: every response starts as a real one signed
by the IdP under test (pysaml2 on 127.0.0.1), then is tampered with as an attacker
would."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from authsome import _saml
from authsome.errors import InvalidCredentials, SSOFailed
from authsome.stores import SQLiteStore
from tests.saml import _tamper as t
from tests.saml.conftest import ACS_URL, SP_ENTITY_ID, Verify
from tests.support.saml_idp import SamlIdP


def _response(idp: SamlIdP, user: str = "ann", **options: Any) -> str:
    arguments: dict[str, Any] = {
        "sp_entity_id": SP_ENTITY_ID,
        "acs_url": ACS_URL,
        "in_response_to": "_request-1",
    }
    arguments.update(options)
    return idp.response(user, **arguments)


def _refused(verify: Verify, saml_response: str, **overrides: object) -> str:
    with pytest.raises(SSOFailed) as refused:
        verify(saml_response, **overrides)
    return refused.value.reason


def test_the_untampered_response_is_accepted(idp: SamlIdP, verify: Verify) -> None:
    """The baseline every attack below starts from."""
    assert verify(_response(idp)).name_id == "ann-4711"


def test_an_unsigned_assertion_is_refused(idp: SamlIdP, verify: Verify) -> None:
    assert _refused(verify, _response(idp, sign_assertion=False)) == "unsigned"


def test_a_signature_by_another_key_is_refused(
    other_idp: SamlIdP, connection: _saml.IdentityProvider, verify: Verify
) -> None:
    """Everything right (issuer included) except the key: not the connection's."""
    trusting_the_real_key = _saml.IdentityProvider(
        other_idp.entity_id, connection.sso_url, connection.certificates
    )
    assert _refused(verify, _response(other_idp), idp=trusting_the_real_key) == "signature"


def test_a_sha1_signature_is_refused(idp: SamlIdP, verify: Verify) -> None:
    """pysaml2's own default; SHA-1 signatures can be forged by collision."""
    sha1 = t.decode(_response(idp, sha1=True))
    assert (
        t.signature_of(t.assertion_of(sha1))
        .find(f".//{t.DS}SignatureMethod")
        .get("Algorithm")
        .endswith("rsa-sha1")
    )
    assert _refused(verify, t.encode(sha1)) == "signature"


def test_an_edited_signed_assertion_is_refused(idp: SamlIdP, verify: Verify) -> None:
    root = t.decode(_response(idp))
    root.find(f".//{t.A}NameID").text = t.EVIL_NAME_ID
    assert _refused(verify, t.encode(root)) == "signature"


def test_an_edited_signed_response_is_refused(idp: SamlIdP, verify: Verify) -> None:
    root = t.decode(_response(idp, sign_response=True, sign_assertion=False))
    root.find(f".//{t.A}NameID").text = t.EVIL_NAME_ID
    assert _refused(verify, t.encode(root)) == "signature"


def test_a_response_signature_moved_into_the_assertion_does_not_count(
    idp: SamlIdP, verify: Verify
) -> None:
    root = t.decode(_response(idp, sign_response=True, sign_assertion=False))
    signature = t.signature_of(root)
    root.remove(signature)
    t.assertion_of(root).insert(1, signature)
    assert _refused(verify, t.encode(root)) == "signature"


# A second assertion anywhere is refused before any signature is looked at; the
# signature layer (reading only what is signed) would refuse the rest.
WRAPPING_REFUSALS = {"assertion_count", "signature"}
XSW_ON_SIGNED_RESPONSE: list[Callable[[Any], Any]] = [t.xsw1, t.xsw2]
XSW_ON_SIGNED_ASSERTION: list[Callable[[Any], Any]] = [
    t.xsw3,
    t.xsw4,
    t.xsw5,
    t.xsw6,
    t.xsw7,
    t.xsw8,
]


@pytest.mark.parametrize("wrap", XSW_ON_SIGNED_RESPONSE, ids=lambda f: f.__name__)
def test_signature_wrapping_of_a_signed_response_is_refused(
    idp: SamlIdP, verify: Verify, wrap: Callable[[Any], Any]
) -> None:
    root = t.decode(_response(idp, sign_response=True, sign_assertion=False))
    wrapped = t.encode(wrap(root))
    assert t.EVIL_NAME_ID in base64.b64decode(wrapped).decode()
    assert _refused(verify, wrapped) in WRAPPING_REFUSALS


@pytest.mark.parametrize("wrap", XSW_ON_SIGNED_ASSERTION, ids=lambda f: f.__name__)
def test_signature_wrapping_of_a_signed_assertion_is_refused(
    idp: SamlIdP, verify: Verify, wrap: Callable[[Any], Any]
) -> None:
    root = t.decode(_response(idp))
    wrapped = t.encode(wrap(root))
    assert t.EVIL_NAME_ID in base64.b64decode(wrapped).decode()
    assert _refused(verify, wrapped) in WRAPPING_REFUSALS


@pytest.mark.parametrize("wrap", XSW_ON_SIGNED_ASSERTION, ids=lambda f: f.__name__)
def test_signature_wrapping_inside_a_signed_response_is_refused(
    idp: SamlIdP, verify: Verify, wrap: Callable[[Any], Any]
) -> None:
    """Both signed: moving the assertion around breaks the response's signature."""
    root = t.decode(_response(idp, sign_response=True, sign_assertion=True))
    assert _refused(verify, t.encode(wrap(root))) in WRAPPING_REFUSALS


def test_a_comment_in_the_name_id_neither_truncates_nor_changes_it(
    idp: SamlIdP, verify: Verify
) -> None:
    """The IdP vouches for ``user@evil.com.example.com``; a comment inserted by the
    attacker keeps the signature valid (canonicalization drops comments) but must not
    make the SP read ``user@evil.com``."""
    root = t.decode(_response(idp, "mallory"))
    name_id = root.find(f".//{t.A}NameID")
    name_id.text = "user@evil.com"
    comment = etree.Comment("")
    comment.tail = ".example.com"
    name_id.append(comment)
    injected = t.encode(root)
    assert b"user@evil.com<!---->.example.com" in base64.b64decode(injected)

    verified = verify(injected)
    assert verified.name_id == "user@evil.com.example.com"
    assert verified.attributes and all(
        value == ("user@evil.com.example.com",) for value in verified.attributes.values()
    )


def test_a_replayed_assertion_is_refused(idp: SamlIdP, verify: Verify) -> None:
    response = _response(idp)
    verify(response)
    assert _refused(verify, response) == "replayed"


def test_a_response_for_another_audience_is_refused(idp: SamlIdP, verify: Verify) -> None:
    other_sp = _saml.ServiceProvider("https://other.example/sp", ACS_URL)
    assert _refused(verify, _response(idp), sp=other_sp) == "audience"


def test_a_response_for_another_recipient_is_refused(idp: SamlIdP, verify: Verify) -> None:
    """The signed SubjectConfirmationData names another ACS; the unsigned Response's
    Destination was removed so only the Recipient can tell."""
    root = t.decode(_response(idp, acs_url="https://other.example/acs"))
    del root.attrib["Destination"]
    assert _refused(verify, t.encode(root)) == "recipient"


def test_a_response_for_another_destination_is_refused(idp: SamlIdP, verify: Verify) -> None:
    root = t.decode(_response(idp))
    root.set("Destination", "https://other.example/acs")
    assert _refused(verify, t.encode(root)) == "destination"


def test_a_response_to_another_request_is_refused(idp: SamlIdP, verify: Verify) -> None:
    assert _refused(verify, _response(idp), expected_request_id="_request-2") == "in_response_to"


def test_an_expired_assertion_is_refused(idp: SamlIdP, verify: Verify) -> None:
    later = datetime.now(UTC) + timedelta(minutes=5) + _saml.MAX_CLOCK_SKEW
    assert _refused(verify, _response(idp), now=later) == "expired"


def test_an_assertion_not_yet_valid_is_refused(idp: SamlIdP, verify: Verify) -> None:
    earlier = datetime.now(UTC) - _saml.MAX_CLOCK_SKEW - timedelta(minutes=1)
    assert _refused(verify, _response(idp), now=earlier) == "not_yet_valid"


def test_an_assertion_within_the_skew_is_accepted(idp: SamlIdP, verify: Verify) -> None:
    slightly_early = datetime.now(UTC) - _saml.MAX_CLOCK_SKEW + timedelta(seconds=30)
    assert verify(_response(idp), now=slightly_early).name_id == "ann-4711"


def test_an_unsolicited_response_is_refused_when_idp_initiated_is_off(
    idp: SamlIdP, verify: Verify
) -> None:
    unsolicited = _response(idp, in_response_to=None)
    assert _refused(verify, unsolicited, expected_request_id=None) == "unsolicited"
    assert _refused(verify, unsolicited) == "in_response_to"


def test_a_response_from_another_issuer_is_refused(
    idp: SamlIdP, connection: _saml.IdentityProvider, verify: Verify
) -> None:
    impostor = _saml.IdentityProvider(
        "https://other-idp.example", connection.sso_url, connection.certificates
    )
    assert _refused(verify, _response(idp), idp=impostor) == "issuer"


def test_a_failed_status_is_refused(idp: SamlIdP, verify: Verify) -> None:
    root = t.decode(_response(idp))
    root.find(f"{t.P}Status/{t.P}StatusCode").set(
        "Value", "urn:oasis:names:tc:SAML:2.0:status:Responder"
    )
    assert _refused(verify, t.encode(root)) == "status"


XXE = """<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/hostname">]>
<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_x" Version="2.0">
<saml:Issuer xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion">&xxe;</saml:Issuer>
</samlp:Response>"""

LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>
<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol">&c;</samlp:Response>"""


@pytest.mark.parametrize("document", [XXE, LAUGHS], ids=["external-entity", "entity-expansion"])
def test_a_document_with_a_dtd_is_refused(verify: Verify, document: str) -> None:
    encoded = base64.b64encode(document.encode()).decode()
    assert _refused(verify, encoded) == "dtd"


def test_a_dtd_inside_a_real_signed_response_is_refused(idp: SamlIdP, verify: Verify) -> None:
    xml = base64.b64decode(_response(idp)).decode()
    body = xml.split("?>", 1)[1] if xml.startswith("<?xml") else xml
    with_dtd = '<!DOCTYPE Response [<!ENTITY x "y">]>' + body
    assert _refused(verify, base64.b64encode(with_dtd.encode()).decode()) == "dtd"


def test_an_oversized_response_is_refused_before_decoding(verify: Verify) -> None:
    assert _refused(verify, "A" * (_saml.MAX_RESPONSE_CHARS + 4)) == "too_large"


@pytest.mark.parametrize("garbage", ["", "!!!", base64.b64encode(b"<a>").decode(), "PGE+"])
def test_garbage_is_refused_as_malformed(verify: Verify, garbage: str) -> None:
    assert _refused(verify, garbage) == "malformed"


def test_the_refusal_is_an_invalid_credentials_and_names_no_content(
    idp: SamlIdP, verify: Verify
) -> None:
    root = t.decode(_response(idp))
    root.find(f".//{t.A}NameID").text = "secret-name-id"
    with pytest.raises(InvalidCredentials) as refused:
        verify(t.encode(root))
    assert "secret-name-id" not in str(refused.value)
    assert refused.value.reason == "signature"
    assert refused.value.args == ("single sign-on failed",)  # the same for every reason


def test_a_replay_is_refused_through_the_store_across_engines(
    idp: SamlIdP, verify: Verify, tmp_path: Path
) -> None:
    """Two processes' stores on one SQLite file: the second use is refused."""
    path = tmp_path / "auth.db"
    response = _response(idp)
    first, second = SQLiteStore(path), SQLiteStore(path)
    try:
        now = datetime.now(UTC)
        verify(response, replay_check=_saml.store_replay_check(first, "sso_1", now))
        replayed = _saml.store_replay_check(second, "sso_1", now)
        assert _refused(verify, response, replay_check=replayed) == "replayed"
    finally:
        first.close()
        second.close()


def test_a_response_issued_in_another_name_is_refused(idp: SamlIdP, verify: Verify) -> None:
    """The assertion is the real IdP's, the unsigned Response names someone else."""
    root = t.decode(_response(idp))
    root.find(f"{t.A}Issuer").text = "https://other-idp.example"
    assert _refused(verify, t.encode(root)) == "issuer"
