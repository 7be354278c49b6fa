"""Executing approved requests in the worker, and the sweeper that keeps none behind.

One attempt:
1. claim: a conditional UPDATE makes the request RUNNING under a lease and counts the attempt;
   the `api.call` audit row commits with it, so no call is ever made without its audit row;
2. call the API through this thread's client (logged in once, reused by every task);
3. record: a second conditional UPDATE, fenced by the attempt number so a late result cannot
   overwrite a newer attempt's, sets the outcome with its audit row; the sealed password is
   wiped in the same transaction when the request ends.

The threads of a worker process that reach step 1 or step 3 at the same time share one
transaction (apps.provisioning.group_commit), claims and records alike: under load most of a
claim's or a record's cost is per transaction, not per request. A thread running several
requests one after the other (approved together) records the outcome of one in the
transaction that claims the next. Each request keeps its own conditions, fence and audit row;
a lone request is written at once.

Reconciliation. When an attempt may have changed the server without us learning the result
(its answer was lost, or its worker died mid-call), the request is marked `outcome_uncertain`
and the next attempt reads the account back before creating anything. A read alone cannot tell
our mailbox from one that existed before, so a mailbox is confirmed by checking the password we
set (`verify_password`); a domain by comparing its settings with the ones we asked for.
"""

import logging
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import (
    DEFAULT_DB_ALIAS,
    close_old_connections,
    connection,
    connections,
    transaction,
)
from django.db.models import F, Q
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from apps.accounts.models import MailDomain
from apps.audit import chain as audit_chain
from apps.audit.models import AuditEvent
from apps.audit.services import audit_append, audit_event
from apps.core.encryption import SealError, unseal
from apps.iredadmin.client import IRedAdminClient
from apps.iredadmin.config import thread_client
from apps.iredadmin.errors import (
    AuthenticationError,
    IRedAdminError,
    RejectedError,
    TransientError,
    describe,
)
from apps.provisioning.group_commit import GroupCommit, Ticket
from apps.provisioning.models import ProvisioningRequest
from apps.provisioning.publishing import publish_execution

logger = logging.getLogger(__name__)

Kind = ProvisioningRequest.Kind
Status = ProvisioningRequest.Status
Outcome = AuditEvent.Outcome

OPERATIONS = {
    Kind.CREATE_DOMAIN: "create_domain",
    Kind.DELETE_DOMAIN: "delete_domain",
    Kind.CREATE_MAILBOX: "create_user",
    Kind.DELETE_MAILBOX: "delete_user",
}


@dataclass(frozen=True)
class AttemptResult:
    """What one attempt learnt.

    `retry`: worth another attempt: transient trouble, or a configuration problem an operator
    must fix (`needs_operator`), which the request waits out rather than failing at once.
    """

    succeeded: bool = False
    retry: bool = False
    code: str = ""
    message: str = ""
    reconciled: bool = False
    may_have_taken_effect: bool = False
    needs_operator: bool = False

    @classmethod
    def from_error(cls, error: IRedAdminError) -> "AttemptResult":
        operator = isinstance(error, AuthenticationError)
        return cls(
            retry=operator or isinstance(error, TransientError),
            code=error.code,
            message=error.message,
            may_have_taken_effect=error.may_have_taken_effect,
            needs_operator=operator,
        )


# A request and what its attempt learnt, to record.
_Attempted = tuple[ProvisioningRequest, AttemptResult]


@dataclass(frozen=True)
class _Write:
    """What a thread writes at one point: the outcome of its attempt, the claim of a request,
    or both (requests run one after the other: the outcome of one, and the claim of another).

    `ahead`: the claim is made one attempt before the request's own (requests run one after the
    other), so its lease is twice as long: it covers that attempt, then its own.
    """

    record: _Attempted | None = None
    claim: int | None = None
    ahead: bool = False


def request_execute(*, request_id: int) -> None:
    """Run one attempt of a request, if it is ready and no other worker holds it."""
    request = _claim(_Write(claim=request_id))
    if request is not None:
        _writes.submit(_Write(record=(request, _attempt(request))))


def requests_execute(request_ids: Sequence[int]) -> None:
    """Run one attempt of each request, one after the other (requests approved together).

    Claims are made one request ahead: after the call of one request, its outcome is handed to
    the process's writer together with the claim of the request after next, and the thread
    goes on at once with the next request, whose claim was written meanwhile. Each claim still
    commits before its call, and each outcome before the task ends, in half the transactions of
    requests run apart; and the thread does not wait for a write between two calls.

    One request's trouble (the database went away) does not strand the others: it is logged,
    and the request is left as a lone task's would be, still queued (the sweeper publishes it
    again) or, if its claim was written, running until its lease ends (then read back before
    anything is done again).
    """
    # Claims handed to the writer and not yet taken up, oldest first, each with its ticket.
    first = [_Write(claim=request_id, ahead=number > 0)
             for number, request_id in enumerate(request_ids[:2])]  # fmt: skip
    claims = deque(zip(first, _writes.enqueue_all(first), strict=True))  # in one transaction
    after_next = iter(request_ids[2:])
    # Handed in alone (no request is left to claim with them), awaited at the end.
    last_outcomes: list[tuple[_Write, Ticket]] = []
    while claims:
        request = _claimed(*claims.popleft())
        attempted = None if request is None else _attempted_or_log(request)
        following = next(after_next, None)
        if following is not None:
            claims.append(_hand_in(_Write(record=attempted, claim=following, ahead=True)))
        elif attempted is not None:
            last_outcomes.append(_hand_in(_Write(record=attempted)))
    for write, ticket in last_outcomes:
        _recorded_or_log(write, ticket)


def _hand_in(write: _Write) -> tuple[_Write, Ticket]:
    """Hand a write to the writer without waiting for it: the write and the ticket to ask for
    its answer with."""
    return write, _writes.enqueue(write)


def _attempted_or_log(request: ProvisioningRequest) -> _Attempted | None:
    try:
        return request, _attempt(request)
    except Exception:  # a bug outside what `_attempt` expects: the next requests still run
        _log_unrecorded(request.pk)
        return None


def _claimed(write: _Write, ticket: Ticket) -> ProvisioningRequest | None:
    """The request a handed-in write claimed (and the outcome it carried recorded), or None,
    logged: nothing to do, or a claim that could not be written."""
    try:
        return _nothing_to_do_logged(write, _writes.result(ticket))
    except Exception:
        if write.record is None:
            return _unclaimed_logged(write)
        # Either half may be at fault: each is tried alone. (Nothing of it was written,
        # unless the commit went through and only its answer was lost: then the record
        # finds its request recorded already, `api.result_discarded`, and the claim finds
        # the request running and leaves it to its lease, to be read back. Nothing twice.)
        _record_or_log(write.record)
    alone = _Write(claim=write.claim)
    try:
        return _claim(alone)
    except Exception:
        return _unclaimed_logged(alone)


def _unclaimed_logged(write: _Write) -> None:
    logger.exception(
        "Request %s: could not be claimed; the sweeper publishes it again", write.claim
    )


def _claim(write: _Write) -> ProvisioningRequest | None:
    """Submit a write that claims a request (and may record another's outcome); the claimed
    request, or None (logged) when there is nothing to do."""
    return _nothing_to_do_logged(write, _writes.submit(write))


def _nothing_to_do_logged(
    write: _Write, request: ProvisioningRequest | None
) -> ProvisioningRequest | None:
    if request is None:
        # A duplicate delivery, a request already done, or one another worker holds.
        logger.info("Request %s: nothing to do (not ready, or another worker has it)", write.claim)
    return request


def _record_or_log(attempted: _Attempted) -> None:
    """Record an outcome alone and wait for it; if it could not be, log it."""
    _recorded_or_log(*_hand_in(_Write(record=attempted)))


def _recorded_or_log(write: _Write, ticket: Ticket) -> None:
    """Wait until a handed-in outcome is recorded; if it could not be, log it."""
    try:
        _writes.result(ticket)
    except Exception:
        _log_unrecorded(write.record[0].pk)


def _log_unrecorded(request_id: int) -> None:
    logger.exception(
        "Request %s: its attempt failed before its outcome was recorded; the sweeper takes it over",
        request_id,
    )


def requests_sweep() -> int:
    """Re-publish requests left queued past the grace time and those whose lease expired."""
    now = timezone.now()
    grace = now - timedelta(seconds=settings.MAILDESK_QUEUED_GRACE_SECONDS)
    stale = ProvisioningRequest.objects.filter(status=Status.QUEUED).filter(
        Q(not_before__isnull=True, queued_at__lt=grace) | Q(not_before__lt=grace)
    )
    expired = ProvisioningRequest.objects.filter(status=Status.RUNNING, lease_expires_at__lt=now)
    stale_ids = list(stale.values_list("pk", flat=True)[:1000])
    expired_ids = list(expired.values_list("pk", flat=True)[:1000])
    # Restart their grace time, so that a long queue is not re-published on every sweep.
    ProvisioningRequest.objects.filter(pk__in=stale_ids, status=Status.QUEUED).update(
        queued_at=now, not_before=None
    )
    for request_id in stale_ids + expired_ids:
        publish_execution(request_id)
    if stale_ids or expired_ids:
        logger.warning(
            "Sweeper re-published %d queued and %d expired running request(s)",
            len(stale_ids),
            len(expired_ids),
        )
    return len(stale_ids) + len(expired_ids)


# --- Claim and record --------------------------------------------------------------------------
# The threads of a process claim together and record together (apps.provisioning.group_commit):
# one transaction, one chain lock and one audit INSERT for every thread that arrived at once.


# Every column, in the model's order: a returned row is a request's fields as they are listed.
_REQUEST_FIELDS = ProvisioningRequest._meta.concrete_fields
_REQUEST_NAMES = [field.attname for field in _REQUEST_FIELDS]
# The claim in one statement that also returns the rows: the ORM would need an UPDATE and then
# a SELECT, and building both is most of a claim's cost. Same conditions as the sweeper's.
_CLAIM_SQL = """
    UPDATE provisioning_provisioningrequest
    SET status = 'running', attempts = attempts + 1, lease_expires_at = {{lease}}, updated_at = %s,
        -- Taking over from a worker that died mid-call: the server may have changed.
        outcome_uncertain = (status = 'running' OR outcome_uncertain)
    WHERE id IN ({{ids}})
      AND ((status = 'queued' AND (not_before IS NULL OR not_before <= %s))
           OR (status = 'running' AND lease_expires_at < %s))
    RETURNING {columns}
""".format(columns=", ".join(field.column for field in _REQUEST_FIELDS))  # noqa: S608 (the model's columns)


def _write_together(writes: Sequence[_Write]) -> list[ProvisioningRequest | None]:
    """Record these outcomes and claim these requests, with their audit rows, in one
    transaction; each write's answer is the request it claimed (None if not ready, or none)."""
    now = timezone.now()
    with transaction.atomic():
        # Outcomes first: a request recorded as done here is not claimed again below.
        events = _record_outcomes(
            [write.record for write in writes if write.record is not None], now
        )
        claimed = _claim_requests([write for write in writes if write.claim is not None], now)
        events += [_call_event(request) for _, request in sorted(claimed.items())]
        audit_append(events)
    # The same request delivered twice at once: only the first delivery makes the call.
    return [claimed.pop(write.claim, None) if write.claim is not None else None for write in writes]


def _claim_requests(writes: list[_Write], now: Any) -> dict[int, ProvisioningRequest]:
    """Claim those of the requests of these writes that are ready (in the caller's
    transaction), by id."""
    if not writes:
        return {}
    at = connection.ops.adapt_datetimefield_value
    lease = timedelta(seconds=settings.MAILDESK_LEASE_SECONDS)
    when = at(now)
    unique = sorted({write.claim for write in writes})
    ahead = sorted({write.claim for write in writes if write.ahead})
    lease_sql, lease_params = "%s", [at(now + lease)]
    if ahead:  # claimed one attempt before their own: their lease covers that attempt too
        lease_sql = f"CASE WHEN id IN ({', '.join(['%s'] * len(ahead))}) THEN %s ELSE %s END"
        lease_params = [*ahead, at(now + 2 * lease), *lease_params]
    sql = _CLAIM_SQL.format(lease=lease_sql, ids=", ".join(["%s"] * len(unique)))
    with connection.cursor() as cursor:
        cursor.execute(sql, [*lease_params, when, *unique, when, when])
        return {request.pk: request for request in _requests_from_rows(cursor.fetchall())}


def _call_event(request: ProvisioningRequest) -> AuditEvent:
    """The `api.call` audit row that commits with a claim, before its call is made."""
    return audit_event(
        action="api.call",
        request=request,
        details={
            "operation": OPERATIONS[request.kind],
            "attempt": request.attempts,
            "reconcile_first": request.outcome_uncertain,
        },
    )


def _requests_from_rows(rows: list[tuple]) -> list[ProvisioningRequest]:
    """Rows of every column in the model's order, as requests, converted as the ORM would.

    What `objects.raw()` does, without matching the columns to the fields again on every
    query: a claim of one request takes 14% less CPU without that.
    """
    database = connections[DEFAULT_DB_ALIAS]
    table = ProvisioningRequest._meta.db_table
    converters = []
    for index, field in enumerate(_REQUEST_FIELDS):
        column = field.get_col(table)
        found = [*database.ops.get_db_converters(column), *field.get_db_converters(database)]
        if found:
            converters.append((index, column, found))
    requests = []
    for row in rows:
        values = list(row)
        for index, column, functions in converters:
            for convert in functions:
                values[index] = convert(values[index], column, database)
        requests.append(ProvisioningRequest.from_db(database.alias, _REQUEST_NAMES, values))
    return requests


def _record_outcomes(attempts: list[_Attempted], now: Any) -> list[AuditEvent]:
    """Record the outcome of these attempts (in the caller's transaction); returns their audit
    rows, to write."""
    # In the order of their ids: each statement locks its rows, and the audit rows come, in a
    # stable order (a batch locks its outcomes' rows, then its claims'). Should two
    # transactions still deadlock (PostgreSQL then ends one), the batch that failed is written
    # again one write at a time.
    in_order = sorted(attempts, key=lambda attempt: attempt[0].pk)
    recorded = _record_successes(
        [(request, result) for request, result in in_order if result.succeeded], now
    )
    events = []
    for request, result in in_order:
        if result.succeeded:
            recorded_here = request.pk in recorded
            events.append(_event(request, result, "api.succeeded", recorded=recorded_here))
        else:
            events.append(_record_failure(request, result, now))
    return events


# Successes change every request the same way (but for the message): one UPDATE for all.
# Fenced like `_record_failure`: only the attempt that still holds a request records its outcome.
_SUCCEEDED_SQL = """
    UPDATE provisioning_provisioningrequest
    SET status = 'succeeded', finished_at = %s, updated_at = %s, lease_expires_at = NULL,
        sealed_password = '', result_code = '', result_message = %s,
        needs_operator = FALSE, operator_wait_since = NULL, outcome_uncertain = FALSE
    WHERE status = 'running' AND ({attempts})
    RETURNING id
"""


def _record_successes(attempts: list[_Attempted], now: Any) -> set[int]:
    """Mark these attempts succeeded; returns the ids of the requests they still held."""
    when = connection.ops.adapt_datetimefield_value(now)
    recorded: set[int] = set()
    by_message: dict[str, list[ProvisioningRequest]] = {}
    for request, result in attempts:
        by_message.setdefault(result.message, []).append(request)
    for message, requests in by_message.items():
        fence = " OR ".join(["(id = %s AND attempts = %s)"] * len(requests))
        pairs = [value for request in requests for value in (request.pk, request.attempts)]
        with connection.cursor() as cursor:
            cursor.execute(
                _SUCCEEDED_SQL.format(attempts=fence),
                [when, when, message, *pairs],
            )
            recorded.update(row[0] for row in cursor.fetchall())
    for request, _ in attempts:
        if request.pk in recorded:
            _apply_to_portal(request, now)
    return recorded


def _record_failure(request: ProvisioningRequest, result: AttemptResult, now: Any) -> AuditEvent:
    """Record a failed attempt (in the caller's transaction); returns its audit row, to write."""
    attempts_in_run = request.attempts - request.attempts_before_run
    decision = _decide(request, result, now, attempts_in_run)
    # Fenced: only the attempt that still holds the request may record its outcome.
    mine = ProvisioningRequest.objects.filter(
        pk=request.pk, status=Status.RUNNING, attempts=request.attempts
    )
    common = {
        "lease_expires_at": None,
        "needs_operator": result.needs_operator,
        "operator_wait_since": decision.operator_wait_since,
        "outcome_uncertain": request.outcome_uncertain or result.may_have_taken_effect,
        "updated_at": now,
    }
    if decision.retry_in is not None:
        delay = decision.retry_in
        recorded = mine.update(
            **common,
            status=Status.QUEUED,
            queued_at=now,
            not_before=now + timedelta(seconds=delay),
            # Waiting for an operator does not use up the request's tries.
            attempts_before_run=F("attempts_before_run") + int(result.needs_operator),
            result_code=result.code[:200],
            result_message=result.message,
        )
        if recorded:
            transaction.on_commit(lambda: publish_execution(request.pk, countdown=delay))
        action = "api.retry_scheduled"
    else:
        recorded = mine.update(
            **common,
            status=Status.FAILED,
            finished_at=now,
            sealed_password="",
            result_code=result.code[:200],
            result_message=decision.message,
        )
        action = "api.failed"
    return _event(request, result, action, recorded=bool(recorded), retry_in=decision.retry_in)


# After this many runs of a statement on its connection, the writer's PostgreSQL connection
# prepares it (psycopg's default; Django prepares nothing): its claims and records are a few
# statements run again and again, and parsing and planning them was a seventh of
# PostgreSQL's CPU per request (docs/performance.md).
_PREPARE_AFTER = 5


def _before_batch() -> None:
    """In the writer thread, before each batch: its connection checked as a task's is before
    each task (portal/celery.py), told to prepare what it runs often, and the next audit
    chain, so that the writers of several processes never stay on one chain, waiting for
    each other."""
    close_old_connections()
    if connection.vendor == "postgresql" and settings.MAILDESK_PREPARED_STATEMENTS:
        connection.ensure_connection()
        connection.connection.prepare_threshold = _PREPARE_AFTER
    audit_chain.take_next_chain()


# One writer per process for claims and records alike: fewer, larger transactions (a second
# writer beside it cost more CPU than it saved in waiting; docs/performance.md). A caller in a
# transaction of its own (a test's) writes in it.
_writes = GroupCommit(
    _write_together, write_here=lambda: connection.in_atomic_block, before_batch=_before_batch
)


def _event(
    request: ProvisioningRequest,
    result: AttemptResult,
    action: str,
    *,
    recorded: bool,
    retry_in: float | None = None,
) -> AuditEvent:
    """The audit row of an attempt's outcome (`recorded`: whether the request took it)."""
    details: dict[str, Any] = {"attempt": request.attempts}
    if result.reconciled:
        details["reconciled"] = True
    if result.message:
        details["explanation"] = result.message
    if retry_in is not None:
        details["retry_in_seconds"] = round(retry_in, 1)
    if not recorded:
        # Another worker took the request over (our lease expired); keep what we learnt.
        action = "api.result_discarded"
        details["would_have_been"] = "succeeded" if result.succeeded else result.code
    return audit_event(
        action=action,
        request=request,
        outcome=Outcome.SUCCESS if result.succeeded else Outcome.FAILURE,
        message=result.code,
        details=details,
    )


@dataclass(frozen=True)
class _Decision:
    retry_in: float | None  # seconds until the next attempt; None: no next attempt
    message: str  # what a failure says
    operator_wait_since: Any  # datetime | None


def _decide(
    request: ProvisioningRequest, result: AttemptResult, now: Any, attempts_in_run: int
) -> _Decision:
    """Whether and when to try again after this attempt."""
    if result.needs_operator:
        since = request.operator_wait_since or now
        waited = (now - since).total_seconds()
        if waited < settings.MAILDESK_OPERATOR_WAIT_SECONDS:
            # About once per refused-login window: each attempt then really tries to log in.
            retry_in = settings.IREDADMIN["LOGIN_RETRY_SECONDS"] + _backoff(1)
            return _Decision(retry_in, result.message, since)
        return _Decision(
            None,
            f"Gave up after waiting {waited / 60:.0f} min for an operator. {result.message}",
            since,
        )
    if result.retry and attempts_in_run < settings.MAILDESK_MAX_ATTEMPTS:
        return _Decision(_backoff(attempts_in_run), result.message, None)
    message = result.message
    if result.retry:
        message = f"Gave up after {attempts_in_run} attempts. {message}"
    return _Decision(None, message, None)


def _backoff(attempt_in_run: int) -> float:
    """Exponential backoff with full jitter: spreads retries of many requests apart."""
    ceiling = min(
        settings.MAILDESK_RETRY_MAX_SECONDS,
        settings.MAILDESK_RETRY_BASE_SECONDS * 2 ** (attempt_in_run - 1),
    )
    return random.uniform(0, ceiling)  # noqa: S311 (jitter, not a secret)


def _apply_to_portal(request: ProvisioningRequest, now: Any) -> None:
    """Keep the portal's list of domains in step with the server."""
    if request.kind == Kind.CREATE_DOMAIN:
        MailDomain.objects.update_or_create(name=request.domain, defaults={"is_active": True})
    elif request.kind == Kind.DELETE_DOMAIN:
        MailDomain.objects.filter(name=request.domain).update(is_active=False, updated_at=now)


# --- One attempt -------------------------------------------------------------------------------


@sensitive_variables("password")
def _attempt(request: ProvisioningRequest) -> AttemptResult:
    try:
        password = unseal(request.sealed_password) if request.sealed_password else None
    except SealError:
        return AttemptResult(
            code="ENCRYPTION_KEY_MISSING",
            message=(
                "The password was sealed with a key that is no longer in "
                "MAILDESK_ENCRYPTION_KEYS: restore the key, or retry with a new password."
            ),
        )
    except ImproperlyConfigured as error:  # a malformed key: no password can be read at all
        return _configuration_problem(f"Maildesk's encryption keys are not usable: {error}")
    try:
        client = thread_client()
    except (ValueError, ImproperlyConfigured) as error:
        return _configuration_problem(f"Maildesk's iRedAdmin-Pro settings are not usable: {error}")
    try:
        reconciled = _PERFORM[request.kind](client, request, password)
    except IRedAdminError as error:
        if isinstance(error, AuthenticationError):
            logger.error("iRedAdmin-Pro refused Maildesk's configuration: %s", error.message)
        return AttemptResult.from_error(error)
    except Exception:
        # A bug must neither lose the request nor retry it forever: it is retried like
        # transient trouble, and fails once the attempts are used up.
        logger.exception("Request %s: unexpected error", request.code)
        return AttemptResult(
            retry=True,
            code="INTERNAL_ERROR",
            message="Maildesk hit an unexpected error; the details are in the worker's log.",
            may_have_taken_effect=True,
        )
    message = (
        "Created by an earlier attempt whose answer was lost (confirmed on the server)."
        if reconciled
        else ""
    )
    return AttemptResult(succeeded=True, reconciled=reconciled, message=message)


def _configuration_problem(message: str) -> AttemptResult:
    """Settings an operator must fix: the request waits for them (bounded), it does not fail."""
    return AttemptResult(
        retry=True, needs_operator=True, code="CONFIGURATION_ERROR", message=message
    )


def _create_domain(client: IRedAdminClient, request: ProvisioningRequest, _: str | None) -> bool:
    """Returns True when the domain turned out to exist already from an earlier attempt."""
    wanted = request.parameters
    # Domains are few: read first, so that a domain that existed before is never taken for ours.
    existing = _read_domain(client, request.domain)
    if existing is not None:
        if request.outcome_uncertain and _domain_matches(existing, wanted):
            return True
        raise RejectedError("ALREADY_EXISTS")
    try:
        client.create_domain(
            request.domain,
            name=wanted.get("name") or None,
            quota_mb=wanted.get("quota_mb"),
            language=wanted.get("language") or None,
            default_user_quota_mb=wanted.get("default_user_quota_mb"),
            max_user_quota_mb=wanted.get("max_user_quota_mb"),
            max_users=wanted.get("max_users"),
            max_aliases=wanted.get("max_aliases"),
        )
    except RejectedError as error:
        if error.code == "ALREADY_EXISTS" and error.may_have_taken_effect:
            existing = _read_domain(client, request.domain)
            if existing is not None and _domain_matches(existing, wanted):
                return True
        raise
    return False


@sensitive_variables("password")
def _create_mailbox(
    client: IRedAdminClient, request: ProvisioningRequest, password: str | None
) -> bool:
    """Returns True when the mailbox turned out to exist already from an earlier attempt."""
    if password is None:
        # The database refuses a finished request with a password, never an open one without.
        raise RuntimeError(f"{request.code} has no sealed password")
    wanted = request.parameters
    if request.outcome_uncertain and _mailbox_exists(client, request.target):
        return _confirm_own_mailbox(client, request.target, password)
    try:
        client.create_user(
            request.target,
            password=password,
            name=wanted.get("name") or None,
            language=wanted.get("language") or None,
            quota_mb=wanted.get("quota_mb"),
        )
    except RejectedError as error:
        if error.code == "ALREADY_EXISTS" and (
            error.may_have_taken_effect or request.outcome_uncertain
        ):
            return _confirm_own_mailbox(client, request.target, password)
        raise
    return False


def _delete_domain(client: IRedAdminClient, request: ProvisioningRequest, _: str | None) -> bool:
    client.delete_domain(request.domain)  # deleting a missing domain succeeds: idempotent
    return False


def _delete_mailbox(client: IRedAdminClient, request: ProvisioningRequest, _: str | None) -> bool:
    client.delete_user(request.target)  # idempotent, like a domain
    return False


_PERFORM: dict[str, Callable[[IRedAdminClient, ProvisioningRequest, str | None], bool]] = {
    Kind.CREATE_DOMAIN: _create_domain,
    Kind.DELETE_DOMAIN: _delete_domain,
    Kind.CREATE_MAILBOX: _create_mailbox,
    Kind.DELETE_MAILBOX: _delete_mailbox,
}


# --- Reading back ------------------------------------------------------------------------------


def _read_domain(client: IRedAdminClient, domain: str) -> dict[str, Any] | None:
    """The domain's profile, None if it does not exist (or a legacy server cannot say)."""
    try:
        return client.get_domain(domain)
    except RejectedError as error:
        if error.code in ("INVALID_DOMAIN_NAME", "UNSUPPORTED_OPERATION"):
            return None
        raise


def _domain_matches(profile: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Does the server's domain carry the settings we asked for? (profile fields: §5.1)"""
    settings_ = profile.get("settings") or {}
    expected = {
        "description": (profile.get("description"), wanted.get("name") or ""),
        "maxquota": (profile.get("maxquota"), wanted.get("quota_mb") or 0),
        "mailboxes": (profile.get("mailboxes"), wanted.get("max_users") or 0),
        "aliases": (profile.get("aliases"), wanted.get("max_aliases") or 0),
        "default_user_quota": (
            settings_.get("default_user_quota", 0),
            wanted.get("default_user_quota_mb") or 0,
        ),
        "max_user_quota": (
            settings_.get("max_user_quota", 0),
            wanted.get("max_user_quota_mb") or 0,
        ),
    }
    return all(actual == asked for actual, asked in expected.values())


def _mailbox_exists(client: IRedAdminClient, address: str) -> bool:
    try:
        client.get_user(address)
    except RejectedError as error:
        if error.code == "NO_SUCH_ACCOUNT":
            return False
        if error.code == "UNSUPPORTED_OPERATION":
            return False  # legacy: cannot read; the create below tells us
        raise
    return True


@sensitive_variables("password")
def _confirm_own_mailbox(client: IRedAdminClient, address: str, password: str) -> bool:
    """The mailbox exists: ours if it has the password we set, else someone else's."""
    try:
        ours = client.verify_user_password(address, password)
    except RejectedError as error:
        if error.code != "UNSUPPORTED_OPERATION":
            raise
        raise RejectedError(
            "ALREADY_EXISTS",
            "The mailbox exists, and this (legacy) iRedAdmin-Pro cannot confirm whether "
            "Maildesk's earlier attempt created it: check it by hand.",
        ) from None
    if ours:
        return True
    raise RejectedError("ALREADY_EXISTS", describe("ALREADY_EXISTS"))
