"""The project's routes."""

from __future__ import annotations

from django.urls import path

from examples.django_app import views

urlpatterns = [
    path("signup", views.signup),
    path("signin", views.signin),
    path("me", views.me),
    path("api-keys", views.create_api_key),
    path("orgs", views.create_org),
]
