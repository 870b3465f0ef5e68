"""The SAML routes of FastAPI, Flask and Django, driven end to end through a real
SAML IdP (pysaml2 on 127.0.0.1): ``/sso/start`` → the IdP's login → its form POSTed
cross-site to ``/sso/saml/acs/{connection}`` (no cookie: posted again from our
origin) → a session; and the SP metadata route."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from lxml import etree

from authsome import Authsome
from authsome.integrations._signin_routes import RESUBMITTED, STATE_COOKIE, SignInRoutes
from tests.conftest import AuthFactory, FakeClock
from tests.integrations.test_sign_in_routes import BASE, FRAMEWORKS, Send, _started
from tests.support.saml_idp import Browser
from tests.support.saml_scene import SP, USERS, SamlScene, idp_keys

_INPUT = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


@pytest.fixture
def auth(make_auth: AuthFactory, clock: FakeClock) -> Authsome:
    clock.now = datetime.now(UTC)  # the IdP stamps its assertions with the real time
    return make_auth(sso_allow_insecure_loopback=True, saml=replace(SP, base_url=BASE))


@pytest.fixture(params=sorted(FRAMEWORKS))
def send(request: pytest.FixtureRequest, auth: Authsome) -> Iterator[Send]:
    yield from FRAMEWORKS[request.param](auth)


@pytest.fixture
def scene(auth: Authsome) -> Iterator[SamlScene]:
    made = SamlScene(auth, idp_keys(), base_url=BASE, tenant="default")
    with made.running():
        yield made


def _at_idp(send: Send, scene: SamlScene) -> tuple[dict[str, str], str]:
    """Start at our route, log in at the IdP: the form it posts, and our cookie."""
    location, cookie, _ = _started(send, "/auth/sso/start", {"connection_id": scene.connection.id})
    assert location.startswith(scene.idp.sso_url + "?")
    form = Browser().sign_in(location, user="ann", password=USERS["ann"].password)
    return form, cookie


def _acs(scene: SamlScene) -> str:
    return f"/auth/sso/saml/acs/{scene.connection.id}"


def test_start_idp_login_and_the_cross_site_post_to_the_acs_give_a_session(
    send: Send, auth: Authsome, scene: SamlScene
) -> None:
    form, cookie = _at_idp(send, scene)

    # The IdP's page posts cross-site: no SameSite=Lax cookie comes along.
    page = send("POST", _acs(scene), form, None)
    assert page.status == 200
    text = page.body.decode()
    assert f'action="{scene.acs_url}"' in text  # configured, not the Host
    fields = {k: html.unescape(v) for k, v in _INPUT.findall(text)}
    assert fields == {**form, RESUBMITTED: "1"}

    # Posted again from our origin, with the cookie: signed in.
    reply = send("POST", _acs(scene), fields, cookie)
    assert reply.status == 200, reply.body
    body = reply.json()
    session = auth.sessions.validate(body["access_token"], tenant="default")
    assert session.user_id == body["user_id"]
    assert auth.orgs.role_of(scene.org.id, body["user_id"]) is not None
    assert any(c.startswith(f"{STATE_COOKIE}=") for c in reply.set_cookie)  # deleted
    # The same response again: refused.
    assert send("POST", _acs(scene), fields, cookie).status == 401


def test_a_response_without_the_browsers_cookie_is_refused_as_unsolicited(
    send: Send, scene: SamlScene
) -> None:
    form, _ = _at_idp(send, scene)
    _, other_cookie = _at_idp(send, scene)  # another sign-in of the same browser

    assert send("POST", _acs(scene), {**form, RESUBMITTED: "1"}, None).status == 401
    assert send("POST", _acs(scene), {**form, RESUBMITTED: "1"}, other_cookie).status == 401


def test_the_acs_of_an_unknown_or_malformed_connection_is_refused(
    send: Send, scene: SamlScene
) -> None:
    form, cookie = _at_idp(send, scene)

    assert send("POST", "/auth/sso/saml/acs/sso_unknown", form, cookie).status == 401
    assert send("POST", "/auth/sso/saml/acs/" + "x" * 200, form, cookie).status == 404


def test_the_metadata_route_serves_the_connections_sp_metadata(
    send: Send, scene: SamlScene
) -> None:
    reply = send("GET", f"/auth/sso/saml/metadata/{scene.connection.id}", None, None)

    assert reply.status == 200
    content_type = reply.headers.get("content-type") or reply.headers["Content-Type"]
    assert content_type.startswith("application/samlmetadata+xml")
    root = etree.fromstring(reply.body)
    assert root.get("entityID") == scene.entity_id
    assert send("GET", "/auth/sso/saml/metadata/sso_unknown", None, None).status == 404


def test_routes_mounted_elsewhere_than_the_service_providers_base_url_are_refused(
    make_auth: AuthFactory,
) -> None:
    auth = make_auth(saml=replace(SP, base_url="https://app.example/auth"))

    with pytest.raises(ValueError, match="SAMLServiceProvider"):
        SignInRoutes(auth, "https://app.example/other")
    assert SignInRoutes(auth, "https://app.example/auth/").base_url == "https://app.example/auth"
