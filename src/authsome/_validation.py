"""Checks at the API edge: the wrong type is a ``TypeError``, a bad value a
:class:`~authsome.errors.ValidationError`. Messages never echo secrets."""

from __future__ import annotations

import functools
import re
import unicodedata

from authsome.errors import ValidationError

MAX_EMAIL = 254  # RFC 5321 path limit
MAX_LOCAL_PART = 64
MIN_PASSWORD = 8  # NIST SP 800-63B, section 5.1.1.2
MAX_PASSWORD = 1024  # NIST asks for at least 64; bounded so hashing cost stays bounded
MAX_NAME = 200
MAX_TENANT = 128
MAX_USER_AGENT = 512  # kept of a User-Agent; longer ones are cut (browsers send ~150)
MAX_RAW_USER_AGENT = 8192  # refused above: a common cap on one HTTP header

RAW_FACTOR = 4
"""Raw input may be this many times a field's limit, in code points and in UTF-8
bytes, before anything else looks at it: normalization and case mapping can shorten
text (decomposed accents, full-width forms) but never need more room than this, and
their cost on hostile text (long runs of combining marks) stays bounded."""

MAX_NON_STARTERS = 30
"""Longest run of combining marks accepted before Unicode normalization: the limit
of the Stream-Safe Text Format (UAX #15). Canonical reordering is quadratic in the
length of such a run; real text never comes near 30."""

# The separators IDNA reads as ".": the ideographic, full-width and half-width full stops.
IDNA_DOTS = re.compile("[.\u3002\uff0e\uff61]")

# Default_Ignorable_Code_Point (Unicode DerivedCoreProperties): characters that render
# as nothing, so "ada\u200b@example.com" would look like, but not be, "ada@example.com".
_DEFAULT_IGNORABLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
    "\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)
# Control, format, surrogate and private-use characters have no place in an address.
_NOT_IN_EMAIL = frozenset({"Cc", "Cf", "Cs", "Co"})
# In display text (names, issuers): controls (NUL among them), line and paragraph
# separators, and the bidirectional embeddings, overrides and isolates that reorder
# what is shown around them.
_NOT_IN_TEXT = frozenset({"Cc", "Cs", "Zl", "Zp"})
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")

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


def require_text(name: str, value: object, limit: int) -> str:
    """:func:`require_str` for text of at most ``limit`` characters once normalized:
    longer than ``RAW_FACTOR * limit`` code points or UTF-8 bytes as given is a
    ``ValidationError`` before any other work, so hostile sizes cost nothing."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    raw_limit = RAW_FACTOR * limit
    # len() is O(1); the encoding is only measured once the length is bounded.
    if len(value) > raw_limit or (
        not value.isascii() and len(value.encode("utf-8", "surrogatepass")) > raw_limit
    ):
        raise ValidationError(f"{name} must be at most {limit} characters")
    return require_str(name, value)


def nfkc(name: str, text: str) -> str:
    """NFKC of ``text`` (bounded by :func:`require_text` first), refusing runs of more
    than ``MAX_NON_STARTERS`` combining marks, which would make it quadratic."""
    if text.isascii():
        return text  # ASCII is NFKC already
    run = 0
    for ch in text:
        leading, trailing = _non_starters(ch)
        run += leading
        if run > MAX_NON_STARTERS:
            raise ValidationError(f"{name} has too many combining marks in a row")
        if trailing is not None:
            run = trailing
    return unicodedata.normalize("NFKC", text)


@functools.lru_cache(maxsize=4096)
def _non_starters(ch: str) -> tuple[int, int | None]:
    """The combining marks at the start and at the end of ``ch``'s NFKD, counted as
    UAX #15 does; ``None`` at the end when it is marks only (the run goes on)."""
    marks = [unicodedata.combining(c) != 0 for c in unicodedata.normalize("NFKD", ch)]
    if all(marks):
        return len(marks), None
    return marks.index(False), marks[::-1].index(False)


def normalize_email(email: object) -> str:
    """NFKC, trimmed, case-insensitive; checked for a plausible shape.

    The local part is case-folded because users expect addresses to be
    case-insensitive, even though RFC 5321 lets a server treat it as case-sensitive.
    The domain is only lower-cased: case folding rewrites some letters (``ß`` to
    ``ss``, the final sigma ``ς`` to the medial one) and so would turn ``straße.de``
    into ``strasse.de``, a different domain. In the domain, the dots IDNA accepts
    (U+3002, U+FF0E, U+FF61) become ``.`` and one trailing dot is dropped, so one
    mailbox has one spelling. Invisible (default-ignorable), control and format
    characters are refused anywhere in the address.
    """
    raw = nfkc("email", require_text("email", email, MAX_EMAIL)).strip()
    local, sep, domain = raw.rpartition("@")
    domain = IDNA_DOTS.sub(".", domain).removesuffix(".")
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
    if _DEFAULT_IGNORABLE.search(text) or any(
        ch.isspace() or unicodedata.category(ch) in _NOT_IN_EMAIL for ch in text
    ):
        raise ValidationError("email must not contain spaces, control or invisible characters")
    if (
        "@" in local
        or "." not in domain.strip(".")
        or ".." in domain
        or domain[0] in ".-"
        or domain[-1] in ".-"
    ):
        raise ValidationError("email must look like name@domain")
    return text


def normalize_password(password: object) -> str:
    """NFKC-normalize a password (NIST SP 800-63B) and check its length only.

    Length is counted in Unicode code points; no composition rules apply.
    """
    text = nfkc("password", require_text("password", password, MAX_PASSWORD))
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
    text = require_text("tenant", tenant, MAX_TENANT)
    if not text.strip() or len(text) > MAX_TENANT:
        raise ValidationError(f"tenant must be 1..{MAX_TENANT} non-blank characters")
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        raise ValidationError("tenant must not contain control characters")
    return text


def check_name(name: object) -> str | None:
    """An optional display name of at most ``MAX_NAME`` characters."""
    if name is None:
        return None
    return check_display_text("name", name, MAX_NAME) or None


def check_display_text(name: str, value: object, limit: int) -> str:
    """Text shown to people (a name, an issuer): trimmed, at most ``limit``
    characters, without control characters (NUL among them), line or paragraph
    separators, or bidirectional overrides. May be empty; callers that need text
    check for that."""
    text = require_text(name, value, limit).strip()
    if len(text) > limit:
        raise ValidationError(f"{name} must be at most {limit} characters")
    if _BIDI_CONTROLS.search(text) or any(unicodedata.category(ch) in _NOT_IN_TEXT for ch in text):
        raise ValidationError(f"{name} must not contain control characters")
    return text


def check_ip(ip: object) -> str | None:
    """An optional client address as given by the caller (used only as a throttle key)."""
    if ip is None:
        return None
    text = require_str("ip", ip).strip()
    if not text or len(text) > 64:
        raise ValidationError("ip must be 1..64 characters")
    return text


def check_user_agent(user_agent: object) -> str | None:
    """An optional User-Agent as a client sent it, made safe to keep and show: text
    nobody vouches for. Above ``MAX_RAW_USER_AGENT`` characters it is refused before
    any other work; control characters, line separators and bidirectional overrides
    become U+FFFD; the result is trimmed and cut to ``MAX_USER_AGENT`` characters
    (a long header must not make the sign-in fail). Empty reads as ``None``."""
    if user_agent is None:
        return None
    text = require_str("user_agent", user_agent)
    if len(text) > MAX_RAW_USER_AGENT:
        raise ValidationError(f"user_agent must be at most {MAX_RAW_USER_AGENT} characters")
    shown = "".join(_shown_char(ch) for ch in text).strip()
    return shown[:MAX_USER_AGENT].rstrip() or None


def check_client_ip(ip: object) -> str | None:
    """:func:`check_ip` for an address kept with a session and shown in its device
    list: control characters become U+FFFD, as in :func:`check_user_agent`."""
    text = check_ip(ip)
    return None if text is None else "".join(_shown_char(ch) for ch in text)


def _shown_char(ch: str) -> str:
    if _BIDI_CONTROLS.match(ch) or unicodedata.category(ch) in _NOT_IN_TEXT:
        return "\ufffd"
    return ch


def check_token(name: str, token: object) -> str:
    """A bearer token as received: a non-empty ``str`` of sane length."""
    text = require_str(name, token)
    if not text or len(text) > 512:
        raise ValidationError(f"{name} must be 1..512 characters")
    return text
