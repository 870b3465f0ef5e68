"""Sign-in through an org's OpenID Connect connection: begin (the redirect to the
provider) and complete (the callback), for :class:`authsome.sso.SSO`.

Only the OpenID Connect part lives here: the authorization request, and the
provider's answer checked by :mod:`authsome._oidc` into a
:class:`~authsome._federated.VerifiedIdentity`. The state handle, throttling, the
generic refusal, account resolution and the completion are the shared journey of
:mod:`authsome._federated`. The state payload holds the connection, the ``state``
and ``nonce`` values, the PKCE verifier and the redirect URI.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

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
)
from authsome._seats import Seats
from authsome._signin import SignInFlow
from authsome._time import Clock
from authsome.bridge import LedgerContext
from authsome.crypto import new_token
from authsome.errors import NotFound
from authsome.features import Feature
from authsome.models import Org, SignIn, SSOConnectionInfo, SSOProtocol, SSORedirect
from authsome.onetime import OneTimeTokens, TokenPurpose
from authsome.stores import Store
from authsome.throttle import Throttle

__all__ = ["OIDCSignIn"]

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
    ) -> None:
        self._store = store
        self._billing = billing
        self._client = client
        self._client_secret = client_secret
        self._federated = FederatedSignIn(
            billing,
            clock,
            kind="sso",
            purpose=TokenPurpose.SSO_STATE,
            fields=("c", "s", "n", "v", "r"),
            callback=OAUTH_CALLBACK,
            tokens=tokens,
            identities=identities,
            seats=Seats(store, billing),
            sign_in=sign_in,
            throttle=throttle,
        )

    def begin(
        self,
        connection: SSOConnectionInfo,
        *,
        redirect_uri: str,
        tenant: str,
        login_hint: str | None,
        ip: str | None = None,
    ) -> SSORedirect:
        org = self._org_of(connection, tenant)
        redirect_uri = self._redirect_uri(redirect_uri)
        self._billing.require(Feature.SSO, LedgerContext(tenant=tenant, org_id=org.id))
        self._federated.count_start(ip)
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
        payload = {"c": connection.id, "s": state, "n": nonce, "v": verifier, "r": redirect_uri}
        return SSORedirect(url=url, handle=self._federated.begin(tenant, payload))

    def complete(
        self,
        params: Mapping[str, str],
        *,
        handle: str,
        tenant: str,
        ip: str | None,
        user_agent: str | None,
    ) -> SignIn:
        return self._federated.complete(
            params, handle=handle, tenant=tenant, ip=ip, user_agent=user_agent, verify=self._verify
        )

    # -- steps -----------------------------------------------------------------------
    def _verify(self, pending: Pending) -> VerifiedIdentity:
        refused = self._federated.refused
        answer, payload = pending.params, pending.payload
        code = checked_oauth_answer(self._federated, answer, payload["s"])
        connection = self._store.get_sso_connection(payload["c"])
        if connection is None:
            raise refused("the connection was deleted during the sign-in")
        if "iss" in answer and answer["iss"] != connection.issuer:
            # RFC 9207: the answer comes from another provider (a mix-up attack).
            raise refused("the callback's iss is not the connection's issuer")
        try:
            check_response_issuer(self._metadata(connection), answer.get("iss"))
        except OIDCError as exc:
            raise refused(f"connection {connection.id}: {exc}") from None
        org = self._org_of(connection, pending.tenant)
        # Before anything is written: a plan without SSO signs nobody in.
        self._billing.require(Feature.SSO, LedgerContext(tenant=pending.tenant, org_id=org.id))
        claims = self._verified_claims(connection, code, payload)
        email = claims.get("email")
        return VerifiedIdentity(
            provider=connection.id,
            subject=str(claims["sub"]),
            email=email if isinstance(email, str) else None,
            email_verified=claims.get("email_verified") is True,
            mfa_done=connection.trust_idp_mfa and _provider_did_mfa(claims),
            org_id=org.id,
            role=connection.jit_role,
            jit=connection.jit,
        )

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
            raise self._federated.refused(f"connection {connection.id}: {exc}") from None
        return claims

    # -- helpers ---------------------------------------------------------------------
    def _metadata(self, connection: SSOConnectionInfo) -> ProviderMetadata:
        try:
            return self._client.metadata(connection.issuer or "")
        except OIDCError as exc:
            raise self._federated.refused(f"connection {connection.id}: {exc}") from None

    def _org_of(self, connection: SSOConnectionInfo, tenant: str) -> Org:
        """The connection's org, when it is an OIDC connection of ``tenant``; a
        connection of another tenant is as unknown as a made-up id."""
        org = self._store.get_org(connection.org_id)
        if org is None or org.tenant != tenant or connection.protocol != SSOProtocol.OIDC:
            raise NotFound("no such SSO connection")
        return org

    def _redirect_uri(self, redirect_uri: object) -> str:
        return check_endpoint_setting(
            "redirect_uri",
            v.require_str("redirect_uri", redirect_uri),
            allow_insecure_loopback=self._client.allow_insecure_loopback,
        )


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
