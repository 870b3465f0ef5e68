"""Passkeys: WebAuthn registration and passwordless sign-in, verified by py_webauthn.

Both ceremonies have two steps. ``begin_*`` returns the options JSON for the
browser's ``navigator.credentials.create()`` / ``.get()`` and stores a single-use
challenge (only its hash), valid for five minutes on the engine's clock and bound to
the ceremony, the relying party (``rp_id`` and ``origin``), the tenant and, when
known, the user. ``finish_*`` takes the browser's response JSON, consumes that
challenge and verifies the response against it.

Registration is plan-gated (``authsome.feature.passkeys``, checked in both steps
before anything is stored). A completed passkey sign-in is a sign-in like any other:
it creates a session and records ``authsome.sessions.created`` and
``authsome.users.active``.

User verification (PIN, biometrics) is required in both ceremonies: a passkey
replaces the password, so possession of the device alone must not be enough.

The ``webauthn`` package is an optional extra: ``pip install "authsome-engine[passkeys]"``.
Without it every method raises :class:`~authsome.errors.ExtraNotInstalled`.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import importlib
import json
import secrets
from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from authsome import _validation as v
from authsome._billing import Billing
from authsome._keys import PurposeKeys
from authsome._signin import SignInFlow
from authsome._time import Clock
from authsome._units import one_commit
from authsome.bridge import LedgerContext
from authsome.crypto import sha256_hex
from authsome.errors import (
    AuthsomeError,
    ExtraNotInstalled,
    InvalidCredentials,
    NotFound,
    ValidationError,
)
from authsome.features import Feature
from authsome.models import (
    Passkey,
    PasskeyCeremony,
    PasskeyChallenge,
    SessionTokens,
    SignIn,
    User,
)
from authsome.sessions import Client
from authsome.stores import Store

if TYPE_CHECKING:  # the optional extra; imported lazily at run time
    from webauthn.helpers.structs import AuthenticationCredential, PublicKeyCredentialDescriptor

__all__ = ["CHALLENGE_TTL", "MAX_RESPONSE", "Passkeys"]

CHALLENGE_TTL = timedelta(minutes=5)
"""How long a ceremony's challenge can be answered."""

MAX_RESPONSE = 64 * 1024
"""Largest response JSON accepted, in characters; real ones are a few KiB."""

_CHALLENGE_BYTES = 32
_MAX_CREDENTIAL_ID = 1023  # bytes, WebAuthn Level 2 §5.1
_MAX_TRANSPORTS = 8
_MAX_RP_ID = 253
_LOCALHOST = "localhost"
# Decoy allow-lists for e-mails without passkeys copy the shape of a real user's
# list; while the tenant has no passkey for the relying party, one credential id of
# a common platform-passkey length, with the transports of a phone or laptop passkey.
_DECOY_ID_BYTES = 16
_DECOY_TRANSPORTS = ("hybrid", "internal")
_DECOY_PURPOSE = "authsome.passkeys.decoy-credential-ids.v1"

# The lazy importer, a seam so tests can simulate a missing extra without uninstalling.
_import_module = importlib.import_module


def _require_webauthn() -> None:
    """Raise :class:`ExtraNotInstalled` unless py_webauthn can be imported."""
    try:
        _import_module("webauthn")
    except ImportError as exc:
        raise ExtraNotInstalled("passkeys", "webauthn") from exc


@contextlib.contextmanager
def _as_invalid_credentials() -> Iterator[None]:
    """Turn any failure of parsing or verifying a response into one generic error.

    The response is attacker-controlled and py_webauthn, cbor2, base64 and
    cryptography each raise their own exception types on bad input; a caller must
    only ever see :class:`InvalidCredentials`. Our own errors pass through.
    """
    try:
        yield
    except AuthsomeError:
        raise
    except Exception as exc:  # untrusted input: every parser failure means "invalid"
        raise InvalidCredentials() from exc


# -- input checks --------------------------------------------------------------------


def _check_rp_id(rp_id: object) -> str:
    """A relying party id: a lowercase DNS name (not an IP address), or ``localhost``."""
    text = v.require_str("rp_id", rp_id)
    labels = text.split(".")
    valid = (
        0 < len(text) <= _MAX_RP_ID
        and text.isascii()
        and text == text.lower()
        and all(_is_dns_label(label) for label in labels)
        and not labels[-1].isdigit()
    )
    if not valid:
        raise ValidationError("rp_id must be a lowercase domain name such as example.com")
    return text


def _is_dns_label(label: str) -> bool:
    return (
        0 < len(label) <= 63
        and label[0] != "-"
        and label[-1] != "-"
        and all(ch.isalnum() or ch == "-" for ch in label)
    )


def _check_origin(origin: object, rp_id: str) -> str:
    """The web origin of the ceremony, normalized as browsers send it.

    ``https`` (``http`` only for ``localhost``), no path, query or credentials, and
    a host equal to ``rp_id`` or a subdomain of it, as WebAuthn requires.
    """
    text = v.require_str("origin", origin)
    try:
        parts = urlsplit(text)
        host, port = parts.hostname, parts.port
    except ValueError:
        raise ValidationError("origin must be a URL such as https://example.com") from None
    secure = parts.scheme == "https" or (parts.scheme == "http" and host == _LOCALHOST)
    bare = parts.path in {"", "/"} and not (parts.query or parts.fragment or parts.username)
    if not secure or not bare or not host:
        raise ValidationError(
            "origin must be https://host[:port] (http only for localhost), without a path"
        )
    if host != rp_id and not host.endswith("." + rp_id):
        raise ValidationError("origin's host must be rp_id or one of its subdomains")
    default_port = 443 if parts.scheme == "https" else 80
    suffix = "" if port in {None, default_port} else f":{port}"
    return f"{parts.scheme}://{host}{suffix}"


def _check_rp_name(rp_name: object) -> str:
    text = v.check_display_text("rp_name", rp_name, v.MAX_NAME)
    if not text:
        raise ValidationError(f"rp_name must be 1..{v.MAX_NAME} non-blank characters")
    return text


def _check_response(response_json: object) -> str:
    text = v.require_str("response_json", response_json)
    if not text or len(text) > MAX_RESPONSE:
        raise ValidationError(f"response_json must be 1..{MAX_RESPONSE} characters")
    return text


# -- challenges ----------------------------------------------------------------------


def _challenge_hash(challenge: bytes) -> str:
    # Hash the decoded bytes, so any base64url spelling of one challenge finds it.
    return sha256_hex(challenge.hex())


def _client_challenge(client_data_json: bytes) -> bytes:
    """The challenge the browser signed, read from ``clientDataJSON``."""
    from webauthn.helpers import base64url_to_bytes

    data = json.loads(client_data_json)
    challenge = data.get("challenge") if isinstance(data, dict) else None
    if not isinstance(challenge, str) or not challenge:
        raise InvalidCredentials()
    return base64url_to_bytes(challenge)


class Passkeys:
    """``auth.passkeys``: register WebAuthn credentials and sign in with them."""

    def __init__(
        self,
        store: Store,
        billing: Billing,
        sign_in: SignInFlow,
        clock: Clock,
        *,
        secret_key: bytes | None = None,
    ) -> None:
        """``secret_key`` (the engine's) keys the decoy credential ids of
        :meth:`begin_authentication`; without it a random key the store keeps is
        used. Either way they stay the same across restarts and processes."""
        self._store = store
        self._billing = billing
        self._sign_in = sign_in
        self._clock = clock
        self._purpose_keys = PurposeKeys(store, secret_key)

    # -- registration ------------------------------------------------------------
    def begin_registration(self, user_id: str, *, rp_id: str, rp_name: str, origin: str) -> str:
        """Start registering a passkey for the user; return the creation options JSON.

        Checks ``authsome.feature.passkeys`` first (denied →
        :class:`~authsome.errors.FeatureNotEntitled`, nothing stored). The options
        exclude the user's passkeys for this ``rp_id``, so an authenticator is not
        registered twice. ``origin`` must be ``rp_id`` or a subdomain of it.

        Raises :class:`~authsome.errors.NotFound` for an unknown user,
        :class:`~authsome.errors.ValidationError` for a bad ``rp_id``, ``rp_name``
        or ``origin``.
        """
        _require_webauthn()
        from webauthn import generate_registration_options, options_to_json
        from webauthn.helpers.structs import (
            AuthenticatorSelectionCriteria,
            ResidentKeyRequirement,
            UserVerificationRequirement,
        )

        user = self._user(v.require_str("user_id", user_id))
        rp_id = _check_rp_id(rp_id)
        origin = _check_origin(origin, rp_id)
        rp_name = _check_rp_name(rp_name)
        self._require_passkeys(user)
        challenge = secrets.token_bytes(_CHALLENGE_BYTES)
        options = generate_registration_options(
            rp_id=rp_id,
            rp_name=rp_name,
            # The user handle is the random record id: no personal data on the device.
            user_id=user.id.encode("utf-8"),
            user_name=user.email,
            user_display_name=user.name or user.email,
            challenge=challenge,
            timeout=int(CHALLENGE_TTL.total_seconds() * 1000),
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.PREFERRED,
                user_verification=UserVerificationRequirement.REQUIRED,
            ),
            exclude_credentials=self._descriptors(user.id, rp_id),
        )
        self._save_challenge(
            challenge, PasskeyCeremony.REGISTRATION, user, user.tenant, rp_id, origin
        )
        return options_to_json(options)

    def finish_registration(self, user_id: str, response_json: str) -> Passkey:
        """Verify the browser's registration response and store the new passkey.

        Checks ``authsome.feature.passkeys`` first (denied →
        :class:`~authsome.errors.FeatureNotEntitled`, nothing stored, the challenge
        kept). The response must answer a live registration challenge of this user,
        from the origin and for the ``rp_id`` it was issued for; the challenge is used
        up whatever the outcome. Any verification failure raises
        :class:`~authsome.errors.InvalidCredentials` and stores nothing; a credential
        registered already raises :class:`~authsome.errors.AlreadyExists`.
        """
        _require_webauthn()
        from webauthn import verify_registration_response
        from webauthn.helpers import bytes_to_base64url, parse_registration_credential_json

        user = self._user(v.require_str("user_id", user_id))
        response_json = _check_response(response_json)
        self._require_passkeys(user)
        with _as_invalid_credentials():
            credential = parse_registration_credential_json(response_json)
            challenge = _client_challenge(credential.response.client_data_json)
        pending = self._consume(challenge, PasskeyCeremony.REGISTRATION)
        if pending.user_id != user.id:
            raise InvalidCredentials()
        with _as_invalid_credentials():
            verified = verify_registration_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=pending.rp_id,
                expected_origin=pending.origin,
                require_user_verification=True,
            )
        credential_id = bytes_to_base64url(verified.credential_id)
        # The id the browser reports must be the one the authenticator attested.
        if credential_id != credential.id or len(verified.credential_id) > _MAX_CREDENTIAL_ID:
            raise InvalidCredentials()
        transports = credential.response.transports or []
        passkey = Passkey(
            credential_id=credential_id,
            user_id=user.id,
            tenant=user.tenant,
            rp_id=pending.rp_id,
            public_key=verified.credential_public_key,
            sign_count=verified.sign_count,
            transports=tuple(t.value for t in transports[:_MAX_TRANSPORTS]),
            created_at=self._clock(),
        )
        self._store.create_passkey(passkey)
        return passkey

    # -- sign-in -----------------------------------------------------------------
    def begin_authentication(
        self, *, rp_id: str, origin: str, email: str | None = None, tenant: str = "default"
    ) -> str:
        """Start a passkey sign-in; return the request options JSON.

        Without ``email`` the browser offers any discoverable passkey of this
        ``rp_id`` (usernameless sign-in; reveals nothing about accounts). With it,
        the options allow only that user's passkeys for this ``rp_id`` and the
        challenge is bound to the user.

        An e-mail without passkeys here (unknown, or a user who has none) gets a
        decoy allow-list instead of an empty one, so the options do not tell which
        addresses have accounts. It copies the shape of a real user's list, picked
        by the e-mail among the tenant's passkeys for ``rp_id`` (as many credentials,
        of the same id lengths, with the same transports), with ids derived by
        HMAC-SHA256 from tenant, normalized e-mail and ``rp_id`` under a key from the
        engine's ``secret_key`` (else from a random key the store keeps). It is the
        same on every call and in every process sharing the store, like a real
        credential list, and no authenticator holds it, so a sign-in with it fails
        like any wrong passkey.
        """
        _require_webauthn()
        from webauthn import generate_authentication_options, options_to_json
        from webauthn.helpers.structs import UserVerificationRequirement

        rp_id = _check_rp_id(rp_id)
        origin = _check_origin(origin, rp_id)
        tenant = v.check_tenant(tenant)
        user = None
        allowed: list[PublicKeyCredentialDescriptor] = []
        if email is not None:
            address = v.normalize_email(email)
            user = self._store.find_user_by_email(tenant, address)
            if user is not None:
                allowed = self._descriptors(user.id, rp_id)
            if not allowed:
                allowed = self._decoy_descriptors(tenant, address, rp_id)
        challenge = secrets.token_bytes(_CHALLENGE_BYTES)
        options = generate_authentication_options(
            rp_id=rp_id,
            challenge=challenge,
            timeout=int(CHALLENGE_TTL.total_seconds() * 1000),
            allow_credentials=allowed,
            user_verification=UserVerificationRequirement.REQUIRED,
        )
        self._save_challenge(challenge, PasskeyCeremony.AUTHENTICATION, user, tenant, rp_id, origin)
        return options_to_json(options)

    def finish_authentication(
        self,
        response_json: str,
        *,
        tenant: str | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> SignIn:
        """Verify the browser's sign-in response and sign the user in.

        The response must answer a live sign-in challenge, with a passkey of the
        challenge's tenant and ``rp_id`` (and user, when one was named), signed by
        the stored key with user verification and a signature counter that moved
        forward (a counter that stops increasing hints at a cloned authenticator).
        Any failure raises the generic :class:`~authsome.errors.InvalidCredentials`,
        records nothing and uses the challenge up. On success the new sign count is
        stored and a session created (``authsome.sessions.created`` and
        ``authsome.users.active`` are recorded). Given ``tenant``, a sign-in begun
        for another tenant is refused like any other failure. ``ip`` and
        ``user_agent`` describe the client for the device list
        (:meth:`auth.sessions.list <authsome.sessions.Sessions.list>`).
        """
        _require_webauthn()
        from webauthn.helpers import parse_authentication_credential_json

        response_json = _check_response(response_json)
        expected = None if tenant is None else v.check_tenant(tenant)
        client = Client.of(ip, user_agent)
        with _as_invalid_credentials():
            credential = parse_authentication_credential_json(response_json)
            challenge = _client_challenge(credential.response.client_data_json)
        # The used-up challenge, the new sign count and the session: one commit.
        with one_commit(self._store):
            user, tokens = self._authenticate(credential, challenge, expected, client)
        return self._sign_in.finish(user, tokens)

    def _authenticate(
        self,
        credential: AuthenticationCredential,
        challenge: bytes,
        expected: str | None,
        client: Client,
    ) -> tuple[User, SessionTokens]:
        from webauthn import verify_authentication_response

        pending = self._consume(challenge, PasskeyCeremony.AUTHENTICATION)
        if expected is not None and pending.tenant != expected:
            raise InvalidCredentials()
        passkey = self._store.get_passkey(credential.id)
        if passkey is None or not _fits(passkey, pending, credential.response.user_handle):
            raise InvalidCredentials()
        with _as_invalid_credentials():
            verified = verify_authentication_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=pending.rp_id,
                expected_origin=pending.origin,
                credential_public_key=passkey.public_key,
                credential_current_sign_count=passkey.sign_count,
                require_user_verification=True,
            )
        if not _counter_moved_forward(passkey.sign_count, verified.new_sign_count):
            raise InvalidCredentials()
        # Compare-and-set: of two sign-ins verified against one count, one wins.
        updated = self._store.update_passkey_sign_count(
            passkey.credential_id, passkey.sign_count, verified.new_sign_count, self._clock()
        )
        user = self._store.get_user(passkey.user_id)
        if not updated or user is None:
            raise InvalidCredentials()
        return user, self._sign_in.open_session(user, client)

    # -- management --------------------------------------------------------------
    def list_for_user(self, user_id: str) -> list[Passkey]:
        """The user's passkeys, oldest first; :class:`~authsome.errors.NotFound` for
        an unknown user."""
        return self._store.list_user_passkeys(self._user(v.require_str("user_id", user_id)).id)

    def remove(self, user_id: str, credential_id: str) -> bool:
        """Delete one of the user's passkeys; ``False`` if the user (known or not) has
        no passkey with this credential id, which leaves another user's passkey alone."""
        user_id = v.require_str("user_id", user_id)
        credential_id = v.require_str("credential_id", credential_id)
        return self._store.delete_passkey(user_id, credential_id)

    # -- helpers -----------------------------------------------------------------
    def _user(self, user_id: str) -> User:
        user = self._store.get_user(user_id)
        if user is None:
            raise NotFound("no such user")
        return user

    def _require_passkeys(self, user: User) -> None:
        self._billing.require(Feature.PASSKEYS, LedgerContext(tenant=user.tenant, user_id=user.id))

    def _descriptors(self, user_id: str, rp_id: str) -> list[PublicKeyCredentialDescriptor]:
        from webauthn.helpers import base64url_to_bytes
        from webauthn.helpers.structs import AuthenticatorTransport, PublicKeyCredentialDescriptor

        known = {t.value for t in AuthenticatorTransport}
        return [
            PublicKeyCredentialDescriptor(
                id=base64url_to_bytes(p.credential_id),
                transports=[AuthenticatorTransport(t) for t in p.transports if t in known],
            )
            for p in self._store.list_user_passkeys(user_id)
            if p.rp_id == rp_id
        ]

    def _decoy_descriptors(
        self, tenant: str, email: str, rp_id: str
    ) -> list[PublicKeyCredentialDescriptor]:
        """A stable, keyed allow-list standing in for an e-mail without passkeys."""
        from webauthn.helpers.structs import AuthenticatorTransport, PublicKeyCredentialDescriptor

        key = self._purpose_keys.key(_DECOY_PURPOSE)
        # Neither a tenant nor an rp_id holds a NUL, so the three parts cannot blur.
        seed = hmac.new(key, "\0".join((tenant, email, rp_id)).encode(), hashlib.sha256).digest()
        known = {t.value for t in AuthenticatorTransport}
        return [
            PublicKeyCredentialDescriptor(
                id=_decoy_id(key, seed, number, length),
                transports=[AuthenticatorTransport(t) for t in transports if t in known],
            )
            for number, (length, transports) in enumerate(self._decoy_shape(tenant, rp_id, seed))
        ]

    def _decoy_shape(
        self, tenant: str, rp_id: str, seed: bytes
    ) -> list[tuple[int, tuple[str, ...]]]:
        """Id lengths and transports of a real user's credentials for ``rp_id``, the
        user picked by ``seed`` (so the same e-mail gets the same shape)."""
        from webauthn.helpers import base64url_to_bytes, bytes_to_base64url

        sample = self._store.sample_passkey(tenant, rp_id, bytes_to_base64url(seed[:16]))
        if sample is None:
            return [(_DECOY_ID_BYTES, _DECOY_TRANSPORTS)]
        return [
            (len(base64url_to_bytes(p.credential_id)), p.transports)
            for p in self._store.list_user_passkeys(sample.user_id)
            if p.rp_id == rp_id
        ] or [(len(base64url_to_bytes(sample.credential_id)), sample.transports)]

    def _save_challenge(
        self,
        challenge: bytes,
        ceremony: PasskeyCeremony,
        user: User | None,
        tenant: str,
        rp_id: str,
        origin: str,
    ) -> None:
        now = self._clock()
        pending = PasskeyChallenge(
            challenge_hash=_challenge_hash(challenge),
            ceremony=ceremony,
            user_id=None if user is None else user.id,
            tenant=tenant,
            rp_id=rp_id,
            origin=origin,
            expires_at=now + CHALLENGE_TTL,
        )
        self._store.create_passkey_challenge(pending, now)

    def _consume(self, challenge: bytes, ceremony: PasskeyCeremony) -> PasskeyChallenge:
        pending = self._store.consume_passkey_challenge(_challenge_hash(challenge), self._clock())
        if pending is None or pending.ceremony != ceremony:
            raise InvalidCredentials()
        return pending


def _decoy_id(key: bytes, seed: bytes, number: int, length: int) -> bytes:
    """``length`` bytes for the ``number``-th decoy id: HMAC-SHA256 in counter mode."""
    blocks = (length + 31) // 32
    prefix = seed + number.to_bytes(2, "big")
    stream = b"".join(
        hmac.new(key, prefix + block.to_bytes(2, "big"), hashlib.sha256).digest()
        for block in range(blocks)
    )
    return stream[:length]


def _fits(passkey: Passkey, pending: PasskeyChallenge, user_handle: bytes | None) -> bool:
    """Whether the passkey may answer this challenge: same relying party and tenant,
    the named user (if any), and the user handle the authenticator returned."""
    return (
        passkey.rp_id == pending.rp_id
        and passkey.tenant == pending.tenant
        and pending.user_id in {None, passkey.user_id}
        and (user_handle is None or user_handle == passkey.user_id.encode("utf-8"))
    )


def _counter_moved_forward(stored: int, new: int) -> bool:
    # Authenticators without a counter report 0 forever; any other counter must grow.
    return new > stored or stored == new == 0
