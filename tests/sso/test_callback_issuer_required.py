"""RFC 9207: a provider that advertises ``authorization_response_iss_parameter_supported``
names itself in every callback, so a callback without ``iss`` is refused (it may come
from another provider: a mix-up attack)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from authsome.testing import RecordingLedger
from tests.conftest import AuthFactory, FakeClock
from tests.support.oidc_op import OpenIDProvider
from tests.support.sso_scene import TENANT, Scene, refused


@pytest.fixture
def clock() -> FakeClock:
    """The real time: the provider stamps its ID tokens with it."""
    return FakeClock(datetime.now(UTC))


@pytest.fixture
def scene(make_auth: AuthFactory, ledger: RecordingLedger, oidc_op: OpenIDProvider) -> Scene:
    return Scene(
        make_auth(ledger=ledger, sso_allow_insecure_loopback=True), oidc_op, oidc_op.add_client()
    )


def test_the_test_provider_advertises_the_iss_parameter(oidc_op: OpenIDProvider) -> None:
    document = httpx.get(f"{oidc_op.issuer}/.well-known/openid-configuration", timeout=10).json()
    assert document["authorization_response_iss_parameter_supported"] is True


def test_a_callback_without_iss_is_refused_when_the_provider_promises_it(
    scene: Scene, caplog: pytest.LogCaptureFixture
) -> None:
    params, handle = scene.callback(scene.account())
    del params["iss"]

    with refused(caplog, "lacks the iss"):
        scene.auth.sso.complete(params, handle=handle, tenant=TENANT)


def test_a_callback_with_the_right_iss_signs_in(scene: Scene) -> None:
    params, handle = scene.callback(scene.account())
    assert scene.auth.sso.complete(params, handle=handle, tenant=TENANT).tokens is not None
