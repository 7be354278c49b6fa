"""Writing audit events. Callers run these inside the transaction of the change they record."""

import ipaddress
import re
import uuid
from typing import Any, Protocol

from django.contrib.auth.models import AbstractBaseUser
from django.db import DEFAULT_DB_ALIAS, connections, transaction

from apps.audit import chain
from apps.audit.models import AuditEvent

WORKER = "worker"
MESSAGE_LIMIT = 2000
ACTOR_LABEL_LIMIT = AuditEvent._meta.get_field("actor_label").max_length
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]+")


class AuditedRequest(Protocol):
    """What the audit log needs to know about a provisioning request."""

    code: str
    target: str
    domain: str
    ticket: str
    correlation_id: uuid.UUID


def sanitise_message(message: str) -> str:
    """The message as received, minus control characters (log forging), capped in length."""
    cleaned = _CONTROL_CHARACTERS.sub(" ", message).strip()
    if len(cleaned) > MESSAGE_LIMIT:
        cleaned = cleaned[: MESSAGE_LIMIT - 1] + "…"
    return cleaned


def audit_record(
    *,
    action: str,
    actor: AbstractBaseUser | None = None,
    actor_label: str | None = None,
    ip: str | None = None,
    request: AuditedRequest | None = None,
    target: str = "",
    domain: str = "",
    outcome: str = AuditEvent.Outcome.INFO,
    message: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event. Never pass a password or a cookie in `message` or `details`."""
    event = audit_event(
        action=action, actor=actor, actor_label=actor_label, ip=ip, request=request,
        target=target, domain=domain, outcome=outcome, message=message, details=details,
    )  # fmt: skip
    audit_append([event])
    return event


def audit_event(
    *,
    action: str,
    actor: AbstractBaseUser | None = None,
    actor_label: str | None = None,
    ip: str | None = None,
    request: AuditedRequest | None = None,
    target: str = "",
    domain: str = "",
    outcome: str = AuditEvent.Outcome.INFO,
    message: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """An event, not yet written (`audit_append` writes it); the arguments of `audit_record`."""
    if actor_label is None:
        actor_label = actor.get_username() if actor is not None else WORKER
    # The column's length: a username typed at sign-in can be any length.
    actor_label = actor_label[:ACTOR_LABEL_LIMIT]
    return AuditEvent(
        actor=actor,
        actor_label=actor_label,
        actor_ip=_normalised_ip(ip),
        action=action,
        outcome=outcome,
        target=request.target if request is not None else target,
        domain=request.domain if request is not None else domain,
        request_code=request.code if request is not None else "",
        ticket=request.ticket if request is not None else "",
        correlation_id=request.correlation_id if request is not None else None,
        message=sanitise_message(message),
        details=details or {},
    )


def audit_append(events: list[AuditEvent]) -> list[AuditEvent]:
    """Write events, in this order, on this thread's chain: one lock and one INSERT for all."""
    if not events:
        return events  # no lock to take: nothing to chain
    # Chained last in the caller's transaction: the chain lock is held until its commit. No
    # savepoint: if the insert fails, the caller's change must not commit without its rows.
    with transaction.atomic(savepoint=False):
        number = chain.chain_of_this_thread()
        previous = chain.lock_and_read_head(number)
        for event in events:
            event.chain = number
            event.previous_seal = previous
            event.seal = previous = chain.seal(
                previous, {name: getattr(event, name) for name in chain.SEALED_FIELDS}
            )
        _insert(events)
    return events


def audit_failed_sign_in(
    *,
    action: str,
    username: str | None,
    ip: str | None,
    outcome: str = AuditEvent.Outcome.REFUSED,
) -> None:
    """A sign-in that did not happen: a wrong password (FAILURE), or refused before any password
    was checked (locked out, its address throttled). The username only, never the password."""
    audit_record(
        action=action,
        actor_label=username or "(no username)",
        ip=ip,
        outcome=outcome,
        details={"username": (username or "")[:ACTOR_LABEL_LIMIT]},
    )


def _normalised_ip(ip: str | None) -> str | None:
    """The address as the database gives it back (PostgreSQL's inet compresses IPv6)."""
    if not ip:
        return None
    try:
        return ipaddress.ip_address(ip).compressed
    except ValueError:
        return None


# Every column but the id, in the model's order.
_INSERTED_FIELDS = [field for field in AuditEvent._meta.concrete_fields if not field.primary_key]
_INSERT_SQL = "INSERT INTO {table} ({columns}) VALUES {{rows}} RETURNING {pk}".format(  # noqa: S608 (the model's names)
    table=AuditEvent._meta.db_table,
    columns=", ".join(field.column for field in _INSERTED_FIELDS),
    pk=AuditEvent._meta.pk.column,
)
_ROW = "(" + ", ".join(["%s"] * len(_INSERTED_FIELDS)) + ")"


def _insert(events: list[AuditEvent]) -> None:
    """One multi-row INSERT; each event gets its id. Ids follow the order of the rows, as the
    chain needs: the INSERT takes them from the sequence row by row.

    What `bulk_create` does, for less: it compiles the statement anew on every call and, on
    PostgreSQL, sends each column as an array to unnest; a worker claims and records a batch of
    three with a third less CPU without it. The values are still prepared by the fields.
    """
    sql = _INSERT_SQL.format(rows=", ".join([_ROW] * len(events)))
    database = connections[DEFAULT_DB_ALIAS]  # `connection` would be looked up per value
    values = [
        field.get_db_prep_save(field.pre_save(event, add=True), database)
        for event in events
        for field in _INSERTED_FIELDS
    ]
    with database.cursor() as cursor:
        cursor.execute(sql, values)
        ids = [row[0] for row in cursor.fetchall()]
    for event, pk in zip(events, ids, strict=True):
        event.pk = pk
        event._state.adding = False
        event._state.db = database.alias
