"""One durable commit per operation.

An operation that writes several rows (a ticket attempt, a failure count, a used
time-step, a session) runs its store calls in one :meth:`Store.atomic` block, so it
pays for one commit instead of one per row.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from authsome.errors import InvalidCredentials, InvalidToken, MfaLocked, RateLimited
from authsome.stores import Store

__all__ = ["one_commit"]

# The answers an operation gives after writing on purpose: a wrong code must stay
# counted, a ticket stay spent, a refused sign-in's hits stay given back.
_REFUSALS = (InvalidCredentials, InvalidToken, MfaLocked, RateLimited)


@contextlib.contextmanager
def one_commit(store: Store) -> Iterator[None]:
    """Run the block's store calls as one transaction, committed when it ends, also
    when it ends with a refusal (which is raised once the writes are durable). Any
    other exception rolls the block back."""
    refusal: Exception | None = None
    with store.atomic():
        try:
            yield
        except _REFUSALS as exc:
            refusal = exc
    if refusal is not None:
        raise refusal
