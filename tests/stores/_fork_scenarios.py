"""Stores opened before ``fork()``, run in a fresh interpreter so the fork happens in a
process with no threads of the test runner (``python -m tests.stores._fork_scenarios``).

Prints one JSON object: what each forked child saw (or the error it got) and which
users the parent sees afterwards.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import threading
from multiprocessing.queues import Queue
from typing import Any

from authsome import Authsome, PasswordHashing
from authsome.stores import MemoryStore, PostgresStore, SQLiteStore, Store

PASSWORD = "correct horse battery staple"
EMAILS = ["parent@example.com", "child-0@example.com", "child-1@example.com"]
AFTER_CHILDREN = "parent-after@example.com"


def open_store(kind: str, target: str) -> Store:
    if kind == "sqlite":
        return SQLiteStore(target)
    if kind == "sqlite-memory":
        return SQLiteStore(":memory:")
    if kind == "memory":
        return MemoryStore()
    dsn, schema = target.split("|")
    if kind == "postgres":
        # One connection: the parent's next operation reuses the one that crossed the fork.
        return PostgresStore(dsn, schema=schema, min_size=1, max_size=1)
    from psycopg_pool import ConnectionPool

    pool: ConnectionPool[Any] = ConnectionPool(dsn, min_size=1, max_size=1, open=True)
    return PostgresStore(pool=pool, schema=schema)


def seen_by(auth: Authsome) -> list[str]:
    everyone = [*EMAILS, AFTER_CHILDREN]
    return [email for email in everyone if auth.users.find_by_email(email) is not None]


def child(auth: Authsome, email: str, results: Queue[dict[str, Any]], close_unused: bool) -> None:
    try:
        if close_unused:  # a child that closes what it inherited without using it
            results.put({"email": email, "seen": []})
            return
        auth.users.register(email, PASSWORD)
        results.put({"email": email, "seen": seen_by(auth)})
    except Exception as exc:
        results.put({"email": email, "error": f"{type(exc).__name__}: {exc}"})
    finally:
        auth.close()


def main(kind: str, target: str, mode: str) -> dict[str, Any]:
    hashing = PasswordHashing.fast_insecure_for_tests()
    auth = Authsome(store=open_store(kind, target), password_hashing=hashing)
    auth.users.register(EMAILS[0], PASSWORD)  # the parent uses the store before forking
    release = threading.Event()
    if mode == "busy-thread":  # another thread holds a connection of its own across the fork
        used = threading.Event()

        def hold() -> None:
            auth.users.find_by_email(EMAILS[0])
            used.set()
            release.wait(30)

        holder = threading.Thread(target=hold)
        holder.start()
        used.wait(30)
    context = multiprocessing.get_context("fork")
    results: Queue[dict[str, Any]] = context.Queue()
    children = [
        context.Process(target=child, args=(auth, email, results, mode == "close-unused"))
        for email in EMAILS[1:]
    ]
    for process in children:
        process.start()
    # Bounded: a child that dies before it reports fails the run instead of hanging it.
    reports = sorted((results.get(timeout=60) for _ in children), key=lambda r: r["email"])
    for process in children:
        process.join(30)
    release.set()
    auth.users.register(AFTER_CHILDREN, PASSWORD)
    report = {
        "children": reports,
        "exit_codes": [process.exitcode for process in children],
        "parent_sees": seen_by(auth),
    }
    auth.close()
    return report


if __name__ == "__main__":
    kind, target, mode = sys.argv[1:4]
    print(json.dumps(main(kind, target, mode)))
