"""Encrypted assertions: encrypted for our SP key by xmlsec1 (the XML Encryption
implementation pysaml2's IdP uses), decrypted only under safe algorithms, and then
held to every rule a plain assertion is."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from authsome import _saml
from authsome.errors import SSOFailed
from tests.saml import _tamper as t
from tests.saml.conftest import ACS_URL, SP_ENTITY_ID, Verify
from tests.support.saml_idp import (
    AES128_CBC,
    AES256_GCM,
    RSA_1_5,
    TRIPLE_DES,
    KeyPair,
    SamlIdP,
    encrypt_assertion,
    new_key_pair,
)


def _response(idp: SamlIdP, **options: Any) -> str:
    return idp.response(
        "ann", sp_entity_id=SP_ENTITY_ID, acs_url=ACS_URL, in_response_to="_request-1", **options
    )


def _refused(verify: Verify, saml_response: str, **overrides: object) -> str:
    with pytest.raises(SSOFailed) as refused:
        verify(saml_response, **overrides)
    return refused.value.reason


def _signed_after_encryption(idp: SamlIdP, encrypted: str) -> str:
    return t.encode(
        t.resign_response(t.decode(encrypted), idp.keys.key_pem, idp.keys.certificate_pem)
    )


def test_an_aes_gcm_encrypted_signed_assertion_is_decrypted_and_verified(
    idp: SamlIdP, sp_keys: KeyPair, verify: Verify
) -> None:
    encrypted = encrypt_assertion(_response(idp), sp_keys.certificate_pem, algorithm=AES256_GCM)
    assert b"EncryptedAssertion" in base64.b64decode(encrypted)
    assert b"ann-4711" not in base64.b64decode(encrypted)

    verified = verify(encrypted)
    assert verified.name_id == "ann-4711"
    assert ("ann@acme.example",) in verified.attributes.values()


def test_aes_cbc_is_decrypted_only_inside_a_signed_response(
    idp: SamlIdP, sp_keys: KeyPair, verify: Verify
) -> None:
    """Unauthenticated CBC ciphertext is a padding oracle; a verified response
    signature over the ciphertext closes it."""
    encrypted = encrypt_assertion(_response(idp), sp_keys.certificate_pem, algorithm=AES128_CBC)

    assert _refused(verify, encrypted) == "encrypted"
    assert verify(_signed_after_encryption(idp, encrypted)).name_id == "ann-4711"


def test_triple_des_is_refused_even_inside_a_signed_response(
    idp: SamlIdP, sp_keys: KeyPair, verify: Verify
) -> None:
    """pysaml2's own default for encrypted assertions."""
    encrypted = encrypt_assertion(_response(idp), sp_keys.certificate_pem, algorithm=TRIPLE_DES)
    assert _refused(verify, _signed_after_encryption(idp, encrypted)) == "encrypted"


def test_rsa_pkcs1_v15_key_transport_is_refused(
    idp: SamlIdP, sp_keys: KeyPair, verify: Verify
) -> None:
    encrypted = encrypt_assertion(
        _response(idp), sp_keys.certificate_pem, algorithm=AES256_GCM, key_transport=RSA_1_5
    )
    assert _refused(verify, encrypted) == "decryption"


def test_without_an_sp_key_an_encrypted_assertion_is_refused(
    idp: SamlIdP, sp_keys: KeyPair, verify: Verify
) -> None:
    encrypted = encrypt_assertion(_response(idp), sp_keys.certificate_pem)
    keyless = _saml.ServiceProvider(SP_ENTITY_ID, ACS_URL)
    assert _refused(verify, encrypted, sp=keyless) == "encrypted"


def test_an_assertion_encrypted_for_another_key_is_refused(idp: SamlIdP, verify: Verify) -> None:
    encrypted = encrypt_assertion(_response(idp), new_key_pair("other-sp").certificate_pem)
    assert _refused(verify, encrypted) == "decryption"


def test_altered_ciphertext_is_refused(idp: SamlIdP, sp_keys: KeyPair, verify: Verify) -> None:
    root = t.decode(encrypt_assertion(_response(idp), sp_keys.certificate_pem))
    value = root.find(f".//{{{_saml.NS_XENC}}}EncryptedData/{{{_saml.NS_XENC}}}CipherData/*")
    raw = bytearray(base64.b64decode(value.text))
    raw[20] ^= 1
    value.text = base64.b64encode(bytes(raw)).decode()
    assert _refused(verify, t.encode(root)) == "decryption"


def test_an_encrypted_unsigned_assertion_is_refused(
    idp: SamlIdP, sp_keys: KeyPair, verify: Verify
) -> None:
    """Encryption proves nothing about who wrote it: anyone can encrypt to our key."""
    encrypted = encrypt_assertion(_response(idp, sign_assertion=False), sp_keys.certificate_pem)
    assert _refused(verify, encrypted) == "unsigned"


def test_an_encrypted_assertion_beside_a_plain_one_is_refused(
    idp: SamlIdP, sp_keys: KeyPair, verify: Verify
) -> None:
    encrypted = t.decode(encrypt_assertion(_response(idp), sp_keys.certificate_pem))
    plain = t.assertion_of(t.decode(_response(idp)))
    encrypted.append(plain)
    assert _refused(verify, t.encode(encrypted)) == "assertion_count"


def test_an_encrypted_assertion_is_held_to_the_audience_rule(
    idp: SamlIdP, sp_keys: KeyPair, verify: Verify
) -> None:
    encrypted = encrypt_assertion(_response(idp), sp_keys.certificate_pem)
    other = _saml.ServiceProvider("https://other.example/sp", ACS_URL, signing_key=sp_keys.key)
    assert _refused(verify, encrypted, sp=other) == "audience"
