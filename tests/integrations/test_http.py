"""The framework-free part: credentials → Principal, errors → HTTP answers."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import authsome.errors
from authsome import (
    AlreadyExists,
    Authsome,
    AuthsomeError,
    Conflict,
    DecryptionError,
    ExtraNotInstalled,
    FeatureNotEntitled,
    InsufficientScope,
    InvalidCredentials,
    InvalidToken,
    LedgerUnavailable,
    MfaLocked,
    NotFound,
    RateLimited,
    StoreError,
    ValidationError,
    VerificationFailed,
)
from authsome.integrations import (
    AUTHENTICATION_REQUIRED,
    Principal,
    authenticate,
    error_response,
    require,
)
from tests.conftest import PASSWORD

# (error, status, body["error"]) for every class in authsome.errors
CASES: list[tuple[AuthsomeError, int, str]] = [
    (FeatureNotEntitled("authsome.feature.sso"), 403, "feature_not_entitled"),
    (InsufficientScope(("deploy",)), 403, "insufficient_scope"),
    (InvalidCredentials(), 401, "invalid_credentials"),
    (MfaLocked(), 401, "invalid_credentials"),  # its message says to use a recovery code
    (InvalidToken(), 401, "invalid_token"),
    (RateLimited(12.2), 429, "rate_limited"),
    (LedgerUnavailable("ledger could not check authsome.feature.orgs"), 503, "ledger_unavailable"),
    (ValidationError("email must look like name@domain"), 422, "validation_error"),
    (AlreadyExists("a user with this e-mail exists in this tenant"), 409, "already_exists"),
    (Conflict("the last owner of an org cannot be removed"), 409, "conflict"),
    (NotFound("no such org"), 404, "not_found"),
    (VerificationFailed("no matching record"), 422, "verification_failed"),
    (StoreError("disk I/O error at /var/lib/secret/path"), 503, "store_unavailable"),
    (DecryptionError(), 500, "internal_error"),
    (ExtraNotInstalled("passkeys", "webauthn"), 500, "internal_error"),
    (AuthsomeError("something internal"), 500, "internal_error"),
]


@pytest.mark.parametrize(("exc", "status", "code"), CASES, ids=lambda c: type(c).__name__)
def test_every_error_class_has_its_http_answer(exc: AuthsomeError, status: int, code: str) -> None:
    answer = error_response(exc)

    assert answer.status == status
    assert answer.body["error"] == code
    assert isinstance(answer.body["message"], str)


def test_the_table_covers_every_error_class_of_the_library() -> None:
    classes = {
        obj
        for obj in vars(authsome.errors).values()
        if inspect.isclass(obj) and issubclass(obj, AuthsomeError)
    }
    assert {type(exc) for exc, _, _ in CASES} == classes


def test_401_answers_carry_the_bearer_challenge() -> None:
    for exc in (InvalidCredentials(), InvalidToken(), InvalidToken(AUTHENTICATION_REQUIRED)):
        assert error_response(exc).headers["WWW-Authenticate"].startswith("Bearer")


def test_feature_not_entitled_names_the_feature() -> None:
    body = error_response(FeatureNotEntitled("authsome.feature.orgs")).body
    assert body["feature"] == "authsome.feature.orgs"


def test_insufficient_scope_names_the_missing_scopes() -> None:
    assert error_response(InsufficientScope(("a", "b"))).body["missing"] == ["a", "b"]


@pytest.mark.parametrize(
    ("retry_after", "header"), [(0.0, "1"), (0.2, "1"), (12.0, "12"), (12.01, "13")]
)
def test_retry_after_is_whole_seconds_rounded_up(retry_after: float, header: str) -> None:
    answer = error_response(RateLimited(retry_after))

    assert answer.headers == {"Retry-After": header}
    assert answer.body["retry_after"] == int(header)


def test_server_side_errors_do_not_leak_their_message() -> None:
    for exc in (StoreError("disk I/O error at /var/lib/secret/path"), AuthsomeError("x=secret")):
        assert "secret" not in str(error_response(exc).body)


def test_an_application_subclass_falls_back_to_its_nearest_mapped_base() -> None:
    class PlanExpired(FeatureNotEntitled):
        pass

    class Custom(AuthsomeError):
        pass

    assert error_response(PlanExpired("authsome.feature.sso")).status == 403
    assert error_response(Custom("x")).status == 500


def test_verification_failed_gives_the_reason() -> None:
    assert error_response(VerificationFailed("timed out")).body["reason"] == "timed out"


# -- authenticate ------------------------------------------------------------------------


def test_no_credentials_is_anonymous_and_require_turns_it_into_invalid_token(
    auth: Authsome,
) -> None:
    assert authenticate(auth, authorization=None, api_key=None) is None
    with pytest.raises(InvalidToken, match=AUTHENTICATION_REQUIRED):
        require(None)


def test_session_principal(auth: Authsome) -> None:
    user = auth.users.register("ada@example.com", PASSWORD)
    tokens = auth.sign_in("ada@example.com", PASSWORD).tokens
    assert tokens is not None

    for header in (f"Bearer {tokens.access_token}", f"bearer   {tokens.access_token} "):
        principal = authenticate(auth, authorization=header, api_key=None)
        assert principal == Principal("session", "default", user_id=user.id, session=tokens.session)


def test_api_key_principals_of_users_and_orgs(auth: Authsome) -> None:
    user = auth.users.register("ada@example.com", PASSWORD, tenant="acme")
    org = auth.orgs.create(user.id, "Acme")
    user_key = auth.api_keys.create(user.id, "u", scopes=("deploy",))
    org_key = auth.api_keys.create(org.id, "o")

    by_user = authenticate(auth, authorization=None, api_key=user_key.secret, scopes=("deploy",))
    by_org = authenticate(auth, authorization=None, api_key=org_key.secret)

    assert by_user == Principal("api_key", "acme", user_id=user.id, api_key=user_key.key)
    assert by_org == Principal("api_key", "acme", org_id=org.id, api_key=org_key.key)
    with pytest.raises(InsufficientScope):
        authenticate(auth, authorization=None, api_key=org_key.secret, scopes=("deploy",))


@pytest.mark.parametrize(
    ("authorization", "api_key"),
    [
        ("Basic dXNlcjpwYXNz", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("Bearer " + "x" * 513, None),
        ("Bearer not-a-session", None),
        (None, ""),
        (None, "ask_" + "x" * 600),
        (None, "ask_00000000000000000000000000000000000"),
        ("Bearer x", "ask_x"),
    ],
)
def test_bad_credentials_are_invalid_token(
    auth: Authsome, authorization: str | None, api_key: str | None
) -> None:
    with pytest.raises(InvalidToken):
        authenticate(auth, authorization=authorization, api_key=api_key)


def test_principal_repr_holds_no_secret(auth: Authsome) -> None:
    user = auth.users.register("ada@example.com", PASSWORD)
    created = auth.api_keys.create(user.id, "k")
    principal = authenticate(auth, authorization=None, api_key=created.secret)
    assert created.secret not in repr(principal)


def test_importing_authsome_imports_no_web_framework() -> None:
    code = (
        "import sys, authsome, authsome.integrations; "
        "loaded = {'fastapi', 'starlette', 'flask', 'werkzeug', 'django'} & set(sys.modules); "
        "assert not loaded, loaded"
    )
    src = str(__import__("pathlib").Path(authsome.__file__).parent.parent)
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": src},
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
