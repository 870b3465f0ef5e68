"""Web framework integrations: FastAPI, Flask and Django.

Each lives in its own module and needs its framework installed (extras
``authsome-engine[fastapi]``, ``[flask]``, ``[django]``); importing this package
imports none of them. What they share is framework-free and exported here: the
:class:`Principal` a request authenticates as, :func:`authenticate`,
:func:`error_response`, the one mapping from authsome's errors to HTTP answers,
and the options every integration takes: a tenant resolver
(:func:`tenant_by_domain`, :func:`tenant_by_header` or a callable),
:class:`TrustedProxies` and the body cap (:data:`SAML_ACS_MAX_BODY_BYTES` is the
SAML ACS route's own).
"""

from __future__ import annotations

from authsome.integrations._http import (
    API_KEY_HEADER,
    AUTHENTICATION_REQUIRED,
    DEFAULT_MAX_BODY_BYTES,
    ErrorResponse,
    IntegrationSettings,
    Principal,
    RequestAuth,
    RequestError,
    RequestFacts,
    TenantResolver,
    authenticate,
    error_response,
    json_object,
    require,
    string_field,
    tenant_by_domain,
    tenant_by_header,
)
from authsome.integrations._proxies import TrustedProxies, client_address
from authsome.integrations._signin_routes import SAML_ACS_MAX_BODY_BYTES

__all__ = [
    "API_KEY_HEADER",
    "AUTHENTICATION_REQUIRED",
    "DEFAULT_MAX_BODY_BYTES",
    "SAML_ACS_MAX_BODY_BYTES",
    "ErrorResponse",
    "IntegrationSettings",
    "Principal",
    "RequestAuth",
    "RequestError",
    "RequestFacts",
    "TenantResolver",
    "TrustedProxies",
    "authenticate",
    "client_address",
    "error_response",
    "json_object",
    "require",
    "string_field",
    "tenant_by_domain",
    "tenant_by_header",
]
