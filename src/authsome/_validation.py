"""Checks at the API edge: the wrong type is a ``TypeError``, a bad value a
:class:`~authsome.errors.ValidationError`. Messages never echo secrets."""

from __future__ import annotations

import re
import unicodedata

from authsome.errors import ValidationError

MAX_EMAIL = 254  # RFC 5321 path limit
MAX_LOCAL_PART = 64
MIN_PASSWORD = 8  # NIST SP 800-63B, section 5.1.1.2
MAX_PASSWORD = 1024  # NIST asks for at least 64; bounded so hashing cost stays bounded
MAX_NAME = 200
MAX_TENANT = 128

# A str with a lone surrogate cannot be encoded as UTF-8 (JSON can still carry one,
# as "\ud800"); every hash, password hasher and database driver would fail on it.
_SURROGATE = re.compile(r"[\ud800-\udfff]")

# NIST SP 800-63B asks verifiers to refuse commonly used passwords. The full lists
# belong to the deployment; this catches the worst offenders out of the box.
COMMON_PASSWORDS = frozenset(
    {
        "password",
        "password1",
        "password123",
        "12345678",
        "123456789",
        "1234567890",
        "qwertyuiop",
        "qwerty123",
        "11111111",
        "00000000",
        "abcdefgh",
        "iloveyou",
        "sunshine",
        "princess",
        "football",
        "baseball",
        "welcome1",
        "letmein1",
        "passw0rd",
        "admin123",
    }
)


def require_str(name: str, value: object) -> str:
    """Return ``value`` if it is a ``str``, else raise ``TypeError``; a ``str`` that
    cannot be encoded as UTF-8 (a lone surrogate) is a ``ValidationError``."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    # A search rather than encode(): its exception would carry the (secret) text along.
    if not value.isascii() and _SURROGATE.search(value):
        raise ValidationError(f"{name} must be valid Unicode text (no lone surrogates)")
    return value


def normalize_email(email: object) -> str:
    """NFKC, trimmed, case-insensitive; checked for a plausible shape.

    The local part is case-folded because users expect addresses to be
    case-insensitive, even though RFC 5321 lets a server treat it as case-sensitive.
    The domain is only lower-cased: case folding rewrites some letters (``ß`` to
    ``ss``, the final sigma ``ς`` to the medial one) and so would turn ``straße.de``
    into ``strasse.de``, a different domain.
    """
    raw = unicodedata.normalize("NFKC", require_str("email", email)).strip()
    local, sep, domain = raw.rpartition("@")
    folded = f"{local.casefold()}{sep}{domain.lower()}" if sep else raw.casefold()
    text = unicodedata.normalize("NFKC", folded)  # case mapping can un-normalize; re-normalize
    if not text:
        raise ValidationError("email must not be empty")
    if len(text) > MAX_EMAIL:
        raise ValidationError(f"email must be at most {MAX_EMAIL} characters")
    local, sep, domain = text.rpartition("@")
    if not sep or not local or not domain:
        raise ValidationError("email must look like name@domain")
    if len(local) > MAX_LOCAL_PART:
        raise ValidationError(f"the part before @ must be at most {MAX_LOCAL_PART} characters")
    if any(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in text):
        raise ValidationError("email must not contain spaces or control characters")
    if "@" in local or "." not in domain.strip(".") or ".." in domain or domain[0] in ".-":
        raise ValidationError("email must look like name@domain")
    return text


def normalize_password(password: object) -> str:
    """NFKC-normalize a password (NIST SP 800-63B) and check its length only.

    Length is counted in Unicode code points; no composition rules apply.
    """
    text = unicodedata.normalize("NFKC", require_str("password", password))
    if len(text) < MIN_PASSWORD:
        raise ValidationError(f"password must be at least {MIN_PASSWORD} characters")
    if len(text) > MAX_PASSWORD:
        raise ValidationError(f"password must be at most {MAX_PASSWORD} characters")
    return text


def check_new_password(password: str, email: str) -> None:
    """Refuse passwords that are well known or the account's own address."""
    lowered = password.casefold()
    if lowered in COMMON_PASSWORDS or lowered == email or lowered == email.partition("@")[0]:
        raise ValidationError("password is too common or too easy to guess; choose another")


def check_tenant(tenant: object) -> str:
    """A tenant id: a non-blank ``str`` of at most ``MAX_TENANT`` characters."""
    text = require_str("tenant", tenant)
    if not text.strip() or len(text) > MAX_TENANT:
        raise ValidationError(f"tenant must be 1..{MAX_TENANT} non-blank characters")
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        raise ValidationError("tenant must not contain control characters")
    return text


def check_name(name: object) -> str | None:
    """An optional display name of at most ``MAX_NAME`` characters."""
    if name is None:
        return None
    text = require_str("name", name).strip()
    if len(text) > MAX_NAME:
        raise ValidationError(f"name must be at most {MAX_NAME} characters")
    return text or None


def check_ip(ip: object) -> str | None:
    """An optional client address as given by the caller (used only as a throttle key)."""
    if ip is None:
        return None
    text = require_str("ip", ip).strip()
    if not text or len(text) > 64:
        raise ValidationError("ip must be 1..64 characters")
    return text


def check_token(name: str, token: object) -> str:
    """A bearer token as received: a non-empty ``str`` of sane length."""
    text = require_str(name, token)
    if not text or len(text) > 512:
        raise ValidationError(f"{name} must be 1..512 characters")
    return text
