"""The :class:`Authsome` engine: wires the store, the ledger, the services and policies."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING

from authsome._billing import Billing, LedgerErrorPolicy, LedgerStats
from authsome._keys import PurposeKeys
from authsome._oidc import EXCHANGE_DEADLINE, OIDCClient
from authsome._signin import SignInFlow
from authsome._time import Clock, utcnow
from authsome.apikeys import ApiKeyPolicy, ApiKeys
from authsome.bridge import Ledger, NoopLedger
from authsome.crypto import Keyring, PasswordHasher, PasswordHashing, Resealed
from authsome.domains import Domains, TxtResolver
from authsome.features import UsageEvent
from authsome.journeys import AccountJourneys
from authsome.mail import MailDispatcher, Mailer, MailSettings
from authsome.mfa import Mfa, SignInChallenge
from authsome.models import SignIn
from authsome.onetime import JourneyPolicy, OneTimeTokens
from authsome.orgs import Orgs
from authsome.passkeys import Passkeys
from authsome.passwordless import Passwordless
from authsome.sessions import SessionPolicy, Sessions
from authsome.social import Social
from authsome.sso import SSO, SAMLServiceProvider, SSOSignInParts
from authsome.stores import MemoryStore, Store
from authsome.throttle import Throttle, ThrottlePolicy
from authsome.users import Users

if TYPE_CHECKING:
    import httpx

    from authsome.bridge.ledgeradapter import LedgerEngine

__all__ = ["Authsome", "ResealReport"]


@dataclass(frozen=True, slots=True)
class ResealReport:
    """What :meth:`Authsome.reseal_secrets` did, per kind of secret."""

    totp_secrets: Resealed
    sso_client_secrets: Resealed
    social_client_secrets: Resealed = field(default_factory=Resealed)


class Authsome:
    """An authentication engine.

    ``Authsome()`` alone is a development engine: a :class:`MemoryStore` and a
    :class:`NoopLedger` (every feature allowed). Production passes a durable store
    and a real ledger::

        auth = Authsome(store=SQLiteStore("auth.db"), ledger=ledger.Engine(...))

    ``ledger`` is a bridge :class:`~authsome.bridge.Ledger` (``record_usage`` and
    ``check_entitlement``), or a ledger engine (``meter`` and ``entitled``, such as
    :class:`authsome.ledger.Engine`), which is wrapped in a
    :class:`~authsome.bridge.LedgerAdapter`; :attr:`ledger` is then the adapter. The
    engine stays the caller's to close.

    ``secret_key`` (32 random bytes, e.g. ``secrets.token_bytes(32)``, kept outside the
    database) encrypts the secrets the engine must read back — TOTP secrets and SSO
    client secrets — at rest with AES-256-GCM; without it they are stored in clear
    (a warning is logged once on ``authsome.security``). It also keys the throttle's
    counter names and the passkey decoys (else a random key the store keeps does).

    ``previous_secret_keys`` rotate the key: values sealed under any of them (or
    stored in clear before there was a key) still open, and are sealed under
    ``secret_key`` when next read; :meth:`reseal_secrets` (``authsome reseal``) does
    it for every stored value at once. Once that has run, the old keys can go.

    ``on_ledger_error`` decides what a *failing* entitlement check does: ``"raise"``
    (default; :class:`~authsome.errors.LedgerUnavailable`, nothing performed) or
    ``"allow"`` (fail-open, logged). Failing usage records never fail an operation.

    ``dns_resolver`` looks up the TXT records that verify custom domains; by default
    dnspython with the system's configuration (extra ``authsome-engine[dns]``).

    ``mailer`` sends the messages of the account journeys (e-mail verification,
    password reset): an :class:`~authsome.mail.SMTPMailer`, or
    :class:`authsome.testing.Outbox` in tests. ``mail`` sets the sender, the base
    URL of the links (configured here, never read from a request) and the templates.
    ``journeys`` sets the lifetimes of their one-time tokens and whether password
    sign-in needs a verified address.

    SSO and social sign-ins (:meth:`auth.sso.begin <authsome.sso.SSO.begin>`,
    :meth:`auth.social.begin <authsome.social.Social.begin>`, extra
    ``authsome-engine[sso]``) talk to identity providers over https with
    ``http_client`` (an ``httpx.Client``; by default one with timeouts that follows
    no redirects). ``sso_allow_insecure_loopback=True`` also accepts ``http://``
    issuers on a loopback address: for tests against a local provider, never for
    production (and ``http://`` SAML IdP URLs there, likewise).
    ``sso_exchange_deadline`` (15 seconds by default, at most 10 minutes) bounds each
    exchange with a provider, request and whole answer. Every provider host must
    resolve to public addresses only (no private, loopback, link-local or metadata
    address), checked when connecting and connected to as checked;
    ``sso_resolver(host, port) -> addresses`` replaces the system's resolver (tests).

    ``saml`` (a :class:`~authsome.sso.SAMLServiceProvider`: the base URL of the
    sign-in routes, and optionally the key and certificate that sign AuthnRequests
    and decrypt assertions) enables sign-in through SAML connections (extra
    ``authsome-engine[saml]``).
    """

    def __init__(
        self,
        *,
        store: Store | None = None,
        ledger: Ledger | LedgerEngine | None = None,
        on_ledger_error: LedgerErrorPolicy = "raise",
        enforce_limits: Sequence[UsageEvent | str] = (),
        password_hashing: PasswordHashing | None = None,
        sessions: SessionPolicy | None = None,
        throttle: ThrottlePolicy | None = None,
        clock: Clock | None = None,
        dns_resolver: TxtResolver | None = None,
        secret_key: bytes | None = None,
        previous_secret_keys: Sequence[bytes] = (),
        api_keys: ApiKeyPolicy | None = None,
        mailer: Mailer | None = None,
        mail: MailSettings | None = None,
        journeys: JourneyPolicy | None = None,
        http_client: httpx.Client | None = None,
        sso_allow_insecure_loopback: bool = False,
        sso_exchange_deadline: timedelta = EXCHANGE_DEADLINE,
        sso_resolver: Callable[[str, int], Sequence[str]] | None = None,
        saml: SAMLServiceProvider | None = None,
    ) -> None:
        if mailer is not None and not isinstance(mailer, Mailer):
            raise TypeError(f"mailer must provide send(message), not {type(mailer).__name__}")
        self.mailer = mailer
        self.mail_settings = mail or MailSettings()
        self.store: Store = MemoryStore() if store is None else _checked_store(store)
        self._billing = Billing(_as_ledger(ledger), on_ledger_error, enforce_limits)
        self._clock: Clock = clock or utcnow
        hasher = PasswordHasher(password_hashing or PasswordHashing())
        self.sessions = Sessions(
            self.store, self._billing, sessions or SessionPolicy(), self._clock
        )
        self._mail = MailDispatcher(mailer)
        limiter = Throttle(self.store, throttle or ThrottlePolicy(), secret_key=secret_key)
        self._purpose_keys = PurposeKeys(self.store, secret_key)
        self._journeys = AccountJourneys(
            self.store,
            hasher,
            self._clock,
            OneTimeTokens(self.store, journeys or JourneyPolicy(), self._clock, self._purpose_keys),
            self._mail,
            self.mail_settings,
            self.sessions,
            limiter,
            self._purpose_keys,
        )
        self.users = Users(self.store, self._billing, hasher, self._clock, self._journeys)
        self.orgs = Orgs(self.store, self._billing, self._clock)
        self.domains = Domains(self.store, self._billing, self._clock, resolver=dns_resolver)
        keyring = Keyring(secret_key, previous_secret_keys)
        self.api_keys = ApiKeys(self.store, self._billing, api_keys or ApiKeyPolicy(), self._clock)
        self._sign_in = SignInFlow(
            self.store,
            self._billing,
            hasher,
            limiter,
            self.sessions,
            self._clock,
            mfa_ticket=SignInChallenge(self.store, self._clock).issue,
            before_completion=self._journeys.check_verified
            if (journeys or JourneyPolicy()).require_verified_email
            else None,
        )
        self._oidc_client = OIDCClient(
            self._clock,
            http=http_client,
            allow_insecure_loopback=sso_allow_insecure_loopback,
            exchange_deadline=sso_exchange_deadline,
            resolver=sso_resolver,
        )
        self.sso = SSO(
            self.store,
            self._billing,
            self._clock,
            keyring,
            sign_in=SSOSignInParts(
                client=self._oidc_client,
                tokens=self._journeys.tokens,
                flow=self._sign_in,
                throttle=limiter,
                saml=saml,
            ),
        )
        self.social = Social(
            self.store,
            self._billing,
            self._clock,
            keyring,
            tokens=self._journeys.tokens,
            sign_in=self._sign_in,
            oidc=self._oidc_client,
            throttle=limiter,
        )
        self.passwordless = Passwordless(
            self.store, self._journeys, self._sign_in, self._clock, self._billing, limiter
        )
        self.mfa = Mfa(
            self.store,
            self._billing,
            self._clock,
            keyring=keyring,
            sign_in=self._sign_in,
        )
        self.passkeys = Passkeys(
            self.store, self._billing, self._sign_in, self._clock, secret_key=secret_key
        )

    @property
    def ledger(self) -> Ledger:
        """The ledger this engine reports to."""
        return self._billing.ledger

    @property
    def ledger_stats(self) -> LedgerStats:
        """How many ledger calls failed since this engine started."""
        return self._billing.stats

    def sign_in(
        self,
        email: str,
        password: str,
        *,
        tenant: str = "default",
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> SignIn:
        """Sign in with a password.

        Returns a :class:`~authsome.models.SignIn` whose ``tokens`` hold the new
        session. Unknown e-mail and wrong password raise the same
        :class:`~authsome.errors.InvalidCredentials`; too many failures raise
        :class:`~authsome.errors.RateLimited`. Records ``authsome.sessions.created``
        and ``authsome.users.active``.

        For a user with a confirmed second factor, the result has
        ``mfa_required=True`` and a ``ticket`` instead: no session exists and nothing
        is recorded until :meth:`auth.mfa.verify <authsome.mfa.Mfa.verify>` succeeds.

        Pass the client's address as ``ip``. Without it the lock-out protection
        cannot tell the user from an attacker: failures from every client share one
        counter per account, so anyone who keeps guessing wrong keeps the real user
        locked out. The engine logs a warning on ``authsome.security`` the first time
        it is called without ``ip``.

        ``ip`` and ``user_agent`` (the request's ``User-Agent`` header, kept as
        untrusted text, cut to 512 characters) are stored with the session and shown
        by :meth:`auth.sessions.list <authsome.sessions.Sessions.list>`.
        """
        return self._sign_in.sign_in(email, password, tenant=tenant, ip=ip, user_agent=user_agent)

    def reseal_secrets(self) -> ResealReport:
        """Seal under ``secret_key`` every TOTP secret, SSO client secret and social
        sign-in secret stored in clear or under one of ``previous_secret_keys``, and
        report what was found.

        Safe to run while the application serves requests (each value is replaced
        by a compare-and-set) and to run again. Values no known key opens are left
        as they are and listed by record id in the report.
        """
        return ResealReport(
            totp_secrets=self.mfa.reseal_secrets(),
            sso_client_secrets=self.sso.reseal_secrets(),
            social_client_secrets=self.social.reseal_secrets(),
        )

    def flush_mail(self) -> None:
        """Wait until every message sent from the background (password resets) was
        handed to the mailer or given up: for tests and for a clean shutdown."""
        self._mail.flush()

    def close(self) -> None:
        """Send the queued messages, then close the store (and the HTTP client of
        SSO sign-ins, unless it was passed in)."""
        self._mail.close()
        self._oidc_client.close()
        self.store.close()

    def __enter__(self) -> Authsome:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Authsome(store={self.store!r}, ledger={self.ledger!r})"


def _as_ledger(ledger: object) -> Ledger:
    """The bridge to report to: ``ledger`` itself, or a ledger engine behind an adapter."""
    if ledger is None:
        return NoopLedger()
    if isinstance(ledger, Ledger):
        return ledger
    if callable(getattr(ledger, "meter", None)) and callable(getattr(ledger, "entitled", None)):
        from authsome.bridge import LedgerAdapter  # loads the ledger engine: only when used

        return LedgerAdapter(ledger)  # type: ignore[arg-type]  # duck-typed just above
    raise TypeError(
        "ledger must provide record_usage() and check_entitlement() (a bridge Ledger) "
        f"or meter() and entitled() (a ledger engine), not {type(ledger).__name__}"
    )


def _checked_store(store: object) -> Store:
    if not isinstance(store, Store):
        raise TypeError(f"store must implement authsome.stores.Store, not {type(store).__name__}")
    return store
