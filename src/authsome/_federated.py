"""Sign-in at an identity provider, after the protocol part: the one journey that
OpenID Connect SSO, social sign-in and SAML share.

A protocol (:mod:`authsome._sso_signin`, :mod:`authsome.social`, a SAML service
provider) keeps what is its own: the redirect to the provider, and checking the
provider's answer into a :class:`VerifiedIdentity`. Everything around that lives
here, once:

- the state of a sign-in is a user-less one-time token (:mod:`authsome.onetime`)
  holding the protocol's JSON payload: single use, short-lived, tenant bound,
  sealed at rest;
- the callback's parameters are bounded and typed before anything else;
- failures count against the client's address (:class:`~authsome.throttle.Throttle`),
  a success gives the hit back;
- every refusal after the input checks is one
  :class:`~authsome.errors.InvalidCredentials`, the reason logged on
  ``authsome.security``;
- the account is resolved by :mod:`authsome._identities` inside the sign-in's commit
  and the sign-in completes through the one completion point
  (:class:`~authsome._signin.SignInFlow`); a first sign-in that loses a race with
  another of the same account looks again and signs in as the winner's user;
- after commit, the usage the resolution caused (a user created, a member joined).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from authsome import _validation as v
from authsome._billing import Billing
from authsome._identities import Identities, Resolution
from authsome._seats import Seats
from authsome._signin import SignInFlow
from authsome._time import Clock
from authsome.bridge import LedgerContext
from authsome.crypto import constant_time_equals
from authsome.errors import AlreadyExists, InvalidCredentials, InvalidToken, ValidationError
from authsome.features import UsageEvent
from authsome.models import OrgRole, SignIn, User
from authsome.onetime import OneTimeTokens, TokenPurpose
from authsome.sessions import Client
from authsome.throttle import Throttle

__all__ = [
    "OAUTH_CALLBACK",
    "FederatedSignIn",
    "Pending",
    "VerifiedIdentity",
    "checked_oauth_answer",
]

security_log = logging.getLogger("authsome.security")

MAX_PARAMS = 32  # parameters in one callback; a provider sends a handful
MAX_PARAM = 4096  # a code, state or error from the provider; far longer is not one
# The OAuth 2 callback parameters that matter, each with its longest sane length.
OAUTH_CALLBACK: Mapping[str, int] = {
    "code": MAX_PARAM,
    "state": MAX_PARAM,
    "error": MAX_PARAM,
    "iss": MAX_PARAM,
}


@dataclass(frozen=True, slots=True)
class VerifiedIdentity:
    """What a protocol proved about who signed in at the provider.

    ``provider`` is the key accounts are linked under (an SSO connection's id,
    ``social:<name>``), ``subject`` the provider's stable id of the person (``sub``,
    a SAML NameID). ``email_verified`` is the provider vouching for ``email``.
    ``mfa_done``: the provider is trusted to have done a second factor. ``org_id``,
    ``role`` and ``jit`` say where a just-in-time provisioned user goes, if anywhere,
    and ``name`` is the display name such a user gets.
    """

    provider: str
    subject: str
    email: str | None
    email_verified: bool
    mfa_done: bool = False
    org_id: str | None = None
    role: OrgRole | str = "member"
    jit: bool = True
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Pending:
    """A sign-in's state as the callback finds it: the bounded callback parameters,
    the handle, and the payload the protocol stored when it began (an empty handle
    and payload: a sign-in the provider started, which the protocol allowed)."""

    tenant: str
    handle: str
    params: Mapping[str, str]
    payload: Mapping[str, str]


class FederatedSignIn:
    """The shared half of a sign-in at an identity provider, for one protocol.

    ``kind`` names the protocol in the security log (``"sso"``, ``"social"``);
    ``purpose`` is its state token's purpose; ``fields`` the keys its state payload
    must hold (as strings); ``callback`` the parameters a callback may carry, each
    with its longest length."""

    def __init__(
        self,
        billing: Billing,
        clock: Clock,
        *,
        kind: str,
        purpose: TokenPurpose,
        fields: tuple[str, ...],
        callback: Mapping[str, int],
        tokens: OneTimeTokens,
        identities: Identities,
        seats: Seats,
        sign_in: SignInFlow,
        throttle: Throttle,
    ) -> None:
        self._billing = billing
        self._clock = clock
        self._kind = kind
        self._purpose = purpose
        self._fields = fields
        self._callback = callback
        self._tokens = tokens
        self._identities = identities
        self._seats = seats
        self._sign_in = sign_in
        self._throttle = throttle

    def count_start(self, ip: str | None) -> None:
        """Count a start against the client's address: each costs a provider call and
        a stored state, so a client may start only ``ThrottlePolicy.starts_per_ip``
        in a window (:class:`~authsome.errors.RateLimited` beyond)."""
        self._throttle.count_start(v.check_ip(ip), self._clock())

    def begin(self, tenant: str, payload: Mapping[str, str]) -> str:
        """A new state handle holding ``payload`` (the keys :attr:`fields` names)."""
        return self._tokens.issue_state(self._purpose, tenant=tenant, payload=json.dumps(payload))

    def complete(
        self,
        params: Mapping[str, str],
        *,
        handle: str | None,
        tenant: str,
        ip: str | None,
        user_agent: str | None,
        verify: Callable[[Pending], VerifiedIdentity],
    ) -> SignIn:
        """Finish a sign-in: ``verify`` (the protocol part) checks the provider's
        answer against the state and names who signed in, or raises
        :meth:`refused`. The handle is used up whatever happens. ``handle=None`` is
        a sign-in without state (SAML's IdP-initiated one, when its connection
        allows it): ``verify`` gets an empty payload and must refuse unless the
        protocol proves the answer on its own."""
        tenant = v.check_tenant(tenant)
        client = Client.of(ip, user_agent)
        ip = v.check_ip(ip)
        answer = callback_params(params, self._callback)
        now = self._clock()
        self._throttle.prune_now_and_then(now)
        self._throttle.reserve_ip(ip, now)
        payload = {} if handle is None else self._consume(handle, tenant)
        verified = verify(Pending(tenant, handle or "", answer, payload))
        signed_in = self._completed(tenant, verified, client)
        self._throttle.ip_succeeded(ip, now)
        return signed_in

    def refused(self, reason: str) -> InvalidCredentials:
        """The one error a refused sign-in raises; ``reason`` goes to the log only."""
        security_log.warning("%s sign-in refused: %s", self._kind, reason)
        return InvalidCredentials()

    def _consume(self, handle: str, tenant: str) -> dict[str, str]:
        try:
            payload = json.loads(self._tokens.consume_state(handle, self._purpose, tenant=tenant))
        except InvalidToken:
            raise self.refused("unknown, used or expired state handle") from None
        if not isinstance(payload, dict) or not all(
            isinstance(payload.get(k), str) for k in self._fields
        ):
            raise self.refused("a state handle of another flow")
        return payload

    def _completed(self, tenant: str, verified: VerifiedIdentity, client: Client) -> SignIn:
        def signed_in() -> SignIn:
            resolved: list[Resolution] = []
            # A provisioned membership's seat is held until the sign-in commits (given
            # back if it fails), as orgs.add_member holds it around its write.
            with contextlib.ExitStack() as seats:

                def provider_vouched() -> User:
                    resolution = self._identities.resolve(
                        tenant=tenant,
                        provider=verified.provider,
                        subject=verified.subject,
                        email=verified.email,
                        email_verified=verified.email_verified,
                        org_id=verified.org_id,
                        role=verified.role,
                        jit=verified.jit,
                        name=verified.name,
                        before_join=lambda user, membership: seats.enter_context(
                            self._seats.held(user.tenant, membership)
                        ),
                    )
                    resolved.append(resolution)
                    return resolution.user

                result = self._sign_in.first_factor_passed(
                    provider_vouched, client, second_factor_passed=verified.mfa_done
                )
                self._record_created(resolved[-1])
            return result

        try:
            return signed_in()
        except AlreadyExists:
            # A concurrent first sign-in of the same account linked it (or took the
            # address) between our lookup and our write, which was rolled back: the
            # second look finds what it wrote.
            return signed_in()

    def _record_created(self, resolution: Resolution) -> None:
        """After commit: the user a just-in-time provisioning created."""
        if resolution.created:
            user = resolution.user
            ctx = LedgerContext(tenant=user.tenant, user_id=user.id, event_id=user.id)
            self._billing.record(UsageEvent.USERS_CREATED, ctx)


def checked_oauth_answer(
    federated: FederatedSignIn, params: Mapping[str, str], expected_state: str
) -> str:
    """The authorization code of an OAuth 2 callback whose ``state`` is this
    sign-in's and which carries no error; a refusal otherwise."""
    if not constant_time_equals(params.get("state", ""), expected_state):
        raise federated.refused("the state parameter is not this sign-in's")
    code = params.get("code")
    if "error" in params or not code:
        raise federated.refused("the provider answered with an error or without a code")
    return code


def callback_params(params: object, limits: Mapping[str, int]) -> dict[str, str]:
    """The callback's parameters that ``limits`` names, bounded and typed; the
    others are ignored (after counting them)."""
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping of str, not {type(params).__name__}")
    if len(params) > MAX_PARAMS:
        raise ValidationError("params holds too many parameters")
    checked: dict[str, str] = {}
    for name, limit in limits.items():
        value = params.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise TypeError(f"params[{name!r}] must be a str")
        if len(value) > limit:
            raise ValidationError(f"params[{name!r}] is too long")
        checked[name] = value
    return checked
