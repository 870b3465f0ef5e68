"""Keys for one purpose each: throttle counter keys and passkey decoys.

They are derived (HKDF) from the engine's ``secret_key`` when it has one. Without it
they are derived from a random root key the store keeps for itself, made on first
use: every process sharing the store derives the same keys, so counters and decoys
agree between workers and across restarts. That key lives beside the data it keys,
so it only hides addresses and e-mails from whoever sees the counters without the
rest of the store; a ``secret_key`` kept outside the database hides them from a
reader of the whole database too.
"""

from __future__ import annotations

import secrets
import threading

from authsome.crypto import derive_key
from authsome.stores import Store

__all__ = ["PurposeKeys"]

_STORE_ROOT = "authsome.root-key.v1"
_ROOT_BYTES = 32


class PurposeKeys:
    """Derives a key per purpose label; fetches the store's root key once, lazily."""

    __slots__ = ("_derived", "_lock", "_root", "_store")

    def __init__(self, store: Store, secret_key: bytes | None) -> None:
        self._store = store
        self._root = secret_key
        self._derived: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def key(self, purpose: str) -> bytes:
        """The 32-byte key for ``purpose`` (a label such as ``authsome.throttle``)."""
        derived = self._derived.get(purpose)
        if derived is None:
            derived = derive_key(self._root_key(), purpose)
            self._derived[purpose] = derived
        return derived

    def _root_key(self) -> bytes:
        # Asked of the store only when first needed, so building an engine stays
        # free of store calls; racing threads all get the one key the store kept.
        with self._lock:
            if self._root is None:
                self._root = self._store.keep_store_key(
                    _STORE_ROOT, secrets.token_bytes(_ROOT_BYTES)
                )
            return self._root

    def __repr__(self) -> str:
        return "PurposeKeys(<hidden>)"
