"""The audit log's hash chains: each row seals its content and the previous row's seal.

seal(row) = HMAC-SHA256(key, previous seal + the row's content). Editing a row breaks its own
seal; deleting or inserting a row breaks the link of the row after it; and without the key
(MAILDESK_AUDIT_KEY, kept outside the database) nobody can forge new seals to cover it up.
`manage.py verify_audit` walks the chains and names the first broken row.

There are CHAINS chains, not one: every writer of a chain waits for the one before it to
commit, and with a single chain all the worker threads of all the hosts queued there (it was
a third of a worker thread's time at 8 threads). Each thread writes to one chain only, so a
transaction never holds two chain locks (two writers could otherwise deadlock).
"""

import hashlib
import hmac
import itertools
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection

GENESIS = "0" * 64
# The fields a seal covers, in this order; the id is not one of them (it is the chain's order).
SEALED_FIELDS = (
    "occurred_at", "actor_id", "actor_label", "actor_ip", "action", "outcome", "target",
    "domain", "request_code", "ticket", "message", "correlation_id", "details",
)  # fmt: skip
CHAINS = 16
# Any constant (with the chain's number): serialises the writers of one chain on PostgreSQL.
# SQLite writers take the database lock anyway.
_CHAIN_LOCK = 727_463_112
_threads_started = itertools.count()
_this_thread = threading.local()


def _key() -> bytes:
    if settings.MAILDESK_AUDIT_KEY:
        return settings.MAILDESK_AUDIT_KEY.encode()
    # Development default; production sets MAILDESK_AUDIT_KEY (check --deploy says so).
    return hashlib.sha256(b"maildesk-audit:" + settings.SECRET_KEY.encode()).digest()


def seal(previous: str, content: dict[str, Any]) -> str:
    canonical = json.dumps(
        [previous, *(_plain(content[name]) for name in SEALED_FIELDS)],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hmac.new(_key(), canonical.encode(), hashlib.sha256).hexdigest()


def _plain(value: Any) -> Any:
    """The value as the database gives it back, whatever it was when written."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if value is None or isinstance(value, int | str | bool | dict | list | float):
        return value
    return str(value)  # UUID


def chain_of_this_thread() -> int:
    """The chain this thread writes to: threads of a process take turns over the chains.

    The process id is read here, not at import: forked worker processes inherit the parent's
    module, and would otherwise all start on the same chain.
    """
    number = getattr(_this_thread, "chain", None)
    if number is None:
        number = _this_thread.chain = (os.getpid() + next(_threads_started)) % CHAINS
    return number


def lock_and_read_head(number: int) -> str:
    """Take chain `number` for this transaction and return its newest seal.

    The lock is held until the transaction commits, so the work done while holding it is kept
    small: plain SQL, and on PostgreSQL one round trip (the function of migration 0004).
    """
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT audit_chain_head(%s, %s)", [_CHAIN_LOCK, number])
        else:
            cursor.execute(
                "SELECT seal FROM audit_auditevent WHERE chain = %s ORDER BY id DESC LIMIT 1",
                [number],
            )
        head = cursor.fetchone()
    return (head[0] if head else None) or GENESIS


@dataclass
class Break:
    row_id: int
    description: str


def verify(rows: Iterator[dict[str, Any]]) -> tuple[int, dict[int, str], Break | None]:
    """Walk rows in id order: (rows checked, each chain's head seal, the first break or None)."""
    heads: dict[int, str] = {}
    previous_ids: dict[int, int] = {}
    count = 0
    for row in rows:
        count += 1
        number = row["chain"]
        expected_previous = heads.get(number, GENESIS)
        where = f"row {row['id']} ({row['occurred_at']:%Y-%m-%d %H:%M:%S}, {row['action']})"
        if row["previous_seal"] != expected_previous:
            previous_id = previous_ids.get(number)
            after = f"row {previous_id}" if previous_id else "the start of its chain"
            return (
                count,
                heads,
                Break(
                    row["id"],
                    f"{where} does not follow {after}: a row was deleted or inserted between them.",
                ),
            )
        if not hmac.compare_digest(seal(row["previous_seal"], row), row["seal"]):
            return (
                count,
                heads,
                Break(row["id"], f"{where} was changed: its content does not match its seal."),
            )
        heads[number], previous_ids[number] = row["seal"], row["id"]
    return count, heads, None


def anchor(last_id: int, heads: dict[int, str]) -> str:
    """One string that pins every chain as it was at row `last_id`: `<id>:<digest>`.

    A later `verify_audit --anchor` recomputes it from the rows up to that id: rows removed
    from the end of any chain change it.
    """
    digest = hashlib.sha256(
        "".join(f"{number}={heads[number]};" for number in sorted(heads)).encode()
    ).hexdigest()
    return f"{last_id}:{digest}"
