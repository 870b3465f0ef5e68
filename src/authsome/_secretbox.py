"""Authenticated encryption of secrets kept at rest (AES-256-GCM).

Used for secrets the library must be able to read back, unlike bearer tokens and
passwords, which are only ever stored as hashes: e.g. an SSO connection's OAuth
``client_secret``, which the sign-in flow has to present to the identity provider.

A sealed token is ``v1.`` followed by the unpadded URL-safe base64 of a random
96-bit nonce and the ciphertext with its 128-bit tag. The ``aad`` (associated
data) binds a token to its place, e.g. one connection's id, so a token copied
into another row does not open there.
"""

from __future__ import annotations

import base64
import binascii
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from authsome.errors import AuthsomeError

__all__ = ["KEY_BYTES", "SecretBox", "SecretBoxError"]

KEY_BYTES = 32  # AES-256
_NONCE_BYTES = 12  # the 96-bit nonce GCM is specified for; random, so never reused in practice
_TAG_BYTES = 16
_VERSION = "v1."


class SecretBoxError(AuthsomeError, ValueError):
    """A sealed secret could not be opened: wrong key, wrong ``aad``, tampered or
    malformed token. The message never says which, nor holds the token."""

    def __init__(self, message: str = "the secret could not be decrypted") -> None:
        super().__init__(message)


class SecretBox:
    """Seal and open short secrets with one 32-byte key (AES-256-GCM).

    The key should come from a secrets manager, e.g. ``secrets.token_bytes(32)``
    generated once. Losing it makes every sealed secret unreadable.
    """

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes):
            raise TypeError(f"secret_key must be bytes, not {type(key).__name__}")
        if len(key) != KEY_BYTES:
            raise ValueError(f"secret_key must be exactly {KEY_BYTES} bytes")
        self._aead = AESGCM(key)

    def seal(self, plaintext: str, *, aad: str) -> str:
        """Encrypt ``plaintext`` bound to ``aad``; a fresh random nonce every call."""
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode("utf-8"), aad.encode("utf-8"))
        return _VERSION + base64.urlsafe_b64encode(nonce + sealed).decode("ascii").rstrip("=")

    def open(self, token: str, *, aad: str) -> str:
        """Decrypt a token made by :meth:`seal` with the same key and ``aad``.

        Raises :class:`SecretBoxError` when the token is malformed, was tampered
        with, or was sealed under another key or ``aad``.
        """
        given: object = token  # typed str, but stored data may be anything
        if not isinstance(given, str) or not given.startswith(_VERSION):
            raise SecretBoxError("the sealed secret is malformed")
        body = given[len(_VERSION) :]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            raise SecretBoxError("the sealed secret is malformed") from None
        if len(raw) < _NONCE_BYTES + _TAG_BYTES:
            raise SecretBoxError("the sealed secret is malformed")
        nonce, sealed = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
        try:
            plain = self._aead.decrypt(nonce, sealed, aad.encode("utf-8"))
        except InvalidTag:
            raise SecretBoxError() from None
        return plain.decode("utf-8")

    def __repr__(self) -> str:
        return "SecretBox(<key hidden>)"
