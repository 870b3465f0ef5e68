"""Hostile sizes are refused before any work: raw text is bounded (code points and
UTF-8 bytes) before it is normalized, and runs of combining marks, which make
Unicode normalization quadratic, are refused outright."""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authsome import Authsome, OIDCConnection, ValidationError
from authsome._validation import (
    MAX_EMAIL,
    MAX_NAME,
    MAX_NON_STARTERS,
    MAX_PASSWORD,
    RAW_FACTOR,
    normalize_email,
    normalize_password,
)
from authsome.domains import normalize_hostname
from authsome.orgs import slugify
from authsome.sso import normalize_domain
from tests.conftest import PASSWORD

# Canonical reordering of alternating combining marks is quadratic in CPython:
# before the bound, a 63 KiB e-mail of this shape took about 1.5 s.
HOSTILE = "a" + "\u0301\u0316" * ((1 << 20) // 4 - 1)  # 1 MiB of UTF-8
RP = {"rp_id": "example.com", "origin": "https://example.com"}
REPETITIONS = 15

Call = Callable[[str], object]


def _entry_points(auth: Authsome) -> dict[str, tuple[Call, str]]:
    """Every public call that normalizes text from a request, with a normal
    20-character input it refuses (the baseline)."""
    user = auth.users.register("owner@example.com", PASSWORD)
    org = auth.orgs.create(user.id, "Acme")
    bad_email = "not-an-address-at-al"
    bad_password = "\ud800" * 20  # a lone surrogate: refused as text, not as a wrong password
    nul_text = "display name\x00\x00\x00\x00\x00\x00\x00"
    return {
        "register email": (lambda x: auth.users.register(x, PASSWORD), bad_email),
        "register password": (lambda x: auth.users.register("a@example.com", x), bad_password),
        "register name": (
            lambda x: auth.users.register("b@example.com", PASSWORD, name=x),
            nul_text,
        ),
        "register tenant": (
            lambda x: auth.users.register("c@example.com", PASSWORD, tenant=x),
            nul_text,
        ),
        "find_by_email": (auth.users.find_by_email, bad_email),
        "sign_in email": (lambda x: auth.sign_in(x, PASSWORD, ip="192.0.2.1"), bad_email),
        "sign_in password": (
            lambda x: auth.sign_in("a@example.com", x, ip="192.0.2.1"),
            bad_password,
        ),
        "passkeys.begin_authentication email": (
            lambda x: auth.passkeys.begin_authentication(email=x, **RP),
            bad_email,
        ),
        "passkeys.begin_registration rp_name": (
            lambda x: auth.passkeys.begin_registration(user.id, rp_name=x, **RP),
            nul_text,
        ),
        "sso.connection_for_email": (auth.sso.connection_for_email, bad_email),
        "sso.configure domain": (
            lambda x: auth.sso.configure(
                org.id, OIDCConnection("https://idp.example", "client", "secret", domains=(x,))
            ),
            "not a hostname !!!!!",
        ),
        "domains.add": (lambda x: auth.domains.add(x, tenant="default"), "not a hostname !!!!!"),
        "orgs.create name": (lambda x: auth.orgs.create(user.id, x), nul_text),
        "slugify": (slugify, "!" * 20),
        "mfa.begin_totp issuer": (
            lambda x: auth.mfa.begin_totp(user.id, issuer=x),
            "issuer:with:colons:x",
        ),
    }


def _refusal_seconds(call: Call, text: str) -> float:
    with pytest.raises(ValidationError):
        call(text)
    start = time.perf_counter()
    try:
        call(text)
    except ValidationError:
        return time.perf_counter() - start
    raise AssertionError("not refused")


def test_a_mebibyte_of_hostile_text_is_refused_as_fast_as_a_normal_refusal(
    auth: Authsome,
) -> None:
    assert len(HOSTILE.encode()) > 1_048_570
    ratios = {}
    for name, (call, baseline) in _entry_points(auth).items():
        hostile_times, baseline_times = [], []
        for _ in range(REPETITIONS):  # interleaved, and the best of each: load shows as noise
            baseline_times.append(_refusal_seconds(call, baseline))
            hostile_times.append(_refusal_seconds(call, HOSTILE))
        hostile, normal = min(hostile_times), min(baseline_times)
        ratios[name] = hostile / normal
        assert hostile < 0.010, f"{name}: {hostile * 1000:.2f} ms for 1 MiB"
        assert hostile <= 5 * normal, f"{name}: {hostile / normal:.2f} x a normal refusal"


@pytest.mark.parametrize(
    ("check", "limit"),
    [
        (normalize_email, MAX_EMAIL),
        (normalize_password, MAX_PASSWORD),
        (normalize_hostname, 253),
        (normalize_domain, 253),
        (slugify, MAX_NAME),
    ],
)
def test_raw_text_is_bounded_in_code_points_and_in_utf8_bytes(
    check: Callable[[str], object], limit: int
) -> None:
    raw_limit = RAW_FACTOR * limit
    with pytest.raises(ValidationError, match="at most"):
        check("a" * (raw_limit + 1))  # code points
    with pytest.raises(ValidationError, match="at most"):
        check("\u00e9" * (raw_limit // 2 + 1))  # fewer code points, too many bytes


def test_text_a_little_longer_before_normalization_is_still_accepted() -> None:
    # Decomposed accents (NFD, as some keyboards and macOS file names give them) and
    # full-width letters shrink under NFKC; the raw bound leaves room for them.
    composed = "é" * 60 + "@" + "ä" * 60 + ".example"
    assert normalize_email(unicodedata.normalize("NFD", composed)) == composed
    assert normalize_password("\uff41" * MAX_PASSWORD) == "a" * MAX_PASSWORD
    assert normalize_password("😀" * MAX_PASSWORD) == "😀" * MAX_PASSWORD


@given(st.integers(min_value=MAX_NON_STARTERS + 1, max_value=200))
def test_long_runs_of_combining_marks_are_refused(run: int) -> None:
    marks = ("\u0301\u0316" * run)[:run]
    with pytest.raises(ValidationError, match="combining marks"):
        normalize_password("password" + marks)
    with pytest.raises(ValidationError, match="combining marks"):
        normalize_email("ada" + marks + "@example.com")
    # Characters that decompose into marks only count as much as those marks.
    with pytest.raises(ValidationError, match="combining marks"):
        normalize_password("password" + "\u0f73" * run)


@given(st.integers(min_value=0, max_value=MAX_NON_STARTERS))
def test_short_runs_of_combining_marks_are_normal_text(run: int) -> None:
    marks = ("\u0301\u0316" * run)[:run]
    assert normalize_password("password" + marks) == unicodedata.normalize(
        "NFKC", "password" + marks
    )
