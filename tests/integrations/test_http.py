"""The framework-free part: credentials → Principal, errors → HTTP answers."""

from __future__ import annotations

import inspect
import logging
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

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
    MailNotSent,
    MfaLocked,
    NotFound,
    RateLimited,
    SSOFailed,
    StoreError,
    ValidationError,
    VerificationFailed,
)
from authsome.integrations import (
    AUTHENTICATION_REQUIRED,
    IntegrationSettings,
    Principal,
    RequestAuth,
    RequestError,
    RequestFacts,
    authenticate,
    error_response,
    json_object,
    require,
    string_field,
    tenant_by_domain,
    tenant_by_header,
)
from authsome.integrations._http import answer, check_declared_length, check_scopes, http_error
from authsome.testing import RecordingLedger
from tests.conftest import PASSWORD

# (error, status, body["error"]) for every class in authsome.errors
CASES: list[tuple[AuthsomeError, int, str]] = [
    (FeatureNotEntitled("authsome.feature.sso"), 403, "feature_not_entitled"),
    (InsufficientScope(("deploy",)), 403, "insufficient_scope"),
    (InvalidCredentials(), 401, "invalid_credentials"),
    (MfaLocked(), 401, "invalid_credentials"),  # its message says to use a recovery code
    (SSOFailed("signature"), 401, "invalid_credentials"),  # the reason stays in logs
    (InvalidToken(), 401, "invalid_token"),
    (RateLimited(12.2), 429, "rate_limited"),
    (LedgerUnavailable("ledger could not check authsome.feature.orgs"), 503, "ledger_unavailable"),
    (ValidationError("email must look like name@domain"), 422, "validation_error"),
    (AlreadyExists("a user with this e-mail exists in this tenant"), 409, "already_exists"),
    (Conflict("the last owner of an org cannot be removed"), 409, "conflict"),
    (NotFound("no such org"), 404, "not_found"),
    (VerificationFailed("no matching record"), 422, "verification_failed"),
    (StoreError("disk I/O error at /var/lib/secret/path"), 503, "store_unavailable"),
    (MailNotSent("SMTP delivery failed (SMTPDataError)"), 503, "mail_unavailable"),
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


# -- the tenant a credential serves ------------------------------------------------------


def test_a_credential_of_another_tenant_is_refused_like_an_unknown_one(auth: Authsome) -> None:
    user = auth.users.register("ada@example.com", PASSWORD, tenant="acme")
    tokens = auth.sign_in("ada@example.com", PASSWORD, tenant="acme", ip="192.0.2.1").tokens
    assert tokens is not None
    secret = auth.api_keys.create(user.id, "k").secret
    bearer = f"Bearer {tokens.access_token}"

    assert authenticate(auth, authorization=bearer, api_key=None, tenant="acme") is not None
    assert authenticate(auth, authorization=None, api_key=secret, tenant="acme") is not None
    with pytest.raises(InvalidToken) as unknown:
        authenticate(auth, authorization="Bearer " + "x" * 43, api_key=None, tenant="globex")
    for authorization, api_key in ((bearer, None), (None, secret)):
        with pytest.raises(InvalidToken) as refused:
            authenticate(auth, authorization=authorization, api_key=api_key, tenant="globex")
        assert str(refused.value) == str(unknown.value)
    with pytest.raises(InvalidToken):  # not InsufficientScope: the key does not exist here
        authenticate(auth, authorization=None, api_key=secret, scopes=("x",), tenant="globex")


def test_scopes_are_checked_on_a_principal_already_validated(auth: Authsome) -> None:
    user = auth.users.register("ada@example.com", PASSWORD)
    secret = auth.api_keys.create(user.id, "k", scopes=("read",)).secret
    principal = authenticate(auth, authorization=None, api_key=secret)

    check_scopes(principal, ("read",))
    check_scopes(None, ("write",))
    with pytest.raises(InsufficientScope) as excinfo:
        check_scopes(principal, ("read", "write"))
    assert excinfo.value.missing == ("write",)


def _facts(headers: dict[str, str], host: str | None = "app.example") -> RequestFacts:
    lowered = {k.lower(): v for k, v in headers.items()}
    return RequestFacts(host=host, header=lambda name: lowered.get(name.lower()), request=None)


def test_request_auth_works_each_thing_out_once_and_needs_no_tenant_when_anonymous(
    auth: Authsome, ledger: RecordingLedger
) -> None:
    user = auth.users.register("ada@example.com", PASSWORD)
    secret = auth.api_keys.create(user.id, "k").secret
    asked: list[str] = []

    def resolver(engine: Authsome, facts: RequestFacts) -> str | None:
        asked.append("tenant")
        return "default"

    settings = IntegrationSettings(tenant=resolver)
    ledger.clear()
    keyed = RequestAuth(
        auth, settings, facts=_facts({"X-API-Key": secret}), peer="192.0.2.1", forwarded_for=[]
    )
    first, second = keyed.principal(), keyed.principal()
    anonymous = RequestAuth(auth, settings, facts=_facts({}), peer=None, forwarded_for=[])

    assert first is second is not None
    assert len(ledger.usage()) == 1 and asked == ["tenant"]
    assert anonymous.principal() is None and asked == ["tenant"]
    assert keyed.client_ip() == "192.0.2.1"


def test_a_resolver_finding_no_tenant_is_a_404(auth: Authsome) -> None:
    settings = IntegrationSettings(tenant=tenant_by_header("X-Tenant"))
    request = RequestAuth(auth, settings, facts=_facts({}), peer=None, forwarded_for=[])

    with pytest.raises(RequestError) as excinfo:
        request.tenant()
    assert error_response(excinfo.value).status == 404
    assert error_response(excinfo.value).body["error"] == "unknown_tenant"


def test_header_and_domain_resolvers_fall_back_to_their_default(auth: Authsome) -> None:
    by_header = tenant_by_header("X-Tenant", default="default")
    by_domain = tenant_by_domain(default="default")

    assert by_header(auth, _facts({"X-Tenant": " acme "})) == "acme"
    assert by_header(auth, _facts({"X-Tenant": "  "})) == "default"
    assert by_domain(auth, _facts({}, host="unknown.example")) == "default"
    assert by_domain(auth, _facts({}, host=None)) == "default"
    assert tenant_by_domain()(auth, _facts({}, host="unknown.example")) is None
    with pytest.raises(ValueError, match="header"):
        tenant_by_header(" ")


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"tenant": "acme"}, TypeError),
        ({"trusted_proxies": 1}, TypeError),
        ({"max_body_bytes": 0}, ValueError),
        ({"max_body_bytes": 1.5}, TypeError),
        ({"max_body_bytes": True}, TypeError),
    ],
)
def test_bad_integration_settings_are_refused(
    kwargs: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        IntegrationSettings(**kwargs)  # type: ignore[arg-type]


# -- request bodies ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "raw", "status", "code"),
    [
        ("application/json", b"", 422, "validation_error"),
        ("text/plain", b"{}", 415, "unsupported_media_type"),
        (None, b"{}", 415, "unsupported_media_type"),
        ("application/json", b'{"a": ', 400, "malformed_json"),
        ("application/json", b"\xff\xfe\xfa", 400, "malformed_json"),
        ("application/json", b"[" * 100_000, 400, "malformed_json"),
        ("application/json", b"[1, 2]", 422, "validation_error"),
        ("application/json", b"null", 422, "validation_error"),
    ],
)
def test_a_body_that_is_not_a_json_object_has_one_answer(
    content_type: str | None, raw: bytes, status: int, code: str
) -> None:
    with pytest.raises(AuthsomeError) as excinfo:
        json_object(content_type, raw)
    answer_ = error_response(excinfo.value)
    assert (answer_.status, answer_.body["error"]) == (status, code)


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "application/x+json"]
)
def test_json_content_types_are_accepted(content_type: str) -> None:
    assert json_object(content_type, b'{"a": 1}') == {"a": 1}


@given(value=st.one_of(st.none(), st.integers(), st.floats(), st.lists(st.text()), st.booleans()))
def test_a_field_that_is_not_a_string_is_a_validation_error(value: object) -> None:
    with pytest.raises(ValidationError, match="tenant must be a string"):
        string_field({"tenant": value}, "tenant", default="default")


def test_string_fields_and_their_defaults() -> None:
    assert string_field({"email": "a@b.c"}, "email") == "a@b.c"
    assert string_field({}, "tenant", default="default") == "default"
    with pytest.raises(ValidationError, match="email is required"):
        string_field({}, "email")


@pytest.mark.parametrize(
    ("length", "refused"),
    [(None, False), ("10", False), ("11", True), ("abc", True), ("-1", True), ("9" * 30, True)],
)
def test_a_declared_length_past_the_cap_is_refused_unread(
    length: str | None, refused: bool
) -> None:
    if refused:
        with pytest.raises(RequestError) as excinfo:
            check_declared_length(length, 10)
        assert error_response(excinfo.value).status == 413
    else:
        check_declared_length(length, 10)


def test_framework_http_errors_get_the_library_body() -> None:
    assert http_error(404).body == {"error": "not_found", "message": "not found"}
    allowed = http_error(405, None, {"Allow": "POST"})
    assert allowed.body["error"] == "method_not_allowed" and allowed.headers == {"Allow": "POST"}
    assert http_error(403, "no API keys here").body["message"] == "no API keys here"
    assert http_error(418).body["error"] == "im_a_teapot"


# -- server faults are logged ----------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        StoreError("database is locked"),
        ExtraNotInstalled("passkeys", "webauthn"),
        LedgerUnavailable("ledger could not check authsome.feature.orgs"),
        DecryptionError(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_server_faults_are_logged_at_error_with_the_exception(
    exc: AuthsomeError, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="authsome.integrations"):
        response = answer(exc)

    assert response.status >= 500
    [record] = [r for r in caplog.records if r.name == "authsome.integrations"]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None and record.exc_info[0] is type(exc)
    assert str(record.exc_info[1]) == str(exc)


def test_a_wrapped_error_is_named_by_type_but_its_text_is_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def connect() -> None:
        try:
            raise ConnectionError("cannot reach postgresql://app:hunter2-password@db/auth")
        except ConnectionError as driver_error:
            raise StoreError("postgres store: cannot connect") from driver_error

    with pytest.raises(StoreError) as excinfo:
        connect()
    with caplog.at_level(logging.DEBUG, logger="authsome.integrations"):
        answer(excinfo.value)

    assert excinfo.value.__cause__ is not None  # the caller's exception is left as it was
    logged = "\n".join(logging.Formatter().format(r) for r in caplog.records)
    assert "builtins.ConnectionError" in logged and "cannot connect" in logged
    assert "hunter2" not in logged and "raise StoreError" in logged


def test_client_errors_are_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="authsome.integrations"):
        for exc in (InvalidToken(), ValidationError("x"), RateLimited(3), NotFound("x")):
            answer(exc)
    assert [r for r in caplog.records if r.name == "authsome.integrations"] == []
