"""JSON views; authsome errors they raise are answered by the middleware."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET, require_POST

from authsome.integrations.django import (
    client_ip,
    engine_of,
    json_body,
    login_required,
    principal_of,
    string_field,
)


@require_POST
def signup(request: HttpRequest) -> JsonResponse:
    # A body that is not a JSON object, or a field of the wrong type, raises an
    # error the middleware answers in JSON (415, 400, 422).
    body = json_body(request)
    email, password = string_field(body, "email"), string_field(body, "password")
    tenant = string_field(body, "tenant", default="default")
    user = engine_of(request).users.register(email, password, tenant=tenant)
    return JsonResponse(
        {"user_id": user.id, "email": user.email, "tenant": user.tenant}, status=201
    )


@require_POST
def signin(request: HttpRequest) -> JsonResponse:
    body = json_body(request)
    email, password = string_field(body, "email"), string_field(body, "password")
    tenant = string_field(body, "tenant", default="default")
    # client_ip: REMOTE_ADDR unless AUTHSOME_TRUSTED_PROXY_COUNT/_PROXIES trusts proxies
    result = engine_of(request).sign_in(email, password, tenant=tenant, ip=client_ip(request))
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
    name = string_field(json_body(request), "name")
    # Gated by authsome.feature.orgs: a plan without it answers 403 with the key.
    org = engine_of(request).orgs.create(user_id, name)
    return JsonResponse({"id": org.id, "slug": org.slug, "name": org.name}, status=201)
