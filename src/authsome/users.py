"""Users: registration and lookup, per tenant."""

from __future__ import annotations

from authsome import _validation as v
from authsome._billing import Billing
from authsome._time import Clock
from authsome.bridge import LedgerContext
from authsome.crypto import PasswordHasher, new_ordered_id
from authsome.errors import AlreadyExists, NotFound
from authsome.features import UsageEvent
from authsome.models import User
from authsome.stores import Store

__all__ = ["Users"]


class Users:
    """``auth.users``: register and look up users."""

    def __init__(self, store: Store, billing: Billing, hasher: PasswordHasher, clock: Clock):
        self._store = store
        self._billing = billing
        self._hasher = hasher
        self._clock = clock

    def register(
        self, email: str, password: str, *, tenant: str = "default", name: str | None = None
    ) -> User:
        """Create a user; records ``authsome.users.created`` once it is stored.

        Raises :class:`~authsome.errors.AlreadyExists` when the (normalized) e-mail is
        taken in ``tenant``, :class:`~authsome.errors.ValidationError` on bad input.
        """
        tenant = v.check_tenant(tenant)
        email = v.normalize_email(email)
        password = v.normalize_password(password)
        name = v.check_name(name)
        v.check_new_password(password, email)
        if self._store.find_user_by_email(tenant, email) is not None:
            raise AlreadyExists("a user with this e-mail exists in this tenant")
        user = User(new_ordered_id("usr"), tenant, email, name, self._clock())
        self._store.create_user(user, self._hasher.hash(password))
        ctx = LedgerContext(tenant=tenant, user_id=user.id, event_id=user.id)
        self._billing.record(UsageEvent.USERS_CREATED, ctx)
        return user

    def get(self, user_id: str) -> User:
        """The user with this id; :class:`~authsome.errors.NotFound` otherwise."""
        user = self._store.get_user(v.require_str("user_id", user_id))
        if user is None:
            raise NotFound("no such user")
        return user

    def find_by_email(self, email: str, *, tenant: str = "default") -> User | None:
        """The user with this e-mail (normalized first) in ``tenant``, or ``None``."""
        return self._store.find_user_by_email(v.check_tenant(tenant), v.normalize_email(email))
