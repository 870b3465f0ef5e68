"""The project's authsome engine, named by ``AUTHSOME_ENGINE`` in the settings: the
one all the examples share (:func:`examples._engine.build_auth`)."""

from __future__ import annotations

from examples._engine import build_auth

__all__ = ["build_auth"]
