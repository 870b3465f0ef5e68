"""An engine without ``Authsome(saml=...)`` mounts the sign-in routes all the same;
its SAML routes then answer 404 (no SAML connection is served), never a 500 that
any client could trigger and fill the server-fault log with."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from authsome import Authsome
from authsome.errors import InvalidCredentials
from authsome.integrations._signin_routes import RESUBMITTED
from tests.conftest import AuthFactory
from tests.integrations.test_sign_in_routes import FRAMEWORKS, Send


@pytest.fixture
def auth(make_auth: AuthFactory) -> Authsome:
    return make_auth()


@pytest.fixture(params=sorted(FRAMEWORKS))
def send(request: pytest.FixtureRequest, auth: Authsome) -> Iterator[Send]:
    yield from FRAMEWORKS[request.param](auth)


def test_the_metadata_route_is_a_404(send: Send) -> None:
    reply = send("GET", "/auth/sso/saml/metadata/sso_unknown", None, None)

    assert reply.status == 404, reply.body
    assert reply.json()["error"] == "not_found"


@pytest.mark.parametrize("resubmitted", [False, True], ids=["cross-site", "re-posted"])
def test_a_post_to_the_acs_is_a_404(send: Send, resubmitted: bool) -> None:
    form = {"SAMLResponse": "PHNhbWxwOlJlc3BvbnNlLz4=", "RelayState": "whatever"}
    if resubmitted:
        form[RESUBMITTED] = "1"

    reply = send("POST", "/auth/sso/saml/acs/sso_unknown", form, None)

    assert reply.status == 404, reply.body
    assert reply.json()["error"] == "not_found"


def test_a_saml_response_at_the_engine_is_the_generic_refusal(auth: Authsome) -> None:
    # A client can send SAMLResponse where any callback is read (/sso/callback).
    with pytest.raises(InvalidCredentials):
        auth.sso.complete({"SAMLResponse": "PHNhbWxwOlJlc3BvbnNlLz4="}, handle="whatever")
