"""The ledger keys (exactly the seed's 11, each written once) and the error tree."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

import authsome
from authsome import errors
from authsome._features import Feature, UsageEvent

SRC = Path(authsome.__file__).parent

USAGE_KEYS = {
    "authsome.users.active",
    "authsome.users.created",
    "authsome.mfa.enrollments",
    "authsome.apikeys.validated",
    "authsome.orgs.members",
    "authsome.sessions.created",
}
FEATURE_KEYS = {
    "authsome.feature.mfa",
    "authsome.feature.sso",
    "authsome.feature.orgs",
    "authsome.feature.passkeys",
    "authsome.feature.custom_domains",
}


def test_the_enums_hold_exactly_the_seeds_keys() -> None:
    assert {e.value for e in UsageEvent} == USAGE_KEYS
    assert {f.value for f in Feature} == FEATURE_KEYS


@pytest.mark.parametrize("key", sorted(USAGE_KEYS | FEATURE_KEYS))
def test_each_key_is_written_exactly_once_in_the_code_base(key: str) -> None:
    hits = [
        path.relative_to(SRC)
        for path in SRC.rglob("*.py")
        for _ in range(path.read_text(encoding="utf-8").count(f'"{key}"'))
    ]
    assert hits == [Path("_features.py")]


def test_keys_are_plain_strings() -> None:
    assert str(UsageEvent.USERS_ACTIVE) == "authsome.users.active"
    assert isinstance(Feature.SSO, str)
    assert f"{Feature.SSO}" == "authsome.feature.sso"


def test_every_error_is_an_authsome_error() -> None:
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.AuthsomeError)


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (errors.FeatureNotEntitled, PermissionError),
        (errors.ValidationError, ValueError),
        (errors.NotFound, LookupError),
        (errors.LedgerUnavailable, ConnectionError),
    ],
)
def test_errors_also_subclass_the_matching_builtin(
    error: type[Exception], builtin: type[Exception]
) -> None:
    assert issubclass(error, builtin)


def test_feature_not_entitled_carries_the_key_and_pickles() -> None:
    exc = errors.FeatureNotEntitled(Feature.SSO)
    assert exc.feature == "authsome.feature.sso"
    assert "authsome.feature.sso" in str(exc)
    again = pickle.loads(pickle.dumps(exc))
    assert isinstance(again, errors.FeatureNotEntitled)
    assert again.feature == exc.feature


def test_rate_limited_reports_a_non_negative_retry_after() -> None:
    assert errors.RateLimited(-3).retry_after == 0.0
    assert errors.RateLimited(12.4).retry_after == pytest.approx(12.4)


def test_public_api_is_curated() -> None:
    assert "Authsome" in authsome.__all__
    assert "FeatureNotEntitled" in authsome.__all__
    for name in authsome.__all__:
        assert hasattr(authsome, name), name
