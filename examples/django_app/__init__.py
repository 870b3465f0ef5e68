"""A Django project on authsome: sign-up, sign-in, a protected route, a plan-gated route.

Run it (``pip install "authsome-engine[django]"``), from the repository root::

    python -m examples.django_app runserver        # http://127.0.0.1:8000
    # in production: gunicorn --preload --workers 4 examples.django_app.wsgi

Then::

    curl -X POST localhost:8000/signup -H 'content-type: application/json' \\
         -d '{"email": "ada@example.com", "password": "correct horse battery staple"}'
    curl -X POST localhost:8000/signin -H 'content-type: application/json' \\
         -d '{"email": "ada@example.com", "password": "correct horse battery staple"}'
    curl localhost:8000/me -H 'Authorization: Bearer <access_token>'

The engine comes from ``AUTHSOME_ENGINE`` in ``settings.py``: :func:`engine.build_auth`,
configured by the environment (:mod:`examples._engine`). With
``AUTHSOME_EXAMPLE_BASE_URL=http://127.0.0.1:8000/auth`` the SSO and social sign-in
routes are included under ``auth/`` (``urls.py``).
"""
