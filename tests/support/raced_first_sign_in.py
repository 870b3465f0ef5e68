"""A memory store on which another first sign-in of the same provider account wins
the race: it lands between our lookups (no link, no user with the address) and our
own writes, so ours is refused as a duplicate."""

from __future__ import annotations

from datetime import UTC, datetime

from authsome.models import Identity, User
from authsome.stores import MemoryStore


class RacedFirstSignInStore(MemoryStore):
    """The first lookup of ``address`` provisions and links the winner's user
    (``raced_user_id``) and answers what our lookup saw a moment before: nobody."""

    def __init__(self, address: str) -> None:
        super().__init__()
        self._address = address
        self.raced_user_id: str | None = None
        self._account: tuple[str, str] | None = None

    def find_identity(self, tenant: str, provider: str, subject: str) -> Identity | None:
        self._account = (provider, subject)
        return super().find_identity(tenant, provider, subject)

    def find_user_by_email(self, tenant: str, email: str) -> User | None:
        if self.raced_user_id is None and email == self._address:
            assert self._account is not None, "the link is looked up first"
            provider, subject = self._account
            now = datetime.now(UTC)
            user = User("usr_racer", tenant, email, None, now)
            self.create_user(user, "!")
            self.create_identity(Identity(tenant, provider, subject, user.id, now))
            self.raced_user_id = user.id
            return None
        return super().find_user_by_email(tenant, email)
