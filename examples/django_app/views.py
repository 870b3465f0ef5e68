"""JSON views; authsome errors they raise are answered by the middleware."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET, require_POST

from authsome.integrations.django import engine_of, login_required, principal_of


class BadRequest(Exception):
    """The request body is not what the view expects."""


def _json_body(request: HttpRequest) -> dict[str, Any]:
    try:
        body = json.loads(request.body or b"null")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise BadRequest("expected a JSON object")
    return body


def _field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string")
    return value


def _bad_request(exc: BadRequest) -> JsonResponse:
    return JsonResponse({"error": "bad_request", "message": str(exc)}, status=400)


@require_POST
def signup(request: HttpRequest) -> JsonResponse:
    try:
        body = _json_body(request)
        email, password = _field(body, "email"), _field(body, "password")
    except BadRequest as exc:
        return _bad_request(exc)
    user = engine_of(request).users.register(email, password, tenant=body.get("tenant", "default"))
    return JsonResponse(
        {"user_id": user.id, "email": user.email, "tenant": user.tenant}, status=201
    )


@require_POST
def signin(request: HttpRequest) -> JsonResponse:
    try:
        body = _json_body(request)
        email, password = _field(body, "email"), _field(body, "password")
    except BadRequest as exc:
        return _bad_request(exc)
    result = engine_of(request).sign_in(
        email, password, tenant=body.get("tenant", "default"), ip=request.META.get("REMOTE_ADDR")
    )
    if result.tokens is None:  # a second factor is due: exchange the ticket
        return JsonResponse({"mfa_required": True, "ticket": result.ticket})
    return JsonResponse(
        {
            "access_token": result.tokens.access_token,
            "refresh_token": result.tokens.refresh_token,
            "token_type": "bearer",
            "expires_at": result.tokens.session.access_expires_at.isoformat(),
        }
    )


@require_GET
@login_required
def me(request: HttpRequest) -> JsonResponse:
    principal = principal_of(request)
    assert principal is not None  # login_required saw to it
    return JsonResponse(
        {
            "kind": principal.kind,
            "tenant": principal.tenant,
            "user_id": principal.user_id,
            "org_id": principal.org_id,
        }
    )


def _signed_in_user(request: HttpRequest) -> str | None:
    principal = principal_of(request)
    if principal is None or principal.kind != "session":
        return None
    return principal.user_id


def _user_required() -> JsonResponse:
    message = "this route needs a signed-in user, not an API key"
    return JsonResponse({"error": "user_required", "message": message}, status=403)


@require_POST
@login_required
def create_api_key(request: HttpRequest) -> JsonResponse:
    user_id = _signed_in_user(request)
    if user_id is None:
        return _user_required()
    created = engine_of(request).api_keys.create(user_id, "example key")
    # The secret is shown this once only.
    return JsonResponse({"id": created.key.id, "secret": created.secret}, status=201)


@require_POST
@login_required
def create_org(request: HttpRequest) -> JsonResponse:
    user_id = _signed_in_user(request)
    if user_id is None:
        return _user_required()
    try:
        name = _field(_json_body(request), "name")
    except BadRequest as exc:
        return _bad_request(exc)
    # Gated by authsome.feature.orgs: a plan without it answers 403 with the key.
    org = engine_of(request).orgs.create(user_id, name)
    return JsonResponse({"id": org.id, "slug": org.slug, "name": org.name}, status=201)
