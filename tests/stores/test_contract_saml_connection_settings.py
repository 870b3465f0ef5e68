"""A SAML connection's rollover certificate and IdP-initiated switch are stored and
replaced like its other settings."""

from __future__ import annotations

import dataclasses

import pytest

from authsome.stores import Store

from .test_contract_sso import orgs, saml

__all__ = ["orgs"]  # the fixture, used by name

ROLLOVER = "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n"


@pytest.mark.usefixtures("orgs")
def test_saml_settings_read_back_exactly(store: Store) -> None:
    connection = dataclasses.replace(
        saml(), rollover_x509_certificate=ROLLOVER, allow_idp_initiated=True
    )
    store.create_sso_connection(connection, None)

    assert store.get_sso_connection("c1") == connection
    assert store.list_sso_connections("o1") == [connection]


@pytest.mark.usefixtures("orgs")
def test_a_connection_without_them_reads_back_with_the_defaults(store: Store) -> None:
    store.create_sso_connection(saml(), None)

    stored = store.get_sso_connection("c1")
    assert stored is not None
    assert stored.rollover_x509_certificate is None
    assert stored.allow_idp_initiated is False


@pytest.mark.usefixtures("orgs")
def test_an_update_replaces_and_clears_them(store: Store) -> None:
    store.create_sso_connection(saml(), None)
    changed = dataclasses.replace(
        saml(), rollover_x509_certificate=ROLLOVER, allow_idp_initiated=True
    )
    assert store.update_sso_connection(changed, None) == changed

    assert store.update_sso_connection(saml(), None) == saml()
    assert store.get_sso_connection("c1") == saml()
