"""The sign-in routes' state cookie: only the exact value this engine made, for this
tenant and flow, before it expires, gives the handle back; anything else is one
InvalidToken, whatever the input."""

from __future__ import annotations

import secrets

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authsome import Authsome
from authsome.errors import InvalidToken
from authsome.integrations._signin_routes import MAX_COOKIE, SignInRoutes
from tests.conftest import FAST, FakeClock

HANDLE = secrets.token_urlsafe(32)
CLOCK = FakeClock()
AUTH = Authsome(secret_key=secrets.token_bytes(32), password_hashing=FAST, clock=CLOCK)
ROUTES = SignInRoutes(AUTH, "https://app.example/auth")
COOKIE = ROUTES._seal(HANDLE, "acme", "social:github")


def test_the_cookie_made_for_a_tenant_and_flow_gives_its_handle_back() -> None:
    assert ROUTES._open(COOKIE, "acme", "social:github") == HANDLE
    for tenant, flow in [("other", "social:github"), ("acme", "social:google"), ("acme", "sso")]:
        with pytest.raises(InvalidToken):
            ROUTES._open(COOKIE, tenant, flow)


def test_another_engines_cookie_is_refused() -> None:
    other = SignInRoutes(
        Authsome(secret_key=secrets.token_bytes(32), password_hashing=FAST, clock=CLOCK),
        "https://app.example/auth",
    )
    with pytest.raises(InvalidToken):
        other._open(COOKIE, "acme", "social:github")


@given(st.integers(min_value=0, max_value=len(COOKIE) - 1), st.characters(codec="ascii"))
def test_any_one_character_changed_is_refused(position: int, replacement: str) -> None:
    changed = COOKIE[:position] + replacement + COOKIE[position + 1 :]
    if changed == COOKIE:
        return
    with pytest.raises(InvalidToken):
        ROUTES._open(changed, "acme", "social:github")


@given(st.text(max_size=2 * MAX_COOKIE))
def test_arbitrary_text_is_refused_with_one_error(text: str) -> None:
    with pytest.raises(InvalidToken):
        ROUTES._open(text, "acme", "social:github")


def test_the_cookie_expires_after_ten_minutes() -> None:
    clock = FakeClock()
    auth = Authsome(secret_key=secrets.token_bytes(32), password_hashing=FAST, clock=clock)
    routes = SignInRoutes(auth, "https://app.example/auth")
    cookie = routes._seal(HANDLE, "acme", "sso")
    clock.advance(minutes=9, seconds=59)
    assert routes._open(cookie, "acme", "sso") == HANDLE
    clock.advance(seconds=1)
    with pytest.raises(InvalidToken):
        routes._open(cookie, "acme", "sso")
