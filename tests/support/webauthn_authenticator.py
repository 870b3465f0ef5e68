"""A software WebAuthn authenticator and browser, for end-to-end passkey tests.

It answers the options JSON a relying party hands out with the JSON a browser
would send back: a real "none"-attestation registration with an EC P-256 key
(authenticatorData with UP|UV|AT, attested credential data, the COSE public key)
and real assertions signed over ``authenticatorData || SHA-256(clientDataJSON)``.
It is built from the specification with ``cryptography`` and a small CBOR encoder
of its own, so nothing in it comes from the verifier under test.

Knobs let a test produce the faulty responses an attacker or a broken client
would: another origin, rp id, challenge or counter, a bad signature.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import struct
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = ["SoftwareAuthenticator", "StoredCredential", "b64url", "cbor", "unb64url"]

FLAG_UP = 0x01  # user present
FLAG_UV = 0x04  # user verified
FLAG_AT = 0x40  # attested credential data included

COSE_KTY_EC2 = 2
COSE_ALG_ES256 = -7
COSE_CRV_P256 = 1


def b64url(data: bytes) -> str:
    """Base64url without padding, as WebAuthn JSON uses it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    """Decode :func:`b64url` (padding optional)."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# -- a minimal CBOR encoder (RFC 8949): what attestation objects and COSE keys need --


def _cbor_head(major: int, value: int) -> bytes:
    if value < 24:
        return bytes([major << 5 | value])
    for info, fmt in ((24, ">B"), (25, ">H"), (26, ">I"), (27, ">Q")):
        if value < 1 << (8 * struct.calcsize(fmt)):
            return bytes([major << 5 | info]) + struct.pack(fmt, value)
    raise ValueError("integer too large for CBOR")


def cbor(value: object) -> bytes:
    """Encode ints, bytes, text, lists and dicts (in the given key order) as CBOR."""
    if isinstance(value, bool) or value is None:
        raise TypeError("not needed here")
    if isinstance(value, int):
        return _cbor_head(0, value) if value >= 0 else _cbor_head(1, -1 - value)
    if isinstance(value, bytes):
        return _cbor_head(2, len(value)) + value
    if isinstance(value, str):
        encoded = value.encode("utf-8")
        return _cbor_head(3, len(encoded)) + encoded
    if isinstance(value, list):
        return _cbor_head(4, len(value)) + b"".join(cbor(item) for item in value)
    if isinstance(value, dict):
        items = b"".join(cbor(k) + cbor(v) for k, v in value.items())
        return _cbor_head(5, len(value)) + items
    raise TypeError(f"cannot CBOR-encode {type(value).__name__}")


def _cose_public_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    numbers = key.public_key().public_numbers()
    return cbor(
        {
            1: COSE_KTY_EC2,
            3: COSE_ALG_ES256,
            -1: COSE_CRV_P256,
            -2: numbers.x.to_bytes(32, "big"),
            -3: numbers.y.to_bytes(32, "big"),
        }
    )


@dataclass
class StoredCredential:
    """A credential the authenticator holds (a discoverable one: it keeps the user)."""

    credential_id: bytes
    private_key: ec.EllipticCurvePrivateKey
    rp_id: str
    user_handle: bytes
    sign_count: int = 0


class SoftwareAuthenticator:
    """An authenticator with its browser: ``register`` and ``authenticate`` return
    the response JSON of ``navigator.credentials.create()`` / ``.get()``.

    ``counter_step=0`` imitates authenticators without a signature counter.
    """

    def __init__(self, *, counter_step: int = 1, aaguid: bytes = bytes(16)) -> None:
        self.counter_step = counter_step
        self.aaguid = aaguid
        self.credentials: dict[bytes, StoredCredential] = {}

    # -- registration ------------------------------------------------------------
    def register(
        self,
        options_json: str,
        *,
        origin: str,
        rp_id: str | None = None,
        challenge: bytes | None = None,
        flags: int = FLAG_UP | FLAG_UV | FLAG_AT,
        transports: tuple[str, ...] = ("hybrid", "internal"),
        credential_id: bytes | None = None,
    ) -> str:
        """Create a credential for the options' rp and user; return the response JSON.

        ``rp_id`` and ``challenge`` default to what the options ask for; passing
        others makes a response for another relying party or ceremony.
        """
        options = json.loads(options_json)
        rp_id = options["rp"]["id"] if rp_id is None else rp_id
        challenge = unb64url(options["challenge"]) if challenge is None else challenge
        cred_id = secrets.token_bytes(16) if credential_id is None else credential_id
        key = ec.generate_private_key(ec.SECP256R1())
        stored = StoredCredential(cred_id, key, rp_id, unb64url(options["user"]["id"]))
        self.credentials[cred_id] = stored
        attested = self.aaguid + struct.pack(">H", len(cred_id)) + cred_id + _cose_public_key(key)
        auth_data = self._auth_data(rp_id, flags, stored.sign_count) + attested
        client_data = _client_data("webauthn.create", challenge, origin)
        attestation = cbor({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return _credential_json(
            cred_id,
            {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation),
                "transports": list(transports),
            },
        )

    # -- authentication ----------------------------------------------------------
    def authenticate(
        self,
        options_json: str,
        *,
        origin: str,
        credential_id: bytes | None = None,
        rp_id: str | None = None,
        challenge: bytes | None = None,
        sign_count: int | None = None,
        flags: int = FLAG_UP | FLAG_UV,
        corrupt_signature: bool = False,
        user_handle: bytes | None = None,
    ) -> str:
        """Sign an assertion for the options' challenge; return the response JSON.

        Uses ``credential_id`` or else the first allowed credential it holds (or any
        it holds for the rp, as with a discoverable credential). The counter moves
        by ``counter_step`` unless ``sign_count`` forces a value.
        """
        options = json.loads(options_json)
        stored = self._pick(options, credential_id)
        rp_id = stored.rp_id if rp_id is None else rp_id
        challenge = unb64url(options["challenge"]) if challenge is None else challenge
        if sign_count is None:
            stored.sign_count += self.counter_step
            sign_count = stored.sign_count
        auth_data = self._auth_data(rp_id, flags, sign_count)
        client_data = _client_data("webauthn.get", challenge, origin)
        signed = auth_data + hashlib.sha256(client_data).digest()
        signature = stored.private_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        if corrupt_signature:
            # Sign something else: a well-formed signature that does not verify.
            signature = stored.private_key.sign(signed + b"!", ec.ECDSA(hashes.SHA256()))
        handle = stored.user_handle if user_handle is None else user_handle
        return _credential_json(
            stored.credential_id,
            {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": b64url(handle),
            },
        )

    def _pick(self, options: dict[str, Any], credential_id: bytes | None) -> StoredCredential:
        if credential_id is not None:
            return self.credentials[credential_id]
        allowed = [unb64url(c["id"]) for c in options.get("allowCredentials", [])]
        for cred_id, stored in self.credentials.items():
            if (cred_id in allowed) if allowed else stored.rp_id == options["rpId"]:
                return stored
        raise LookupError("no matching credential on this authenticator")

    @staticmethod
    def _auth_data(rp_id: str, flags: int, sign_count: int) -> bytes:
        rp_id_hash = hashlib.sha256(rp_id.encode("utf-8")).digest()
        return rp_id_hash + bytes([flags]) + struct.pack(">I", sign_count)


def _client_data(kind: str, challenge: bytes, origin: str) -> bytes:
    return json.dumps(
        {"type": kind, "challenge": b64url(challenge), "origin": origin, "crossOrigin": False},
        separators=(",", ":"),
    ).encode("utf-8")


def _credential_json(cred_id: bytes, response: dict[str, Any]) -> str:
    return json.dumps(
        {
            "id": b64url(cred_id),
            "rawId": b64url(cred_id),
            "type": "public-key",
            "response": response,
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
        }
    )
