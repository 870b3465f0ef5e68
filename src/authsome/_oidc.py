"""The OpenID Connect relying party's protocol client: discovery, the token request,
ID-token validation and userinfo (OpenID Connect Core 1.0, RFC 9700).

JOSE is joserfc's (signature checks, key sets); HTTP is httpx with timeouts and no
redirects. Nothing here knows about users or sessions: :mod:`authsome.sso` drives it.
Every refusal is an :class:`OIDCError` whose reason goes to the log only; the caller
answers the user with one generic error.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from authsome._time import Clock
from authsome.crypto import new_token
from authsome.errors import ExtraNotInstalled, ValidationError

if TYPE_CHECKING:
    import httpx
    from joserfc.jwk import KeySet

__all__ = ["OIDCClient", "OIDCError", "ProviderMetadata", "TokenRequest", "pkce_challenge"]

# Asymmetric signatures only: an HS* ID token would be checked with the client
# secret, and a confused verifier checks it with a public key an attacker can read.
SIGNING_ALGS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt")
MAX_RESPONSE = 256 * 1024  # a discovery document, key set or token response is small
MAX_ID_TOKEN = 16 * 1024
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


class OIDCError(Exception):
    """A refused step of the protocol; the reason is for the log, never for users."""


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """The parts of the provider's discovery document the relying party uses."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    signing_algs: frozenset[str]


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """What the token request of one sign-in needs."""

    client_id: str
    credential: str  # the client secret, or the PEM private key for private_key_jwt
    auth_method: str
    code: str
    redirect_uri: str
    code_verifier: str


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge of ``verifier`` (RFC 7636, 4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def check_endpoint(url: str, *, allow_insecure_loopback: bool) -> str:
    """``url`` if it is https, or http to a loopback host when that is allowed."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and allow_insecure_loopback and _is_loopback(parts.hostname):
        return url
    raise OIDCError(f"refused a non-https provider URL (host {parts.hostname!r})")


def check_endpoint_setting(name: str, url: str, *, allow_insecure_loopback: bool) -> str:
    """``url``, given by the application as ``name`` (a redirect URI, a provider
    endpoint), when it is an absolute https URL with a host and no user information
    or fragment, or plain http to a loopback host and explicitly allowed (tests);
    :class:`~authsome.errors.ValidationError` otherwise."""
    if len(url) > 2048 or not url.isascii() or any(ch.isspace() for ch in url):
        raise ValidationError(f"{name} must be a URL of at most 2048 printable characters")
    parts = urlsplit(url)
    if "#" in url or parts.username is not None or not parts.hostname:
        raise ValidationError(f"{name} must be an absolute URL with a host, no fragment")
    try:
        return check_endpoint(url, allow_insecure_loopback=allow_insecure_loopback)
    except OIDCError:
        raise ValidationError(f"{name} must be an https:// URL") from None


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class OIDCClient:
    """Talks to OpenID Providers for every connection of one engine.

    Discovery documents are cached for ``discovery_ttl``; key sets until a token
    names a key they lack, then fetched again at most once per ``jwks_refetch``
    (engine clock) so forged ``kid`` values cannot make us hammer the provider.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        http: httpx.Client | None = None,
        allow_insecure_loopback: bool = False,
        discovery_ttl: timedelta = timedelta(hours=1),
        jwks_refetch: timedelta = timedelta(minutes=1),
        max_skew: timedelta = timedelta(minutes=2),
    ) -> None:
        self._clock = clock
        self._http = http
        self._owns_http = http is None
        self.allow_insecure_loopback = allow_insecure_loopback
        self._discovery_ttl = discovery_ttl
        self._jwks_refetch = jwks_refetch
        self._max_skew = max_skew
        self._lock = threading.Lock()
        self._discovery: dict[str, tuple[datetime, ProviderMetadata]] = {}
        # jwks_uri -> (when it was last fetched again for an unknown kid, the keys)
        self._keys: dict[str, tuple[datetime | None, KeySet]] = {}

    # -- discovery and keys ----------------------------------------------------------
    def metadata(self, issuer: str, *, expected_issuer: str | None = None) -> ProviderMetadata:
        """The provider's discovery document, cached for the TTL. Its ``issuer``
        must be exactly ``issuer`` (OpenID Connect Discovery 1.0, 4.3), or
        ``expected_issuer`` when the provider publishes another (Microsoft's
        multi-tenant document names a ``{tenantid}`` template)."""
        now = self._clock()
        with self._lock:
            cached = self._discovery.get(issuer)
        if cached is not None and now < cached[0] + self._discovery_ttl:
            return cached[1]
        check_endpoint(issuer, allow_insecure_loopback=self.allow_insecure_loopback)
        document = self._get_json(issuer.rstrip("/") + "/.well-known/openid-configuration")
        metadata = self._parse_metadata(expected_issuer or issuer, document)
        with self._lock:
            self._discovery[issuer] = (now, metadata)
        return metadata

    def _parse_metadata(self, issuer: str, document: Mapping[str, Any]) -> ProviderMetadata:
        if document.get("issuer") != issuer:
            raise OIDCError("the discovery document names another issuer")
        endpoints = {}
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = document.get(name)
            if not isinstance(value, str):
                raise OIDCError(f"the discovery document lacks {name}")
            endpoints[name] = self._endpoint(value)
        userinfo = document.get("userinfo_endpoint")
        published = document.get("id_token_signing_alg_values_supported")
        if not isinstance(published, list):
            raise OIDCError("the discovery document lacks id_token_signing_alg_values_supported")
        return ProviderMetadata(
            issuer=issuer,
            authorization_endpoint=endpoints["authorization_endpoint"],
            token_endpoint=endpoints["token_endpoint"],
            jwks_uri=endpoints["jwks_uri"],
            userinfo_endpoint=self._endpoint(userinfo) if isinstance(userinfo, str) else None,
            signing_algs=frozenset(a for a in published if a in SIGNING_ALGS),
        )

    def _endpoint(self, url: str) -> str:
        return check_endpoint(url, allow_insecure_loopback=self.allow_insecure_loopback)

    def _key_set(self, jwks_uri: str, kid: str | None) -> KeySet:
        """The provider's keys, fetched again when they lack ``kid``: at once after a
        rotation, but at most once per ``jwks_refetch`` (counted from the last such
        refetch, not from the first fetch)."""
        now = self._clock()
        with self._lock:
            cached = self._keys.get(jwks_uri)
        if cached is not None:
            refetched_at, keys = cached
            if _has_kid(keys, kid):
                return keys
            if refetched_at is not None and now < refetched_at + self._jwks_refetch:
                return keys  # the signature check then fails: no key with that kid
        fresh = _import_key_set(self._get_json(jwks_uri))
        with self._lock:
            self._keys[jwks_uri] = (None if cached is None else now, fresh)
        return fresh

    # -- the flow ----------------------------------------------------------------------
    def authorization_url(
        self,
        metadata: ProviderMetadata,
        *,
        client_id: str,
        redirect_uri: str,
        scopes: tuple[str, ...],
        state: str,
        nonce: str,
        code_verifier: str,
        login_hint: str | None,
    ) -> str:
        """The URL of the authorization request (code flow, PKCE S256)."""
        params = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(scopes),
            "state": state,
            "nonce": nonce,
            "code_challenge": pkce_challenge(code_verifier),
            "code_challenge_method": "S256",
        }
        if login_hint is not None:
            params["login_hint"] = login_hint
        separator = "&" if urlsplit(metadata.authorization_endpoint).query else "?"
        return metadata.authorization_endpoint + separator + urlencode(params)

    def redeem(self, metadata: ProviderMetadata, request: TokenRequest) -> Mapping[str, Any]:
        """Exchange the code for tokens at the token endpoint."""
        form = {
            "grant_type": "authorization_code",
            "code": request.code,
            "redirect_uri": request.redirect_uri,
            "code_verifier": request.code_verifier,
        }
        auth: tuple[str, str] | None = None
        if request.auth_method == "client_secret_basic":
            auth = (_form_encode(request.client_id), _form_encode(request.credential))
        elif request.auth_method == "client_secret_post":
            form |= {"client_id": request.client_id, "client_secret": request.credential}
        elif request.auth_method == "private_key_jwt":
            form |= {
                "client_id": request.client_id,
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": self._client_assertion(metadata, request),
            }
        else:
            raise OIDCError("unknown client authentication method")
        response = self._send("POST", metadata.token_endpoint, data=form, auth=auth)
        return _json_object(response)

    def _client_assertion(self, metadata: ProviderMetadata, request: TokenRequest) -> str:
        """A JWT signed with the client's private key (RFC 7523, OIDC Core 9)."""
        from joserfc import jwt
        from joserfc.jwk import ECKey, RSAKey

        pem = request.credential.encode("utf-8")
        key: ECKey | RSAKey
        try:
            key = ECKey.import_key(pem)
            alg = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}[key.curve_name]
        except (ValueError, TypeError, KeyError):
            key = RSAKey.import_key(pem)
            alg = "RS256"
        now = int(self._clock().timestamp())
        claims = {
            "iss": request.client_id,
            "sub": request.client_id,
            "aud": metadata.token_endpoint,
            "jti": new_token(),
            "iat": now,
            "exp": now + 60,
        }
        return jwt.encode({"alg": alg}, claims, key, algorithms=[alg])

    def validate_id_token(
        self,
        metadata: ProviderMetadata,
        id_token: object,
        *,
        client_id: str,
        nonce: str,
        issuer_matches: Callable[[Mapping[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        """The ID token's claims once its signature and claims check out.

        ``issuer_matches`` replaces the exact ``iss`` check for a provider whose
        issuer depends on the token (Microsoft's multi-tenant apps)."""
        from joserfc import jws, jwt
        from joserfc.errors import JoseError

        if not isinstance(id_token, str) or not 0 < len(id_token) <= MAX_ID_TOKEN:
            raise OIDCError("the token response holds no usable id_token")
        try:
            header = jws.extract_compact(id_token.encode("ascii")).headers()
        except (JoseError, ValueError, UnicodeError) as exc:
            raise OIDCError("the id_token is not a compact JWS") from exc
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in metadata.signing_algs:
            raise OIDCError(f"the id_token's alg {alg!r} is not one the provider publishes")
        kid = header.get("kid")
        keys = self._key_set(metadata.jwks_uri, kid if isinstance(kid, str) else None)
        try:
            token = jwt.decode(id_token, keys, algorithms=[alg])
        except (JoseError, ValueError) as exc:
            raise OIDCError(f"the id_token does not verify ({type(exc).__name__})") from exc
        issuer = metadata.issuer
        if issuer_matches is not None:
            if not issuer_matches(token.claims):
                raise OIDCError("the id_token's iss is not the issuer")
            issuer = str(token.claims.get("iss"))
        self._check_claims(token.claims, issuer, client_id, nonce)
        return token.claims

    def _check_claims(
        self, claims: Mapping[str, Any], issuer: str, client_id: str, nonce: str
    ) -> None:
        if claims.get("iss") != issuer:
            raise OIDCError("the id_token's iss is not the issuer")
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if client_id not in audiences:
            raise OIDCError("the id_token's aud does not name this client")
        azp = claims.get("azp")
        if (len(audiences) > 1 or azp is not None) and azp != client_id:
            raise OIDCError("the id_token's azp is not this client")
        now = self._clock().timestamp()
        skew = self._max_skew.total_seconds()
        exp, iat = _number(claims.get("exp")), _number(claims.get("iat"))
        if exp is None or now >= exp + skew:
            raise OIDCError("the id_token has expired")
        if iat is None or iat > now + skew:
            raise OIDCError("the id_token was issued in the future")
        seen = claims.get("nonce")
        if not isinstance(seen, str) or not secrets.compare_digest(
            seen.encode("utf-8"), nonce.encode("utf-8")
        ):
            raise OIDCError("the id_token's nonce is not this sign-in's")
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise OIDCError("the id_token has no sub")

    def userinfo(self, metadata: ProviderMetadata, access_token: object) -> dict[str, Any]:
        """The userinfo response (OIDC Core 5.3), as JSON."""
        if metadata.userinfo_endpoint is None or not isinstance(access_token, str):
            raise OIDCError("no userinfo endpoint or no access token")
        response = self._send(
            "GET",
            metadata.userinfo_endpoint,
            headers={"Authorization": f"Bearer {access_token}"},
        )
        return _json_object(response)

    # -- HTTP ----------------------------------------------------------------------------
    def _get_json(self, url: str) -> dict[str, Any]:
        return _json_object(self._send("GET", url))

    def send(self, method: str, url: str, **options: Any) -> bytes:
        """One bounded request (timeouts, size cap, no redirects) to a provider URL
        (https, or loopback http when allowed); :class:`OIDCError` unless it answers
        200. For providers with APIs of their own (GitHub's)."""
        return self._send(method, self._endpoint(url), **options)

    def _send(self, method: str, url: str, **options: Any) -> bytes:
        import httpx

        try:
            with self._client().stream(method, url, **options) as response:
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_RESPONSE:
                        raise OIDCError(f"{method} {url}: the response is too large")
                if response.status_code != 200:
                    raise OIDCError(f"{method} {url}: HTTP {response.status_code}")
                return bytes(body)
        except httpx.HTTPError as exc:
            raise OIDCError(f"{method} {url}: {type(exc).__name__}") from exc

    def close(self) -> None:
        """Close the HTTP client this object made (an injected one stays the caller's)."""
        with self._lock:
            client, self._http = (self._http, None) if self._owns_http else (None, self._http)
        if client is not None:
            client.close()

    def _client(self) -> httpx.Client:
        with self._lock:
            if self._http is None:
                self._http = _default_client()
            return self._http


def _default_client() -> httpx.Client:
    try:
        import httpx
    except ImportError:
        raise ExtraNotInstalled("sso", "httpx") from None
    return httpx.Client(timeout=httpx.Timeout(10.0, connect=5.0), follow_redirects=False)


def _import_key_set(document: Mapping[str, Any]) -> KeySet:
    from joserfc.errors import JoseError
    from joserfc.jwk import KeySet

    keys = document.get("keys")
    if not isinstance(keys, list):
        raise OIDCError("the provider's key set has no keys")
    # Public keys only: a set that carried private parts or symmetric keys is refused
    # rather than trusted (an "oct" key would let HS* tokens verify).
    public = [k for k in keys if isinstance(k, dict) and k.get("kty") in {"RSA", "EC", "OKP"}]
    try:
        return KeySet.import_key_set({"keys": public})
    except (JoseError, ValueError, TypeError) as exc:
        raise OIDCError("the provider's key set does not parse") from exc


def _has_kid(keys: KeySet, kid: str | None) -> bool:
    return kid is None or any(key.kid == kid for key in keys)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeError) as exc:
        raise OIDCError("the response is not JSON") from exc
    if not isinstance(value, dict):
        raise OIDCError("the response is not a JSON object")
    return value


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _form_encode(value: str) -> str:
    """client_secret_basic encodes id and secret as form values first (RFC 6749, 2.3.1)."""
    from urllib.parse import quote_plus

    return quote_plus(value)


def ensure_installed() -> None:
    """Raise :class:`ExtraNotInstalled` when the ``sso`` extra is missing."""
    try:
        import httpx  # noqa: F401
        import joserfc  # noqa: F401
    except ImportError as exc:
        raise ExtraNotInstalled("sso", exc.name or "joserfc") from None
