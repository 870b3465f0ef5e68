"""Seats: each org membership counted once on ``authsome.orgs.members``.

One mechanism for every way a member joins (``orgs.create``, ``orgs.add_member``,
a just-in-time provisioning at an SSO sign-in) and leaves (``orgs.remove_member``).
A seat is keyed by the membership instance, so a retried join counts once and a
rejoin (a new ``created_at``) counts again.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from authsome._billing import Billing
from authsome.bridge import LedgerContext
from authsome.features import UsageEvent
from authsome.models import Membership
from authsome.stores import Store

__all__ = ["Seats"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Seats:
    """Counting, refusing and giving back the seats of memberships."""

    def __init__(self, store: Store, billing: Billing) -> None:
        self._store = store
        self._billing = billing

    @contextlib.contextmanager
    def held(self, tenant: str, membership: Membership) -> Iterator[None]:
        """Around the write of ``membership`` (until its commit): its seat counted once.
        Not enforced, it is recorded after the block. Enforced, it is taken before (over
        the limit: FeatureNotEntitled, nothing written), and given back if the block
        fails, unless the membership that exists is this very instance (a retry: its
        seat is this one). A seat the ledger could not count (let through by policy) is
        recorded after the block too.
        """
        ctx = _seat(tenant, membership)
        counted = self._billing.enforces(UsageEvent.ORGS_MEMBERS) and self._billing.consume(
            UsageEvent.ORGS_MEMBERS, ctx
        )
        try:
            yield
        except BaseException:
            if counted and not self._is_stored(membership):
                undo = dataclasses.replace(ctx, event_id=f"{ctx.event_id}:undone")
                self._billing.release(UsageEvent.ORGS_MEMBERS, undo)
            raise
        if not counted:
            self._billing.record(UsageEvent.ORGS_MEMBERS, ctx)

    def vacated(self, tenant: str, membership: Membership) -> None:
        """Release the seat of ``membership``, whose removal is stored."""
        ctx = _seat(tenant, membership)
        left = dataclasses.replace(ctx, event_id=f"{ctx.event_id}:left")
        self._billing.release(UsageEvent.ORGS_MEMBERS, left)

    def _is_stored(self, membership: Membership) -> bool:
        try:
            stored = self._store.get_membership(membership.org_id, membership.user_id)
        except Exception:  # the store failing: the write did not happen either
            return False
        return stored is not None and stored.created_at == membership.created_at


def _seat(tenant: str, membership: Membership) -> LedgerContext:
    """The seat of one membership instance, from what every store keeps of it."""
    micros = (membership.created_at - _EPOCH) // timedelta(microseconds=1)
    return LedgerContext(
        tenant=tenant,
        user_id=membership.user_id,
        org_id=membership.org_id,
        event_id=f"{membership.org_id}:{membership.user_id}:{micros}",
    )
