"""SSO connections: an org's OIDC or SAML identity provider, and e-mail routing to it.

Creating or changing a connection is plan-gated (``authsome.feature.sso``): the check
runs before anything is written. Every setting is validated at the API edge (https
URLs, a parseable and unexpired PEM certificate, e-mail domains as hostnames).

E-mail domain routing is per tenant and needs proof. A connection's ``domains`` are
claims: within one tenant a domain belongs to one connection at most, while other
tenants may list the same domain without affecting this one. A claimed domain
routes only once the tenant has proven control of it through DNS, and the proof is
the custom-domain challenge: the tenant adds the bare e-mail domain (``acme.com``,
not ``login.acme.com``) with ``auth.domains.add("acme.com", tenant=...)``, publishes
the TXT record at ``_authsome-challenge.acme.com`` and calls ``auth.domains.verify``.
A verified domain belongs to one tenant in the whole store, so a domain routes in at
most one tenant, and only to that tenant's connection. Unproven domains are stored
and listed (:meth:`SSO.unproven_domains`) but never route. Removing the custom
domain stops the routing at once, and so does a plan that no longer includes SSO
(the connections are kept, so an upgrade routes them again).

Users sign in through an OIDC connection with :meth:`SSO.begin` and
:meth:`SSO.complete` (authorization code flow with PKCE, ``state`` and ``nonce``; see
the "SSO sign-in" page of the documentation); the provider's ``sub`` links to a user
(:meth:`SSO.identities`). A first sign-in goes by an address that routes to this very
connection (one of its domains, proven by the tenant) and nothing else: it links an
existing user only when the provider and the user both verified the address, and
provisions one just in time otherwise.
SAML connections sign users in through the same two methods, by the same rule, once
the engine has ``Authsome(saml=SAMLServiceProvider(...))``: an AuthnRequest whose
RelayState is the state handle, and the response the IdP posts to the connection's
ACS (see the "SAML sign-in" page).

The OIDC ``client_secret`` is write-only: :meth:`SSO.get` and :meth:`SSO.list` return
:class:`~authsome.models.SSOConnectionInfo`, which does not carry it. With
``Authsome(secret_key=...)`` it is encrypted at rest (AES-256-GCM, bound to the
connection's id); **without a key it is stored in clear** (a warning is logged once),
so production deployments should configure one. A secret stored in clear or under one
of ``previous_secret_keys`` still opens and is sealed under the current key when it is
next read.
"""

from __future__ import annotations

import builtins
import ipaddress
import logging
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeAlias
from urllib.parse import SplitResult, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key

from authsome import _oidc
from authsome import _validation as v
from authsome._billing import Billing
from authsome._identities import Identities, email_domain
from authsome._saml_signin import SAMLSignIn, SPKeys
from authsome._signin import SignInFlow
from authsome._sso_signin import OIDCSignIn
from authsome._time import Clock
from authsome.bridge import LedgerContext
from authsome.crypto import Keyring, Resealed, new_id, reseal_all
from authsome.domains import normalize_hostname
from authsome.errors import InvalidCredentials, NotFound, SSOFailed, ValidationError
from authsome.features import Feature
from authsome.models import (
    Identity,
    Org,
    OrgRole,
    SignIn,
    SSOConnectionInfo,
    SSOProtocol,
    SSORedirect,
    StoredSecret,
)
from authsome.onetime import OneTimeTokens
from authsome.stores import Store
from authsome.throttle import Throttle

__all__ = [
    "DEFAULT_OIDC_SCOPES",
    "SSO",
    "OIDCConnection",
    "SAMLConnection",
    "SAMLServiceProvider",
    "SSOConnection",
    "normalize_domain",
]

logger = logging.getLogger("authsome.sso")
security_log = logging.getLogger("authsome.security")

DEFAULT_OIDC_SCOPES = ("openid", "email", "profile")
MAX_URL = 2048
MAX_CLIENT_ID = 255
MAX_CLIENT_SECRET = 1024
MAX_ENTITY_ID = 1024
MAX_SCOPES = 32
MAX_SCOPE = 128
MAX_DOMAINS = 100
MAX_CERTIFICATE = 64 * 1024
# A SAML signing certificate closer than this to its end is logged as a warning at
# every configure/update, so the rollover is planned before sign-ins fail.
CERTIFICATE_WARNING = timedelta(days=30)
MAX_PRIVATE_KEY = 16 * 1024
MAX_ATTRIBUTE_NAME = 256
MAX_CONNECTION_ID = 128  # an id new_id made is far shorter
MAX_GROUPS = 100

_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")  # RFC 6749, 3.3: scope-token
_URL_CHARS = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no space: RFC 3986 and no IRIs


@dataclass(frozen=True, slots=True)
class OIDCConnection:
    """An OpenID Connect identity provider.

    ``issuer`` is the provider's issuer URL (https, no query or fragment; kept as
    given, since ID tokens must name it exactly). ``scopes`` must include
    ``"openid"``. ``client_secret`` never appears in ``repr``.

    How users sign in through it:

    - ``auth_method``: how the client authenticates at the token endpoint,
      ``"client_secret_basic"`` (default), ``"client_secret_post"`` or
      ``"private_key_jwt"`` (``client_secret`` is then the client's PEM private
      key, RSA or EC, sealed like a secret).
    - ``jit``: provision a user on their first sign-in (default), as a member of
      the connection's org with ``jit_role`` (``"member"`` or ``"admin"``).
    - ``trust_idp_mfa``: a sign-in whose ID token says the provider did MFA
      (``amr`` holds ``"mfa"``, or the PAPE multi-factor ``acr``) needs no second
      factor here; by default (``False``) users with a factor are asked for it.
    - ``userinfo``: read the e-mail claims from the userinfo endpoint too.
    """

    issuer: str
    client_id: str
    client_secret: str = field(repr=False)
    scopes: tuple[str, ...] = DEFAULT_OIDC_SCOPES
    domains: tuple[str, ...] = ()
    auth_method: str = "client_secret_basic"
    jit: bool = True
    jit_role: str = "member"
    trust_idp_mfa: bool = False
    userinfo: bool = False


@dataclass(frozen=True, slots=True)
class SAMLConnection:
    """A SAML 2.0 identity provider: its entity id, single sign-on URL (https,
    HTTP-Redirect binding) and signing certificate (PEM).

    ``rollover_x509_certificate`` is a second signing certificate accepted alongside
    the first while the IdP changes keys. ``allow_idp_initiated`` accepts responses
    the IdP sends without a request of ours (IdP-initiated sign-in); off by default,
    since such a response cannot be tied to the browser that presents it.
    :meth:`from_metadata` reads the IdP's settings from its metadata XML.

    How users sign in through it (the assertion's NameID links the account; a
    transient NameID is refused):

    - ``jit``: provision a user on their first sign-in (default), as a member of
      the connection's org with ``jit_role`` (``"member"`` or ``"admin"``), or
      ``"admin"`` when one of their groups is in ``admin_groups``.
    - ``email_attribute``, ``name_attribute``, ``groups_attribute``: the names of
      the assertion's attributes that carry the address, the display name and the
      groups. ``None`` (default) tries the usual names in order (``email``,
      ``mail``, the LDAP OIDs, the claim URIs of Entra ID and ADFS; see the SSO
      sign-in page).
    - The IdP's address counts as verified only in a domain this connection lists
      and the tenant has proven, as SAML says nothing about verification.
    """

    entity_id: str
    sso_url: str
    x509_certificate: str
    domains: tuple[str, ...] = ()
    rollover_x509_certificate: str | None = None
    allow_idp_initiated: bool = False
    jit: bool = True
    jit_role: str = "member"
    email_attribute: str | None = None
    name_attribute: str | None = None
    groups_attribute: str | None = None
    admin_groups: tuple[str, ...] = ()

    @classmethod
    def from_metadata(
        cls,
        xml: str | bytes,
        *,
        domains: tuple[str, ...] = (),
        allow_idp_initiated: bool = False,
    ) -> SAMLConnection:
        """The connection an IdP's metadata describes: its ``entityID``, the
        HTTP-Redirect ``SingleSignOnService`` location and its signing certificates
        (one, or two during a rollover). Parsed without DTDs or network access.

        Raises :class:`~authsome.errors.ValidationError` when the document is not
        IdP metadata, lacks one of these, or lists more than two signing
        certificates; :class:`~authsome.errors.ExtraNotInstalled` without the
        ``saml`` extra. The settings are checked like any others by
        :meth:`SSO.configure`.
        """
        from authsome import _saml  # lxml is the optional "saml" extra

        if not isinstance(xml, str | bytes):
            raise TypeError(f"xml must be str or bytes, not {type(xml).__name__}")
        try:
            metadata = _saml.parse_idp_metadata(xml)
        except SSOFailed as exc:
            raise ValidationError(f"not usable IdP metadata ({exc.reason})") from None
        if len(metadata.certificates) > 2:
            raise ValidationError("IdP metadata lists more than two signing certificates")
        return cls(
            entity_id=metadata.entity_id,
            sso_url=metadata.sso_url,
            x509_certificate=metadata.certificates[0],
            domains=domains,
            rollover_x509_certificate=(
                metadata.certificates[1] if len(metadata.certificates) > 1 else None
            ),
            allow_idp_initiated=allow_idp_initiated,
        )


SSOConnection: TypeAlias = OIDCConnection | SAMLConnection


@dataclass(frozen=True, slots=True)
class SAMLServiceProvider:
    """The application's side of every SAML connection, for
    ``Authsome(saml=SAMLServiceProvider(...))``.

    ``base_url`` is where the sign-in routes are mounted as the browser sees them
    (``https://app.example.com/auth``), configured, never read from a request. Each
    SAML connection is a service provider of its own under it: entity id
    ``{base_url}/sso/saml/metadata/{connection_id}`` (its metadata is served there)
    and assertion consumer service ``{base_url}/sso/saml/acs/{connection_id}``.

    ``private_key`` (PEM, unencrypted RSA) with its ``certificate`` (PEM), both or
    neither: AuthnRequests are then signed (rsa-sha256), assertions the IdP
    encrypts for the certificate are decrypted, and the metadata publishes the
    certificate. The key never appears in ``repr``.
    """

    base_url: str
    private_key: str | None = field(default=None, repr=False)
    certificate: str | None = None


@dataclass(frozen=True, slots=True)
class SSOSignInParts:
    """What the engine hands :class:`SSO` so that users can sign in."""

    client: _oidc.OIDCClient
    tokens: OneTimeTokens
    flow: SignInFlow
    throttle: Throttle
    saml: SAMLServiceProvider | None = None


# -- validation ----------------------------------------------------------------------


def normalize_domain(domain: object) -> str:
    """An e-mail domain as stored: the library's one hostname rule,
    :func:`authsome.domains.normalize_hostname` (IDNA A-labels, lowercase, no
    trailing dot; characters IDNA 2003 and 2008 read differently, such as ``ß``,
    refused), since a domain routes only once it is a verified custom domain of
    exactly this name. ``TypeError`` for a non-``str``,
    :class:`~authsome.errors.ValidationError` else.
    """
    if not isinstance(domain, str):
        raise TypeError(f"domain must be a str, not {type(domain).__name__}")
    return normalize_hostname(domain)  # bounds the text before anything else


def _check_https_url(
    name: str, value: object, *, allow_query: bool, allow_loopback_http: bool = False
) -> str:
    """An absolute ``https`` URL with a host (or ``http`` to a loopback address,
    when allowed: for tests); returned exactly as given."""
    text = v.require_str(name, value)
    if not text or len(text) > MAX_URL or _URL_CHARS.fullmatch(text) is None:
        raise ValidationError(
            f"{name} must be 1..{MAX_URL} printable ASCII characters without spaces"
        )
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValidationError(f"{name} is not a valid URL") from None
    loopback_http = allow_loopback_http and parts.scheme == "http" and _is_loopback(parts.hostname)
    if not loopback_http and (parts.scheme != "https" or not text.lower().startswith("https://")):
        raise ValidationError(f"{name} must be an https:// URL")
    _check_url_parts(name, text, parts, allow_query=allow_query)
    return text


def _is_loopback(host: str | None) -> bool:
    try:
        _oidc.check_endpoint(f"http://{host}/", allow_insecure_loopback=True)
    except _oidc.OIDCError:
        return False
    return True


def _check_url_parts(name: str, text: str, parts: SplitResult, *, allow_query: bool) -> None:
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValidationError(f"{name} must not contain user information")
    if parts.fragment or "#" in text:
        raise ValidationError(f"{name} must not contain a fragment")
    if not allow_query and (parts.query or "?" in text):
        raise ValidationError(f"{name} must not contain a query")
    _check_url_host(name, parts.hostname)


def _check_url_host(name: str, host: str | None) -> None:
    if not host:
        raise ValidationError(f"{name} must name a host")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return  # an IP literal is a host too
    try:
        normalize_hostname(host, public=False)
    except ValidationError:
        raise ValidationError(f"{name} must name a valid host") from None


def _check_text(name: str, value: object, limit: int) -> str:
    """A non-blank ``str`` of at most ``limit`` characters, no control characters,
    no surrounding whitespace. The message never repeats the value."""
    text = v.require_str(name, value)
    if not text.strip() or len(text) > limit or text != text.strip():
        raise ValidationError(f"{name} must be 1..{limit} characters without surrounding spaces")
    if any(unicodedata.category(ch) in {"Cc", "Cs"} for ch in text):
        raise ValidationError(f"{name} must not contain control characters")
    return text


def _str_items(name: str, values: object, limit: int) -> list[str]:
    """The items of a sequence of ``str`` (a bare ``str`` is refused: a common slip)."""
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a sequence of str, not {type(values).__name__}")
    items = list(values)
    if len(items) > limit:
        raise ValidationError(f"{name} must hold at most {limit} items")
    for item in items:
        # Only the type: each item's own check bounds its size before looking at it.
        if not isinstance(item, str):
            raise TypeError(f"{name} must hold str items, not {type(item).__name__}")
    return items


def _check_scopes(scopes: object) -> tuple[str, ...]:
    unique: dict[str, None] = {}
    for scope in _str_items("scopes", scopes, MAX_SCOPES):
        if len(scope) > MAX_SCOPE or _SCOPE.fullmatch(scope) is None:
            raise ValidationError("each scope must be a scope token (RFC 6749), without spaces")
        unique[scope] = None
    if "openid" not in unique:
        raise ValidationError('scopes must include "openid"')
    return tuple(unique)


def _check_domains(domains: object) -> tuple[str, ...]:
    unique = {normalize_domain(d): None for d in _str_items("domains", domains, MAX_DOMAINS)}
    return tuple(unique)


def _check_certificate(pem: object, now: datetime, name: str = "x509_certificate") -> str:
    """A PEM X.509 certificate valid at ``now``, re-encoded canonically; one that
    expires within :data:`CERTIFICATE_WARNING` is logged as a warning."""
    text = v.require_str(name, pem)
    if not text.strip() or len(text) > MAX_CERTIFICATE or not text.isascii():
        raise ValidationError(
            f"{name} must be a PEM certificate of at most {MAX_CERTIFICATE} characters"
        )
    try:
        cert = x509.load_pem_x509_certificate(text.strip().encode("ascii"))
        not_after = cert.not_valid_after_utc
    except ValueError:
        raise ValidationError(f"{name} is not a parseable PEM certificate") from None
    if not_after <= now:
        raise ValidationError(f"{name} has expired")
    if not_after - now < CERTIFICATE_WARNING:
        logger.warning(
            "sso %s expires soon: not after %s; configure its successor as"
            " rollover_x509_certificate",
            name,
            not_after.isoformat(),
        )
    return cert.public_bytes(Encoding.PEM).decode("ascii")


def _check_rollover_certificate(pem: object, now: datetime) -> str | None:
    return None if pem is None else _check_certificate(pem, now, "rollover_x509_certificate")


def _check_flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, not {type(value).__name__}")
    return value


@dataclass(frozen=True, slots=True)
class _Checked:
    """A validated connection: what the record holds, plus the secret if any."""

    protocol: SSOProtocol
    domains: tuple[str, ...]
    issuer: str | None = None
    client_id: str | None = None
    scopes: tuple[str, ...] = ()
    entity_id: str | None = None
    sso_url: str | None = None
    x509_certificate: str | None = None
    rollover_x509_certificate: str | None = None
    allow_idp_initiated: bool = False
    client_secret: str | None = field(default=None, repr=False)
    auth_method: str = "client_secret_basic"
    jit: bool = True
    jit_role: str = "member"
    trust_idp_mfa: bool = False
    userinfo: bool = False
    email_attribute: str | None = None
    name_attribute: str | None = None
    groups_attribute: str | None = None
    admin_groups: tuple[str, ...] = ()


def _check_credential(connection: OIDCConnection, auth_method: str) -> str:
    """The client secret, or for ``private_key_jwt`` a PEM private key that loads."""
    if auth_method != "private_key_jwt":
        return _check_text("client_secret", connection.client_secret, MAX_CLIENT_SECRET)
    text = v.require_str("client_secret", connection.client_secret)
    if not text.strip() or len(text) > MAX_PRIVATE_KEY or not text.isascii():
        raise ValidationError("client_secret must be a PEM private key for private_key_jwt")
    try:
        load_pem_private_key(text.strip().encode("ascii"), password=None)
    except (ValueError, TypeError):
        raise ValidationError("client_secret is not a PEM private key (unencrypted)") from None
    return text.strip()


def _check_jit_role(value: object) -> str:
    role = v.require_str("jit_role", value)
    if role not in {OrgRole.MEMBER.value, OrgRole.ADMIN.value}:
        raise ValidationError('jit_role must be "member" or "admin"')
    return role


def _check_sign_in(connection: OIDCConnection) -> dict[str, object]:
    method = v.require_str("auth_method", connection.auth_method)
    if method not in _oidc.AUTH_METHODS:
        raise ValidationError(f"auth_method must be one of {', '.join(_oidc.AUTH_METHODS)}")
    role = _check_jit_role(connection.jit_role)
    return {
        "auth_method": method,
        "jit": _check_flag("jit", connection.jit),
        "jit_role": role,
        "trust_idp_mfa": _check_flag("trust_idp_mfa", connection.trust_idp_mfa),
        "userinfo": _check_flag("userinfo", connection.userinfo),
    }


def _check_attribute_name(name: str, value: object) -> str | None:
    return None if value is None else _check_text(name, value, MAX_ATTRIBUTE_NAME)


def _check_saml_sign_in(connection: SAMLConnection) -> dict[str, object]:
    groups = _str_items("admin_groups", connection.admin_groups, MAX_GROUPS)
    return {
        "jit": _check_flag("jit", connection.jit),
        "jit_role": _check_jit_role(connection.jit_role),
        "email_attribute": _check_attribute_name("email_attribute", connection.email_attribute),
        "name_attribute": _check_attribute_name("name_attribute", connection.name_attribute),
        "groups_attribute": _check_attribute_name("groups_attribute", connection.groups_attribute),
        "admin_groups": tuple(
            dict.fromkeys(_check_text("admin_groups", g, MAX_ATTRIBUTE_NAME) for g in groups)
        ),
    }


def _validated(connection: object, now: datetime, *, allow_loopback_http: bool = False) -> _Checked:
    if isinstance(connection, OIDCConnection):
        sign_in = _check_sign_in(connection)
        return _Checked(
            SSOProtocol.OIDC,
            issuer=_check_https_url(
                "issuer",
                connection.issuer,
                allow_query=False,
                allow_loopback_http=allow_loopback_http,
            ),
            client_id=_check_text("client_id", connection.client_id, MAX_CLIENT_ID),
            client_secret=_check_credential(connection, str(sign_in["auth_method"])),
            scopes=_check_scopes(connection.scopes),
            domains=_check_domains(connection.domains),
            **sign_in,  # type: ignore[arg-type]  # each value checked just above
        )
    if isinstance(connection, SAMLConnection):
        return _Checked(
            SSOProtocol.SAML,
            entity_id=_check_text("entity_id", connection.entity_id, MAX_ENTITY_ID),
            sso_url=_check_https_url(
                "sso_url",
                connection.sso_url,
                allow_query=True,
                allow_loopback_http=allow_loopback_http,
            ),
            x509_certificate=_check_certificate(connection.x509_certificate, now),
            rollover_x509_certificate=_check_rollover_certificate(
                connection.rollover_x509_certificate, now
            ),
            allow_idp_initiated=_check_flag("allow_idp_initiated", connection.allow_idp_initiated),
            domains=_check_domains(connection.domains),
            **_check_saml_sign_in(connection),  # type: ignore[arg-type]  # each value checked
        )
    raise TypeError(
        f"connection must be an OIDCConnection or a SAMLConnection, not {type(connection).__name__}"
    )


def _check_base_url(value: object, *, allow_loopback_http: bool) -> str:
    """The application's own https URL (any host name it is served under, an
    intranet one too), without query, fragment or user information."""
    text = v.require_str("base_url", value)
    if not text or len(text) > MAX_URL or _URL_CHARS.fullmatch(text) is None:
        raise ValidationError(f"base_url must be 1..{MAX_URL} printable ASCII characters")
    try:
        parts = urlsplit(text)
    except ValueError:
        raise ValidationError("base_url is not a valid URL") from None
    loopback_http = allow_loopback_http and parts.scheme == "http" and _is_loopback(parts.hostname)
    if not (parts.scheme == "https" or loopback_http) or not parts.hostname:
        raise ValidationError("base_url must be an https:// URL")
    if parts.query or parts.fragment or "@" in parts.netloc or "?" in text or "#" in text:
        raise ValidationError("base_url must not contain a query, fragment or user information")
    return text.rstrip("/")


def _checked_sp(settings: object, *, allow_loopback_http: bool) -> SPKeys:
    """The application's SAML settings, checked: ``TypeError`` or ``ValueError``
    (a configuration mistake, found when the engine is built)."""
    if not isinstance(settings, SAMLServiceProvider):
        raise TypeError(f"saml must be a SAMLServiceProvider, not {type(settings).__name__}")
    base_url = _check_base_url(settings.base_url, allow_loopback_http=allow_loopback_http)
    if (settings.private_key is None) != (settings.certificate is None):
        raise ValidationError("give both private_key and certificate, or neither")
    if settings.private_key is None or settings.certificate is None:
        return SPKeys(base_url)
    key_text = v.require_str("private_key", settings.private_key)
    try:
        key = load_pem_private_key(key_text.strip().encode("ascii"), password=None)
        certificate = x509.load_pem_x509_certificate(
            v.require_str("certificate", settings.certificate).strip().encode("ascii")
        )
    except (ValueError, TypeError, UnicodeEncodeError):
        raise ValidationError(
            "private_key and certificate must be an unencrypted PEM key and a PEM certificate"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValidationError("private_key must be an RSA key (SAML signs with rsa-sha256)")
    if certificate.public_key() != key.public_key():
        raise ValidationError("certificate is not the certificate of private_key")
    return SPKeys(base_url, key, certificate.public_bytes(Encoding.PEM).decode("ascii"))


# -- the service -----------------------------------------------------------------------


class SSO:
    """``auth.sso``: configure an org's identity provider and route e-mails to it."""

    def __init__(
        self,
        store: Store,
        billing: Billing,
        clock: Clock,
        keyring: Keyring | None = None,
        *,
        sign_in: SSOSignInParts | None = None,
    ) -> None:
        self._store = store
        self._billing = billing
        self._clock = clock
        self._keyring = Keyring(None) if keyring is None else keyring
        # An org's IdP speaks for the addresses of the domains the org proved, and
        # for those only; inside them it may provision what it did not verify
        # (Entra ID sends no email_verified), never link it.
        self._identities = Identities(
            store, clock, address_rule=self._routes_to, provision_unverified=True
        )
        self._oidc: OIDCSignIn | None = None
        self._saml: SAMLSignIn | None = None
        self._allow_loopback_http = False
        if sign_in is not None:
            self._allow_loopback_http = sign_in.client.allow_insecure_loopback
            self._oidc = OIDCSignIn(
                store,
                billing,
                clock,
                client=sign_in.client,
                tokens=sign_in.tokens,
                identities=self._identities,
                sign_in=sign_in.flow,
                throttle=sign_in.throttle,
                client_secret=self._client_secret,
            )
            if sign_in.saml is not None:
                self._saml = SAMLSignIn(
                    store,
                    billing,
                    clock,
                    sp=_checked_sp(sign_in.saml, allow_loopback_http=self._allow_loopback_http),
                    tokens=sign_in.tokens,
                    identities=self._identities,
                    sign_in=sign_in.flow,
                    throttle=sign_in.throttle,
                    proven=self._proven,
                )

    # -- sign-in -------------------------------------------------------------------------
    def begin(
        self,
        connection_id: str | None = None,
        *,
        email: str | None = None,
        redirect_uri: str | None = None,
        tenant: str = "default",
        ip: str | None = None,
    ) -> SSORedirect:
        """Start a sign-in through a connection: where to send the browser.

        Name the connection by ``connection_id``, or give the user's ``email`` to
        route it (:meth:`connection_for_email`; for OIDC it is passed on as
        ``login_hint``). Keep the returned ``handle`` (an ``HttpOnly`` cookie) and
        pass it to :meth:`complete`; it is single use and lives
        ``JourneyPolicy.sso_state_ttl`` (10 minutes by default).

        For an OIDC connection ``redirect_uri`` is the application's callback URL,
        registered at the provider (required). For a SAML connection the URL sends
        an AuthnRequest by HTTP-Redirect (signed when ``SAMLServiceProvider`` has a
        key) whose ``RelayState`` is the handle; the IdP posts its answer to the
        connection's ACS URL (see :class:`SAMLServiceProvider`), so ``redirect_uri``
        is not used.

        :class:`~authsome.errors.NotFound` for an unknown connection or one of
        another tenant, and for an e-mail that routes nowhere;
        :class:`~authsome.errors.FeatureNotEntitled` when the tenant's plan no longer
        includes ``authsome.feature.sso`` (nothing is written);
        :class:`~authsome.errors.InvalidCredentials` when an OIDC provider's
        discovery document cannot be read or is refused (nothing is written);
        :class:`~authsome.errors.RateLimited` when the client's address ``ip``
        started more than ``ThrottlePolicy.starts_per_ip`` sign-ins within the window.
        """
        tenant = v.check_tenant(tenant)
        if (connection_id is None) == (email is None):
            raise ValidationError("give either connection_id or email")
        if email is not None:
            found = self.connection_for_email(email, tenant=tenant)
            if found is None:
                raise NotFound("no SSO connection routes this address")
            connection = found
        else:
            connection = self.get(v.require_str("connection_id", connection_id))
        if connection.protocol is SSOProtocol.SAML:
            return self._saml_sign_in().begin(connection, tenant=tenant, ip=ip)
        if redirect_uri is None:
            raise ValidationError("redirect_uri is required for an OIDC connection")
        return self._sign_in().begin(
            connection,
            redirect_uri=redirect_uri,
            tenant=tenant,
            login_hint=None if email is None else v.normalize_email(email),
            ip=ip,
        )

    def complete(
        self,
        params: Mapping[str, str],
        *,
        handle: str | None = None,
        tenant: str = "default",
        ip: str | None = None,
        user_agent: str | None = None,
        connection_id: str | None = None,
    ) -> SignIn:
        """Finish a sign-in with the provider's answer and the ``handle``
        :meth:`begin` returned.

        For OIDC, ``params`` is the query of the request to ``redirect_uri``
        (``code`` and ``state``, or ``error``). For SAML, it is the form the IdP
        POSTed to the ACS (``SAMLResponse`` and ``RelayState``, which must be
        ``handle``); the response must answer the AuthnRequest of ``handle``
        (``InResponseTo``). A SAML response the IdP sent unasked has no handle:
        pass ``handle=None`` and the ``connection_id`` of the ACS it came to; it is
        accepted only when that connection has ``allow_idp_initiated``.

        Returns a :class:`~authsome.models.SignIn` with a session, or with
        ``mfa_required`` and a ticket when the user has a second factor (unless an
        OIDC connection trusts the provider's MFA and the provider did it). Records
        ``authsome.sessions.created`` and ``authsome.users.active`` once, and for a
        user provisioned now ``authsome.users.created`` and ``authsome.orgs.members``.

        Every refusal — a used, expired or foreign handle, a wrong ``state`` or
        ``RelayState``, an error from the provider, a code it refuses, an ID token
        or a SAML response that does not check out, a replayed assertion, an
        account that may not be linked — is one
        :class:`~authsome.errors.InvalidCredentials` (the reason is logged on
        ``authsome.security``). :class:`~authsome.errors.RateLimited` after too
        many failures from ``ip``; :class:`~authsome.errors.FeatureNotEntitled` when
        the plan no longer includes SSO (checked before anything is written).
        ``ip`` and ``user_agent`` describe the client for the device list
        (:meth:`~authsome.sessions.Sessions.list`).
        """
        if not isinstance(params, Mapping):
            raise TypeError(f"params must be a mapping of str, not {type(params).__name__}")
        if "SAMLResponse" in params:
            if handle is None and connection_id is None:
                raise ValidationError("give handle, or connection_id for an unsolicited response")
            if self._saml is None:
                # Whoever sends a SAMLResponse to an engine without SAML sign-in gets
                # the answer of any refused sign-in, not a server error.
                security_log.warning("SSO sign-in refused: a SAML response, and no saml=")
                raise InvalidCredentials()
            return self._saml_sign_in().complete(
                params,
                handle=handle,
                connection_id=None
                if connection_id is None
                else _check_text("connection_id", connection_id, MAX_CONNECTION_ID),
                tenant=tenant,
                ip=ip,
                user_agent=user_agent,
            )
        if handle is None:
            raise ValidationError("handle is required")
        return self._sign_in().complete(
            params, handle=handle, tenant=tenant, ip=ip, user_agent=user_agent
        )

    def saml_metadata(self, connection_id: str, *, tenant: str = "default") -> str:
        """The SP metadata XML of a SAML connection of ``tenant``, for its IdP: the
        entity id, the ACS (HTTP-POST) and the certificate when one is configured.
        :class:`~authsome.errors.NotFound` for an unknown connection, an OIDC one or
        one of another tenant."""
        tenant = v.check_tenant(tenant)
        saml = self._saml_sign_in()
        found = self._store.get_sso_connection(v.require_str("connection_id", connection_id))
        if found is None:
            raise NotFound("no such SSO connection")
        return saml.metadata(found, tenant=tenant)

    def identities(self, user_id: str) -> builtins.list[Identity]:
        """The user's linked provider accounts, oldest first."""
        return self._identities.list(v.require_str("user_id", user_id))

    def remove_identity(self, user_id: str, provider: str, subject: str) -> bool:
        """Unlink one provider account from the user (their next sign-in there links
        or provisions anew); whether it was linked."""
        return self._identities.remove(
            v.require_str("user_id", user_id),
            v.require_str("provider", provider),
            v.require_str("subject", subject),
        )

    def _sign_in(self) -> OIDCSignIn:
        if self._oidc is None:
            raise RuntimeError("this SSO service was built without sign-in (use Authsome)")
        _oidc.ensure_installed()
        return self._oidc

    def _routes_to(self, tenant: str, connection_id: str, address: str) -> bool:
        """Whether ``address`` routes to the connection ``connection_id``: its domain is
        one of that connection's and proven by ``tenant``. Another org's connection
        in the same tenant never speaks for it."""
        routed = self._routed(tenant, email_domain(address))
        return routed is not None and routed.id == connection_id

    def _saml_base_url(self) -> str | None:
        """The base URL of ``Authsome(saml=...)``, for the sign-in routes' check."""
        return None if self._saml is None else self._saml.base_url

    def _saml_sign_in(self) -> SAMLSignIn:
        if self._saml is None:
            raise RuntimeError(
                "SAML sign-in needs Authsome(saml=SAMLServiceProvider(base_url=...))"
            )
        return self._saml

    def configure(self, org_id: str, connection: SSOConnection) -> SSOConnectionInfo:
        """Add an SSO connection to an org and return it (without its secret).

        Checks ``authsome.feature.sso`` for the org's tenant before writing
        (denied → :class:`~authsome.errors.FeatureNotEntitled`, nothing stored).
        Raises ``TypeError`` for a wrong type, :class:`~authsome.errors.ValidationError`
        for a bad setting, :class:`~authsome.errors.NotFound` for an unknown org,
        :class:`~authsome.errors.AlreadyExists` when one of the e-mail domains is
        listed by another connection of the same tenant (other tenants' connections
        never conflict). The domains route only once proven; see the module
        docstring and :meth:`unproven_domains`.
        """
        org = self._org(v.require_str("org_id", org_id))
        now = self._clock()
        checked = _validated(connection, now, allow_loopback_http=self._allow_loopback_http)
        self._billing.require(Feature.SSO, LedgerContext(tenant=org.tenant, org_id=org.id))
        info = self._record(new_id("sso"), org.id, checked, created_at=now, updated_at=now)
        self._store.create_sso_connection(info, self._stored_secret(info.id, checked))
        logger.info(
            "sso connection configured: id=%s org=%s protocol=%s domains=%s",
            info.id,
            org.id,
            info.protocol.value,
            ",".join(info.domains),
        )
        return info

    def update(self, connection_id: str, connection: SSOConnection) -> SSOConnectionInfo:
        """Replace every setting of a connection (its secret too) and return it.

        Gated, validated and checked for domain conflicts like :meth:`configure`;
        the connection keeps its id, org and ``created_at``. Raises
        :class:`~authsome.errors.NotFound` for an unknown connection.
        """
        current = self.get(connection_id)
        org = self._org(current.org_id)
        now = self._clock()
        checked = _validated(connection, now, allow_loopback_http=self._allow_loopback_http)
        self._billing.require(Feature.SSO, LedgerContext(tenant=org.tenant, org_id=org.id))
        info = self._record(
            current.id, org.id, checked, created_at=current.created_at, updated_at=now
        )
        updated = self._store.update_sso_connection(info, self._stored_secret(info.id, checked))
        if updated is None:  # deleted between the read and the write
            raise NotFound("no such SSO connection")
        logger.info(
            "sso connection updated: id=%s org=%s protocol=%s domains=%s",
            updated.id,
            updated.org_id,
            updated.protocol.value,
            ",".join(updated.domains),
        )
        return updated

    def get(self, connection_id: str) -> SSOConnectionInfo:
        """The connection with this id, without its secret; :class:`NotFound` otherwise."""
        found = self._store.get_sso_connection(v.require_str("connection_id", connection_id))
        if found is None:
            raise NotFound("no such SSO connection")
        return found

    def list(self, org_id: str) -> list[SSOConnectionInfo]:
        """The org's connections, oldest first; :class:`NotFound` for an unknown org."""
        return self._store.list_sso_connections(self._org(v.require_str("org_id", org_id)).id)

    def delete(self, connection_id: str) -> bool:
        """Delete a connection with its domains and secret; ``False`` if unknown.

        Not gated: a tenant whose plan lost SSO can still remove its connections.
        """
        deleted = self._store.delete_sso_connection(v.require_str("connection_id", connection_id))
        if deleted:
            logger.info("sso connection deleted: id=%s", connection_id)
        return deleted

    def connection_for_email(
        self, email: str, *, tenant: str = "default"
    ) -> SSOConnectionInfo | None:
        """The connection of ``tenant`` that routes the e-mail's domain, or ``None``.

        Only connections of orgs in ``tenant`` are considered, and only a domain the
        tenant has proven (a verified custom domain equal to the e-mail domain, see
        the module docstring) routes: an unproven domain gives ``None``. Exact match
        only (``sub.acme.com`` is not ``acme.com``). The address is normalized like
        every e-mail in authsome, its domain like configured domains (IDNA), so
        ``Ann@Bücher.example`` finds ``xn--bcher-kva.example``; a domain that rule
        refuses (``straße.de``: IDNA versions disagree on it) routes nowhere. A tenant
        whose plan no longer includes ``authsome.feature.sso`` gets ``None`` (a failing
        ledger follows ``on_ledger_error``). Raises
        :class:`~authsome.errors.ValidationError` for a malformed address or tenant.
        """
        tenant = v.check_tenant(tenant)
        connection = self._routed(tenant, email_domain(v.normalize_email(email)))
        if connection is None:
            return None
        # A tenant whose plan lost SSO keeps its connections (an upgrade routes them
        # again) but is no longer routed to them.
        ctx = LedgerContext(tenant=tenant, org_id=connection.org_id)
        return connection if self._billing.allows(Feature.SSO, ctx) else None

    def unproven_domains(self, connection_id: str) -> builtins.list[str]:
        """The connection's domains that do not route yet because its tenant has not
        verified them as custom domains, in the connection's order; ``[]`` when all
        route. :class:`~authsome.errors.NotFound` for an unknown connection."""
        info = self.get(connection_id)
        tenant = self._org(info.org_id).tenant
        return [domain for domain in info.domains if not self._proven(tenant, domain)]

    def _routed(self, tenant: str, domain: str) -> SSOConnectionInfo | None:
        """The connection of ``tenant`` claiming ``domain``, when the tenant proved it
        (whatever the plan says)."""
        try:
            key = normalize_domain(domain)
        except ValidationError:
            return None  # a domain no connection could own
        connection = self._store.find_sso_connection_by_domain(tenant, key)
        if connection is None or not self._proven(tenant, key):
            return None
        return connection

    def _proven(self, tenant: str, domain: str) -> bool:
        """Whether ``tenant`` proved control of ``domain`` through the DNS challenge:
        its verified custom domain with exactly this name (a verified hostname has
        one owner in the whole store)."""
        verified = self._store.find_domain_by_hostname(domain)
        return verified is not None and verified.tenant == tenant

    def _client_secret(self, connection_id: str) -> str | None:
        """The connection's client secret in clear, for the sign-in flow only.

        ``None`` when the connection has none (SAML). Raises
        :class:`~authsome.errors.NotFound` for an unknown connection and
        :class:`~authsome.errors.DecryptionError` when it is sealed and this
        engine has no key, or another key.
        """
        info = self.get(connection_id)
        stored = self._store.get_sso_client_secret(info.id)
        if stored is None:
            return None
        aad = _secret_aad(info.id)
        opened = self._keyring.open(stored, aad=aad)
        if opened.stale:
            # In clear or under an earlier key: sealed under the current key from now
            # on. A compare-and-set, so a concurrent update's new secret is kept.
            resealed = self._keyring.seal(opened.plaintext, aad=aad, what=_WHAT)
            self._store.replace_sso_client_secret(info.id, stored, resealed)
        return opened.plaintext

    def reseal_secrets(self) -> Resealed:
        """Seal under the current ``secret_key`` every client secret stored in clear or
        under a previous key (what ``authsome reseal`` runs)."""
        return reseal_all(
            self._keyring,
            page=self._store.list_sso_client_secrets,
            replace=self._store.replace_sso_client_secret,
            aad=_secret_aad,
            what=_WHAT,
        )

    def _stored_secret(self, connection_id: str, checked: _Checked) -> StoredSecret | None:
        if checked.client_secret is None:
            return None
        return self._keyring.seal(checked.client_secret, aad=_secret_aad(connection_id), what=_WHAT)

    @staticmethod
    def _record(
        connection_id: str,
        org_id: str,
        checked: _Checked,
        *,
        created_at: datetime,
        updated_at: datetime,
    ) -> SSOConnectionInfo:
        return SSOConnectionInfo(
            id=connection_id,
            org_id=org_id,
            protocol=checked.protocol,
            domains=checked.domains,
            created_at=created_at,
            updated_at=updated_at,
            issuer=checked.issuer,
            client_id=checked.client_id,
            scopes=checked.scopes,
            has_client_secret=checked.client_secret is not None,
            entity_id=checked.entity_id,
            sso_url=checked.sso_url,
            x509_certificate=checked.x509_certificate,
            rollover_x509_certificate=checked.rollover_x509_certificate,
            allow_idp_initiated=checked.allow_idp_initiated,
            auth_method=checked.auth_method,
            jit=checked.jit,
            jit_role=checked.jit_role,
            trust_idp_mfa=checked.trust_idp_mfa,
            userinfo=checked.userinfo,
            email_attribute=checked.email_attribute,
            name_attribute=checked.name_attribute,
            groups_attribute=checked.groups_attribute,
            admin_groups=checked.admin_groups,
        )

    def _org(self, org_id: str) -> Org:
        org = self._store.get_org(org_id)
        if org is None:
            raise NotFound("no such org")
        return org


_WHAT = "an SSO client secret"


def _secret_aad(connection_id: str) -> str:
    # Binds a sealed secret to its connection: copied into another row, it won't open.
    return f"authsome.sso.client_secret:{connection_id}"
