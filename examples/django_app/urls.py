"""The project's routes; with ``AUTHSOME_EXAMPLE_BASE_URL`` set, the SSO and social
sign-in routes too, at that URL's path (see :mod:`examples._engine`)."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, include, path

from authsome.integrations.django import sign_in_urls
from examples._engine import sign_in_base_url, sign_in_mount_path
from examples.django_app import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("signup", views.signup),
    path("signin", views.signin),
    path("me", views.me),
    path("api-keys", views.create_api_key),
    path("orgs", views.create_org),
]

_base_url = sign_in_base_url()
if _base_url is not None:  # SSO and social sign-in: POST {base_url}/sso/start, ...
    _prefix = sign_in_mount_path(_base_url).lstrip("/")
    urlpatterns.append(path(f"{_prefix}/" if _prefix else "", include(sign_in_urls(_base_url))))
