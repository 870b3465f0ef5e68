"""Where the examples mount the sign-in routes: at ``AUTHSOME_EXAMPLE_BASE_URL``'s
path, nowhere without it, and a base URL that is not an absolute URL stops the app
from starting. (The sign-in itself, under the real servers: test_example_sso_sign_in.)"""

from __future__ import annotations

import importlib
from collections.abc import Iterator

import examples.django_app.urls as django_urls
import pytest
from django.urls import URLResolver
from fastapi.testclient import TestClient

from authsome import Authsome, PasswordHashing
from examples import fastapi_app, flask_app

FAST = PasswordHashing.fast_insecure_for_tests()
FOREIGN = {"Origin": "https://evil.test"}  # a start from another site: 422 where mounted


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("AUTHSOME_DB", "AUTHSOME_LEDGER_DB", "AUTHSOME_EXAMPLE_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    yield
    monkeypatch.undo()
    importlib.reload(django_urls)  # the project's routes as the environment has them


def start_statuses(path: str) -> tuple[int, int]:
    """What FastAPI's and Flask's example answer a foreign start at ``path``."""
    with (
        Authsome(password_hashing=FAST) as auth,
        TestClient(fastapi_app.create_app(auth)) as client,
    ):
        fastapi_status = client.post(path, headers=FOREIGN).status_code
    with Authsome(password_hashing=FAST) as auth:
        flask_client = flask_app.create_app(auth).test_client()
        return fastapi_status, flask_client.post(path, headers=FOREIGN).status_code


def django_prefixes() -> list[str]:
    """The prefixes of the includes in the Django example's URL configuration."""
    importlib.reload(django_urls)
    return [str(p.pattern) for p in django_urls.urlpatterns if isinstance(p, URLResolver)]


def test_without_a_base_url_no_sign_in_route_is_mounted() -> None:
    assert start_statuses("/auth/sso/start") == (404, 404)
    assert start_statuses("/sso/start") == (404, 404)
    assert django_prefixes() == []


def test_the_routes_are_mounted_at_the_base_urls_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTHSOME_EXAMPLE_BASE_URL", "https://app.example.com/auth/")

    assert start_statuses("/auth/sso/start") == (422, 422)
    assert start_statuses("/sso/start") == (404, 404)
    assert django_prefixes() == ["auth/"]


def test_a_base_url_without_a_path_mounts_them_at_the_root(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AUTHSOME_EXAMPLE_BASE_URL", "https://app.example.com")

    assert start_statuses("/sso/start") == (422, 422)
    assert django_prefixes() == [""]


def test_a_base_url_that_is_not_an_absolute_url_stops_the_app(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AUTHSOME_EXAMPLE_BASE_URL", "app.example.com/auth")

    with pytest.raises(ValueError, match="AUTHSOME_EXAMPLE_BASE_URL"):
        fastapi_app.create_app(Authsome(password_hashing=FAST))
    with pytest.raises(ValueError, match="AUTHSOME_EXAMPLE_BASE_URL"):
        flask_app.create_app(Authsome(password_hashing=FAST))
    with pytest.raises(ValueError, match="AUTHSOME_EXAMPLE_BASE_URL"):
        django_prefixes()
