"""TOTP enrolment, codes, recovery codes, disabling, the MFA gate and its usage event,
secrets at rest and out of every repr, log and error message."""

from __future__ import annotations

import base64
import logging
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyotp
import pytest
from hypothesis import given
from hypothesis import strategies as st

import authsome.mfa
from authsome import (
    AlreadyExists,
    Authsome,
    DecryptionError,
    Feature,
    FeatureNotEntitled,
    InvalidCredentials,
    MfaMethod,
    NotFound,
    RateLimited,
    SecretBox,
    TOTPSetup,
    UsageEvent,
    User,
    ValidationError,
)
from authsome.bridge import LedgerContext
from authsome.mfa import MAX_FAILURES, RECOVERY_CODES
from authsome.stores import SQLiteStore
from authsome.testing import DenyingLedger, RecordingLedger
from tests.conftest import PASSWORD, AuthFactory, FakeClock
from tests.support.race import race

EMAIL = "ann@example.com"
KEY = bytes(range(32))
MFA_KEY = "authsome.feature.mfa"


def code(setup: TOTPSetup, clock: FakeClock, steps: int = 0) -> str:
    """What an authenticator app shows ``steps`` time-steps away from the clock."""
    return pyotp.TOTP(setup.secret).at(clock.now + timedelta(seconds=30 * steps))


def register(auth: Authsome, email: str = EMAIL, tenant: str = "acme") -> User:
    return auth.users.register(email, PASSWORD, tenant=tenant)


def enrol(auth: Authsome, user: User, clock: FakeClock) -> tuple[TOTPSetup, list[str]]:
    """Begin and confirm TOTP; the clock moves one step on, so the next code is fresh."""
    setup = auth.mfa.begin_totp(user.id)
    codes = auth.mfa.confirm_totp(user.id, code(setup, clock))
    clock.advance(seconds=30)
    return setup, codes


# -- enrolment -----------------------------------------------------------------------


def test_begin_returns_a_secret_and_a_provisioning_uri(auth: Authsome) -> None:
    user = register(auth)
    setup = auth.mfa.begin_totp(user.id, issuer="Acme Corp")

    assert re.fullmatch(r"[A-Z2-7]{32}", setup.secret)  # 160 bits of base32
    assert len(base64.b32decode(setup.secret)) == 20
    assert setup.provisioning_uri.startswith("otpauth://totp/Acme%20Corp:ann%40example.com?")
    assert f"secret={setup.secret}" in setup.provisioning_uri
    [factor] = auth.mfa.factors(user.id)
    assert factor.id == setup.factor_id
    assert factor.method is MfaMethod.TOTP
    assert not factor.confirmed
    assert factor.user_id == user.id


def test_a_pending_factor_does_not_change_sign_in(auth: Authsome) -> None:
    register(auth)
    user = auth.users.find_by_email(EMAIL, tenant="acme")
    assert user is not None
    auth.mfa.begin_totp(user.id)

    result = auth.sign_in(EMAIL, PASSWORD, tenant="acme")

    assert result.tokens is not None
    assert not result.mfa_required


def test_confirm_returns_ten_distinct_recovery_codes(auth: Authsome, clock: FakeClock) -> None:
    user = register(auth)
    _setup, codes = enrol(auth, user, clock)

    assert len(codes) == RECOVERY_CODES
    assert len(set(codes)) == RECOVERY_CODES
    for recovery in codes:
        assert re.fullmatch(r"[A-Z2-7]{4}(-[A-Z2-7]{4}){3}", recovery)
    [factor] = auth.mfa.factors(user.id)
    assert factor.confirmed
    assert factor.confirmed_at == clock.now - timedelta(seconds=30)
    assert auth.mfa.recovery_codes_left(user.id) == RECOVERY_CODES


def test_begin_again_replaces_the_pending_enrolment(auth: Authsome, clock: FakeClock) -> None:
    user = register(auth)
    first = auth.mfa.begin_totp(user.id)
    second = auth.mfa.begin_totp(user.id)

    assert first.secret != second.secret
    assert [f.id for f in auth.mfa.factors(user.id)] == [second.factor_id]
    with pytest.raises(InvalidCredentials):
        auth.mfa.confirm_totp(user.id, code(first, clock))
    auth.mfa.confirm_totp(user.id, code(second, clock))


def test_begin_when_confirmed_already_exists(auth: Authsome, clock: FakeClock) -> None:
    user = register(auth)
    enrol(auth, user, clock)

    with pytest.raises(AlreadyExists):
        auth.mfa.begin_totp(user.id)
    with pytest.raises(AlreadyExists):
        auth.mfa.confirm_totp(user.id, "123456")
    assert len(auth.mfa.factors(user.id)) == 1


def test_confirm_without_begin_is_not_found(auth: Authsome) -> None:
    user = register(auth)
    with pytest.raises(NotFound):
        auth.mfa.confirm_totp(user.id, "123456")


@pytest.mark.parametrize("steps", [-1, 0, 1])
def test_codes_one_step_either_side_are_accepted(
    auth: Authsome, clock: FakeClock, steps: int
) -> None:
    user = register(auth)
    setup = auth.mfa.begin_totp(user.id)
    clock.advance(seconds=7)  # inside a step, not on its edge
    auth.mfa.confirm_totp(user.id, code(setup, clock, steps))
    assert auth.mfa.factors(user.id)[0].confirmed


@pytest.mark.parametrize("steps", [-3, -2, 2, 3])
def test_codes_two_steps_away_are_rejected(auth: Authsome, clock: FakeClock, steps: int) -> None:
    user = register(auth)
    setup = auth.mfa.begin_totp(user.id)
    clock.advance(seconds=7)
    with pytest.raises(InvalidCredentials):
        auth.mfa.confirm_totp(user.id, code(setup, clock, steps))
    assert not auth.mfa.factors(user.id)[0].confirmed


@pytest.mark.parametrize(
    "template", ["{0}{1} {2}{3} {4}{5}", "{0}{1}{2}-{3}{4}{5}", " {0}{1}{2}{3}{4}{5} "]
)
def test_codes_may_carry_spaces_and_dashes(auth: Authsome, clock: FakeClock, template: str) -> None:
    user = register(auth)
    setup = auth.mfa.begin_totp(user.id)
    auth.mfa.confirm_totp(user.id, template.format(*code(setup, clock)))


@pytest.mark.parametrize("bad", ["", "abcdef", "1234567", "12345"])
def test_malformed_codes_are_wrong_codes(auth: Authsome, bad: str) -> None:
    user = register(auth)
    auth.mfa.begin_totp(user.id)
    with pytest.raises(InvalidCredentials):
        auth.mfa.confirm_totp(user.id, bad)


def test_the_code_that_confirmed_cannot_be_used_again(auth: Authsome, clock: FakeClock) -> None:
    user = register(auth)
    setup = auth.mfa.begin_totp(user.id)
    confirming = code(setup, clock)
    auth.mfa.confirm_totp(user.id, confirming)

    with pytest.raises(InvalidCredentials):
        auth.mfa.disable(user.id, confirming)
    assert auth.mfa.factors(user.id)[0].confirmed


def test_a_code_from_an_earlier_step_is_refused_after_a_later_one(
    auth: Authsome, clock: FakeClock
) -> None:
    user = register(auth)
    setup = auth.mfa.begin_totp(user.id)
    clock.advance(seconds=7)
    auth.mfa.confirm_totp(user.id, code(setup, clock, 1))  # device a step ahead

    with pytest.raises(InvalidCredentials):
        auth.mfa.disable(user.id, code(setup, clock))  # the current step is older
    clock.advance(seconds=60)  # now the current step is after the one used
    auth.mfa.disable(user.id, code(setup, clock))


# -- disable, recovery codes -------------------------------------------------------------


def test_disable_with_a_totp_code_removes_the_factor(auth: Authsome, clock: FakeClock) -> None:
    user = register(auth)
    setup, _codes = enrol(auth, user, clock)

    assert auth.mfa.disable(user.id, code(setup, clock)) is True

    assert auth.mfa.factors(user.id) == []
    assert auth.mfa.recovery_codes_left(user.id) == 0
    assert auth.sign_in(EMAIL, PASSWORD, tenant="acme").tokens is not None


def test_disable_with_a_wrong_code_keeps_the_factor(auth: Authsome, clock: FakeClock) -> None:
    user = register(auth)
    setup, _codes = enrol(auth, user, clock)
    wrong = f"{(int(code(setup, clock)) + 1) % 1_000_000:06d}"

    with pytest.raises(InvalidCredentials):
        auth.mfa.disable(user.id, wrong)
    with pytest.raises(InvalidCredentials):
        auth.mfa.disable(user.id, "AAAA-AAAA-AAAA-AAAA")
    assert auth.mfa.factors(user.id)[0].confirmed


def test_disable_without_mfa_removes_nothing(auth: Authsome) -> None:
    user = register(auth)
    assert auth.mfa.disable(user.id, "123456") is False
    assert auth.mfa.disable("usr_nobody", "123456") is False


def test_recovery_code_is_single_use(auth: Authsome, clock: FakeClock) -> None:
    user = register(auth)
    _setup, codes = enrol(auth, user, clock)
    auth.mfa.disable(user.id, codes[3])
    # Enrol again: old recovery codes died with the old factor.
    _setup, new_codes = enrol(auth, user, clock)
    with pytest.raises(InvalidCredentials):
        auth.mfa.disable(user.id, codes[3])
    with pytest.raises(InvalidCredentials):
        auth.mfa.disable(user.id, codes[4])
    auth.mfa.disable(user.id, new_codes[0].lower().replace("-", " "))
    assert auth.mfa.factors(user.id) == []


def test_recovery_codes_are_counted_down(auth: Authsome, clock: FakeClock) -> None:
    user = register(auth)
    _setup, codes = enrol(auth, user, clock)
    signin = auth.sign_in(EMAIL, PASSWORD, tenant="acme")
    assert signin.ticket is not None
    auth.mfa.verify(signin.ticket, codes[0])

    assert auth.mfa.recovery_codes_left(user.id) == RECOVERY_CODES - 1


def test_too_many_wrong_codes_are_rate_limited_then_forgiven(
    auth: Authsome, clock: FakeClock
) -> None:
    user = register(auth)
    setup = auth.mfa.begin_totp(user.id)
    right = code(setup, clock)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    for _ in range(MAX_FAILURES):
        with pytest.raises(InvalidCredentials):
            auth.mfa.confirm_totp(user.id, wrong)

    with pytest.raises(RateLimited):
        auth.mfa.confirm_totp(user.id, right)

    clock.advance(minutes=15)
    auth.mfa.confirm_totp(user.id, code(setup, clock))


# -- input ----------------------------------------------------------------------------


def test_wrong_types_are_type_errors(auth: Authsome) -> None:
    user = register(auth)
    with pytest.raises(TypeError):
        auth.mfa.begin_totp(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        auth.mfa.confirm_totp(user.id, 123456)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        auth.mfa.verify(None, "123456")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        auth.mfa.begin_totp(user.id, issuer=None)  # type: ignore[arg-type]


def test_bad_values_are_validation_errors(auth: Authsome) -> None:
    user = register(auth)
    auth.mfa.begin_totp(user.id)
    with pytest.raises(ValidationError):
        auth.mfa.confirm_totp(user.id, "1" * 65)
    for issuer in ("", "a:b", "x" * 101):
        with pytest.raises(ValidationError):
            auth.mfa.begin_totp(user.id, issuer=issuer)


def test_unknown_users_are_not_found(auth: Authsome) -> None:
    for call in (
        lambda: auth.mfa.begin_totp("usr_nobody"),
        lambda: auth.mfa.confirm_totp("usr_nobody", "123456"),
        lambda: auth.mfa.factors("usr_nobody"),
    ):
        with pytest.raises(NotFound):
            call()


# -- the gate and the usage event (DESIGN.md §2) ------------------------------------------


def test_begin_is_gated_before_any_secret_exists(
    make_auth: AuthFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = DenyingLedger(Feature.MFA)
    auth = make_auth(ledger=ledger)
    user = register(auth)
    ledger.clear()

    class NoSecrets:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError("a secret was generated before the entitlement check")

    monkeypatch.setattr(authsome.mfa, "secrets", NoSecrets())
    with pytest.raises(FeatureNotEntitled) as caught:
        auth.mfa.begin_totp(user.id)

    assert caught.value.feature == MFA_KEY
    assert auth.store.list_mfa_factors(user.id) == []
    assert [(c.kind, c.feature_key) for c in ledger.calls] == [("check_entitlement", MFA_KEY)]
    assert ledger.calls[0].ctx == LedgerContext(tenant="acme", user_id=user.id)


def test_confirm_is_gated_and_a_denial_leaves_the_factor_pending(
    make_auth: AuthFactory, clock: FakeClock
) -> None:
    allowed = make_auth()
    user = register(allowed)
    setup = allowed.mfa.begin_totp(user.id)
    ledger = DenyingLedger(Feature.MFA)
    denied = make_auth(store=allowed.store, ledger=ledger)

    with pytest.raises(FeatureNotEntitled) as caught:
        denied.mfa.confirm_totp(user.id, code(setup, clock))

    assert caught.value.feature == MFA_KEY
    [factor] = denied.store.list_mfa_factors(user.id)
    assert not factor.confirmed
    assert denied.store.count_recovery_codes(factor.id) == 0
    assert [(c.kind, c.feature_key) for c in ledger.calls] == [("check_entitlement", MFA_KEY)]
    # The denied call used nothing up: the same code confirms once entitled.
    allowed.mfa.confirm_totp(user.id, code(setup, clock))


def test_confirm_records_the_enrolment_once_with_the_factor_id(
    auth: Authsome, ledger: RecordingLedger, clock: FakeClock
) -> None:
    user = register(auth)
    setup = auth.mfa.begin_totp(user.id)
    assert ledger.usage(UsageEvent.MFA_ENROLLMENTS) == []  # beginning records nothing
    ledger.clear()

    auth.mfa.confirm_totp(user.id, code(setup, clock))

    assert [(c.kind, c.feature_key) for c in ledger.calls] == [
        ("check_entitlement", MFA_KEY),
        ("record_usage", UsageEvent.MFA_ENROLLMENTS),
    ]
    assert ledger.calls[0].ctx == LedgerContext(tenant="acme", user_id=user.id)
    recorded = ledger.usage(UsageEvent.MFA_ENROLLMENTS)[0]
    assert recorded.ctx == LedgerContext(tenant="acme", user_id=user.id, event_id=setup.factor_id)
    assert recorded.quantity == 1


def test_begin_checks_the_gate_with_the_users_tenant(
    auth: Authsome, ledger: RecordingLedger
) -> None:
    user = register(auth, tenant="globex")
    ledger.clear()
    auth.mfa.begin_totp(user.id)
    assert [(c.feature_key, c.ctx) for c in ledger.calls] == [
        (MFA_KEY, LedgerContext(tenant="globex", user_id=user.id))
    ]


def test_a_wrong_code_records_nothing(
    auth: Authsome, ledger: RecordingLedger, clock: FakeClock
) -> None:
    user = register(auth)
    setup = auth.mfa.begin_totp(user.id)
    with pytest.raises(InvalidCredentials):
        auth.mfa.confirm_totp(user.id, code(setup, clock, 5))
    assert ledger.usage(UsageEvent.MFA_ENROLLMENTS) == []


def test_concurrent_confirmations_record_one_enrolment(
    make_auth: AuthFactory, ledger: RecordingLedger, clock: FakeClock, tmp_path: Path
) -> None:
    auth = make_auth(store=SQLiteStore(tmp_path / "auth.db"), ledger=ledger)
    user = register(auth)
    setup = auth.mfa.begin_totp(user.id)
    codes = [code(setup, clock, steps) for steps in (-1, 0, 1)] * 3

    def confirm(text: str) -> str:
        try:
            auth.mfa.confirm_totp(user.id, text)
        except (InvalidCredentials, AlreadyExists):
            return "refused"
        return "ok"

    outcomes = race(confirm, codes)

    assert outcomes.count("ok") == 1
    assert len(ledger.usage(UsageEvent.MFA_ENROLLMENTS)) == 1


def test_disable_and_verify_are_not_gated(make_auth: AuthFactory, clock: FakeClock) -> None:
    """A tenant that loses the feature keeps its users' second factor working."""
    allowed = make_auth()
    user = register(allowed)
    setup, _codes = enrol(allowed, user, clock)
    denied = make_auth(store=allowed.store, ledger=DenyingLedger(Feature.MFA))

    signin = denied.sign_in(EMAIL, PASSWORD, tenant="acme")
    assert signin.mfa_required and signin.ticket is not None
    assert denied.mfa.verify(signin.ticket, code(setup, clock)).tokens is not None
    clock.advance(seconds=30)
    denied.mfa.disable(user.id, code(setup, clock))
    assert denied.mfa.factors(user.id) == []


# -- secrets at rest -------------------------------------------------------------------


def _db_bytes(tmp_path: Path) -> bytes:
    # The write-ahead log holds recent pages too; read every file of the database.
    return b"".join(p.read_bytes() for p in sorted(tmp_path.glob("auth.db*")))


def test_with_a_secret_key_the_secret_is_not_in_the_database_file(
    make_auth: AuthFactory, clock: FakeClock, tmp_path: Path
) -> None:
    auth = make_auth(store=SQLiteStore(tmp_path / "auth.db"), secret_key=KEY)
    user = register(auth)
    setup, _codes = enrol(auth, user, clock)
    auth.close()

    data = _db_bytes(tmp_path)
    assert setup.secret.encode() not in data
    assert base64.b32decode(setup.secret) not in data
    assert setup.factor_id.encode() in data  # the file was read at all


def test_without_a_key_the_secret_is_stored_as_is(
    make_auth: AuthFactory, clock: FakeClock, tmp_path: Path
) -> None:
    """The control for the test above: the scan finds a secret when it is there."""
    auth = make_auth(store=SQLiteStore(tmp_path / "auth.db"))
    setup = auth.mfa.begin_totp(register(auth).id)
    auth.close()
    assert setup.secret.encode() in _db_bytes(tmp_path)


def test_encrypted_secrets_work_across_engines_with_the_same_key(
    make_auth: AuthFactory, clock: FakeClock, tmp_path: Path
) -> None:
    first = make_auth(store=SQLiteStore(tmp_path / "auth.db"), secret_key=KEY)
    user = register(first)
    setup, _codes = enrol(first, user, clock)
    first.close()

    again = make_auth(store=SQLiteStore(tmp_path / "auth.db"), secret_key=bytes(KEY))
    again.mfa.disable(user.id, code(setup, clock))


@pytest.mark.parametrize("other_key", [bytes(32), None])
def test_a_wrong_or_missing_key_fails_with_a_typed_error(
    make_auth: AuthFactory, clock: FakeClock, tmp_path: Path, other_key: bytes | None
) -> None:
    first = make_auth(store=SQLiteStore(tmp_path / "auth.db"), secret_key=KEY)
    user = register(first)
    setup, _codes = enrol(first, user, clock)
    first.close()

    other = make_auth(store=SQLiteStore(tmp_path / "auth.db"), secret_key=other_key)
    with pytest.raises(DecryptionError) as caught:
        other.mfa.disable(user.id, code(setup, clock))
    assert setup.secret not in str(caught.value)
    assert other.mfa.factors(user.id)[0].confirmed  # nothing was changed


def test_a_sealed_secret_moved_to_another_factor_does_not_open(
    make_auth: AuthFactory, clock: FakeClock, tmp_path: Path
) -> None:
    import sqlite3

    auth = make_auth(store=SQLiteStore(tmp_path / "auth.db"), secret_key=KEY)
    mallory = register(auth, "mallory@example.com")
    victim = register(auth)
    mallory_setup = auth.mfa.begin_totp(mallory.id)
    auth.mfa.begin_totp(victim.id)
    with sqlite3.connect(tmp_path / "auth.db") as conn:  # an attacker with write access
        conn.execute(
            "UPDATE mfa_factors SET secret = (SELECT secret FROM mfa_factors WHERE user_id = ?)"
            " WHERE user_id = ?",
            (mallory.id, victim.id),
        )
    conn.close()
    with pytest.raises(DecryptionError):
        auth.mfa.confirm_totp(victim.id, code(mallory_setup, clock))


@pytest.mark.parametrize("key", [b"short", bytes(31), bytes(33)])
def test_secret_key_must_be_32_bytes(make_auth: AuthFactory, key: bytes) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        make_auth(secret_key=key)


def test_secret_key_must_be_bytes(make_auth: AuthFactory) -> None:
    with pytest.raises(TypeError):
        make_auth(secret_key="0" * 32)


# -- SecretBox -----------------------------------------------------------------------


@given(plaintext=st.text(), aad=st.text())
def test_secret_box_round_trips_any_text(plaintext: str, aad: str) -> None:
    box = SecretBox(KEY)
    sealed = box.seal(plaintext, aad=aad)
    assert box.open(sealed, aad=aad) == plaintext
    assert sealed != box.seal(plaintext, aad=aad)  # a fresh nonce every time


@given(plaintext=st.text(), position=st.integers(min_value=0), flip=st.integers(1, 255))
def test_secret_box_rejects_any_tampered_byte(plaintext: str, position: int, flip: int) -> None:
    box = SecretBox(KEY)
    sealed = box.seal(plaintext, aad="row-1")
    raw = bytearray(base64.urlsafe_b64decode(sealed.removeprefix("v1.")))
    raw[position % len(raw)] ^= flip
    tampered = "v1." + base64.urlsafe_b64encode(bytes(raw)).decode()
    with pytest.raises(DecryptionError):
        box.open(tampered, aad="row-1")


@given(plaintext=st.text(), aad=st.text(), other=st.text())
def test_secret_box_binds_the_associated_data(plaintext: str, aad: str, other: str) -> None:
    box = SecretBox(KEY)
    sealed = box.seal(plaintext, aad=aad)
    if other != aad:
        with pytest.raises(DecryptionError):
            box.open(sealed, aad=other)
    with pytest.raises(DecryptionError):
        SecretBox(bytes(32)).open(sealed, aad=aad)


@pytest.mark.parametrize("junk", ["", "v1.", "v1.!!!", "v1.AAAA", "plain", "v2.AAAA"])
def test_secret_box_rejects_malformed_values(junk: str) -> None:
    with pytest.raises(DecryptionError):
        SecretBox(KEY).open(junk, aad="x")


def test_secret_box_hides_its_key() -> None:
    box = SecretBox(KEY)
    assert KEY.hex() not in repr(box)
    assert str(list(KEY)) not in repr(box)


# -- no secret in reprs, logs or errors ------------------------------------------------------


def test_secrets_appear_in_no_repr_log_or_error_message(
    make_auth: AuthFactory, clock: FakeClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    auth = make_auth(store=SQLiteStore(tmp_path / "auth.db"), secret_key=KEY)
    user = register(auth)
    setup = auth.mfa.begin_totp(user.id)
    codes = auth.mfa.confirm_totp(user.id, code(setup, clock))
    clock.advance(seconds=30)
    signin = auth.sign_in(EMAIL, PASSWORD, tenant="acme")
    assert signin.ticket is not None
    texts = [
        repr(x) for x in (auth, auth.mfa, auth.store, setup, signin, *auth.mfa.factors(user.id))
    ]
    texts += [str(setup), str(signin)]
    errors: list[BaseException] = []
    last = codes[0][-1]
    for bad in (codes[0][:-1] + ("A" if last != "A" else "B"), "000000", "1" * 65):
        try:
            auth.mfa.verify(signin.ticket, bad)
        except Exception as exc:
            errors.append(exc)
    wrong_key = make_auth(store=auth.store, secret_key=bytes(32))
    try:
        wrong_key.mfa.disable(user.id, code(setup, clock))
    except Exception as exc:
        errors.append(exc)
    assert len(errors) == 4
    for error in errors:
        texts += [str(error), repr(error), repr(error.__cause__), repr(error.__context__)]
    texts += [record.getMessage() for record in caplog.records]

    secrets_ = [setup.secret, signin.ticket, *codes, *(c.replace("-", "") for c in codes)]
    secrets_ += [KEY.hex(), setup.provisioning_uri]
    for text in texts:
        for secret in secrets_:
            assert secret not in text
