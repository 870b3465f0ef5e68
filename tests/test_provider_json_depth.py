"""A provider answering deeply nested JSON is refused with the typed error of its
layer, never a RecursionError that escapes as a crash."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authsome._oidc import MAX_RESPONSE, OIDCError, _json_object
from authsome._social_providers import github_profile
from authsome.errors import InvalidCredentials


@given(
    depth=st.integers(min_value=5_000, max_value=MAX_RESPONSE // 2),
    opener=st.sampled_from("[{"),
)
def test_oidc_client_refuses_deeply_nested_json(depth: int, opener: str) -> None:
    body = ('{"a":' * depth if opener == "{" else "[" * depth).encode()
    with pytest.raises(OIDCError):
        _json_object(body)


def test_github_profile_refuses_deeply_nested_json() -> None:
    def send(method: str, url: str, **options: object) -> bytes:
        return b"[" * 100_000

    with pytest.raises(InvalidCredentials):
        github_profile(send, "https://api.github.example", "token")
