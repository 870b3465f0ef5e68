"""Sign-in through an org's OpenID Connect connection: begin (the redirect to the
provider) and complete (the callback), for :class:`authsome.sso.SSO`.

The state of a sign-in is a user-less one-time token (:mod:`authsome.onetime`)
carrying the connection, the ``state`` and ``nonce`` values and the PKCE verifier:
single use, short-lived, tenant bound, sealed at rest. The provider's answer is
checked by :mod:`authsome._oidc`, the account resolved by
:mod:`authsome._identities`, and the sign-in completes through the one completion
point (:class:`~authsome._signin.SignInFlow`), which applies the MFA policy and
records the session and the active user once.

Every refusal after the input checks is one :class:`~authsome.errors.InvalidCredentials`;
the reason goes to ``authsome.security``.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Mapping

from authsome import _validation as v
from authsome._billing import Billing
from authsome._identities import Identities, Resolution
from authsome._oidc import OIDCClient, OIDCError, ProviderMetadata, TokenRequest, check_endpoint
from authsome._signin import SignInFlow
from authsome._time import Clock
from authsome.bridge import LedgerContext
from authsome.crypto import new_token
from authsome.errors import (
    AlreadyExists,
    InvalidCredentials,
    InvalidToken,
    NotFound,
    ValidationError,
)
from authsome.features import Feature, UsageEvent
from authsome.models import Membership, Org, SignIn, SSOConnectionInfo, SSOProtocol, SSORedirect
from authsome.onetime import OneTimeTokens, TokenPurpose
from authsome.sessions import Client
from authsome.stores import Store
from authsome.throttle import Throttle

__all__ = ["OIDCSignIn"]

security_log = logging.getLogger("authsome.security")

MAX_PARAM = 4096  # a code, state or error from the provider; far longer is not one
# What providers put in amr / acr when the user passed a second factor (RFC 8176; the
# PAPE multi-factor policy URI many providers still send as acr).
_MFA_AMR = frozenset({"mfa"})
_MFA_ACR = frozenset({"http://schemas.openid.net/pape/policies/2007/06/multi-factor"})


class OIDCSignIn:
    """The two halves of an OIDC sign-in."""

    def __init__(
        self,
        store: Store,
        billing: Billing,
        clock: Clock,
        *,
        client: OIDCClient,
        tokens: OneTimeTokens,
        identities: Identities,
        sign_in: SignInFlow,
        throttle: Throttle,
        client_secret: Callable[[str], str | None],
        membership_event_id: Callable[[Membership], str],
    ) -> None:
        self._store = store
        self._billing = billing
        self._clock = clock
        self._client = client
        self._tokens = tokens
        self._identities = identities
        self._sign_in = sign_in
        self._throttle = throttle
        self._client_secret = client_secret
        self._membership_event_id = membership_event_id

    def begin(
        self,
        connection: SSOConnectionInfo,
        *,
        redirect_uri: str,
        tenant: str,
        login_hint: str | None,
    ) -> SSORedirect:
        org = self._org_of(connection, tenant)
        redirect_uri = self._redirect_uri(redirect_uri)
        self._billing.require(Feature.SSO, LedgerContext(tenant=tenant, org_id=org.id))
        metadata = self._metadata(connection)
        state, nonce, verifier = new_token(), new_token(), new_token()
        url = self._client.authorization_url(
            metadata,
            client_id=connection.client_id or "",
            redirect_uri=redirect_uri,
            scopes=connection.scopes,
            state=state,
            nonce=nonce,
            code_verifier=verifier,
            login_hint=login_hint,
        )
        payload = json.dumps(
            {"c": connection.id, "s": state, "n": nonce, "v": verifier, "r": redirect_uri}
        )
        handle = self._tokens.issue_state(TokenPurpose.SSO_STATE, tenant=tenant, payload=payload)
        return SSORedirect(url=url, handle=handle)

    def complete(
        self,
        params: Mapping[str, str],
        *,
        handle: str,
        tenant: str,
        ip: str | None,
        user_agent: str | None,
    ) -> SignIn:
        tenant = v.check_tenant(tenant)
        client = Client.of(ip, user_agent)
        ip = v.check_ip(ip)
        answer = _callback_params(params)
        now = self._clock()
        self._throttle.prune_now_and_then(now)
        self._throttle.reserve_ip(ip, now)
        try:
            pending = self._consume(handle, tenant)
        except InvalidToken:
            raise _refused("unknown, used or expired state handle") from None
        if not secrets.compare_digest(answer.get("state", "").encode(), pending["s"].encode()):
            raise _refused("the state parameter is not this sign-in's")
        if "error" in answer or not answer.get("code"):
            raise _refused("the provider answered with an error or without a code")
        connection = self._store.get_sso_connection(pending["c"])
        if connection is None:
            raise _refused("the connection was deleted during the sign-in")
        if "iss" in answer and answer["iss"] != connection.issuer:
            # RFC 9207: the answer comes from another provider (a mix-up attack).
            raise _refused("the callback's iss is not the connection's issuer")
        org = self._org_of(connection, tenant)
        # Before anything is written: a plan without SSO signs nobody in.
        self._billing.require(Feature.SSO, LedgerContext(tenant=tenant, org_id=org.id))
        claims = self._verified_claims(connection, answer["code"], pending)
        signed_in = self._completed(connection, org, claims, client)
        self._throttle.ip_succeeded(ip, now)
        return signed_in

    # -- steps -----------------------------------------------------------------------
    def _consume(self, handle: str, tenant: str) -> dict[str, str]:
        payload = json.loads(
            self._tokens.consume_state(handle, TokenPurpose.SSO_STATE, tenant=tenant)
        )
        if not isinstance(payload, dict) or not all(
            isinstance(payload.get(k), str) for k in ("c", "s", "n", "v", "r")
        ):
            raise InvalidToken()
        return payload

    def _verified_claims(
        self, connection: SSOConnectionInfo, code: str, pending: Mapping[str, str]
    ) -> dict[str, object]:
        credential = self._client_secret(connection.id)
        try:
            metadata = self._metadata(connection)
            tokens = self._client.redeem(
                metadata,
                TokenRequest(
                    client_id=connection.client_id or "",
                    credential=credential or "",
                    auth_method=connection.auth_method,
                    code=code,
                    redirect_uri=pending["r"],
                    code_verifier=pending["v"],
                ),
            )
            claims = self._client.validate_id_token(
                metadata,
                tokens.get("id_token"),
                client_id=connection.client_id or "",
                nonce=pending["n"],
            )
            if connection.userinfo:
                claims = _merged_userinfo(
                    claims, self._client.userinfo(metadata, tokens.get("access_token"))
                )
        except OIDCError as exc:
            raise _refused(f"connection {connection.id}: {exc}") from None
        return claims

    def _completed(
        self,
        connection: SSOConnectionInfo,
        org: Org,
        claims: Mapping[str, object],
        client: Client,
    ) -> SignIn:
        resolved: list[Resolution] = []

        def provider_vouched() -> Resolution:
            resolution = self._identities.resolve(
                tenant=org.tenant,
                provider=connection.id,
                subject=str(claims["sub"]),
                email=claims.get("email"),
                email_verified=claims.get("email_verified"),
                org_id=org.id,
                role=connection.jit_role,
                jit=connection.jit,
            )
            resolved.append(resolution)
            return resolution

        mfa_done = connection.trust_idp_mfa and _provider_did_mfa(claims)
        try:
            signed_in = self._sign_in.first_factor_passed(
                lambda: provider_vouched().user, client, second_factor_passed=mfa_done
            )
        except AlreadyExists:
            # A concurrent first sign-in of the same account linked it (or took the
            # address) between our lookup and our write, which was rolled back: the
            # second look finds what it wrote.
            resolved.clear()
            signed_in = self._sign_in.first_factor_passed(
                lambda: provider_vouched().user, client, second_factor_passed=mfa_done
            )
        self._record_provisioning(resolved[-1], org)
        return signed_in

    def _record_provisioning(self, resolution: Resolution, org: Org) -> None:
        """After commit: the usage a just-in-time provisioning caused."""
        user = resolution.user
        if resolution.created:
            ctx = LedgerContext(tenant=user.tenant, user_id=user.id, event_id=user.id)
            self._billing.record(UsageEvent.USERS_CREATED, ctx)
        if resolution.membership is not None:
            ctx = LedgerContext(
                tenant=org.tenant,
                user_id=user.id,
                org_id=org.id,
                event_id=self._membership_event_id(resolution.membership),
            )
            self._billing.record(UsageEvent.ORGS_MEMBERS, ctx)

    # -- helpers ---------------------------------------------------------------------
    def _metadata(self, connection: SSOConnectionInfo) -> ProviderMetadata:
        try:
            return self._client.metadata(connection.issuer or "")
        except OIDCError as exc:
            raise _refused(f"connection {connection.id}: {exc}") from None

    def _org_of(self, connection: SSOConnectionInfo, tenant: str) -> Org:
        """The connection's org, when it is an OIDC connection of ``tenant``; a
        connection of another tenant is as unknown as a made-up id."""
        org = self._store.get_org(connection.org_id)
        if org is None or org.tenant != tenant or connection.protocol != SSOProtocol.OIDC:
            raise NotFound("no such SSO connection")
        return org

    def _redirect_uri(self, redirect_uri: object) -> str:
        text = v.require_str("redirect_uri", redirect_uri)
        if not text or len(text) > 2048 or not text.isascii() or "#" in text:
            raise ValidationError("redirect_uri must be an absolute URL without a fragment")
        try:
            return check_endpoint(
                text, allow_insecure_loopback=self._client.allow_insecure_loopback
            )
        except OIDCError:
            raise ValidationError("redirect_uri must be an https:// URL") from None


def _callback_params(params: object) -> dict[str, str]:
    """The callback's query (or form) parameters, bounded and typed."""
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping of str, not {type(params).__name__}")
    if len(params) > 32:
        raise ValidationError("params holds too many parameters")
    checked: dict[str, str] = {}
    for name in ("code", "state", "error", "iss"):
        value = params.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise TypeError(f"params[{name!r}] must be a str")
        if len(value) > MAX_PARAM:
            raise ValidationError(f"params[{name!r}] is too long")
        checked[name] = value
    return checked


def _merged_userinfo(
    claims: dict[str, object], userinfo: Mapping[str, object]
) -> dict[str, object]:
    """ID-token claims with the userinfo's e-mail claims, when both name one subject
    (OIDC Core 5.3.2: a userinfo ``sub`` that differs must not be used)."""
    if userinfo.get("sub") != claims["sub"]:
        raise OIDCError("the userinfo response names another subject")
    merged = dict(claims)
    for name in ("email", "email_verified"):
        if name in userinfo:
            merged[name] = userinfo[name]
    return merged


def _provider_did_mfa(claims: Mapping[str, object]) -> bool:
    amr = claims.get("amr")
    acr = claims.get("acr")
    methods = {m for m in amr if isinstance(m, str)} if isinstance(amr, list) else set()
    return bool(methods & _MFA_AMR) or (isinstance(acr, str) and acr in _MFA_ACR)


def _refused(reason: str) -> InvalidCredentials:
    security_log.warning("sso sign-in refused: %s", reason)
    return InvalidCredentials()
