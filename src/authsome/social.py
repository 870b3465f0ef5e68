"""Social sign-in: Google, Microsoft, Apple, GitLab and GitHub, configured per tenant.

The application registers an app at each provider and gives its credentials to
authsome with :meth:`Social.configure` (per tenant). The secret (a client secret, or
Apple's private key) is write-only and sealed with the engine's ``secret_key``
exactly like SSO client secrets.

A sign-in is :meth:`Social.begin` (the provider's URL and a state *handle*) then
:meth:`Social.complete` with the provider's callback parameters and the handle. The
handle is a one-time token (single use, ten minutes, bound to the tenant) and it is
also the ``state`` sent to the provider, so Apple's cross-site ``form_post`` callback
carries it back; the web integrations also keep it in a signed cookie and check the
two agree. Every flow uses the authorization code with PKCE (S256); the OpenID
Connect providers also a ``nonce`` and a validated ID token.

Accounts are resolved like SSO accounts: the provider's stable subject (``sub``,
GitHub's numeric user id) under the provider key ``social:<provider>`` is the link; a
first sign-in goes by the address only when the provider vouches for it
(``email_verified``; on GitHub the primary address marked verified; on Microsoft the
optional ``xms_edov`` claim). It links the tenant's user with that address when that
user verified it here too, and provisions a new user otherwise. A first sign-in with
an address the provider did not verify is refused: it would squat the address. The
sign-in completes through the one sign-in flow (MFA, session, usage).
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from authsome import _validation as v
from authsome._billing import Billing
from authsome._federated import (
    OAUTH_CALLBACK,
    FederatedSignIn,
    Pending,
    VerifiedIdentity,
    checked_oauth_answer,
)
from authsome._identities import Identities
from authsome._oidc import (
    OIDCClient,
    OIDCError,
    ProviderMetadata,
    TokenRequest,
    check_endpoint_setting,
    check_response_issuer,
    pkce_challenge,
)
from authsome._seats import Seats
from authsome._signin import SignInFlow
from authsome._social_providers import (
    MICROSOFT_DISCOVERY_ISSUER,
    MICROSOFT_ISSUER_TEMPLATE,
    PRESETS,
    Preset,
    ProviderProfile,
    SocialProviderName,
    apple_client_secret,
    check_apple_private_key,
    email_is_verified,
    github_exchange_code,
    github_profile,
    microsoft_email_is_verified,
    microsoft_issuer_matches,
)
from authsome._time import Clock
from authsome.crypto import Keyring, Resealed, new_id, new_token, reseal_all
from authsome.errors import InvalidCredentials, NotFound, ValidationError
from authsome.models import SignIn, SocialProviderInfo, SSORedirect
from authsome.onetime import OneTimeTokens, TokenPurpose
from authsome.stores import Store
from authsome.throttle import Throttle

__all__ = ["Social", "SocialProviderName"]

logger = logging.getLogger("authsome.social")

MAX_CLIENT_ID = 255
MAX_SECRET = 8 * 1024  # a client secret, or a PEM private key
MAX_SETTING = 255
_MS_MULTI = frozenset({"common", "organizations", "consumers"})
_WHAT = "a social sign-in secret"
_URL_SETTINGS = {
    "oidc": ("issuer",),
    "oauth2": ("authorization_endpoint", "token_endpoint", "api_base"),
}
_NAMES = frozenset({"team_id", "key_id", "directory"})


@dataclass(frozen=True, slots=True)
class _Provider:
    """A configured provider, ready for a sign-in (the secret in clear)."""

    info: SocialProviderInfo
    preset: Preset
    secret: str = field(repr=False)

    def setting(self, name: str) -> str | None:
        return dict(self.info.settings).get(name)


class Social:
    """``auth.social``: per-tenant social providers and sign-in through them."""

    def __init__(
        self,
        store: Store,
        billing: Billing,
        clock: Clock,
        keyring: Keyring,
        *,
        tokens: OneTimeTokens,
        sign_in: SignInFlow,
        oidc: OIDCClient,
        throttle: Throttle,
    ) -> None:
        self._store = store
        self._clock = clock
        self._keyring = keyring
        self._oidc = oidc
        self._federated = FederatedSignIn(
            billing,
            clock,
            kind="social",
            purpose=TokenPurpose.SOCIAL_STATE,
            fields=("p", "r", "v", "n"),
            callback=OAUTH_CALLBACK,
            tokens=tokens,
            # The provider's verification of an address stands for the proof a domain
            # gives SSO: an address links an existing user only when both sides
            # verified it, the provider and authsome (the user read mail there), and
            # provisions nobody unless the provider verified it.
            identities=Identities(
                store, clock, address_rule=_any_address, provision_unverified=False
            ),
            seats=Seats(store, billing),
            sign_in=sign_in,
            throttle=throttle,
        )

    # -- configuration -----------------------------------------------------------------
    def configure(
        self,
        provider: str,
        *,
        tenant: str = "default",
        client_id: str,
        client_secret: str | None = None,
        private_key: str | None = None,
        team_id: str | None = None,
        key_id: str | None = None,
        directory: str | None = None,
        base_url: str | None = None,
        scopes: tuple[str, ...] | None = None,
        issuer: str | None = None,
        authorization_endpoint: str | None = None,
        token_endpoint: str | None = None,
        api_base: str | None = None,
    ) -> SocialProviderInfo:
        """Set the tenant's app at ``provider`` (replacing an earlier one) and return
        it, without its secret.

        Every provider takes ``client_id``; Apple takes ``private_key`` (PEM),
        ``team_id`` and ``key_id`` instead of a ``client_secret``. Microsoft's
        ``directory`` is ``"common"`` (default), ``"organizations"``,
        ``"consumers"`` or a directory id; GitLab's ``base_url`` names a self-hosted
        instance. ``issuer`` (OpenID Connect providers), ``authorization_endpoint``,
        ``token_endpoint`` and ``api_base`` (GitHub) override where the provider
        lives; they must be https (plain http only to a loopback host, with the
        engine's ``sso_allow_insecure_loopback``). Raises
        :class:`~authsome.errors.ValidationError` for a bad setting.
        """
        tenant = v.check_tenant(tenant)
        preset = _preset(provider)
        secret = self._checked_secret(preset, client_secret, private_key)
        settings = self._checked_settings(
            preset,
            team_id=team_id,
            key_id=key_id,
            directory=directory,
            base_url=base_url,
            issuer=issuer,
            authorization_endpoint=authorization_endpoint,
            token_endpoint=token_endpoint,
            api_base=api_base,
        )
        now = self._clock()
        info = SocialProviderInfo(
            id=new_id("soc"),
            tenant=tenant,
            provider=preset.name.value,
            client_id=_text("client_id", client_id, MAX_CLIENT_ID),
            scopes=_scopes(preset, scopes),
            settings=tuple(sorted(settings.items())),
            has_client_secret=True,
            created_at=now,
            updated_at=now,
        )
        sealed = self._keyring.seal(secret, aad=_secret_aad(info.id), what=_WHAT)
        stored = self._store.put_social_provider(info, sealed)
        logger.info("social provider configured: tenant=%s provider=%s", tenant, info.provider)
        return stored

    def get(self, provider: str, *, tenant: str = "default") -> SocialProviderInfo:
        """The tenant's configuration of ``provider``; :class:`NotFound` otherwise."""
        found = self._store.get_social_provider(v.check_tenant(tenant), _preset(provider).name)
        if found is None:
            raise NotFound("no such social provider")
        return found

    def list(self, *, tenant: str = "default") -> builtins.list[SocialProviderInfo]:
        """The tenant's configured providers, by name."""
        return self._store.list_social_providers(v.check_tenant(tenant))

    def delete(self, provider: str, *, tenant: str = "default") -> bool:
        """Remove the tenant's configuration of ``provider``; ``False`` if none.
        Accounts linked through it stay linked (a new configuration finds them)."""
        return self._store.delete_social_provider(v.check_tenant(tenant), _preset(provider).name)

    def reseal_secrets(self) -> Resealed:
        """Seal under the current ``secret_key`` every provider secret stored in clear
        or under a previous key."""
        return reseal_all(
            self._keyring,
            page=self._store.list_social_client_secrets,
            replace=self._store.replace_social_client_secret,
            aad=_secret_aad,
            what=_WHAT,
        )

    # -- sign-in ----------------------------------------------------------------------
    def begin(
        self,
        provider: str,
        *,
        redirect_uri: str,
        tenant: str = "default",
        ip: str | None = None,
    ) -> SSORedirect:
        """Start a sign-in at ``provider``: the URL to send the browser to, and the
        state handle to keep for :meth:`complete` (never shown in ``repr``).

        ``redirect_uri`` must be registered at the provider. Raises
        :class:`~authsome.errors.NotFound` when the tenant has not configured the
        provider, :class:`~authsome.errors.InvalidCredentials` when the provider
        cannot be reached or answers nonsense (logged; nothing is stored),
        :class:`~authsome.errors.RateLimited` when the client's address ``ip``
        started more than ``ThrottlePolicy.starts_per_ip`` sign-ins within the window."""
        tenant = v.check_tenant(tenant)
        configured = self._provider(tenant, provider)
        redirect_uri = check_endpoint_setting(
            "redirect_uri",
            v.require_str("redirect_uri", redirect_uri),
            allow_insecure_loopback=self._oidc.allow_insecure_loopback,
        )
        self._federated.count_start(ip)
        verifier, nonce = new_token(), new_token()
        payload = {"p": configured.preset.name.value, "r": redirect_uri, "v": verifier, "n": nonce}
        try:
            if configured.preset.kind == "oidc":
                self._metadata(configured)  # discovery first: a failed start stores nothing
            handle = self._federated.begin(tenant, payload)
            url = self._authorization_url(configured, redirect_uri, handle, nonce, verifier)
        except OIDCError as exc:
            logger.warning("social sign-in could not start: %s", exc)
            raise InvalidCredentials() from None
        return SSORedirect(url=url, handle=handle)

    def complete(
        self,
        params: Mapping[str, str],
        *,
        handle: str,
        tenant: str = "default",
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> SignIn:
        """Finish a sign-in with the provider's callback parameters (``code`` and
        ``state``, from the query or, for Apple, the POSTed form) and the handle
        :meth:`begin` gave.

        The handle is used up whatever happens. Every refusal (a ``state`` that is
        not the handle, a used or expired handle, an error from the provider, a
        refused code or token, an address that may not link) is one
        :class:`~authsome.errors.InvalidCredentials`, the reason logged on
        ``authsome.security``; failures count against the client's address like
        failed password sign-ins (:class:`~authsome.errors.RateLimited`). Returns the
        :class:`~authsome.models.SignIn` of the one sign-in flow: a session, or an MFA
        ticket. ``ip`` and ``user_agent`` describe the client for the device list
        (:meth:`~authsome.sessions.Sessions.list`).
        """
        return self._federated.complete(
            params, handle=handle, tenant=tenant, ip=ip, user_agent=user_agent, verify=self._verify
        )

    def _verify(self, pending: Pending) -> VerifiedIdentity:
        code = checked_oauth_answer(self._federated, pending.params, pending.handle)
        try:
            configured = self._provider(pending.tenant, pending.payload["p"])
        except NotFound:
            raise self._federated.refused("the provider was removed during the sign-in") from None
        try:
            profile = self._profile(configured, code, pending)
        except OIDCError as exc:
            raise self._federated.refused(f"{configured.preset.name.value}: {exc}") from None
        return VerifiedIdentity(
            provider=f"social:{configured.preset.name.value}",
            subject=profile.subject,
            email=profile.email,
            email_verified=profile.email_verified,
        )

    # -- the protocols ----------------------------------------------------------------
    def _authorization_url(
        self, configured: _Provider, redirect_uri: str, state: str, nonce: str, verifier: str
    ) -> str:
        info, preset = configured.info, configured.preset
        if preset.kind == "oauth2":
            endpoint = configured.setting("authorization_endpoint") or preset.authorization_endpoint
            assert endpoint is not None
            query = {
                "client_id": info.client_id,
                "redirect_uri": redirect_uri,
                "scope": " ".join(info.scopes),
                "state": state,
                "code_challenge": pkce_challenge(verifier),
                "code_challenge_method": "S256",
            }
            return endpoint + ("&" if urlsplit(endpoint).query else "?") + urlencode(query)
        url = self._oidc.authorization_url(
            self._metadata(configured),
            client_id=info.client_id,
            redirect_uri=redirect_uri,
            scopes=info.scopes,
            state=state,
            nonce=nonce,
            code_verifier=verifier,
            login_hint=None,
        )
        if preset.response_mode == "form_post":
            url += "&" + urlencode({"response_mode": "form_post"})
        return url

    def _profile(self, configured: _Provider, code: str, pending: Pending) -> ProviderProfile:
        if configured.preset.kind == "oauth2":
            return self._github_profile(configured, code, pending.payload)
        return self._oidc_profile(configured, code, pending)

    def _github_profile(
        self, configured: _Provider, code: str, payload: Mapping[str, Any]
    ) -> ProviderProfile:
        preset = configured.preset
        token_endpoint = configured.setting("token_endpoint") or preset.token_endpoint
        api_base = configured.setting("api_base") or preset.api_base
        assert token_endpoint is not None
        assert api_base is not None
        send = self._oidc.send
        access_token = github_exchange_code(
            send,
            token_endpoint,
            client_id=configured.info.client_id,
            client_secret=configured.secret,
            code=code,
            redirect_uri=payload["r"],
            code_verifier=payload["v"],
        )
        return github_profile(send, api_base, access_token)

    def _oidc_profile(self, configured: _Provider, code: str, pending: Pending) -> ProviderProfile:
        info, name = configured.info, configured.preset.name
        answer, payload = pending.params, pending.payload
        metadata = self._metadata(configured)
        check_response_issuer(metadata, answer.get("iss"))
        apple = name is SocialProviderName.APPLE
        credential = (
            apple_client_secret(
                team_id=configured.setting("team_id") or "",
                key_id=configured.setting("key_id") or "",
                client_id=info.client_id,
                private_key=configured.secret,
                now=self._clock(),
            )
            if apple
            else configured.secret
        )
        tokens = self._oidc.redeem(
            metadata,
            TokenRequest(
                client_id=info.client_id,
                credential=credential,
                auth_method="client_secret_post" if apple else "client_secret_basic",
                code=code,
                redirect_uri=payload["r"],
                code_verifier=payload["v"],
            ),
        )
        issuer_check = None
        if name is SocialProviderName.MICROSOFT:
            expected = _microsoft_token_issuer(configured)
            issuer_check = lambda claims: microsoft_issuer_matches(expected, claims)  # noqa: E731
        claims = self._oidc.validate_id_token(
            metadata,
            tokens.get("id_token"),
            client_id=info.client_id,
            nonce=payload["n"],
            issuer_matches=issuer_check,
        )
        email = claims.get("email")
        name_claim = claims.get("name")
        vouched = (
            microsoft_email_is_verified(claims)
            if name is SocialProviderName.MICROSOFT
            else email_is_verified(claims.get("email_verified"))
        )
        return ProviderProfile(
            subject=str(claims["sub"]),
            email=email if isinstance(email, str) else None,
            email_verified=isinstance(email, str) and vouched,
            name=name_claim if isinstance(name_claim, str) else None,
        )

    def _metadata(self, configured: _Provider) -> ProviderMetadata:
        discovery = _discovery_url(configured)
        if _microsoft_multi_tenant(configured) and configured.setting("issuer") is None:
            # Its discovery document names the template, not the URL it is served at.
            return self._oidc.metadata(discovery, expected_issuer=MICROSOFT_DISCOVERY_ISSUER)
        return self._oidc.metadata(discovery)

    # -- configuration helpers ----------------------------------------------------------
    def _provider(self, tenant: str, provider: str) -> _Provider:
        preset = _preset(provider)
        info = self._store.get_social_provider(tenant, preset.name.value)
        if info is None:
            raise NotFound("no such social provider")
        stored = self._store.get_social_client_secret(info.id)
        if stored is None:  # replaced between the two reads
            raise NotFound("no such social provider")
        aad = _secret_aad(info.id)
        opened = self._keyring.open(stored, aad=aad)
        if opened.stale:
            resealed = self._keyring.seal(opened.plaintext, aad=aad, what=_WHAT)
            self._store.replace_social_client_secret(info.id, stored, resealed)
        return _Provider(info, preset, opened.plaintext)

    def _checked_secret(
        self, preset: Preset, client_secret: str | None, private_key: str | None
    ) -> str:
        if preset.name is SocialProviderName.APPLE:
            if client_secret is not None:
                raise ValidationError(
                    "Apple takes private_key, team_id and key_id, no client_secret"
                )
            key = _text("private_key", private_key, MAX_SECRET)
            check_apple_private_key(key)
            return key
        if private_key is not None:
            raise ValidationError(f"{preset.name.value} takes a client_secret, not a private_key")
        return _text("client_secret", client_secret, MAX_SECRET)

    def _checked_settings(self, preset: Preset, **given: str | None) -> dict[str, str]:
        apple = preset.name is SocialProviderName.APPLE
        allowed = set(_URL_SETTINGS[preset.kind])
        allowed |= {"team_id", "key_id"} if apple else set()
        allowed |= {"directory"} if preset.name is SocialProviderName.MICROSOFT else set()
        allowed |= {"base_url"} if preset.name is SocialProviderName.GITLAB else set()
        loopback = self._oidc.allow_insecure_loopback
        settings: dict[str, str] = {}
        for name, value in given.items():
            if value is None:
                continue
            if name not in allowed:
                raise ValidationError(f"{preset.name.value} takes no {name}")
            if name in _NAMES:
                settings[name] = _text(name, value, MAX_SETTING)
            else:
                url = _text(name, value, 2048)
                settings[name] = check_endpoint_setting(name, url, allow_insecure_loopback=loopback)
        if apple and not {"team_id", "key_id"} <= settings.keys():
            raise ValidationError("Apple needs team_id and key_id")
        return settings


def _any_address(tenant: str, provider: str, address: str) -> bool:
    """A social provider is not bound to domains: what it verified, it speaks for."""
    return True


def _preset(provider: object) -> Preset:
    try:
        return PRESETS[SocialProviderName(v.require_str("provider", provider))]
    except ValueError:
        names = ", ".join(p.value for p in SocialProviderName)
        raise ValidationError(f"provider must be one of {names}") from None


def _text(name: str, value: object, limit: int) -> str:
    text = v.require_str(name, value)
    if not text.strip() or len(text) > limit:
        raise ValidationError(f"{name} must be 1..{limit} characters")
    return text


def _scopes(preset: Preset, scopes: object) -> tuple[str, ...]:
    if scopes is None:
        return preset.scopes
    if not isinstance(scopes, tuple | list) or len(scopes) > 32:
        raise ValidationError("scopes must be a sequence of at most 32 scope strings")
    chosen = tuple(dict.fromkeys(_text("scope", s, 128) for s in scopes))
    if preset.kind == "oidc" and "openid" not in chosen:
        raise ValidationError('scopes must include "openid"')
    return chosen


def _discovery_url(configured: _Provider) -> str:
    name = configured.preset.name
    if configured.setting("issuer"):
        return configured.setting("issuer") or ""
    if name is SocialProviderName.GITLAB and configured.setting("base_url"):
        return (configured.setting("base_url") or "").rstrip("/")
    if name is SocialProviderName.MICROSOFT:
        directory = configured.setting("directory") or "common"
        return f"https://login.microsoftonline.com/{directory}/v2.0"
    assert configured.preset.issuer is not None
    return configured.preset.issuer


def _microsoft_multi_tenant(configured: _Provider) -> bool:
    directory = configured.setting("directory") or "common"
    return configured.preset.name is SocialProviderName.MICROSOFT and directory in _MS_MULTI


def _microsoft_token_issuer(configured: _Provider) -> str:
    """The issuer Microsoft's ID tokens must name: for a multi-tenant app the
    per-directory template, filled with the token's ``tid`` (wherever discovery is
    served from); for a single directory its own issuer, the discovery URL."""
    if _microsoft_multi_tenant(configured):
        return MICROSOFT_ISSUER_TEMPLATE
    return _discovery_url(configured)


def _secret_aad(provider_id: str) -> str:
    # Binds a sealed secret to its configuration: copied into another row, it won't open.
    return f"authsome.social.client_secret:{provider_id}"
