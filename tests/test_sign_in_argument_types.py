"""A wrong type given to a sign-in entry point is a ``TypeError`` naming the
argument, as everywhere in the library; a wrong value of the right type is a
``ValidationError``. Nothing is sent or written either way."""

from __future__ import annotations

import pytest

from authsome import ValidationError
from authsome.testing import Outbox
from tests.conftest import PASSWORD, AuthFactory


@pytest.mark.parametrize("params", [None, ["code", "state"], "code=x&state=y"])
def test_sso_complete_refuses_params_that_are_not_a_mapping(
    make_auth: AuthFactory, params: object
) -> None:
    auth = make_auth()
    with pytest.raises(TypeError, match="params must be a mapping"):
        auth.sso.complete(params, handle="h")  # type: ignore[arg-type]


@pytest.mark.parametrize("method", [5, ["link"], None])
def test_passwordless_begin_refuses_a_method_that_is_not_a_str(
    make_auth: AuthFactory, method: object
) -> None:
    outbox = Outbox()
    auth = make_auth(mailer=outbox)
    auth.users.register("ann@example.com", PASSWORD)
    with pytest.raises(TypeError, match="method must be a str"):
        auth.passwordless.begin("ann@example.com", method=method)  # type: ignore[arg-type]
    auth.flush_mail()
    assert outbox.messages == []


def test_passwordless_begin_refuses_an_unknown_method(make_auth: AuthFactory) -> None:
    outbox = Outbox()
    auth = make_auth(mailer=outbox)
    auth.users.register("ann@example.com", PASSWORD)
    with pytest.raises(ValidationError, match='"link" or "code"'):
        auth.passwordless.begin("ann@example.com", method="sms")  # type: ignore[arg-type]
    auth.flush_mail()
    assert outbox.messages == []
