"""An engine with an org whose SAML connection points at a real pysaml2 IdP on
127.0.0.1, and the steps of one sign-in, for the SAML sign-in tests.

The IdP must know our SP metadata (entity id and ACS include the connection's id)
and the connection the IdP's URLs: the connection is configured first with the
IdP's certificate, the IdP built from the connection's metadata, and the connection
then updated with the IdP's entity id and SSO URL.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

from authsome import Authsome
from authsome.models import Org, SignIn, SSOConnectionInfo
from authsome.sso import SAMLConnection, SAMLServiceProvider
from tests.support.saml_idp import Browser, IdPUser, KeyPair, SamlIdP, new_key_pair
from tests.support.sso_scene import DOMAIN, IP, PASSWORD, TENANT, prove

BASE_URL = "https://app.example/auth"
SP_KEYS = new_key_pair("authsome-sp")
SP = SAMLServiceProvider(
    base_url=BASE_URL, private_key=SP_KEYS.key_pem, certificate=SP_KEYS.certificate_pem
)
USERS = {
    "ann": IdPUser(
        password="ann's password",
        name_id="ann-4711",
        attributes={"mail": [f"ann@{DOMAIN}"], "displayName": ["Ann Example"]},
    ),
    "bob": IdPUser(
        password="bob's password",
        name_id="bob-0815",
        attributes={"mail": [f"bob@{DOMAIN}"], "groups": ["staff", "acme-admins"]},
    ),
    "eve": IdPUser(
        password="eve's password",
        name_id="eve-1",
        attributes={"mail": ["owner@elsewhere.example"]},
    ),
}


class SamlScene:
    """An org of ``tenant`` (``acme``) with a SAML connection to :attr:`idp`. The
    connection's domain is proven unless ``proven=False`` (a first sign-in goes only
    by an address in a proven domain of the connection)."""

    def __init__(
        self,
        auth: Authsome,
        idp_keys: KeyPair,
        *,
        base_url: str = BASE_URL,
        tenant: str = TENANT,
        proven: bool = True,
        **settings: object,
    ) -> None:
        self.auth = auth
        self.base_url = base_url
        self.tenant = tenant
        owner = auth.users.register(f"owner@{DOMAIN}", PASSWORD, tenant=tenant)
        self.org: Org = auth.orgs.create(owner.id, "Acme")
        self.settings = SAMLConnection(
            entity_id="https://idp.invalid/not-yet",
            sso_url="https://idp.invalid/sso",
            x509_certificate=idp_keys.certificate_pem,
            domains=(DOMAIN,),
            **settings,  # type: ignore[arg-type]
        )
        self.connection: SSOConnectionInfo = auth.sso.configure(self.org.id, self.settings)
        if proven:
            prove(auth.store, tenant=tenant)
        self.metadata = auth.sso.saml_metadata(self.connection.id, tenant=tenant)
        self.idp = SamlIdP(self.metadata, users=USERS, keys=idp_keys, want_signed_requests=True)

    @contextlib.contextmanager
    def running(self) -> Iterator[SamlScene]:
        with self.idp.running():
            self.settings = replace(
                self.settings, entity_id=self.idp.entity_id, sso_url=self.idp.sso_url
            )
            self.connection = self.auth.sso.update(self.connection.id, self.settings)
            yield self

    @property
    def acs_url(self) -> str:
        return f"{self.base_url}/sso/saml/acs/{self.connection.id}"

    @property
    def entity_id(self) -> str:
        return f"{self.base_url}/sso/saml/metadata/{self.connection.id}"

    def posted(self, user: str = "ann") -> tuple[dict[str, str], str]:
        """Begin, log in at the IdP over HTTP; the form its page posts to our ACS,
        and the handle."""
        redirect = self.auth.sso.begin(self.connection.id, tenant=self.tenant)
        form = Browser().sign_in(redirect.url, user=user, password=USERS[user].password)
        return form, redirect.handle

    def sign_in(self, user: str = "ann") -> SignIn:
        form, handle = self.posted(user)
        return self.auth.sso.complete(form, handle=handle, tenant=self.tenant, ip=IP)

    def unsolicited(self, user: str = "ann") -> dict[str, str]:
        """The form of a response the IdP sends unasked (IdP-initiated)."""
        response = self.idp.response(
            user, sp_entity_id=self.entity_id, acs_url=self.acs_url, in_response_to=None
        )
        return {"SAMLResponse": response}


def idp_keys() -> KeyPair:
    """An IdP key whose certificate is far from expiry (no rollover warning)."""
    return new_key_pair("test-idp", valid_for=timedelta(days=365))
