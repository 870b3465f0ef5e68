"""The :class:`Authsome` engine: wires the store, the ledger, the services and policies."""

from __future__ import annotations

from types import TracebackType

from authsome._secretbox import SecretBox
from authsome._time import Clock, utcnow
from authsome.billing import Billing, LedgerErrorPolicy, LedgerStats
from authsome.bridge import Ledger, NoopLedger
from authsome.crypto import PasswordHasher, PasswordHashing
from authsome.models import SignIn
from authsome.orgs import Orgs
from authsome.sessions import SessionPolicy, Sessions
from authsome.signin import SignInFlow
from authsome.sso import SSO
from authsome.stores import MemoryStore, Store
from authsome.throttle import Throttle, ThrottlePolicy
from authsome.users import Users

__all__ = ["Authsome"]


class Authsome:
    """An authentication engine.

    ``Authsome()`` alone is a development engine: a :class:`MemoryStore` and a
    :class:`NoopLedger` (every feature allowed). Production passes a durable store
    and a real ledger::

        auth = Authsome(store=SQLiteStore("auth.db"), ledger=LedgerAdapter(engine))

    ``on_ledger_error`` decides what a *failing* entitlement check does: ``"raise"``
    (default; :class:`~authsome.errors.LedgerUnavailable`, nothing performed) or
    ``"allow"`` (fail-open, logged). Failing usage records never fail an operation.

    ``secret_key`` (32 bytes, e.g. ``secrets.token_bytes(32)`` kept in a secrets
    manager) encrypts the secrets the engine must read back, such as SSO client
    secrets, with AES-256-GCM. Without it they are stored in clear.
    """

    def __init__(
        self,
        *,
        store: Store | None = None,
        ledger: Ledger | None = None,
        on_ledger_error: LedgerErrorPolicy = "raise",
        password_hashing: PasswordHashing | None = None,
        sessions: SessionPolicy | None = None,
        throttle: ThrottlePolicy | None = None,
        clock: Clock | None = None,
        secret_key: bytes | None = None,
    ) -> None:
        self.store: Store = MemoryStore() if store is None else _checked_store(store)
        self._billing = Billing(NoopLedger() if ledger is None else ledger, on_ledger_error)
        self._clock: Clock = clock or utcnow
        hasher = PasswordHasher(password_hashing or PasswordHashing())
        self.users = Users(self.store, self._billing, hasher, self._clock)
        self.sessions = Sessions(
            self.store, self._billing, sessions or SessionPolicy(), self._clock
        )
        self.orgs = Orgs(self.store, self._billing, self._clock)
        secret_box = None if secret_key is None else SecretBox(secret_key)
        self.sso = SSO(self.store, self._billing, self._clock, secret_box)
        self._sign_in = SignInFlow(
            self.store,
            self._billing,
            hasher,
            Throttle(self.store, throttle or ThrottlePolicy()),
            self.sessions,
            self._clock,
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
        self, email: str, password: str, *, tenant: str = "default", ip: str | None = None
    ) -> SignIn:
        """Sign in with a password.

        Returns a :class:`~authsome.models.SignIn` whose ``tokens`` hold the new
        session. Unknown e-mail and wrong password raise the same
        :class:`~authsome.errors.InvalidCredentials`; too many failures raise
        :class:`~authsome.errors.RateLimited`. Records ``authsome.sessions.created``
        and ``authsome.users.active``.
        """
        return self._sign_in.sign_in(email, password, tenant=tenant, ip=ip)

    def close(self) -> None:
        """Close the store."""
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


def _checked_store(store: object) -> Store:
    if not isinstance(store, Store):
        raise TypeError(f"store must implement authsome.stores.Store, not {type(store).__name__}")
    return store
