"""Every cryptographic primitive authsome uses, in one place.

* tokens and ids come from :mod:`secrets` (the OS CSPRNG);
* secrets are stored only as SHA-256 digests (tokens are high-entropy, so a
  fast hash is enough and lookups stay indexable);
* passwords are hashed with argon2id;
* comparisons of secrets are constant-time;
* secrets that must be read back (TOTP seeds) are sealed with AES-256-GCM, under a
  :class:`Keyring` that also opens values sealed under earlier keys;
* keys for one purpose each are derived from a root key with HKDF-SHA256.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from authsome.errors import DecryptionError
from authsome.models import StoredSecret

__all__ = [
    "BASE62_ALPHABET",
    "CHECKSUM_CHARS",
    "Keyring",
    "Opened",
    "PasswordHasher",
    "PasswordHashing",
    "Resealed",
    "SecretBox",
    "base62_checksum",
    "base62_encode",
    "constant_time_equals",
    "derive_key",
    "has_valid_checksum",
    "keyed_digest",
    "new_id",
    "new_ordered_id",
    "new_token",
    "random_base62",
    "reseal_all",
    "sha256_hex",
]

TOKEN_BYTES = 32  # 256 bits of CSPRNG output per bearer token


def new_token(nbytes: int = TOKEN_BYTES) -> str:
    """A URL-safe random token of ``nbytes`` CSPRNG bytes (default 256 bits)."""
    return secrets.token_urlsafe(nbytes)


def new_id(prefix: str) -> str:
    """A random, unguessable record id such as ``usr_5f0c...`` (128 bits)."""
    return f"{prefix}_{secrets.token_hex(16)}"


def new_ordered_id(prefix: str) -> str:
    """A fresh id that sorts by creation time, such as ``akv_18a7...`` (32 hex digits).

    16 hex digits of the wall clock in nanoseconds, then 64 random bits: unique (two ids
    alike need the same nanosecond and the same 64 CSPRNG bits) and not guessable, so it
    serves as an idempotency key. Being time-ordered, ids made one after the other land
    at the end of a B-tree index (an append, not a random insert). The time is in it in
    the clear: use it only where that is fine (a record whose creation time is no
    secret, such as a session or a user, whose id is also the event id the ledger keeps
    and indexes), never for a secret.
    """
    # One bytes.hex() and the CSPRNG read secrets.token_hex would do: as cheap as new_id.
    return f"{prefix}_{(_next_ordered_ns().to_bytes(8, 'big') + os.urandom(8)).hex()}"


_ordered_lock = threading.Lock()
_last_ordered_ns = 0


def _next_ordered_ns() -> int:
    """The wall clock in ns, strictly increasing within the process: a clock stepped
    back (NTP) or two ids in one tick still give ids that sort in creation order."""
    global _last_ordered_ns
    with _ordered_lock:
        _last_ordered_ns = max(time.time_ns(), _last_ordered_ns + 1)
        return _last_ordered_ns


def sha256_hex(value: str) -> str:
    """The hex SHA-256 of ``value`` (UTF-8): how tokens are kept at rest."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def constant_time_equals(a: str, b: str) -> bool:
    """Compare two secrets without leaking where they differ through timing."""
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


# -- base62 tokens with a checksum ------------------------------------------------
# Digits, then upper, then lower case: the order GitHub's token format uses.
BASE62_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
CHECKSUM_CHARS = 6
"""Width of :func:`base62_checksum`: 62**6 > 2**32, so every CRC32 fits."""
# Every two-digit base62 string, in order: the checksum sits on the hot path of
# every API-key validation, and three table lookups beat six divisions.
_BASE62_PAIRS = tuple(a + b for a in BASE62_ALPHABET for b in BASE62_ALPHABET)


def base62_encode(number: int, width: int) -> str:
    """``number`` in base62, left-padded with ``"0"`` to exactly ``width`` characters.

    Raises ``ValueError`` if ``number`` is negative or needs more than ``width`` digits.
    """
    if number < 0 or number >= 62**width:
        raise ValueError(f"number does not fit in {width} base62 digits")
    digits = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        digits.append(BASE62_ALPHABET[digit])
    return "".join(reversed(digits))


def random_base62(length: int) -> str:
    """``length`` base62 characters from the CSPRNG, uniformly distributed.

    One ``randbelow`` over the whole range, so there is no modulo bias: 22
    characters carry log2(62**22) ~ 131 bits.
    """
    return base62_encode(secrets.randbelow(62**length), length)


def base62_checksum(text: str) -> str:
    """The CRC32 of ``text`` (UTF-8) as :data:`CHECKSUM_CHARS` base62 characters.

    Not a secret and not a MAC: it only lets a token's shape be verified offline,
    so typos and random strings are rejected without a database lookup. CRC32
    detects every change confined to 32 consecutive bits, hence every single
    changed character.
    """
    rest, low = divmod(zlib.crc32(text.encode("utf-8")), 62 * 62)
    high, mid = divmod(rest, 62 * 62)  # high < 62**2, since 62**6 > 2**32
    return _BASE62_PAIRS[high] + _BASE62_PAIRS[mid] + _BASE62_PAIRS[low]


def has_valid_checksum(token: str) -> bool:
    """Whether ``token`` ends with the :func:`base62_checksum` of the rest of it.

    A plain comparison: the checksum is computable by anyone, so timing tells nothing.
    """
    if len(token) <= CHECKSUM_CHARS:
        return False
    return token[-CHECKSUM_CHARS:] == base62_checksum(token[:-CHECKSUM_CHARS])


@dataclass(frozen=True, slots=True)
class PasswordHashing:
    """argon2id cost parameters.

    The defaults are OWASP's first recommended profile for argon2id
    (m=19 MiB, t=2, p=1; OWASP Password Storage Cheat Sheet). Hashes made with
    other parameters are upgraded on the next successful sign-in.
    """

    time_cost: int = 2
    memory_cost_kib: int = 19 * 1024
    parallelism: int = 1

    @classmethod
    def fast_insecure_for_tests(cls) -> PasswordHashing:
        """The cheapest parameters argon2 accepts. Never use them in production."""
        return cls(time_cost=1, memory_cost_kib=8, parallelism=1)

    def __post_init__(self) -> None:
        for name in ("time_cost", "memory_cost_kib", "parallelism"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"PasswordHashing.{name} must be a positive int")
        if self.memory_cost_kib < 8 * self.parallelism:
            raise ValueError("PasswordHashing.memory_cost_kib must be >= 8 * parallelism")


MAX_PARAMETER_SETS = 8
"""How many argon2 parameter sets a :class:`PasswordHasher` keeps a dummy hash for."""


class PasswordHasher:
    """argon2id hashing with dummy hashes, so unknown users cost the same work.

    Equal work must hold after the parameters are raised too, while the store still
    holds hashes made with the old ones (each is upgraded at its user's next
    sign-in): such a hash is cheaper to check than one made with the new parameters.
    So the hasher keeps one dummy hash per parameter set it has met in a stored hash,
    and every :meth:`verify` runs one argon2 check per set: the stored hash for the
    account's own set, a dummy of the same parameters for each other one. An unknown
    account and a known one with a wrong password then cost the same, whatever
    parameters the known account's hash was made with.
    """

    def __init__(self, params: PasswordHashing) -> None:
        self.params = params
        self._hasher = argon2.PasswordHasher(
            time_cost=params.time_cost,
            memory_cost=params.memory_cost_kib,
            parallelism=params.parallelism,
            type=argon2.Type.ID,
        )
        self._dummies_lock = threading.Lock()
        # Parameter set (the hash's "$argon2id$v=..$m=..,t=..,p=.." prefix and its
        # lengths) -> a dummy hash made with exactly those parameters.
        self._dummies: dict[tuple[str, int, int], str] = {}
        self._learn(self._hasher.hash(new_token()))

    def hash(self, password: str) -> str:
        """A fresh argon2id hash (random salt) of ``password``."""
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches; ``None`` verifies against the dummy hashes.

        One argon2 check per parameter set met so far (see the class docstring)."""
        own = None if password_hash is None else self._learn(password_hash)
        matched = False
        for parameter_set, dummy in self._dummy_hashes():
            if parameter_set == own and password_hash is not None:
                matched = self._check(password_hash, password)
            else:
                self._check(dummy, password)
        if own is None and password_hash is not None:
            # Not parseable, or past MAX_PARAMETER_SETS: checked on its own.
            matched = self._check(password_hash, password)
        return matched

    def needs_rehash(self, password_hash: str) -> bool:
        """Whether the hash was made with other parameters than the current ones."""
        return self._hasher.check_needs_rehash(password_hash)

    def _check(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)  # returns True or raises
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def _dummy_hashes(self) -> list[tuple[tuple[str, int, int], str]]:
        with self._dummies_lock:
            return list(self._dummies.items())

    def _learn(self, password_hash: str) -> tuple[str, int, int] | None:
        """The parameter set of a stored hash, with a dummy hash made for it if it is
        new; ``None`` for a hash that does not parse, or once the table is full."""
        try:
            params = argon2.extract_parameters(password_hash)
        except (InvalidHashError, ValueError):
            return None
        parameters = password_hash.rsplit("$", 2)[0]
        key = (parameters, params.salt_len, params.hash_len)
        with self._dummies_lock:
            if key not in self._dummies:
                if len(self._dummies) >= MAX_PARAMETER_SETS:
                    return None
                self._dummies[key] = _dummy_hash(parameters, params.salt_len, params.hash_len)
        return key

    def __repr__(self) -> str:
        return f"PasswordHasher({self.params!r})"


def _dummy_hash(parameters: str, salt_len: int, hash_len: int) -> str:
    """An encoded argon2 hash with these parameters and random salt and digest.

    Checking a password against it runs the full argon2 computation, exactly as
    against a real hash of these parameters, and never matches; making it costs
    nothing, so the attempt that first meets a parameter set costs no extra.
    """

    def b64(nbytes: int) -> str:  # argon2's encoding: standard base64, unpadded
        return base64.b64encode(secrets.token_bytes(nbytes)).decode("ascii").rstrip("=")

    return f"{parameters}${b64(salt_len)}${b64(hash_len)}"


SEALED_PREFIX = "v1."  # never in base32 text, so sealed and plain values cannot be confused
_KEY_BYTES = 32
_NONCE_BYTES = 12  # 96 bits: the nonce size GCM is specified for
_TAG_BYTES = 16


class SecretBox:
    """Authenticated encryption (AES-256-GCM) of short secrets kept at rest.

    ``seal`` uses a fresh random 96-bit nonce per call. ``aad`` (associated data,
    e.g. the record id) is authenticated but not stored: a sealed value only opens
    with the same ``aad``, so a value copied into another row is refused.
    """

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes):
            raise TypeError(f"secret_key must be bytes, not {type(key).__name__}")
        if len(key) != _KEY_BYTES:
            raise ValueError(f"secret_key must be exactly {_KEY_BYTES} bytes")
        self._aead = AESGCM(key)

    def seal(self, plaintext: str, *, aad: str) -> str:
        """Encrypt ``plaintext`` bound to ``aad``; returns printable text."""
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode("utf-8"), aad.encode("utf-8"))
        return SEALED_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def open(self, token: str, *, aad: str) -> str:
        """Decrypt a value of :meth:`seal`; :class:`DecryptionError` if it does not
        authenticate (wrong key, other ``aad``, altered or malformed)."""
        if not token.startswith(SEALED_PREFIX):
            raise DecryptionError()
        try:
            raw = base64.urlsafe_b64decode(token[len(SEALED_PREFIX) :].encode("ascii"))
        except (binascii.Error, UnicodeError) as exc:
            raise DecryptionError() from exc
        if len(raw) < _NONCE_BYTES + _TAG_BYTES:
            raise DecryptionError()
        try:
            plain = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], aad.encode("utf-8"))
            return plain.decode("utf-8")
        except (InvalidTag, UnicodeError) as exc:
            raise DecryptionError() from exc

    def __repr__(self) -> str:
        return "SecretBox(key=<hidden>)"


def derive_key(root: bytes, purpose: str) -> bytes:
    """A 32-byte key for one ``purpose`` only, derived from ``root`` (HKDF-SHA256).

    One root key serves several uses (sealing, throttle keys, decoys) without any two
    of them ever sharing a key: knowing one derived key tells nothing of the others.
    """
    hkdf = HKDF(algorithm=hashes.SHA256(), length=_KEY_BYTES, salt=None, info=purpose.encode())
    return hkdf.derive(root)


def keyed_digest(key: bytes, value: str) -> str:
    """The hex HMAC-SHA256 of ``value`` (UTF-8) under ``key``.

    For values of little entropy (addresses, e-mails) kept as lookup keys: without
    the key, a table of digests cannot be reversed by hashing every candidate.
    """
    return hmac.digest(key, value.encode("utf-8"), "sha256").hex()  # one-shot, in C


security_log = logging.getLogger("authsome.security")


@dataclass(frozen=True, slots=True)
class Opened:
    """A secret read back by :meth:`Keyring.open`: its clear text, and whether the
    stored form should be replaced (sealed under an earlier key, or kept in clear
    although a key is configured now)."""

    plaintext: str = field(repr=False)
    stale: bool


class Keyring:
    """Seals secrets under the current key and opens them under any known key.

    ``current`` seals every new value; ``previous`` are keys used before it, still
    tried when a value does not open under the current one, so a key can be rotated
    without breaking what was sealed before. Without a current key values are kept in
    clear (and a warning is logged once on ``authsome.security``); a value kept in
    clear still opens once a key is configured, and is reported stale so its owner
    seals it.
    """

    __slots__ = ("_current", "_previous", "_warn_lock", "_warned")

    def __init__(self, current: bytes | None, previous: Sequence[bytes] = ()) -> None:
        if not isinstance(previous, (list, tuple)):  # a lone key (bytes) is a mistake
            raise TypeError("previous_secret_keys must be a list or tuple of keys")
        if previous and current is None:
            raise ValueError("previous_secret_keys need a secret_key to re-seal under")
        self._current = None if current is None else SecretBox(current)
        self._previous = tuple(SecretBox(key) for key in previous)
        self._warned = False
        self._warn_lock = threading.Lock()

    @property
    def has_key(self) -> bool:
        """Whether new values are sealed (a current key is configured)."""
        return self._current is not None

    def seal(self, plaintext: str, *, aad: str, what: str) -> StoredSecret:
        """``plaintext`` as it should be stored: sealed under the current key bound to
        ``aad``, or in clear without a key (``what`` names it in the warning)."""
        if self._current is None:
            self._warn_once_in_clear(what)
            return StoredSecret(plaintext, sealed=False)
        return StoredSecret(self._current.seal(plaintext, aad=aad), sealed=True)

    def open(self, stored: StoredSecret, *, aad: str) -> Opened:
        """The clear text of a stored value; :class:`DecryptionError` when it is sealed
        and no known key opens it (the message names no secret)."""
        if not stored.sealed:
            return Opened(stored.value, stale=self._current is not None)
        if self._current is None:
            raise DecryptionError("stored secret is encrypted but the engine has no secret_key")
        for number, box in enumerate((self._current, *self._previous)):
            try:
                return Opened(box.open(stored.value, aad=aad), stale=number > 0)
            except DecryptionError:
                continue
        raise DecryptionError()

    def _warn_once_in_clear(self, what: str) -> None:
        # Once per engine: one line is enough to point at the missing key.
        with self._warn_lock:
            if self._warned:
                return
            self._warned = True
        security_log.warning(
            "%s stored in clear because the engine has no secret_key: anyone who can read"
            " the store can use it; configure Authsome(secret_key=...) and run"
            " 'authsome reseal' to seal the values stored so far",
            what,
        )

    def __repr__(self) -> str:
        return f"Keyring(keys=<hidden>, previous={len(self._previous)})"


@dataclass(frozen=True, slots=True)
class Resealed:
    """What :func:`reseal_all` did: values sealed anew under the current key, values
    already sealed under it, and the records whose value no known key opens."""

    resealed: int = 0
    current: int = 0
    unreadable: tuple[str, ...] = ()

    def __add__(self, other: Resealed) -> Resealed:
        return Resealed(
            self.resealed + other.resealed,
            self.current + other.current,
            self.unreadable + other.unreadable,
        )


_RESEAL_PAGE = 500


def reseal_all(
    keyring: Keyring,
    *,
    page: Callable[[str, int], Sequence[tuple[str, StoredSecret]]],
    replace: Callable[[str, StoredSecret, StoredSecret], bool],
    aad: Callable[[str], str],
    what: str,
) -> Resealed:
    """Walk every stored value (``page(after, limit)``, by record id) and seal under the
    current key each one that is in clear or under an earlier key.

    Each write is a compare-and-set (``replace(id, expected, new)``): a value changed
    meanwhile (a new enrolment, or a sign-in that re-sealed it) is left to its writer.
    """
    done = Resealed()
    after = ""
    while rows := page(after, _RESEAL_PAGE):
        for record_id, stored in rows:
            done += _reseal_one(keyring, record_id, stored, replace, aad(record_id), what)
        after = rows[-1][0]
    return done


def _reseal_one(
    keyring: Keyring,
    record_id: str,
    stored: StoredSecret,
    replace: Callable[[str, StoredSecret, StoredSecret], bool],
    aad: str,
    what: str,
) -> Resealed:
    try:
        opened = keyring.open(stored, aad=aad)
    except DecryptionError:
        return Resealed(unreadable=(record_id,))
    if not opened.stale:
        return Resealed(current=1)
    replaced = replace(record_id, stored, keyring.seal(opened.plaintext, aad=aad, what=what))
    return Resealed(resealed=1) if replaced else Resealed(current=1)
