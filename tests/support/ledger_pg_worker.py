"""A separate process that uses a PostgreSQL ledger, for the multi-process tests.

Run as ``python -m tests.support.ledger_pg_worker MODE --dsn DSN --schema S ...``:

``migrate``
    wait for ``--go`` (a file) to exist, open a store (so several processes migrate
    at once), define a plan, print the schema version.
``meter``
    one :class:`~authsome.ledger.Engine` over its own store; ``--threads`` threads
    each meter ``--events`` events with ids (every tenth one retries an id sent
    before, by this or by the next process) and try ``--consumes`` uses of a
    limited feature. Prints one JSON line: uses accepted, limit violations seen.
``flush-loop``
    apply batches of ``--batch`` events straight to the store, forever, printing
    ``begin N`` before and ``committed N`` after each ``apply_usage`` returns: the
    parent kills it at a random moment and checks no batch is half in.

The deterministic event plan (:func:`event`) is shared with the tests, which
compute the exact totals the ledger must end with.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

from authsome import ledger
from authsome.ledger.stores import UsageBatch, UsageDelta

TENANT = "acme"
METERED = "api"  # unlimited, counts every distinct event's quantity
LIMITED = "tokens"  # the contended limit of the consume race
PROCESSES = 4
PLAN = ledger.Plan(
    "multi",
    [ledger.Feature.metered(METERED, limit=None), ledger.Feature.metered(LIMITED, limit=300)],
)


def quantity(proc: int, thread: int, i: int) -> int:
    """The quantity of the original event ``i`` of ``(proc, thread)``."""
    return 1 + (proc * 7 + thread * 3 + i) % 5


def event(proc: int, thread: int, i: int) -> tuple[str, int]:
    """The ``(event_id, quantity)`` that ``(proc, thread)`` sends as its ``i``-th event.

    Every tenth event is a retry: alternately of this thread's event nine back, or of
    the same event of the next process (which sends it too), so ids repeat within a
    process, across flushes and across processes.
    """
    if i % 10 != 9:
        return f"p{proc}-t{thread}-{i}", quantity(proc, thread, i)
    source = proc if (i // 10) % 2 == 0 else (proc + 1) % PROCESSES
    return f"p{source}-t{thread}-{i - 9}", quantity(source, thread, i - 9)


def expected_total(processes: int, threads: int, events: int) -> int:
    """Sum of the quantities of the distinct events of a whole run."""
    return sum(
        quantity(p, t, i)
        for p in range(processes)
        for t in range(threads)
        for i in range(events)
        if i % 10 != 9
    )


def migrate(args: argparse.Namespace) -> None:
    go = Path(args.go)
    while not go.exists():
        time.sleep(0.001)
    store = ledger.PostgresStore(args.dsn, schema=args.schema, max_size=2)
    try:
        store.put_plan(ledger.Plan(f"plan-{args.proc}"))
        print(store.schema_version, flush=True)
    finally:
        store.close()


def meter(args: argparse.Namespace) -> None:
    store = ledger.PostgresStore(args.dsn, schema=args.schema, max_size=args.threads + 2)
    accepted = [0] * args.threads
    violations = [0] * args.threads
    errors: list[BaseException] = []
    every = max(1, args.events // max(1, args.consumes))
    with ledger.Engine(store=store, flush_interval=0.2, batch_size=5_000) as eng:

        def work(thread: int) -> None:
            try:
                for i in range(args.events):
                    event_id, qty = event(args.proc, thread, i)
                    eng.meter(TENANT, METERED, qty, event_id=event_id)
                    if i % every == 0:
                        ent = eng.consume(TENANT, LIMITED)
                        accepted[thread] += ent.allowed
                        limit = ent.limit if ent.limit is not None else 0
                        violations[thread] += ent.used > limit
            except BaseException as exc:  # reported to the parent below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(args.threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    store.close()
    if errors:
        raise errors[0]
    print(json.dumps({"accepted": sum(accepted), "violations": sum(violations)}), flush=True)


def flush_loop(args: argparse.Namespace) -> None:
    store = ledger.PostgresStore(args.dsn, schema=args.schema, max_size=1)
    number = 0
    while True:
        deltas = [
            UsageDelta(TENANT, METERED, 0, 1 + j % 3, f"r{args.proc}-b{number}-e{j}")
            for j in range(args.batch)
        ]
        print(f"begin {number}", flush=True)
        store.apply_usage(UsageBatch(deltas))
        print(f"committed {number}", flush=True)
        number += 1


def batch_total(size: int) -> int:
    """What one ``flush-loop`` batch adds."""
    return sum(1 + j % 3 for j in range(size))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["migrate", "meter", "flush-loop"])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--proc", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--events", type=int, default=25_000)
    parser.add_argument("--consumes", type=int, default=100)
    parser.add_argument("--batch", type=int, default=20_000)
    parser.add_argument("--go", default="")
    args = parser.parse_args(argv)
    {"migrate": migrate, "meter": meter, "flush-loop": flush_loop}[args.mode](args)


if __name__ == "__main__":
    main(sys.argv[1:])
