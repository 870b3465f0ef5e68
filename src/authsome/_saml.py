"""SAML 2.0 service provider core: AuthnRequests out, verified assertions in.

Private: the sign-in journey (``auth.sso.begin``/``complete``) drives it. What it does
is the Web Browser SSO profile's SP side, with the OWASP SAML cheat sheet's checks:

- The XML signature is checked by signxml, never by hand. Only the element signxml
  returns (the one the signature covers, re-read from its canonical form) is read
  afterwards, so data outside the signature (XML signature wrapping) is never seen.
  A response carries exactly one assertion, signed itself or inside a signed response.
- Parsing is hardened: no DTD at all (so no entities, no XXE, no entity expansion), no
  network, bounded size before anything is decoded.
- Text is read as the canonical string value: a comment inside a NameID
  (``user@evil.com<!---->.example.com``) neither truncates nor alters it.
- Issuer, audience, recipient, destination, request id and validity window are all
  checked, the clock with a bounded skew; an assertion id is used once (the caller's
  replay check, kept until the assertion expires).
- An encrypted assertion is decrypted with the SP's key under safe algorithms only
  (RSA-OAEP; AES-GCM, or AES-CBC when a verified signature covers the ciphertext),
  then must be signed and pass every check like a plain one.

Every refusal is :class:`~authsome.errors.SSOFailed` with a short reason code, never
the response's content.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any
from urllib.parse import urlencode

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding

from authsome.errors import ExtraNotInstalled, SSOFailed
from authsome.models import SSOConnectionInfo, SSOProtocol
from authsome.stores import Store

__all__ = [
    "BINDING_POST",
    "BINDING_REDIRECT",
    "MAX_CLOCK_SKEW",
    "MAX_RESPONSE_CHARS",
    "IdPMetadata",
    "IdentityProvider",
    "ReplayCheck",
    "ServiceProvider",
    "VerifiedAssertion",
    "authn_request",
    "identity_provider",
    "parse_idp_metadata",
    "sp_metadata",
    "store_replay_check",
    "verify_response",
]

NS_SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
NS_SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
NS_MD = "urn:oasis:names:tc:SAML:2.0:metadata"
NS_DS = "http://www.w3.org/2000/09/xmldsig#"
NS_XENC = "http://www.w3.org/2001/04/xmlenc#"
NS_XENC11 = "http://www.w3.org/2009/xmlenc11#"
BINDING_REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
BINDING_POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
STATUS_SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
CM_BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
NAMEID_UNSPECIFIED = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"
NAMEID_PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
SIG_RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"

MAX_CLOCK_SKEW = timedelta(minutes=3)
MAX_RESPONSE_CHARS = 512 * 1024  # base64 text of one response; real ones are a few KiB
MAX_METADATA_CHARS = 1024 * 1024
MAX_ATTRIBUTES = 200
MAX_VALUES = 200
MAX_ID = 256  # an xs:ID; real ones are 20-50 characters
MAX_RELAY_STATE = 80  # bytes, the HTTP-Redirect binding's limit

_P = f"{{{NS_SAMLP}}}"
_A = f"{{{NS_SAML}}}"
_M = f"{{{NS_MD}}}"
_D = f"{{{NS_DS}}}"
_X = f"{{{NS_XENC}}}"
_X11 = f"{{{NS_XENC11}}}"
_DATETIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d{1,9})?Z")

# Called with an assertion id and the time it may be forgotten after; True when this
# is the first use (atomically), False when the id was seen before.
ReplayCheck = Callable[[str, datetime], bool]


@dataclass(frozen=True, slots=True)
class IdentityProvider:
    """What the SP trusts about one IdP: its entity id, SSO URL (HTTP-Redirect) and
    signing certificates (PEM; two at once during a rollover)."""

    entity_id: str
    sso_url: str
    certificates: tuple[str, ...]
    allow_idp_initiated: bool = False


def identity_provider(connection: SSOConnectionInfo) -> IdentityProvider:
    """What a stored SAML connection says to trust."""
    if (
        connection.protocol is not SSOProtocol.SAML
        or connection.entity_id is None
        or connection.sso_url is None
        or connection.x509_certificate is None
    ):
        raise ValueError("not a SAML connection")
    certificates = (connection.x509_certificate, connection.rollover_x509_certificate)
    return IdentityProvider(
        entity_id=connection.entity_id,
        sso_url=connection.sso_url,
        certificates=tuple(c for c in certificates if c is not None),
        allow_idp_initiated=connection.allow_idp_initiated,
    )


@dataclass(frozen=True, slots=True)
class ServiceProvider:
    """Our side of one connection. With ``signing_key`` (RSA) AuthnRequests are signed,
    assertions the IdP encrypted for it are decrypted, and ``certificate`` (PEM, its
    public half) is published in the metadata for both uses."""

    entity_id: str
    acs_url: str
    signing_key: rsa.RSAPrivateKey | None = field(default=None, repr=False)
    certificate: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class VerifiedAssertion:
    """What a verified assertion says, read only from the signed element.
    ``attributes`` maps each attribute's ``Name`` to its values (read-only)."""

    issuer: str
    name_id: str
    name_id_format: str
    attributes: Mapping[str, tuple[str, ...]]
    not_on_or_after: datetime
    assertion_id: str
    in_response_to: str | None


@dataclass(frozen=True, slots=True)
class IdPMetadata:
    """The parts of an IdP's metadata an SP connection needs."""

    entity_id: str
    sso_url: str
    certificates: tuple[str, ...]


# -- lazy imports (the optional "saml" extra) ---------------------------------------


def _etree() -> Any:
    try:
        from lxml import etree
    except ImportError as exc:  # pragma: no cover - the extra is installed in tests
        raise ExtraNotInstalled("SAML connections", "lxml") from exc
    return etree


def _signxml() -> Any:
    try:
        import signxml
    except ImportError as exc:  # pragma: no cover - the extra is installed in tests
        raise ExtraNotInstalled("SAML connections", "signxml") from exc
    return signxml


# -- AuthnRequest (HTTP-Redirect binding) -------------------------------------------


def new_request_id() -> str:
    """An xs:ID (must not start with a digit) of 128 random bits."""
    return "_" + secrets.token_hex(16)


def authn_request(
    idp: IdentityProvider,
    sp: ServiceProvider,
    *,
    relay_state: str,
    now: datetime,
    request_id: str | None = None,
) -> tuple[str, str]:
    """The URL that sends the browser to the IdP with an AuthnRequest, and the
    request's id (to be matched by the response's ``InResponseTo``).

    Signed per the HTTP-Redirect binding (rsa-sha256 over the query) when the SP has
    a signing key.
    """
    if len(relay_state.encode("utf-8")) > MAX_RELAY_STATE:
        raise ValueError(f"relay_state must be at most {MAX_RELAY_STATE} bytes")
    request_id = new_request_id() if request_id is None else request_id
    xml = _authn_request_xml(idp, sp, request_id, now)
    encoded = base64.b64encode(_deflate(xml)).decode("ascii")
    params = [("SAMLRequest", encoded), ("RelayState", relay_state)]
    query = urlencode(params)
    if sp.signing_key is not None:
        query = urlencode([*params, ("SigAlg", SIG_RSA_SHA256)])
        signature = sp.signing_key.sign(query.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
        query += "&" + urlencode([("Signature", base64.b64encode(signature).decode("ascii"))])
    separator = "&" if "?" in idp.sso_url else "?"
    return idp.sso_url + separator + query, request_id


def _authn_request_xml(
    idp: IdentityProvider, sp: ServiceProvider, request_id: str, now: datetime
) -> bytes:
    etree = _etree()
    root = etree.Element(_P + "AuthnRequest", nsmap={"samlp": NS_SAMLP, "saml": NS_SAML})
    root.set("ID", request_id)
    root.set("Version", "2.0")
    root.set("IssueInstant", format_datetime(now))
    root.set("Destination", idp.sso_url)
    root.set("AssertionConsumerServiceURL", sp.acs_url)
    root.set("ProtocolBinding", BINDING_POST)
    etree.SubElement(root, _A + "Issuer").text = sp.entity_id
    policy = etree.SubElement(root, _P + "NameIDPolicy")
    policy.set("Format", NAMEID_UNSPECIFIED)
    policy.set("AllowCreate", "true")
    return bytes(etree.tostring(root))


def _deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw DEFLATE, as the binding says
    return compressor.compress(data) + compressor.flush()


def format_datetime(moment: datetime) -> str:
    """xs:dateTime in UTC, as SAML requires."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_datetime(text: str | None) -> datetime:
    """A SAML time (UTC, ``Z``, fraction allowed and dropped); SSOFailed otherwise."""
    match = _DATETIME.fullmatch(text or "")
    if match is None:
        raise SSOFailed("malformed")
    try:
        return datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        raise SSOFailed("malformed") from None


# -- hardened parsing ---------------------------------------------------------------


def parse_xml(data: bytes) -> Any:
    """Parse untrusted XML: no DTD (so no entity of any kind), no network, no huge
    trees; comments kept (the signature layer drops them from what is signed)."""
    etree = _etree()
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_pis=True,
    )
    try:
        root = etree.fromstring(data, parser=parser)
    except etree.XMLSyntaxError:
        raise SSOFailed("malformed") from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise SSOFailed("dtd")
    if any(isinstance(node, etree._Entity) for node in root.iter()):
        raise SSOFailed("dtd")
    return root


def _decode_response(saml_response: object) -> bytes:
    if not isinstance(saml_response, str | bytes):
        raise SSOFailed("malformed")
    if len(saml_response) > MAX_RESPONSE_CHARS:
        raise SSOFailed("too_large")
    text = (
        saml_response.encode("ascii", "replace")
        if isinstance(saml_response, str)
        else saml_response
    )
    try:
        return base64.b64decode(b"".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise SSOFailed("malformed") from None


def store_replay_check(store: Store, connection_id: str, now: datetime) -> ReplayCheck:
    """The replay check of one connection, kept in ``store`` (atomic, all processes)."""

    def first_use(assertion_id: str, keep_until: datetime) -> bool:
        return store.use_saml_assertion_id(connection_id, assertion_id, keep_until, now)

    return first_use


# -- verifying a response -----------------------------------------------------------


def verify_response(
    saml_response: object,
    *,
    idp: IdentityProvider,
    sp: ServiceProvider,
    expected_request_id: str | None,
    now: datetime,
    replay_check: ReplayCheck,
    skew: timedelta = MAX_CLOCK_SKEW,
) -> VerifiedAssertion:
    """Verify a POSTed ``SAMLResponse`` (base64) and return what its assertion says.

    ``expected_request_id`` is the id of the AuthnRequest this browser was sent with;
    ``None`` accepts only an unsolicited (IdP-initiated) response, and only when the
    IdP allows it. ``replay_check`` is called last, once everything else holds.
    Raises :class:`~authsome.errors.SSOFailed` for any refusal.
    """
    if skew < timedelta(0) or skew > MAX_CLOCK_SKEW:
        raise ValueError("skew must be between 0 and MAX_CLOCK_SKEW")
    if expected_request_id is None and not idp.allow_idp_initiated:
        raise SSOFailed("unsolicited")
    root = parse_xml(_decode_response(saml_response))
    _check_response_envelope(root, idp, sp, expected_request_id)
    assertion = _signed_assertion(root, idp, sp, now)
    verified = _read_assertion(assertion, idp, sp, expected_request_id, now, skew)
    if not replay_check(verified.assertion_id, verified.not_on_or_after + skew):
        raise SSOFailed("replayed")
    return verified


def _check_response_envelope(
    root: Any, idp: IdentityProvider, sp: ServiceProvider, expected: str | None
) -> None:
    """The Response's own fields. Unsigned when only the assertion is signed, so they
    only ever refuse; what is trusted comes from the signed assertion."""
    if root.tag != _P + "Response" or root.get("Version") != "2.0":
        raise SSOFailed("malformed")
    issuers = root.findall(f"{_A}Issuer")
    if len(issuers) > 1 or (issuers and _text(issuers[0]) != idp.entity_id):
        raise SSOFailed("issuer")
    destination = root.get("Destination")
    if destination is not None and destination != sp.acs_url:
        raise SSOFailed("destination")
    in_response_to = root.get("InResponseTo")
    if in_response_to is not None and in_response_to != expected:
        raise SSOFailed("in_response_to")
    status = root.findall(f"{_P}Status/{_P}StatusCode")
    if len(status) != 1 or status[0].get("Value") != STATUS_SUCCESS:
        raise SSOFailed("status")


def _signed_assertion(root: Any, idp: IdentityProvider, sp: ServiceProvider, now: datetime) -> Any:
    """The one assertion, as re-read from what a signature by the IdP covers.

    Exactly one ``Assertion`` in the whole document, a direct child of the Response
    (wrapping attacks add a second one or move it). When the Response carries a
    signature the Response itself must be what it signs; otherwise the assertion
    must be signed itself.
    """
    assertion = _the_one_assertion(root)
    if root.find(f"{_D}Signature") is not None:
        signed = _verified_element(root, idp, now)
        if signed.tag != _P + "Response":
            raise SSOFailed("signature")
        covered = _the_one_assertion(signed)
        if covered.tag == _A + "EncryptedAssertion":
            # The response's signature covers the ciphertext: decrypted after it. The
            # namespaces in scope come from the document as sent (canonicalization
            # dropped the ones only the ciphertext's plaintext uses).
            decrypted = _decrypted(covered, sp, authenticated=True, scope=assertion.nsmap)
            return _one_assertion_of(decrypted)
        return covered
    if assertion.tag == _A + "EncryptedAssertion":
        decrypted = _decrypted(assertion, sp, authenticated=False, scope=assertion.nsmap)
        assertion = _one_assertion_of(decrypted)
    if assertion.find(f"{_D}Signature") is None:
        raise SSOFailed("unsigned")
    signed = _verified_element(assertion, idp, now)
    if signed.tag != _A + "Assertion":
        raise SSOFailed("signature")
    return signed


def _the_one_assertion(root: Any) -> Any:
    """The Response's only assertion, plain or encrypted: a second one anywhere in the
    document (what signature wrapping adds) or one not directly under the Response
    is refused."""
    found = root.findall(f".//{_A}Assertion") + root.findall(f".//{_A}EncryptedAssertion")
    if len(found) != 1 or found[0].getparent() is not root:
        raise SSOFailed("assertion_count")
    if found[0].tag == _A + "Assertion" and not 0 < len(found[0].get("ID") or "") <= MAX_ID:
        raise SSOFailed("malformed")  # bounded before it reaches the replay store
    return found[0]


def _one_assertion_of(decrypted: Any) -> Any:
    """The decrypted element must be one assertion with no other inside."""
    if decrypted.tag != _A + "Assertion" or decrypted.findall(f".//{_A}Assertion"):
        raise SSOFailed("assertion_count")
    if not 0 < len(decrypted.get("ID") or "") <= MAX_ID:
        raise SSOFailed("malformed")
    return decrypted


# -- encrypted assertions (XML Encryption) ---------------------------------------------

_AES_GCM = {
    f"{NS_XENC11}aes128-gcm": 16,
    f"{NS_XENC11}aes256-gcm": 32,
}
_AES_CBC = {
    f"{NS_XENC}aes128-cbc": 16,
    f"{NS_XENC}aes256-cbc": 32,
}
_RSA_OAEP = {f"{NS_XENC}rsa-oaep-mgf1p", f"{NS_XENC11}rsa-oaep"}
_OAEP_DIGESTS: dict[str, hashes.HashAlgorithm] = {
    f"{NS_DS}sha1": hashes.SHA1(),  # noqa: S303 - OAEP's SHA-1 is not a signature hash
    f"{NS_XENC}sha256": hashes.SHA256(),
    f"{NS_XENC}sha512": hashes.SHA512(),
}
_OAEP_MGFS: dict[str, hashes.HashAlgorithm] = {
    f"{NS_XENC11}mgf1sha1": hashes.SHA1(),  # noqa: S303 - as above
    f"{NS_XENC11}mgf1sha256": hashes.SHA256(),
    f"{NS_XENC11}mgf1sha512": hashes.SHA512(),
}


def _decrypted(
    encrypted: Any, sp: ServiceProvider, *, authenticated: bool, scope: Mapping[str | None, str]
) -> Any:
    """The element an ``EncryptedAssertion`` holds, decrypted with the SP's key.

    Key transport RSA-OAEP only (PKCS#1 v1.5 invites Bleichenbacher's attack); content
    AES-GCM, or AES-CBC only when a verified response signature covers the ciphertext
    (unauthenticated CBC is a padding oracle). Every failure gives one reason.
    """
    if sp.signing_key is None:
        raise SSOFailed("encrypted")
    data = _one(encrypted, f"{_X}EncryptedData")
    algorithm = _one(data, f"{_X}EncryptionMethod").get("Algorithm")
    allowed = _AES_GCM | _AES_CBC if authenticated else _AES_GCM
    if algorithm not in allowed:
        raise SSOFailed("encrypted")
    try:
        key = _content_key(encrypted, data, sp.signing_key)
        ciphertext = base64.b64decode(_text(_one(data, f"{_X}CipherData/{_X}CipherValue")))
        if len(key) != allowed[algorithm]:
            raise ValueError("key size")
        plaintext = _decrypt_content(algorithm, key, ciphertext)
        return _parse_in_scope(plaintext, scope)
    except (ValueError, SSOFailed, InvalidTag):
        raise SSOFailed("decryption") from None


def _content_key(encrypted: Any, data: Any, private_key: rsa.RSAPrivateKey) -> bytes:
    """The content key from the one ``EncryptedKey`` (inside the data's KeyInfo, or
    beside the data as some IdPs put it)."""
    keys = data.findall(f"{_D}KeyInfo/{_X}EncryptedKey") + encrypted.findall(f"{_X}EncryptedKey")
    if len(keys) != 1:
        raise ValueError("encrypted key")
    method = _one(keys[0], f"{_X}EncryptionMethod")
    if method.get("Algorithm") not in _RSA_OAEP:
        raise ValueError("key transport")
    digest = _oaep_choice(method, f"{_D}DigestMethod", _OAEP_DIGESTS, f"{NS_DS}sha1")
    mgf = _oaep_choice(method, f"{_X11}MGF", _OAEP_MGFS, f"{NS_XENC11}mgf1sha1")
    wrapped = base64.b64decode(_text(_one(keys[0], f"{_X}CipherData/{_X}CipherValue")))
    oaep = padding.OAEP(mgf=padding.MGF1(mgf), algorithm=digest, label=None)
    return private_key.decrypt(wrapped, oaep)


def _oaep_choice(
    method: Any, path: str, choices: dict[str, hashes.HashAlgorithm], default: str
) -> hashes.HashAlgorithm:
    found = method.findall(path)
    if len(found) > 1 or (found and found[0].get("Algorithm") not in choices):
        raise ValueError("oaep parameter")
    return choices[found[0].get("Algorithm") if found else default]


def _decrypt_content(algorithm: str, key: bytes, ciphertext: bytes) -> bytes:
    if algorithm in _AES_GCM:  # 96-bit IV, then ciphertext and 128-bit tag
        return AESGCM(key).decrypt(ciphertext[:12], ciphertext[12:], None)
    iv, body = ciphertext[:16], ciphertext[16:]
    if not body or len(body) % 16:
        raise ValueError("cbc length")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(body) + decryptor.finalize()
    if not 1 <= padded[-1] <= 16:  # XML Encryption's padding: the last byte counts
        raise ValueError("cbc padding")
    return padded[: -padded[-1]]


def _parse_in_scope(plaintext: bytes, scope: Mapping[str | None, str]) -> Any:
    """Parse the decrypted element with the namespace declarations in scope where it
    was encrypted (XML Encryption serializes the element without its ancestors').
    Hardened like the response: a DTD in element content does not even parse."""
    etree = _etree()
    wrapper = etree.Element("wrapper", nsmap=dict(scope))
    opening = etree.tostring(wrapper).replace(b"/>", b">")
    root = parse_xml(opening + plaintext + b"</wrapper>")
    children = [child for child in root if isinstance(child.tag, str)]
    if len(children) != 1:
        raise ValueError("decrypted content")
    return children[0]


def _verified_element(element: Any, idp: IdentityProvider, now: datetime) -> Any:
    """The element a signature enveloped in ``element`` covers, from its canonical
    form, when it is ``element`` itself (same ID) and a certificate of the IdP made
    the signature; SSOFailed otherwise."""
    signxml = _signxml()
    element_id = element.get("ID")
    if not element_id:
        raise SSOFailed("signature")
    config = signxml.SignatureConfiguration(location="./", verification_time=now)
    for certificate in idp.certificates:
        try:
            result = signxml.XMLVerifier().verify(
                element, x509_cert=certificate, expect_config=config, id_attribute="ID"
            )
        except Exception:  # noqa: S112 - attacker-made input: any failure is "not verified"
            # signxml raises its own errors, lxml's, and on some malformed signatures
            # plain TypeError/AttributeError; another certificate of the IdP may
            # still have made it (rollover).
            continue
        signed = result.signed_xml
        if signed is not None and signed.get("ID") == element_id and signed.tag == element.tag:
            return signed
        raise SSOFailed("signature")
    raise SSOFailed("signature")


def _read_assertion(
    assertion: Any,
    idp: IdentityProvider,
    sp: ServiceProvider,
    expected: str | None,
    now: datetime,
    skew: timedelta,
) -> VerifiedAssertion:
    if assertion.get("Version") != "2.0" or not 0 < len(assertion.get("ID") or "") <= MAX_ID:
        raise SSOFailed("malformed")
    if _text(_one(assertion, f"{_A}Issuer")) != idp.entity_id:
        raise SSOFailed("issuer")
    subject = _one(assertion, f"{_A}Subject")
    name_id = _one(subject, f"{_A}NameID")
    confirmation_until, in_response_to = _check_confirmation(subject, sp, expected, now, skew)
    conditions_until = _check_conditions(_one(assertion, f"{_A}Conditions"), sp, now, skew)
    if not assertion.findall(f"{_A}AuthnStatement"):
        raise SSOFailed("malformed")
    name = _text(name_id)
    if not name:
        raise SSOFailed("malformed")
    return VerifiedAssertion(
        issuer=idp.entity_id,
        name_id=name,
        name_id_format=name_id.get("Format") or NAMEID_UNSPECIFIED,
        attributes=MappingProxyType(_attributes(assertion)),
        not_on_or_after=min(confirmation_until, conditions_until),
        assertion_id=assertion.get("ID"),
        in_response_to=in_response_to,
    )


def _check_confirmation(
    subject: Any, sp: ServiceProvider, expected: str | None, now: datetime, skew: timedelta
) -> tuple[datetime, str | None]:
    """A bearer confirmation for our ACS, unexpired, answering our request (or none
    when unsolicited): its NotOnOrAfter and InResponseTo."""
    for confirmation in subject.findall(f"{_A}SubjectConfirmation"):
        if confirmation.get("Method") != CM_BEARER:
            continue
        data = _one(confirmation, f"{_A}SubjectConfirmationData")
        if data.get("Recipient") != sp.acs_url:
            raise SSOFailed("recipient")
        if data.get("NotBefore") is not None:
            raise SSOFailed("malformed")  # forbidden for bearer by the profile
        until = parse_datetime(data.get("NotOnOrAfter"))
        if now >= until + skew:
            raise SSOFailed("expired")
        in_response_to = data.get("InResponseTo")
        if in_response_to != expected:
            raise SSOFailed("unsolicited" if expected is None else "in_response_to")
        return until, in_response_to
    raise SSOFailed("malformed")


def _check_conditions(
    conditions: Any, sp: ServiceProvider, now: datetime, skew: timedelta
) -> datetime:
    not_before = conditions.get("NotBefore")
    if not_before is not None and now + skew < parse_datetime(not_before):
        raise SSOFailed("not_yet_valid")
    until = parse_datetime(conditions.get("NotOnOrAfter"))
    if now >= until + skew:
        raise SSOFailed("expired")
    restrictions = conditions.findall(f"{_A}AudienceRestriction")
    if not restrictions:
        raise SSOFailed("audience")
    for restriction in restrictions:  # each restriction must include us
        audiences = [_text(a) for a in restriction.findall(f"{_A}Audience")]
        if sp.entity_id not in audiences:
            raise SSOFailed("audience")
    return until


def _attributes(assertion: Any) -> dict[str, tuple[str, ...]]:
    """Each attribute's text values by ``Name``; a structured value (an element
    inside, such as a NameID) is left out, as nothing here maps one."""
    found: dict[str, tuple[str, ...]] = {}
    statements = assertion.findall(f"{_A}AttributeStatement/{_A}Attribute")
    if len(statements) > MAX_ATTRIBUTES:
        raise SSOFailed("too_large")
    for attribute in statements:
        name = attribute.get("Name")
        values = attribute.findall(f"{_A}AttributeValue")
        if not name or len(values) > MAX_VALUES:
            raise SSOFailed("malformed")
        texts = tuple(_text(value) for value in values if not _has_child_element(value))
        found[name] = found.get(name, ()) + texts
    return found


def _one(parent: Any, path: str) -> Any:
    found = parent.findall(path)
    if len(found) != 1:
        raise SSOFailed("malformed")
    return found[0]


def _text(element: Any) -> str:
    """The element's string value: all its text nodes joined, comments skipped (so
    ``a<!---->b`` reads ``ab``), surrounding whitespace dropped. A child element is
    refused: these values are simple text."""
    if _has_child_element(element):
        raise SSOFailed("malformed")
    return str(element.xpath("string()")).strip()


def _has_child_element(element: Any) -> bool:
    return any(isinstance(child.tag, str) for child in element)  # comments have no str tag


# -- metadata -----------------------------------------------------------------------


def sp_metadata(sp: ServiceProvider) -> str:
    """Our SP metadata: entity id, ACS (HTTP-POST), signing certificate if any."""
    etree = _etree()
    root = etree.Element(_M + "EntityDescriptor", nsmap={"md": NS_MD, "ds": NS_DS})
    root.set("entityID", sp.entity_id)
    descriptor = etree.SubElement(root, _M + "SPSSODescriptor")
    descriptor.set("protocolSupportEnumeration", NS_SAMLP)
    descriptor.set("AuthnRequestsSigned", "true" if sp.signing_key is not None else "false")
    descriptor.set("WantAssertionsSigned", "true")
    if sp.certificate is not None:
        key = etree.SubElement(descriptor, _M + "KeyDescriptor")  # no "use": both
        data = etree.SubElement(etree.SubElement(key, _D + "KeyInfo"), _D + "X509Data")
        etree.SubElement(data, _D + "X509Certificate").text = _pem_body(sp.certificate)
    etree.SubElement(descriptor, _M + "NameIDFormat").text = NAMEID_PERSISTENT
    acs = etree.SubElement(descriptor, _M + "AssertionConsumerService")
    acs.set("Binding", BINDING_POST)
    acs.set("Location", sp.acs_url)
    acs.set("index", "0")
    acs.set("isDefault", "true")
    return str(etree.tostring(root, xml_declaration=True, encoding="UTF-8").decode("utf-8"))


def parse_idp_metadata(xml: str | bytes) -> IdPMetadata:
    """An IdP's entity id, HTTP-Redirect SSO URL and signing certificates from its
    metadata (an ``EntityDescriptor``, or an ``EntitiesDescriptor`` holding exactly
    one IdP). Raises SSOFailed("metadata") when any of them is missing."""
    data = xml.encode("utf-8") if isinstance(xml, str) else xml
    if len(data) > MAX_METADATA_CHARS:
        raise SSOFailed("too_large")
    root = parse_xml(data)
    entities = (
        [root] if root.tag == _M + "EntityDescriptor" else root.findall(f".//{_M}EntityDescriptor")
    )
    idps = [(e, d) for e in entities for d in e.findall(f"{_M}IDPSSODescriptor")]
    if (
        len(idps) != 1
        or NS_SAMLP not in (idps[0][1].get("protocolSupportEnumeration") or "").split()
    ):
        raise SSOFailed("metadata")
    entity, descriptor = idps[0]
    sso = [
        s.get("Location")
        for s in descriptor.findall(f"{_M}SingleSignOnService")
        if s.get("Binding") == BINDING_REDIRECT and s.get("Location")
    ]
    certificates = tuple(dict.fromkeys(_signing_certificates(descriptor)))
    if not entity.get("entityID") or not sso or not certificates:
        raise SSOFailed("metadata")
    return IdPMetadata(entity_id=entity.get("entityID"), sso_url=sso[0], certificates=certificates)


def _signing_certificates(descriptor: Any) -> Iterator[str]:
    for key in descriptor.findall(f"{_M}KeyDescriptor"):
        if key.get("use") not in (None, "signing"):
            continue
        for element in key.findall(f"{_D}KeyInfo/{_D}X509Data/{_D}X509Certificate"):
            yield _pem_from_base64(_text(element))


def _pem_from_base64(text: str) -> str:
    try:
        der = base64.b64decode("".join(text.split()), validate=True)
        certificate = x509.load_der_x509_certificate(der)
    except (binascii.Error, ValueError):
        raise SSOFailed("metadata") from None
    return certificate.public_bytes(Encoding.PEM).decode("ascii")


def _pem_body(pem: str) -> str:
    certificate = x509.load_pem_x509_certificate(pem.strip().encode("ascii"))
    return base64.b64encode(certificate.public_bytes(Encoding.DER)).decode("ascii")
