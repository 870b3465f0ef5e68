"""Sign-in through an org's SAML 2.0 connection: begin (the AuthnRequest) and complete
(the response POSTed to our ACS), for :class:`authsome.sso.SSO`.

Only the SAML part lives here: the AuthnRequest by HTTP-Redirect, the response
checked by :mod:`authsome._saml`, and what its assertion says mapped to a
:class:`~authsome._federated.VerifiedIdentity`. The state handle, throttling, the
generic refusal, account resolution and the completion are the shared journey of
:mod:`authsome._federated`.

The state handle is the ``RelayState`` (the binding allows 80 bytes; a handle has 43
characters); its payload holds the connection and the AuthnRequest's id, which the
response's ``InResponseTo`` must name. A response the IdP sent unasked (no handle)
is accepted only by a connection that allows IdP-initiated sign-in.

Each connection is its own service provider under the application's base URL:
entity id ``{base_url}/sso/saml/metadata/{connection_id}`` (where its metadata is
served), ACS ``{base_url}/sso/saml/acs/{connection_id}``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import rsa

from authsome import _saml
from authsome import _validation as v
from authsome._billing import Billing
from authsome._federated import FederatedSignIn, Pending, VerifiedIdentity
from authsome._identities import Identities
from authsome._seats import Seats
from authsome._signin import SignInFlow
from authsome._time import Clock
from authsome.bridge import LedgerContext
from authsome.crypto import constant_time_equals
from authsome.domains import normalize_hostname
from authsome.errors import InvalidCredentials, NotFound, SSOFailed, ValidationError
from authsome.features import Feature
from authsome.models import (
    Org,
    OrgRole,
    SignIn,
    SSOConnectionInfo,
    SSOProtocol,
    SSORedirect,
)
from authsome.onetime import OneTimeTokens, TokenPurpose
from authsome.stores import Store
from authsome.throttle import Throttle

__all__ = [
    "DEFAULT_EMAIL_ATTRIBUTES",
    "DEFAULT_GROUPS_ATTRIBUTES",
    "DEFAULT_NAME_ATTRIBUTES",
    "SAMLSignIn",
    "SPKeys",
]

# The attribute names IdPs commonly use, tried in order when a connection names
# none: the LDAP/eduPerson OIDs, the short names, and the WS-Federation claim URIs
# that Entra ID and ADFS send.
DEFAULT_EMAIL_ATTRIBUTES = (
    "email",
    "mail",
    "urn:oid:0.9.2342.19200300.100.1.3",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
)
DEFAULT_NAME_ATTRIBUTES = (
    "displayName",
    "name",
    "urn:oid:2.16.840.1.113730.3.1.241",
    "http://schemas.microsoft.com/identity/claims/displayname",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
)
DEFAULT_GROUPS_ATTRIBUTES = (
    "groups",
    "memberOf",
    "urn:oid:1.3.6.1.4.1.5923.1.5.1.1",
    "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups",
)
NAMEID_TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
MAX_SUBJECT = 1024  # a NameID that links an account; real ones are far shorter
MAX_NAME = 256

# The ACS's form fields, each with its longest length.
SAML_CALLBACK: Mapping[str, int] = {
    "SAMLResponse": _saml.MAX_RESPONSE_CHARS,
    "RelayState": _saml.MAX_RELAY_STATE,
}


@dataclass(frozen=True, slots=True)
class SPKeys:
    """The application's SAML service provider settings, checked: its base URL and
    the optional RSA key (with its certificate) that signs AuthnRequests and
    decrypts assertions."""

    base_url: str
    key: rsa.RSAPrivateKey | None = field(default=None, repr=False)
    certificate: str | None = field(default=None, repr=False)


class SAMLSignIn:
    """The two halves of a SAML sign-in, plus each connection's SP metadata."""

    def __init__(
        self,
        store: Store,
        billing: Billing,
        clock: Clock,
        *,
        sp: SPKeys,
        tokens: OneTimeTokens,
        identities: Identities,
        sign_in: SignInFlow,
        throttle: Throttle,
        proven: Callable[[str, str], bool],
    ) -> None:
        """``proven(tenant, domain)``: the tenant proved it owns the e-mail domain."""
        self._store = store
        self._billing = billing
        self._clock = clock
        self._sp = sp
        self._proven = proven
        self._federated = FederatedSignIn(
            billing,
            clock,
            kind="saml",
            purpose=TokenPurpose.SAML_STATE,
            fields=("c", "q"),
            callback=SAML_CALLBACK,
            tokens=tokens,
            identities=identities,
            seats=Seats(store, billing),
            sign_in=sign_in,
            throttle=throttle,
        )

    # -- the service provider of a connection ----------------------------------------
    @property
    def base_url(self) -> str:
        """Where the sign-in routes are mounted (no trailing slash)."""
        return self._sp.base_url

    def service_provider(self, connection: SSOConnectionInfo) -> _saml.ServiceProvider:
        """Our side of ``connection``: its entity id, ACS URL and our key."""
        base = f"{self._sp.base_url}/sso/saml"
        return _saml.ServiceProvider(
            entity_id=f"{base}/metadata/{connection.id}",
            acs_url=f"{base}/acs/{connection.id}",
            signing_key=self._sp.key,
            certificate=self._sp.certificate,
        )

    def metadata(self, connection: SSOConnectionInfo, *, tenant: str) -> str:
        """The SP metadata XML of a SAML connection of ``tenant``."""
        self.org_of(connection, tenant)
        return _saml.sp_metadata(self.service_provider(connection))

    # -- begin -----------------------------------------------------------------------
    def begin(
        self, connection: SSOConnectionInfo, *, tenant: str, ip: str | None = None
    ) -> SSORedirect:
        org = self.org_of(connection, tenant)
        self._billing.require(Feature.SSO, LedgerContext(tenant=tenant, org_id=org.id))
        self._federated.count_start(ip)
        request_id = _saml.new_request_id()
        handle = self._federated.begin(tenant, {"c": connection.id, "q": request_id})
        url, _ = _saml.authn_request(
            _saml.identity_provider(connection),
            self.service_provider(connection),
            relay_state=handle,
            now=self._clock(),
            request_id=request_id,
        )
        return SSORedirect(url=url, handle=handle)

    # -- complete --------------------------------------------------------------------
    def complete(
        self,
        params: Mapping[str, str],
        *,
        handle: str | None,
        connection_id: str | None,
        tenant: str,
        ip: str | None,
        user_agent: str | None,
    ) -> SignIn:
        def verify(pending: Pending) -> VerifiedIdentity:
            return self._verify(pending, connection_id)

        return self._federated.complete(
            params, handle=handle, tenant=tenant, ip=ip, user_agent=user_agent, verify=verify
        )

    def _verify(self, pending: Pending, connection_id: str | None) -> VerifiedIdentity:
        refused = self._federated.refused
        expected, wanted = self._solicited(pending, connection_id)
        connection = self._store.get_sso_connection(wanted)
        if connection is None:
            raise refused(f"connection {wanted} is unknown or was deleted during the sign-in")
        try:
            org = self.org_of(connection, pending.tenant)
        except NotFound:
            raise refused(f"connection {wanted} is not a SAML connection of this tenant") from None
        # Before anything is written: a plan without SSO signs nobody in.
        self._billing.require(Feature.SSO, LedgerContext(tenant=pending.tenant, org_id=org.id))
        now = self._clock()
        try:
            assertion = _saml.verify_response(
                pending.params.get("SAMLResponse"),
                idp=_saml.identity_provider(connection),
                sp=self.service_provider(connection),
                expected_request_id=expected,
                now=now,
                replay_check=_saml.store_replay_check(self._store, connection.id, now),
            )
        except SSOFailed as exc:
            raise refused(f"connection {connection.id}: {exc.reason}") from None
        return self._identity(connection, org, assertion, refused)

    def _solicited(self, pending: Pending, connection_id: str | None) -> tuple[str | None, str]:
        """The request id the response must answer (``None``: unsolicited) and the
        connection it must come through."""
        refused = self._federated.refused
        if not pending.handle:
            if connection_id is None:
                raise refused("an unsolicited response without its connection")
            return None, connection_id
        # The IdP echoes RelayState: the handle the browser brought must be the one
        # this response travelled with, so a response cannot be replanted elsewhere.
        if not constant_time_equals(pending.params.get("RelayState", ""), pending.handle):
            raise refused("RelayState is not this sign-in's handle")
        if connection_id is not None and connection_id != pending.payload["c"]:
            raise refused("the response came to another connection's ACS")
        return pending.payload["q"], pending.payload["c"]

    def _identity(
        self,
        connection: SSOConnectionInfo,
        org: Org,
        assertion: _saml.VerifiedAssertion,
        refused: Callable[[str], InvalidCredentials],
    ) -> VerifiedIdentity:
        if assertion.name_id_format == NAMEID_TRANSIENT:
            # A transient NameID changes at every sign-in: it cannot be a stable link.
            raise refused(f"connection {connection.id}: a transient NameID")
        if len(assertion.name_id) > MAX_SUBJECT:
            raise refused(f"connection {connection.id}: a NameID too long to link")
        attributes = assertion.attributes
        email = _first(attributes, connection.email_attribute, DEFAULT_EMAIL_ATTRIBUTES)
        name = _first(attributes, connection.name_attribute, DEFAULT_NAME_ATTRIBUTES)
        groups = _all(attributes, connection.groups_attribute, DEFAULT_GROUPS_ATTRIBUTES)
        admin = bool(set(groups) & set(connection.admin_groups))
        return VerifiedIdentity(
            provider=connection.id,
            subject=assertion.name_id,
            email=email,
            email_verified=self._vouched(connection, org.tenant, email),
            org_id=org.id,
            role=OrgRole.ADMIN if admin else connection.jit_role,
            jit=connection.jit,
            name=None if name is None else name[:MAX_NAME],
        )

    def _vouched(self, connection: SSOConnectionInfo, tenant: str, email: str | None) -> bool:
        """SAML has no ``email_verified``: the IdP is trusted for an address only in a
        domain its connection claims and the tenant proved it owns."""
        if email is None:
            return False
        try:
            domain = normalize_hostname(v.normalize_email(email).rpartition("@")[2])
        except ValidationError:
            return False
        return domain in connection.domains and self._proven(tenant, domain)

    # -- helpers ---------------------------------------------------------------------
    def org_of(self, connection: SSOConnectionInfo, tenant: str) -> Org:
        """The connection's org, when it is a SAML connection of ``tenant``; a
        connection of another tenant is as unknown as a made-up id."""
        org = self._store.get_org(connection.org_id)
        if org is None or org.tenant != tenant or connection.protocol != SSOProtocol.SAML:
            raise NotFound("no such SSO connection")
        return org


def _first(
    attributes: Mapping[str, tuple[str, ...]], named: str | None, defaults: Sequence[str]
) -> str | None:
    """The first non-blank value of the connection's attribute, or of the first
    well-known one present."""
    for value in _all(attributes, named, defaults):
        if value.strip():
            return value.strip()
    return None


def _all(
    attributes: Mapping[str, tuple[str, ...]], named: str | None, defaults: Sequence[str]
) -> tuple[str, ...]:
    for name in (named,) if named is not None else defaults:
        if attributes.get(name):
            return attributes[name]
    return ()
