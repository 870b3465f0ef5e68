"""A SAML connection's sign-in settings (provisioning, attribute names, admin groups)
are stored beside its other settings, read back exactly and replaced by an update,
on every store."""

from __future__ import annotations

import dataclasses

import pytest

from authsome.stores import Store

from .test_contract_sso import orgs, saml

__all__ = ["orgs"]  # the fixture, used by name


def _mapped() -> object:
    return dataclasses.replace(
        saml(),
        jit=False,
        jit_role="admin",
        email_attribute="urn:oid:0.9.2342.19200300.100.1.3",
        name_attribute="displayName",
        groups_attribute="memberOf",
        admin_groups=("acme-admins", "ops"),
        allow_idp_initiated=True,
    )


@pytest.mark.usefixtures("orgs")
def test_saml_sign_in_settings_read_back_exactly(store: Store) -> None:
    connection = _mapped()
    store.create_sso_connection(connection, None)  # type: ignore[arg-type]

    assert store.get_sso_connection("c1") == connection
    assert store.list_sso_connections("o1") == [connection]


@pytest.mark.usefixtures("orgs")
def test_an_update_replaces_them_and_back(store: Store) -> None:
    store.create_sso_connection(saml(), None)

    assert store.update_sso_connection(_mapped(), None) == _mapped()  # type: ignore[arg-type]
    assert store.update_sso_connection(saml(), None) == saml()
    stored = store.get_sso_connection("c1")
    assert stored is not None
    assert (stored.email_attribute, stored.admin_groups, stored.jit) == (None, (), True)
