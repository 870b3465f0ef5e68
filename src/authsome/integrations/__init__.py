"""Web framework integrations: FastAPI, Flask and Django.

Each lives in its own module and needs its framework installed (extras
``authsome-engine[fastapi]``, ``[flask]``, ``[django]``); importing this package
imports none of them. What they share is framework-free and exported here: the
:class:`Principal` a request authenticates as, :func:`authenticate`, and
:func:`error_response`, the one mapping from authsome's errors to HTTP answers.
"""

from __future__ import annotations

from authsome.integrations._http import (
    API_KEY_HEADER,
    AUTHENTICATION_REQUIRED,
    ErrorResponse,
    Principal,
    authenticate,
    error_response,
    require,
)

__all__ = [
    "API_KEY_HEADER",
    "AUTHENTICATION_REQUIRED",
    "ErrorResponse",
    "Principal",
    "authenticate",
    "error_response",
    "require",
]
