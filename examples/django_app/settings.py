"""Minimal settings: no database, no sessions, no templates; bearer tokens only."""

from __future__ import annotations

import os
import secrets

# Nothing here is signed with it (no cookies, no sessions), so a random one per process
# is enough for the example; a real project reads a stable one from its environment.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(50)
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "examples.django_app.urls"
INSTALLED_APPS: list[str] = []
# No CsrfViewMiddleware: clients authenticate with headers, never with cookies, so a
# cross-site request cannot borrow a user's credentials.
MIDDLEWARE = ["authsome.integrations.django.AuthsomeMiddleware"]
AUTHSOME_ENGINE = "examples.django_app.engine.build_auth"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
