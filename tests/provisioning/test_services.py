"""The request workflow's services: every transition and every guard (DESIGN.md §1, §2, §6, §7).

Each test asserts what the service answered, the row after `refresh_from_db()`, the audit rows
written for the request, and what was published to the (in-memory) broker.
"""

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.core.encryption import unseal
from apps.core.exceptions import ApplicationError
from apps.provisioning import services
from apps.provisioning.models import ProvisioningRequest, RequestComment
from apps.provisioning.publishing import EXECUTE_TASK
from tests.conftest import APPROVER, make_user
from tests.helpers import actions

pytestmark = pytest.mark.django_db

Kind = ProvisioningRequest.Kind
Status = ProvisioningRequest.Status
SUCCESS, REFUSED = AuditEvent.Outcome.SUCCESS, AuditEvent.Outcome.REFUSED

MAILBOX_PASSWORD = "Xk7#mailbox-Secret-42"
NEW_PASSWORD = "Zq9!another-Secret-77"
TICKET = "HD-1234"
MAILBOX_PARAMETERS = {"name": "Jane Doe", "language": "en_US", "quota_mb": 1024}
DOMAIN_PARAMETERS = {
    "name": "New Domain Ltd",
    "quota_mb": 10240,
    "language": "en_US",
    "default_user_quota_mb": 512,
    "max_user_quota_mb": 2048,
    "max_users": 50,
    "max_aliases": 20,
}


# --- Helpers -----------------------------------------------------------------------------------


def submit(
    user: Any,
    kind: str,
    target: str,
    *,
    parameters: dict[str, Any] | None = None,
    password: str | None = None,
) -> ProvisioningRequest:
    return services.request_submit(
        requester=user,
        kind=kind,
        target=target,
        parameters=parameters or {},
        ticket=TICKET,
        reason="Asked for by the customer",
        password=password,
    )


def submit_mailbox(user: Any, address: str = "jane@example.com") -> ProvisioningRequest:
    return submit(
        user,
        Kind.CREATE_MAILBOX,
        address,
        parameters=MAILBOX_PARAMETERS,
        password=MAILBOX_PASSWORD,
    )


def submit_mailbox_deletion(user: Any, address: str = "old@example.com") -> ProvisioningRequest:
    return submit(user, Kind.DELETE_MAILBOX, address)


def audit_trail(request: ProvisioningRequest) -> list[tuple[str, str, str, str]]:
    """(action, actor, outcome, message) of every audit row of the request, oldest first."""
    events = AuditEvent.objects.filter(request_code=request.code).order_by("id")
    return [(e.action, e.actor_label, e.outcome, e.message) for e in events]


def execution_of(request: ProvisioningRequest) -> tuple[str, list, None]:
    return (EXECUTE_TASK, [request.pk], None)


def make_failed(request: ProvisioningRequest, *, attempts: int = 3) -> None:
    """Test setup: the request ran and failed (the worker wiped its password)."""
    ProvisioningRequest.objects.filter(pk=request.pk).update(
        status=Status.FAILED,
        sealed_password="",
        attempts=attempts,
        lease_expires_at=None,
        finished_at=timezone.now(),
        result_code="ALREADY_EXISTS",
        result_message="The mailbox exists already.",
    )
    request.refresh_from_db()


def approved(request: ProvisioningRequest, approver: Any) -> ProvisioningRequest:
    """Test setup: approve (its publication, on commit of the test transaction, never runs)."""
    return services.request_approve(request=request, actor=approver)


def assert_between(value: datetime | None, start: datetime) -> None:
    assert value is not None
    assert start <= value <= timezone.now()


def row_text(request: ProvisioningRequest) -> str:
    return repr(ProvisioningRequest.objects.filter(pk=request.pk).values().get())


@pytest.fixture
def persona(request: pytest.FixtureRequest) -> Callable[[str], Any]:
    """A persona fixture by name, for parametrised tests."""
    return request.getfixturevalue


# --- Submit ------------------------------------------------------------------------------------


def test_a_mailbox_request_is_pending_with_its_domain_target_and_parameters(alice, published):
    created = submit_mailbox(alice)

    created.refresh_from_db()
    assert created.status == Status.PENDING
    assert created.kind == Kind.CREATE_MAILBOX
    assert created.domain == "example.com"
    assert created.target == "jane@example.com"
    assert created.parameters == MAILBOX_PARAMETERS
    assert created.ticket == TICKET
    assert created.requested_by == alice
    assert created.decided_by is None
    assert created.code.startswith("REQ-")
    assert audit_trail(created) == [("request.submitted", "alice", SUCCESS, "")]
    assert published() == []


def test_it_stores_the_mailbox_password_sealed_and_nowhere_in_plain_text(alice):
    created = submit_mailbox(alice)

    created.refresh_from_db()
    assert created.sealed_password
    assert MAILBOX_PASSWORD not in row_text(created)
    assert unseal(created.sealed_password) == MAILBOX_PASSWORD


def test_the_submission_audit_row_names_the_request_but_not_the_password(alice):
    created = submit_mailbox(alice)

    event = AuditEvent.objects.get(request_code=created.code)
    assert event.action == "request.submitted"
    assert event.actor == alice
    assert event.outcome == SUCCESS
    assert event.target == "jane@example.com"
    assert event.domain == "example.com"
    assert event.ticket == TICKET
    assert event.correlation_id == created.correlation_id
    assert event.details == {"kind": Kind.CREATE_MAILBOX, "parameters": MAILBOX_PARAMETERS}
    assert MAILBOX_PASSWORD not in event.message
    assert MAILBOX_PASSWORD not in repr(event.details)


def test_a_mailbox_deletion_is_pending_without_a_password(alice):
    created = submit_mailbox_deletion(alice)

    created.refresh_from_db()
    assert created.status == Status.PENDING
    assert (created.kind, created.domain, created.target) == (
        Kind.DELETE_MAILBOX,
        "example.com",
        "old@example.com",
    )
    assert created.parameters == {}
    assert created.sealed_password == ""
    assert audit_trail(created) == [("request.submitted", "alice", SUCCESS, "")]


def test_a_new_domain_request_is_pending_with_every_seed_field(alice):
    created = submit(alice, Kind.CREATE_DOMAIN, "new-domain.net", parameters=DOMAIN_PARAMETERS)

    created.refresh_from_db()
    assert created.status == Status.PENDING
    assert (created.kind, created.domain, created.target) == (
        Kind.CREATE_DOMAIN,
        "new-domain.net",
        "new-domain.net",
    )
    assert created.parameters == DOMAIN_PARAMETERS
    assert created.sealed_password == ""
    assert audit_trail(created) == [("request.submitted", "alice", SUCCESS, "")]


def test_a_domain_deletion_is_pending_for_a_managed_domain(alice):
    created = submit(alice, Kind.DELETE_DOMAIN, "example.com")

    created.refresh_from_db()
    assert created.status == Status.PENDING
    assert (created.kind, created.domain, created.target) == (
        Kind.DELETE_DOMAIN,
        "example.com",
        "example.com",
    )
    assert audit_trail(created) == [("request.submitted", "alice", SUCCESS, "")]


def test_a_new_mailbox_needs_a_password(alice):
    with pytest.raises(ApplicationError, match="password"):
        submit(alice, Kind.CREATE_MAILBOX, "jane@example.com", password=None)

    assert not ProvisioningRequest.objects.exists()
    assert not AuditEvent.objects.filter(action="request.submitted").exists()


def test_only_a_new_mailbox_takes_a_password(alice):
    with pytest.raises(ApplicationError, match="password"):
        submit(alice, Kind.DELETE_MAILBOX, "old@example.com", password=MAILBOX_PASSWORD)

    assert not ProvisioningRequest.objects.exists()


@pytest.mark.parametrize(
    ("who", "address"),
    [
        ("charlie", "jane@example.com"),
        ("alice", "jane@other.org"),
        ("carol", "jane@example.com"),
        ("bob", "jane@example.com"),  # an approver, not a requester, of example.com
        ("audrey", "jane@example.com"),
    ],
)
def test_it_refuses_a_mailbox_request_outside_the_requesters_delegation(
    persona, example_com, other_org, who, address
):
    with pytest.raises(ApplicationError, match="You may not open requests for"):
        submit_mailbox(persona(who), address)

    assert not ProvisioningRequest.objects.exists()
    assert not AuditEvent.objects.filter(action="request.submitted").exists()


def test_it_refuses_a_new_domain_without_the_grant(dave):
    with pytest.raises(ApplicationError, match="You may not request new domains"):
        submit(dave, Kind.CREATE_DOMAIN, "new-domain.net", parameters=DOMAIN_PARAMETERS)

    assert not ProvisioningRequest.objects.exists()


def test_it_refuses_a_new_domain_that_maildesk_manages_already(alice):
    with pytest.raises(ApplicationError, match="already managed"):
        submit(alice, Kind.CREATE_DOMAIN, "example.com", parameters=DOMAIN_PARAMETERS)

    assert not ProvisioningRequest.objects.exists()


def test_it_refuses_a_mailbox_in_a_domain_maildesk_does_not_manage(alice):
    with pytest.raises(ApplicationError, match="not a domain Maildesk manages"):
        submit_mailbox(alice, "jane@unmanaged.net")

    assert not ProvisioningRequest.objects.exists()


def test_it_refuses_a_request_in_a_deleted_domain(alice, example_com):
    example_com.is_active = False
    example_com.save()

    with pytest.raises(ApplicationError, match="not a domain Maildesk manages"):
        submit_mailbox(alice)
    with pytest.raises(ApplicationError, match="not a domain Maildesk manages"):
        submit(alice, Kind.DELETE_DOMAIN, "example.com")

    assert not ProvisioningRequest.objects.exists()


def test_it_refuses_a_second_open_request_for_the_same_address_naming_the_first(alice, dave):
    first = submit_mailbox(alice)

    with pytest.raises(ApplicationError) as refused:
        submit_mailbox_deletion(dave, "jane@example.com")

    assert first.code in refused.value.message
    assert "jane@example.com" in refused.value.message
    assert ProvisioningRequest.objects.count() == 1
    first.refresh_from_db()
    assert first.status == Status.PENDING


def test_it_refuses_a_second_open_request_while_the_first_is_queued(alice, bob):
    first = approved(submit_mailbox(alice), bob)

    with pytest.raises(ApplicationError, match=first.code):
        submit_mailbox(alice)

    assert ProvisioningRequest.objects.count() == 1


def test_a_new_request_for_the_address_is_allowed_once_the_first_is_cancelled(alice):
    first = submit_mailbox(alice)
    services.request_cancel(request=first, actor=alice)

    second = submit_mailbox(alice)

    second.refresh_from_db()
    assert second.status == Status.PENDING
    assert second.code != first.code
    assert actions(second) == ["request.submitted"]


# --- Approve -----------------------------------------------------------------------------------


def test_an_approver_approves_a_request_which_is_queued_and_published_after_commit(
    alice, bob, published, django_capture_on_commit_callbacks
):
    pending = submit_mailbox(alice)
    before = timezone.now()

    with django_capture_on_commit_callbacks() as callbacks:
        result = services.request_approve(request=pending, actor=bob)
        assert published() == []  # nothing leaves before the commit

    assert result.pk == pending.pk
    pending.refresh_from_db()
    assert pending.status == Status.QUEUED
    assert pending.decided_by == bob
    assert_between(pending.decided_at, before)
    assert_between(pending.queued_at, before)
    assert unseal(pending.sealed_password) == MAILBOX_PASSWORD  # the worker still needs it
    assert audit_trail(pending) == [
        ("request.submitted", "alice", SUCCESS, ""),
        ("request.approved", "bob", SUCCESS, ""),
    ]
    assert published() == []
    assert len(callbacks) == 1

    callbacks[0]()

    assert published() == [execution_of(pending)]


def test_the_published_execution_carries_the_request_id_only(
    alice, bob, published, django_capture_on_commit_callbacks
):
    pending = submit_mailbox(alice)

    with django_capture_on_commit_callbacks(execute=True):
        services.request_approve(request=pending, actor=bob)

    messages = published()
    assert messages == [(EXECUTE_TASK, [pending.pk], None)]
    assert MAILBOX_PASSWORD not in repr(messages)


def test_a_new_domain_approver_approves_a_new_domain(
    alice, bob, published, django_capture_on_commit_callbacks
):
    pending = submit(alice, Kind.CREATE_DOMAIN, "new-domain.net", parameters=DOMAIN_PARAMETERS)

    with django_capture_on_commit_callbacks(execute=True):
        services.request_approve(request=pending, actor=bob)

    pending.refresh_from_db()
    assert pending.status == Status.QUEUED
    assert pending.decided_by == bob
    assert actions(pending) == ["request.submitted", "request.approved"]
    assert published() == [execution_of(pending)]


# dave approves in example.com; root (a superuser) holds every role.
@pytest.mark.parametrize("who", ["dave", "root"])
def test_it_refuses_self_approval_even_for_a_superuser(
    persona, example_com, published, django_capture_on_commit_callbacks, who
):
    pending = submit_mailbox(persona(who))

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(ApplicationError, match="Nobody can approve a request they made"),
    ):
        services.request_approve(request=pending, actor=persona(who))

    pending.refresh_from_db()
    assert pending.status == Status.PENDING
    assert pending.decided_by is None
    assert pending.queued_at is None
    assert audit_trail(pending) == [
        ("request.submitted", who, SUCCESS, ""),
        ("request.approve_refused", who, REFUSED, "Nobody can approve a request they made."),
    ]
    assert callbacks == []
    assert published() == []


def test_it_refuses_a_superusers_self_approval_of_a_new_domain(root, published):
    pending = submit(root, Kind.CREATE_DOMAIN, "new-domain.net", parameters=DOMAIN_PARAMETERS)

    with pytest.raises(ApplicationError, match="Nobody can approve a request they made"):
        services.request_approve(request=pending, actor=root)

    pending.refresh_from_db()
    assert pending.status == Status.PENDING
    assert actions(pending) == ["request.submitted", "request.approve_refused"]


# alice requests in example.com but does not approve there.
@pytest.mark.parametrize("who", ["alice", "carol", "charlie", "audrey"])
def test_it_refuses_an_approval_outside_the_approvers_scope(
    persona, dave, published, django_capture_on_commit_callbacks, who
):
    actor = persona(who)
    pending = submit_mailbox(dave)

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(ApplicationError, match="not an approver for example"),
    ):
        services.request_approve(request=pending, actor=actor)

    pending.refresh_from_db()
    assert pending.status == Status.PENDING
    assert pending.decided_by is None
    assert audit_trail(pending) == [
        ("request.submitted", "dave", SUCCESS, ""),
        ("request.approve_refused", who, REFUSED, "You are not an approver for example.com."),
    ]
    assert callbacks == []
    assert published() == []


def test_a_domain_approver_without_the_grant_cannot_approve_a_new_domain(alice, dave, published):
    pending = submit(alice, Kind.CREATE_DOMAIN, "new-domain.net", parameters=DOMAIN_PARAMETERS)

    with pytest.raises(ApplicationError, match="not an approver"):
        services.request_approve(request=pending, actor=dave)

    pending.refresh_from_db()
    assert pending.status == Status.PENDING
    assert actions(pending) == ["request.submitted", "request.approve_refused"]
    assert published() == []


def test_a_second_approval_is_refused_and_publishes_nothing_more(
    alice, bob, dave, published, django_capture_on_commit_callbacks
):
    pending = submit_mailbox(alice)
    with django_capture_on_commit_callbacks(execute=True):
        services.request_approve(request=pending, actor=bob)
    assert published() == [execution_of(pending)]

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(ApplicationError, match="cannot be approved: it is queued") as refused,
    ):
        services.request_approve(request=pending, actor=dave)

    assert pending.code in refused.value.message
    pending.refresh_from_db()
    assert pending.status == Status.QUEUED
    assert pending.decided_by == bob
    assert audit_trail(pending) == [
        ("request.submitted", "alice", SUCCESS, ""),
        ("request.approved", "bob", SUCCESS, ""),
        ("request.approve_refused", "dave", REFUSED, refused.value.message),
    ]
    assert callbacks == []
    assert published() == []


def test_a_stale_copy_of_an_approved_request_cannot_be_approved_again(
    alice, bob, dave, published, django_capture_on_commit_callbacks
):
    pending = submit_mailbox(alice)
    stale = ProvisioningRequest.objects.get(pk=pending.pk)
    with django_capture_on_commit_callbacks(execute=True):
        services.request_approve(request=pending, actor=bob)
    published()

    with pytest.raises(ApplicationError, match="cannot be approved"):
        services.request_approve(request=stale, actor=dave)

    pending.refresh_from_db()
    assert pending.decided_by == bob
    assert actions(pending).count("request.approved") == 1
    assert published() == []


@pytest.mark.parametrize("decision", ["reject", "cancel"])
def test_a_request_no_longer_pending_cannot_be_approved(alice, bob, dave, published, decision):
    pending = submit_mailbox(alice)
    if decision == "reject":
        services.request_reject(request=pending, actor=bob, reason="Duplicate of HD-1200")
    else:
        services.request_cancel(request=pending, actor=alice)

    with pytest.raises(ApplicationError, match="cannot be approved"):
        services.request_approve(request=pending, actor=dave)

    pending.refresh_from_db()
    assert pending.status in (Status.REJECTED, Status.CANCELLED)
    assert actions(pending)[-1] == "request.approve_refused"
    assert "request.approved" not in actions(pending)
    assert published() == []


def approve_in_own_connection(request_id: int, approver: Any, start: threading.Barrier) -> str:
    """Approve from this thread's own database connection: "approved", or the refusal."""
    try:
        mine = ProvisioningRequest.objects.get(pk=request_id)
        start.wait(timeout=30)
        for _ in range(500):
            try:
                services.request_approve(request=mine, actor=approver)
            except OperationalError as exc:
                # The SQLite test database lives in memory in shared-cache mode, where a
                # writer's lock fails at once instead of waiting for the busy timeout as the
                # file database does: wait here instead. (The transaction rolled back.)
                if connection.vendor != "sqlite" or "locked" not in str(exc):
                    raise
                time.sleep(0.01)
            else:
                return "approved"
        return "still locked"
    except ApplicationError as exc:
        return exc.message
    except Exception as exc:  # anything else fails the test, with the error shown
        return f"unexpected: {exc!r}"
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_parallel_approvals_of_one_request_give_exactly_one_approval(alice, example_com, published):
    pending = submit_mailbox(alice)
    approvers = [make_user(f"approver{i}", domains={example_com: [APPROVER]}) for i in range(20)]
    start = threading.Barrier(len(approvers))
    outcomes: dict[str, str] = {}

    def approve(approver: Any) -> None:
        outcomes[approver.username] = approve_in_own_connection(pending.pk, approver, start)

    threads = [threading.Thread(target=approve, args=(a,)) for a in approvers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(outcomes) == len(approvers), outcomes
    winners = [name for name, outcome in outcomes.items() if outcome == "approved"]
    assert len(winners) == 1, outcomes
    losers = [outcome for outcome in outcomes.values() if outcome != "approved"]
    assert all("cannot be approved: it is queued" in outcome for outcome in losers), outcomes
    pending.refresh_from_db()
    assert pending.status == Status.QUEUED
    assert pending.decided_by.username == winners[0]
    events = AuditEvent.objects.filter(request_code=pending.code)
    assert [e.actor_label for e in events.filter(action="request.approved")] == winners
    refused = events.filter(action="request.approve_refused", outcome=REFUSED)
    assert sorted(e.actor_label for e in refused) == sorted(set(outcomes) - set(winners))
    assert published() == [execution_of(pending)]


# --- Reject ------------------------------------------------------------------------------------


@pytest.mark.parametrize("reason", ["", "   \n "])
def test_a_rejection_needs_a_reason(alice, bob, reason):
    pending = submit_mailbox(alice)

    with pytest.raises(ApplicationError, match="Say why"):
        services.request_reject(request=pending, actor=bob, reason=reason)

    pending.refresh_from_db()
    assert pending.status == Status.PENDING
    assert pending.sealed_password
    assert actions(pending) == ["request.submitted"]


def test_an_approver_rejects_with_a_reason_and_the_password_is_wiped(alice, bob, published):
    pending = submit_mailbox(alice)
    before = timezone.now()

    result = services.request_reject(
        request=pending, actor=bob, reason="  Use the shared mailbox instead. "
    )

    assert result.pk == pending.pk
    pending.refresh_from_db()
    assert pending.status == Status.REJECTED
    assert pending.rejection_reason == "Use the shared mailbox instead."
    assert pending.decided_by == bob
    assert_between(pending.decided_at, before)
    assert_between(pending.finished_at, before)
    assert pending.sealed_password == ""
    assert audit_trail(pending) == [
        ("request.submitted", "alice", SUCCESS, ""),
        ("request.rejected", "bob", SUCCESS, "Use the shared mailbox instead."),
    ]
    assert published() == []


def test_a_rejection_after_approval_is_refused(alice, bob, dave, published):
    queued = approved(submit_mailbox(alice), bob)

    with pytest.raises(ApplicationError, match="cannot be rejected: it is queued"):
        services.request_reject(request=queued, actor=dave, reason="Too late")

    queued.refresh_from_db()
    assert queued.status == Status.QUEUED
    assert queued.rejection_reason == ""
    assert queued.finished_at is None
    assert unseal(queued.sealed_password) == MAILBOX_PASSWORD
    assert audit_trail(queued)[-1][:3] == ("request.reject_refused", "dave", REFUSED)
    assert published() == []


def test_it_refuses_a_rejection_outside_the_approvers_scope(alice, carol):
    pending = submit_mailbox(alice)

    with pytest.raises(ApplicationError, match="not an approver for example"):
        services.request_reject(request=pending, actor=carol, reason="No")

    pending.refresh_from_db()
    assert pending.status == Status.PENDING
    assert pending.sealed_password
    assert audit_trail(pending) == [
        ("request.submitted", "alice", SUCCESS, ""),
        ("request.reject_refused", "carol", REFUSED, "You are not an approver for example.com."),
    ]


# --- Cancel ------------------------------------------------------------------------------------


def test_the_requester_cancels_a_pending_request_and_the_password_is_wiped(alice, published):
    pending = submit_mailbox(alice)
    before = timezone.now()

    services.request_cancel(request=pending, actor=alice)

    pending.refresh_from_db()
    assert pending.status == Status.CANCELLED
    assert_between(pending.finished_at, before)
    assert pending.sealed_password == ""
    assert pending.decided_by is None
    assert audit_trail(pending) == [
        ("request.submitted", "alice", SUCCESS, ""),
        ("request.cancelled", "alice", SUCCESS, ""),
    ]
    assert published() == []


@pytest.mark.parametrize("who", ["bob", "dave", "root"])
def test_only_the_requester_may_cancel(persona, alice, who):
    pending = submit_mailbox(alice)

    with pytest.raises(ApplicationError, match="Only the person who made a request"):
        services.request_cancel(request=pending, actor=persona(who))

    pending.refresh_from_db()
    assert pending.status == Status.PENDING
    assert unseal(pending.sealed_password) == MAILBOX_PASSWORD
    assert audit_trail(pending) == [
        ("request.submitted", "alice", SUCCESS, ""),
        (
            "request.cancel_refused",
            who,
            REFUSED,
            "Only the person who made a request can cancel it.",
        ),
    ]


def test_a_cancellation_after_approval_is_refused_and_audited(alice, bob, published):
    queued = approved(submit_mailbox(alice), bob)

    with pytest.raises(ApplicationError, match="cannot be cancelled: it is queued") as refused:
        services.request_cancel(request=queued, actor=alice)

    queued.refresh_from_db()
    assert queued.status == Status.QUEUED
    assert queued.finished_at is None
    assert unseal(queued.sealed_password) == MAILBOX_PASSWORD
    assert audit_trail(queued) == [
        ("request.submitted", "alice", SUCCESS, ""),
        ("request.approved", "bob", SUCCESS, ""),
        ("request.cancel_refused", "alice", REFUSED, refused.value.message),
    ]
    assert published() == []


def test_a_cancelled_request_cannot_be_cancelled_again(alice):
    pending = submit_mailbox(alice)
    services.request_cancel(request=pending, actor=alice)

    with pytest.raises(ApplicationError, match="cannot be cancelled: it is cancelled"):
        services.request_cancel(request=pending, actor=alice)

    assert actions(pending) == [
        "request.submitted",
        "request.cancelled",
        "request.cancel_refused",
    ]


# --- Retry -------------------------------------------------------------------------------------


def test_an_approver_retries_a_failed_request_which_is_queued_again_and_published_once(
    alice, bob, dave, published, django_capture_on_commit_callbacks
):
    failed = approved(submit_mailbox_deletion(alice), bob)
    make_failed(failed, attempts=3)
    before = timezone.now()

    with django_capture_on_commit_callbacks() as callbacks:
        result = services.request_retry(request=failed, actor=dave)
    assert published() == []
    for callback in callbacks:
        callback()

    assert result.pk == failed.pk
    failed.refresh_from_db()
    assert failed.status == Status.QUEUED
    assert failed.attempts == 3
    assert failed.attempts_before_run == 3
    assert_between(failed.queued_at, before)
    assert failed.finished_at is None
    assert failed.not_before is None
    assert audit_trail(failed) == [
        ("request.submitted", "alice", SUCCESS, ""),
        ("request.approved", "bob", SUCCESS, ""),
        ("request.retried", "dave", SUCCESS, ""),
    ]
    retried = AuditEvent.objects.get(request_code=failed.code, action="request.retried")
    assert retried.details == {"previous_result": "ALREADY_EXISTS"}
    assert published() == [execution_of(failed)]


def test_a_retry_clears_the_previous_result(alice, bob):
    failed = approved(submit_mailbox_deletion(alice), bob)
    make_failed(failed)

    services.request_retry(request=failed, actor=bob)

    failed.refresh_from_db()
    assert failed.status == Status.QUEUED
    assert failed.result_code == ""
    assert failed.result_message == ""
    # The previous result is kept in the audit trail.
    retried = AuditEvent.objects.get(request_code=failed.code, action="request.retried")
    assert retried.details == {"previous_result": "ALREADY_EXISTS"}


def test_a_mailbox_retry_needs_a_new_password(alice, bob, published):
    failed = approved(submit_mailbox(alice), bob)
    make_failed(failed)

    with pytest.raises(ApplicationError, match="new initial password"):
        services.request_retry(request=failed, actor=bob)

    failed.refresh_from_db()
    assert failed.status == Status.FAILED
    assert failed.sealed_password == ""
    assert "request.retried" not in actions(failed)
    assert published() == []


def test_a_mailbox_retry_seals_the_new_password(
    alice, bob, published, django_capture_on_commit_callbacks
):
    failed = approved(submit_mailbox(alice), bob)
    make_failed(failed)

    with django_capture_on_commit_callbacks(execute=True):
        services.request_retry(request=failed, actor=bob, password=NEW_PASSWORD)

    failed.refresh_from_db()
    assert failed.status == Status.QUEUED
    assert unseal(failed.sealed_password) == NEW_PASSWORD
    assert NEW_PASSWORD not in row_text(failed)
    events = AuditEvent.objects.filter(request_code=failed.code)
    assert all(NEW_PASSWORD not in e.message + repr(e.details) for e in events)
    assert actions(failed)[-1] == "request.retried"
    messages = published()
    assert messages == [execution_of(failed)]
    assert NEW_PASSWORD not in repr(messages)


def test_a_retry_of_a_deletion_takes_no_password(alice, bob):
    failed = approved(submit_mailbox_deletion(alice), bob)
    make_failed(failed)

    with pytest.raises(ApplicationError, match="Only a new mailbox takes a password"):
        services.request_retry(request=failed, actor=bob, password=NEW_PASSWORD)

    failed.refresh_from_db()
    assert failed.status == Status.FAILED


@pytest.mark.parametrize(
    ("status", "shown"),
    [("pending", "awaiting approval"), ("queued", "queued"), ("succeeded", "succeeded")],
)
def test_only_a_failed_request_can_be_retried(
    alice, bob, published, django_capture_on_commit_callbacks, status, shown
):
    item = submit_mailbox_deletion(alice)
    if status != "pending":
        item = approved(item, bob)
    if status == "succeeded":
        ProvisioningRequest.objects.filter(pk=item.pk).update(
            status=Status.SUCCEEDED, finished_at=timezone.now(), attempts=1
        )
    item.refresh_from_db()
    trail_before = actions(item)

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(ApplicationError, match=f"cannot be retried: it is {shown}") as refused,
    ):
        services.request_retry(request=item, actor=bob)

    item.refresh_from_db()
    assert item.status == status
    assert audit_trail(item)[len(trail_before) :] == [
        ("request.retry_refused", "bob", REFUSED, refused.value.message)
    ]
    assert callbacks == []
    assert published() == []


def test_a_mailbox_retry_from_another_state_is_refused_and_keeps_the_old_password(alice, bob):
    queued = approved(submit_mailbox(alice), bob)

    with pytest.raises(ApplicationError, match="cannot be retried: it is queued"):
        services.request_retry(request=queued, actor=bob, password=NEW_PASSWORD)

    queued.refresh_from_db()
    assert unseal(queued.sealed_password) == MAILBOX_PASSWORD


@pytest.mark.parametrize("who", ["alice", "carol", "audrey"])
def test_it_refuses_a_retry_by_anyone_but_an_approver_in_scope(persona, alice, bob, who, published):
    failed = approved(submit_mailbox_deletion(alice), bob)
    make_failed(failed)

    with pytest.raises(ApplicationError, match="not an approver for example"):
        services.request_retry(request=failed, actor=persona(who))

    failed.refresh_from_db()
    assert failed.status == Status.FAILED
    assert audit_trail(failed)[-1] == (
        "request.retry_refused",
        who,
        REFUSED,
        "You are not an approver for example.com.",
    )
    assert published() == []


def test_it_refuses_a_retry_while_another_request_for_the_address_is_open(
    alice, bob, published, django_capture_on_commit_callbacks
):
    failed = approved(submit_mailbox_deletion(alice), bob)
    make_failed(failed)
    newer = submit_mailbox_deletion(alice)

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(ApplicationError) as refused,
    ):
        services.request_retry(request=failed, actor=bob)

    assert newer.code in refused.value.message
    failed.refresh_from_db()
    assert failed.status == Status.FAILED
    assert "request.retried" not in actions(failed)
    newer.refresh_from_db()
    assert newer.status == Status.PENDING
    assert callbacks == []
    assert published() == []


# --- Comment -----------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["alice", "bob"])
def test_the_requester_and_the_approver_comment(persona, alice, bob, who):
    pending = submit_mailbox(alice)
    author = persona(who)

    comment = services.request_comment(request=pending, author=author, body="  Any news?  ")

    comment.refresh_from_db()
    assert comment.request == pending
    assert comment.author == author
    assert comment.body == "Any news?"
    event = AuditEvent.objects.get(request_code=pending.code, action="request.commented")
    assert event.actor == author
    assert event.outcome == SUCCESS
    assert event.details == {"comment_id": comment.pk}
    pending.refresh_from_db()
    assert pending.status == Status.PENDING


@pytest.mark.parametrize("who", ["audrey", "charlie", "carol"])
def test_it_refuses_comments_from_people_without_a_role_in_the_domain(persona, alice, who):
    pending = submit_mailbox(alice)

    with pytest.raises(ApplicationError, match="Only the requester"):
        services.request_comment(request=pending, author=persona(who), body="Hello")

    assert not RequestComment.objects.exists()
    assert audit_trail(pending) == [
        ("request.submitted", "alice", SUCCESS, ""),
        (
            "request.comment_refused",
            who,
            REFUSED,
            "Only the requester and the domain's staff comment.",
        ),
    ]


@pytest.mark.parametrize("body", ["", "  \n\t "])
def test_it_refuses_an_empty_comment(alice, body):
    pending = submit_mailbox(alice)

    with pytest.raises(ApplicationError, match="cannot be empty"):
        services.request_comment(request=pending, author=alice, body=body)

    assert not RequestComment.objects.exists()
    assert actions(pending) == ["request.submitted"]


# --- The database keeps the rule even if the code forgets it -----------------------------------


@pytest.mark.parametrize("status", [Status.SUCCEEDED, Status.FAILED, Status.REJECTED])
def test_a_finished_request_cannot_keep_its_sealed_password(alice, status):
    pending = submit_mailbox(alice)

    with pytest.raises(IntegrityError), transaction.atomic():
        ProvisioningRequest.objects.filter(pk=pending.pk).update(status=status)

    pending.refresh_from_db()
    assert pending.status == Status.PENDING
    assert unseal(pending.sealed_password) == MAILBOX_PASSWORD


def test_a_finished_request_without_a_password_is_accepted(alice):
    pending = submit_mailbox(alice)

    ProvisioningRequest.objects.filter(pk=pending.pk).update(
        status=Status.SUCCEEDED, sealed_password=""
    )

    pending.refresh_from_db()
    assert pending.status == Status.SUCCEEDED


# --- Refusals are audited, pending work in a deleted domain is stuck -----------------------------


@pytest.mark.parametrize(
    ("user_fixture", "address", "message"),
    [
        ("charlie", "jane@example.com", "You may not open requests for example.com."),
        ("alice", "jane@unmanaged.example", "unmanaged.example is not a domain Maildesk manages."),
    ],
)
def test_a_refused_submission_leaves_an_audit_row(request, user_fixture, address, message):
    user = request.getfixturevalue(user_fixture)
    request.getfixturevalue("example_com")

    with pytest.raises(ApplicationError, match=message):
        submit_mailbox(user, address)

    refused = AuditEvent.objects.get(action="request.submit_refused")
    assert (refused.actor, refused.target, refused.outcome, refused.message) == (
        user, address, "refused", message
    )  # fmt: skip
    assert ProvisioningRequest.objects.count() == 0


def test_a_duplicate_submission_leaves_an_audit_row(alice):
    first = submit_mailbox(alice)

    with pytest.raises(ApplicationError, match=first.code):
        submit_mailbox(alice)

    assert AuditEvent.objects.filter(action="request.submit_refused", actor=alice).count() == 1


def test_nothing_pending_in_a_deleted_domain_can_be_approved(alice, bob, example_com):
    pending = submit_mailbox(alice)
    example_com.is_active = False
    example_com.save()

    with pytest.raises(ApplicationError):
        services.request_approve(request=pending, actor=bob)

    pending.refresh_from_db()
    assert pending.status == Status.PENDING
