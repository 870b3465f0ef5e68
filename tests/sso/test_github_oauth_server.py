"""The local GitHub stand-in keeps GitHub's documented OAuth 2 and user API contract."""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from tests.support.github_oauth import GitHubEmail, GitHubOAuthServer, GitHubUser, OAuthApp

JSON = {"Accept": "application/json"}


def _authorize(github: GitHubOAuthServer, app: OAuthApp, **params: str) -> dict[str, str]:
    query = {"client_id": app.client_id, "redirect_uri": app.redirect_uri, **params}
    response = httpx.get(f"{github.authorize_url}?{urlencode(query)}", timeout=10)
    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(app.redirect_uri + "?")
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


def _exchange(github: GitHubOAuthServer, app: OAuthApp, code: str, **extra: str) -> httpx.Response:
    form = {
        "client_id": app.client_id,
        "client_secret": app.client_secret,
        "code": code,
        "redirect_uri": app.redirect_uri,
        **extra,
    }
    return httpx.post(github.token_url, data=form, headers=JSON, timeout=10)


def _api(github: GitHubOAuthServer, path: str, token: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", **JSON}
    return httpx.get(f"{github.api_base_url}{path}", headers=headers, timeout=10)


@pytest.fixture
def app(github_oauth: GitHubOAuthServer) -> OAuthApp:
    return github_oauth.add_app()


@pytest.fixture
def octocat(github_oauth: GitHubOAuthServer) -> GitHubUser:
    return github_oauth.add_user(
        "octocat",
        name="The Octocat",
        user_id=583231,
        emails=(
            GitHubEmail("octocat@corp.example", primary=True, verified=True),
            GitHubEmail("old@corp.example", primary=False, verified=True),
            GitHubEmail("unproven@corp.example", primary=False, verified=False),
        ),
    )


def test_web_flow_gives_a_token_for_the_user_and_their_emails(
    github_oauth: GitHubOAuthServer, app: OAuthApp, octocat: GitHubUser
) -> None:
    back = _authorize(github_oauth, app, state="s-1", scope="read:user user:email")
    assert back["state"] == "s-1"

    answer = _exchange(github_oauth, app, back["code"])

    assert answer.status_code == 200
    token = answer.json()
    assert token["token_type"] == "bearer"
    assert token["scope"] == "read:user user:email"
    assert token["access_token"].startswith("gho_")
    user = _api(github_oauth, "/user", token["access_token"]).json()
    assert (user["id"], user["login"], user["name"]) == (583231, "octocat", "The Octocat")
    emails = _api(github_oauth, "/user/emails", token["access_token"]).json()
    assert emails[0] == {
        "email": "octocat@corp.example",
        "primary": True,
        "verified": True,
        "visibility": None,
    }
    assert [(e["email"], e["verified"]) for e in emails[1:]] == [
        ("old@corp.example", True),
        ("unproven@corp.example", False),
    ]


def test_a_code_is_good_once(
    github_oauth: GitHubOAuthServer, app: OAuthApp, octocat: GitHubUser
) -> None:
    code = _authorize(github_oauth, app, state="s", scope="user:email")["code"]
    assert "access_token" in _exchange(github_oauth, app, code).json()

    again = _exchange(github_oauth, app, code)

    assert again.status_code == 200  # GitHub reports token errors in a 200 body
    assert again.json()["error"] == "bad_verification_code"


def test_pkce_verifier_must_match_the_challenge(
    github_oauth: GitHubOAuthServer, app: OAuthApp, octocat: GitHubUser
) -> None:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    pkce = {"code_challenge": challenge, "code_challenge_method": "S256"}

    code = _authorize(github_oauth, app, state="s", **pkce)["code"]
    wrong = _exchange(github_oauth, app, code, code_verifier=secrets.token_urlsafe(48))
    code = _authorize(github_oauth, app, state="s", **pkce)["code"]
    right = _exchange(github_oauth, app, code, code_verifier=verifier)

    assert wrong.json()["error"] == "bad_verification_code"
    assert "access_token" in right.json()


def test_wrong_client_secret_is_refused(
    github_oauth: GitHubOAuthServer, app: OAuthApp, octocat: GitHubUser
) -> None:
    code = _authorize(github_oauth, app, state="s")["code"]

    answer = _exchange(github_oauth, app, code, client_secret="0" * 40)

    assert answer.json()["error"] == "incorrect_client_credentials"


def test_another_redirect_uri_goes_back_to_the_registered_one_with_an_error(
    github_oauth: GitHubOAuthServer, app: OAuthApp, octocat: GitHubUser
) -> None:
    query = {"client_id": app.client_id, "redirect_uri": "https://evil.example/cb", "state": "s"}

    response = httpx.get(f"{github_oauth.authorize_url}?{urlencode(query)}", timeout=10)

    location = response.headers["location"]
    assert location.startswith(app.redirect_uri + "?")
    assert parse_qs(urlsplit(location).query)["error"] == ["redirect_uri_mismatch"]


def test_without_accept_json_the_token_answer_is_form_encoded(
    github_oauth: GitHubOAuthServer, app: OAuthApp, octocat: GitHubUser
) -> None:
    code = _authorize(github_oauth, app, state="s")["code"]
    form = {"client_id": app.client_id, "client_secret": app.client_secret, "code": code}

    answer = httpx.post(github_oauth.token_url, data=form, timeout=10)

    assert answer.headers["content-type"].startswith("application/x-www-form-urlencoded")
    assert parse_qs(answer.text)["token_type"] == ["bearer"]


def test_emails_need_the_email_scope_and_the_api_a_good_token(
    github_oauth: GitHubOAuthServer, app: OAuthApp, octocat: GitHubUser
) -> None:
    code = _authorize(github_oauth, app, state="s", scope="read:user")["code"]
    token = _exchange(github_oauth, app, code).json()["access_token"]

    assert _api(github_oauth, "/user", token).status_code == 200
    assert _api(github_oauth, "/user/emails", token).status_code == 404
    bad = _api(github_oauth, "/user", "gho_" + "x" * 36)
    assert bad.status_code == 401
    assert bad.json()["message"] == "Bad credentials"


def test_login_parameter_picks_the_user(
    github_oauth: GitHubOAuthServer, app: OAuthApp, octocat: GitHubUser
) -> None:
    hubot = github_oauth.add_user(
        "hubot", default=False, emails=(GitHubEmail("hubot@corp.example", primary=True),)
    )

    code = _authorize(github_oauth, app, state="s", login="hubot", scope="user")["code"]
    token = _exchange(github_oauth, app, code).json()["access_token"]

    assert _api(github_oauth, "/user", token).json()["id"] == hubot.id
    assert _api(github_oauth, "/user/emails", token).json()[0]["verified"] is False
