"""Executing approved requests against the emulator (real client, real sockets).

The worker's steps run here in the test process (`request_execute`), as a Celery task would
run them; tests/integration runs the same through a real worker.
"""

import logging
import threading
import time
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from django.db import connection
from django.utils import timezone

from apps.accounts.models import MailDomain
from apps.audit.models import AuditEvent
from apps.iredadmin.client import forget_login_refusals
from apps.iredadmin.config import reset_thread_client
from apps.iredadmin.emulator import LEGACY, Fault
from apps.provisioning import services
from apps.provisioning.execution import (
    AttemptResult,
    _Write,
    _write_together,
    request_execute,
    requests_sweep,
)
from apps.provisioning.models import ProvisioningRequest
from tests.conftest import ADMIN_PASSWORD
from tests.helpers import PASSWORD, actions, approved_mailbox

pytestmark = pytest.mark.django_db

Kind = ProvisioningRequest.Kind
Status = ProvisioningRequest.Status
EXECUTE = "provisioning.execute_request"


def approved(alice, bob, kind, target, parameters=None):
    request = services.request_submit(
        requester=alice, kind=kind, target=target, parameters=parameters or {},
        ticket="HD-2", reason="ticket",
    )  # fmt: skip
    return services.request_approve(request=request, actor=bob)


def make_due(request) -> None:
    """Skip the backoff wait (test setup: the clock, not the code under test)."""
    ProvisioningRequest.objects.filter(pk=request.pk).update(not_before=timezone.now())


def test_a_claimed_request_reads_as_the_orm_reads_it(alice, bob):
    request = approved_mailbox(alice, bob)
    # Values of every kind that comes back converted: dates, booleans, a UUID, JSON.
    ProvisioningRequest.objects.filter(pk=request.pk).update(
        needs_operator=True, operator_wait_since=timezone.now() - timedelta(minutes=3)
    )

    (claimed,) = _write_together([_Write(claim=request.pk)])

    stored = ProvisioningRequest.objects.get(pk=request.pk)
    for field in ProvisioningRequest._meta.concrete_fields:
        mine, theirs = getattr(claimed, field.attname), getattr(stored, field.attname)
        assert (mine, type(mine)) == (theirs, type(theirs)), field.name
    assert claimed.parameters["quota_mb"] == 300
    assert (claimed.status, claimed.attempts) == (Status.RUNNING, 1)
    assert not claimed._state.adding


def test_a_request_claimed_one_attempt_ahead_holds_a_lease_of_two_attempts(alice, bob, settings):
    """Requests run one after the other claim the next but one while the next is attempted:
    its lease covers that attempt and its own (then the sweeper may take it over)."""
    settings.MAILDESK_LEASE_SECONDS = 120
    now, ahead = approved_mailbox(alice, bob), approved_mailbox(alice, bob, "ahead@example.com")

    claimed_now, claimed_ahead = _write_together(
        [_Write(claim=now.pk), _Write(claim=ahead.pk, ahead=True)]
    )

    assert claimed_now.lease_expires_at - claimed_now.updated_at == timedelta(seconds=120)
    assert claimed_ahead.lease_expires_at - claimed_ahead.updated_at == timedelta(seconds=240)
    assert (
        ProvisioningRequest.objects.get(pk=ahead.pk).lease_expires_at
        == claimed_ahead.lease_expires_at
    )


class TestSuccess:
    def test_a_mailbox_is_created_with_its_settings_and_the_password_is_wiped(
        self, alice, bob, mail_server
    ):
        request = approved_mailbox(alice, bob)

        request_execute(request_id=request.pk)

        request.refresh_from_db()
        mailbox = mail_server.emulator.mailbox("jane@example.com")
        assert request.status == Status.SUCCEEDED
        assert (mailbox["name"], mailbox["language"], mailbox["quota"]) == (
            "Jane Doe",
            "fr_FR",
            300,
        )
        assert request.sealed_password == ""
        assert request.finished_at is not None
        assert (request.attempts, request.result_code) == (1, "")

    def test_the_audit_trail_is_written_row_by_row(self, alice, bob, mail_server):
        request = approved_mailbox(alice, bob)

        request_execute(request_id=request.pk)

        rows = list(
            AuditEvent.objects.filter(request_code=request.code)
            .order_by("id")
            .values("action", "actor_label", "outcome", "target", "ticket")
        )
        common = {"target": "jane@example.com", "ticket": "HD-1"}
        assert rows == [
            {"action": "request.submitted", "actor_label": "alice", "outcome": "success", **common},
            {"action": "request.approved", "actor_label": "bob", "outcome": "success", **common},
            {"action": "api.call", "actor_label": "worker", "outcome": "info", **common},
            {"action": "api.succeeded", "actor_label": "worker", "outcome": "success", **common},
        ]
        call = AuditEvent.objects.get(request_code=request.code, action="api.call")
        assert call.details == {"operation": "create_user", "attempt": 1, "reconcile_first": False}

    def test_a_new_domain_is_created_with_every_field_and_becomes_manageable(
        self, alice, bob, mail_server
    ):
        parameters = {
            "name": "Client Ltd", "quota_mb": 20480, "language": "de_DE",
            "default_user_quota_mb": 1024, "max_user_quota_mb": 4096,
            "max_users": 40, "max_aliases": 10,
        }  # fmt: skip
        request = approved(alice, bob, Kind.CREATE_DOMAIN, "client.example", parameters)

        request_execute(request_id=request.pk)

        request.refresh_from_db()
        domain = mail_server.emulator.domain("client.example")
        assert request.status == Status.SUCCEEDED
        assert (domain["description"], domain["maxquota"], domain["mailboxes"]) == (
            "Client Ltd", 20480, 40
        )  # fmt: skip
        assert domain["settings"]["max_user_quota"] == 4096
        assert MailDomain.objects.get(name="client.example").is_active

    def test_deleting_a_domain_removes_it_and_retires_it_in_the_portal(
        self, alice, bob, example_com, mail_server
    ):
        request = approved(alice, bob, Kind.DELETE_DOMAIN, "example.com")

        request_execute(request_id=request.pk)

        request.refresh_from_db()
        example_com.refresh_from_db()
        assert request.status == Status.SUCCEEDED
        assert "example.com" not in mail_server.emulator.accounts()["domains"]
        assert example_com.is_active is False

    def test_deleting_a_mailbox_that_is_already_gone_succeeds(self, alice, bob, mail_server):
        request = approved(alice, bob, Kind.DELETE_MAILBOX, "gone@example.com")

        request_execute(request_id=request.pk)

        request.refresh_from_db()
        assert request.status == Status.SUCCEEDED
        assert mail_server.emulator.stats()["calls"]["DELETE user"] == 1

    def test_a_legacy_server_gets_the_legacy_field_names(self, alice, bob, settings, make_emulator):
        server = make_emulator(LEGACY)
        server.emulator.add_domain("example.com")
        settings.IREDADMIN = {**settings.IREDADMIN, "URL": server.url, "PASSWORD": ADMIN_PASSWORD,
                              "USERNAME": "postmaster@admin.example.net"}  # fmt: skip
        reset_thread_client()
        request = approved_mailbox(alice, bob)

        request_execute(request_id=request.pk)
        reset_thread_client()

        request.refresh_from_db()
        assert request.status == Status.SUCCEEDED
        assert server.emulator.mailbox("jane@example.com")["name"] == "Jane Doe"


class TestRefusals:
    def test_a_foreign_mailbox_fails_at_once_with_the_message_in_plain_words(
        self, alice, bob, mail_server, published
    ):
        mail_server.emulator.add_mailbox("jane@example.com", "Someone-Elses-1!")
        request = approved_mailbox(alice, bob)
        published()

        request_execute(request_id=request.pk)

        request.refresh_from_db()
        assert request.status == Status.FAILED
        assert request.result_code == "ALREADY_EXISTS"
        assert request.result_message == "The address or domain already exists on the mail server."
        assert request.sealed_password == ""
        assert actions(request)[-1] == "api.failed"
        failed = AuditEvent.objects.get(request_code=request.code, action="api.failed")
        assert (failed.message, failed.outcome) == ("ALREADY_EXISTS", "failure")
        assert published() == []  # a refusal is never retried

    def test_a_password_the_server_refuses_keeps_every_code(
        self, alice, bob, mail_server, settings
    ):
        # The server's policy is stricter than the portal was told (per-domain minimum).
        mail_server.emulator.configure(min_password_length=20)
        request = approved_mailbox(alice, bob)

        request_execute(request_id=request.pk)

        request.refresh_from_db()
        assert request.status == Status.FAILED
        assert request.result_code == "PW_SHORTER_THAN_MIN_LENGTH"
        assert "shorter than the server's minimum" in request.result_message

    def test_bad_admin_credentials_make_requests_wait_for_the_operator_without_a_login_storm(
        self, alice, bob, mail_server, settings, caplog
    ):
        settings.IREDADMIN = {**settings.IREDADMIN, "PASSWORD": "Not-The-Password-1!"}
        first, second = (
            approved_mailbox(alice, bob),
            approved_mailbox(alice, bob, "joe@example.com"),
        )

        with caplog.at_level(logging.ERROR):
            request_execute(request_id=first.pk)
            request_execute(request_id=second.pk)

        for request in (first, second):
            request.refresh_from_db()
            assert (request.status, request.needs_operator) == (Status.QUEUED, True)
            assert request.result_code == "INVALID_CREDENTIALS"
            assert "IREDADMIN_PASSWORD" in request.result_message
        # One refused login, not one per request: the second attempt did not try again.
        assert mail_server.emulator.stats()["failed_logins"] == 1
        assert mail_server.emulator.accounts()["users"] == []
        assert "refused Maildesk's configuration" in caplog.text

    def test_a_waiting_request_proceeds_once_the_operator_fixed_the_password(
        self, alice, bob, mail_server, settings
    ):
        right = settings.IREDADMIN["PASSWORD"]
        settings.IREDADMIN = {**settings.IREDADMIN, "PASSWORD": "Not-The-Password-1!"}
        request = approved_mailbox(alice, bob)
        request_execute(request_id=request.pk)

        settings.IREDADMIN = {**settings.IREDADMIN, "PASSWORD": right}
        reset_thread_client()
        forget_login_refusals()  # the refusal window has passed
        make_due(request)
        request_execute(request_id=request.pk)

        request.refresh_from_db()
        assert (request.status, request.needs_operator) == (Status.SUCCEEDED, False)

    def test_waiting_for_the_operator_does_not_use_up_the_attempts(
        self, alice, bob, mail_server, settings
    ):
        settings.MAILDESK_MAX_ATTEMPTS = 1
        mail_server.emulator.configure(allowed_clients=["10.0.0.0/8"])
        request = approved_mailbox(alice, bob)

        for _ in range(3):
            request_execute(request_id=request.pk)
            forget_login_refusals()
            make_due(request)

        request.refresh_from_db()
        assert (request.status, request.needs_operator) == (Status.QUEUED, True)
        assert request.attempts == 3
        waited = AuditEvent.objects.get(
            request_code=request.code, action="api.retry_scheduled", details__attempt=1
        )
        # Retried about once per refused-login window, so each attempt really tries a login.
        assert waited.details["retry_in_seconds"] >= settings.IREDADMIN["LOGIN_RETRY_SECONDS"]

    def test_a_request_fails_once_the_operator_wait_is_over(
        self, alice, bob, mail_server, settings
    ):
        settings.MAILDESK_OPERATOR_WAIT_SECONDS = 0
        mail_server.emulator.configure(allowed_clients=["10.0.0.0/8"])
        request = approved_mailbox(alice, bob)

        request_execute(request_id=request.pk)

        request.refresh_from_db()
        assert (request.status, request.result_code) == (Status.FAILED, "NOT_AUTHORIZED")
        assert request.result_message.startswith("Gave up after waiting 0 min for an operator.")
        assert "RESTful API clients" in request.result_message
        assert request.needs_operator is True

    def test_a_password_sealed_with_a_removed_key_fails_without_calling(
        self, alice, bob, mail_server, settings
    ):
        settings.MAILDESK_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
        request = approved_mailbox(alice, bob)
        settings.MAILDESK_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]

        request_execute(request_id=request.pk)

        request.refresh_from_db()
        assert (request.status, request.result_code) == (Status.FAILED, "ENCRYPTION_KEY_MISSING")
        assert mail_server.emulator.stats()["requests"] == 0

    def test_encryption_keys_that_are_not_keys_make_the_request_wait_for_an_operator(
        self, alice, bob, mail_server, settings
    ):
        request = approved_mailbox(alice, bob)
        settings.MAILDESK_ENCRYPTION_KEYS = ["not-a-fernet-key"]  # a broken deployment

        request_execute(request_id=request.pk)

        request.refresh_from_db()
        assert (request.status, request.result_code, request.needs_operator) == (
            Status.QUEUED, "CONFIGURATION_ERROR", True
        )  # fmt: skip
        assert request.result_message == (
            "Maildesk's encryption keys are not usable: MAILDESK_ENCRYPTION_KEYS holds a value "
            "that is not a Fernet key (32 url-safe base64-encoded bytes)."
        )
        assert request.sealed_password  # kept for when the keys are mended
        assert mail_server.emulator.stats()["requests"] == 0
        assert actions(request)[-1] == "api.retry_scheduled"


class TestTransientTrouble:
    def test_it_retries_later_with_backoff_and_then_succeeds(
        self, alice, bob, mail_server, published, django_capture_on_commit_callbacks
    ):
        mail_server.emulator.add_fault(Fault(kind="status", status=503, route="user"))
        request = approved_mailbox(alice, bob)
        published()

        with django_capture_on_commit_callbacks(execute=True):
            request_execute(request_id=request.pk)

        request.refresh_from_db()
        assert request.status == Status.QUEUED
        assert request.result_code == "HTTP_503"
        assert request.not_before > timezone.now() - timedelta(seconds=1)
        assert request.sealed_password != ""  # kept for the next attempt
        (task, args, eta), *rest = published()
        assert (task, args, rest) == (EXECUTE, [request.pk], [])
        assert eta is not None  # published with a countdown
        retry = AuditEvent.objects.get(request_code=request.code, action="api.retry_scheduled")
        assert retry.message == "HTTP_503"

        make_due(request)
        request_execute(request_id=request.pk)

        request.refresh_from_db()
        assert (request.status, request.attempts) == (Status.SUCCEEDED, 2)
        assert mail_server.emulator.stats()["created"] == {"user:jane@example.com": 1}

    def test_it_gives_up_after_the_last_attempt(self, alice, bob, mail_server, settings):
        settings.MAILDESK_MAX_ATTEMPTS = 2
        mail_server.emulator.add_fault(Fault(kind="status", status=502, route="user", times=0))
        request = approved_mailbox(alice, bob)

        request_execute(request_id=request.pk)
        make_due(request)
        request_execute(request_id=request.pk)

        request.refresh_from_db()
        assert (request.status, request.attempts) == (Status.FAILED, 2)
        assert request.result_message.startswith("Gave up after 2 attempts.")
        assert request.sealed_password == ""
        assert actions(request)[-4:] == [
            "api.call",
            "api.retry_scheduled",
            "api.call",
            "api.failed",
        ]

    def test_a_retry_by_an_approver_starts_a_new_run_of_attempts(
        self, alice, bob, mail_server, settings
    ):
        settings.MAILDESK_MAX_ATTEMPTS = 1
        mail_server.emulator.add_fault(Fault(kind="status", status=500, route="user"))
        request = approved_mailbox(alice, bob)
        request_execute(request_id=request.pk)
        request.refresh_from_db()
        assert request.status == Status.FAILED

        services.request_retry(request=request, actor=bob, password="Another-Pa55word!")
        request_execute(request_id=request.pk)

        request.refresh_from_db()
        assert (request.status, request.attempts) == (Status.SUCCEEDED, 2)

    def test_a_request_is_not_taken_before_its_backoff_ends(self, alice, bob, mail_server):
        request = approved_mailbox(alice, bob)
        ProvisioningRequest.objects.filter(pk=request.pk).update(
            not_before=timezone.now() + timedelta(minutes=5)
        )

        request_execute(request_id=request.pk)

        request.refresh_from_db()
        assert (request.status, request.attempts) == (Status.QUEUED, 0)
        assert mail_server.emulator.stats()["requests"] == 0


class TestNothingTwice:
    def test_a_duplicate_delivery_does_nothing(self, alice, bob, mail_server):
        request = approved_mailbox(alice, bob)
        request_execute(request_id=request.pk)
        calls, rows = mail_server.emulator.stats()["requests"], AuditEvent.objects.count()

        request_execute(request_id=request.pk)

        assert mail_server.emulator.stats()["requests"] == calls
        assert AuditEvent.objects.count() == rows

    def test_an_unapproved_request_is_never_executed(self, alice, mail_server):
        request = services.request_submit(
            requester=alice, kind=Kind.CREATE_MAILBOX, target="jane@example.com",
            parameters={}, password=PASSWORD, ticket="HD-1", reason="x",
        )  # fmt: skip

        request_execute(request_id=request.pk)

        request.refresh_from_db()
        assert request.status == Status.PENDING
        assert mail_server.emulator.stats()["requests"] == 0

    def test_a_lost_answer_is_reconciled_by_reading_back_not_created_twice(
        self, alice, bob, mail_server
    ):
        mail_server.emulator.add_fault(Fault(kind="drop", route="user", effect=True))
        request = approved_mailbox(alice, bob)

        request_execute(request_id=request.pk)
        request.refresh_from_db()
        assert (request.status, request.outcome_uncertain) == (Status.QUEUED, True)
        make_due(request)
        request_execute(request_id=request.pk)

        request.refresh_from_db()
        assert request.status == Status.SUCCEEDED
        assert "earlier attempt" in request.result_message
        stats = mail_server.emulator.stats()
        assert stats["created"] == {"user:jane@example.com": 1}
        assert stats["calls"]["POST verify_password_user"] == 1
        succeeded = AuditEvent.objects.get(request_code=request.code, action="api.succeeded")
        assert succeeded.details["reconciled"] is True

    def test_a_mailbox_that_existed_before_is_not_taken_for_ours(self, alice, bob, mail_server):
        mail_server.emulator.add_mailbox("jane@example.com", "Someone-Elses-1!")
        # The first answer is lost: the outcome looks ambiguous.
        mail_server.emulator.add_fault(Fault(kind="drop", route="user"))
        request = approved_mailbox(alice, bob)

        request_execute(request_id=request.pk)
        make_due(request)
        request_execute(request_id=request.pk)

        request.refresh_from_db()
        assert (request.status, request.result_code) == (Status.FAILED, "ALREADY_EXISTS")
        assert mail_server.emulator.stats()["created"] == {}

    def test_a_worker_that_died_mid_call_is_taken_over_and_reconciled(
        self, alice, bob, mail_server
    ):
        request = approved_mailbox(alice, bob)
        # Setup: a worker claimed it, created the mailbox, and died before recording.
        ProvisioningRequest.objects.filter(pk=request.pk).update(
            status=Status.RUNNING, attempts=1, lease_expires_at=timezone.now() - timedelta(1)
        )
        mail_server.emulator.add_mailbox("jane@example.com", PASSWORD)

        request_execute(request_id=request.pk)

        request.refresh_from_db()
        assert (request.status, request.attempts) == (Status.SUCCEEDED, 2)
        assert mail_server.emulator.stats()["calls"].get("POST user") is None
        call = AuditEvent.objects.get(request_code=request.code, action="api.call")
        assert call.details["reconcile_first"] is True

    def test_a_running_request_with_a_live_lease_is_left_to_its_worker(
        self, alice, bob, mail_server
    ):
        request = approved_mailbox(alice, bob)
        ProvisioningRequest.objects.filter(pk=request.pk).update(
            status=Status.RUNNING, attempts=1, lease_expires_at=timezone.now() + timedelta(60)
        )

        request_execute(request_id=request.pk)

        assert mail_server.emulator.stats()["requests"] == 0

    def test_a_domain_whose_creation_answer_was_lost_is_confirmed_by_its_settings(
        self, alice, bob, mail_server
    ):
        mail_server.emulator.add_fault(Fault(kind="drop", route="domain", method="POST",
                                             effect=True))  # fmt: skip
        request = approved(alice, bob, Kind.CREATE_DOMAIN, "client.example",
                           {"name": "Client", "max_users": 5})  # fmt: skip

        request_execute(request_id=request.pk)
        make_due(request)
        request_execute(request_id=request.pk)

        request.refresh_from_db()
        assert request.status == Status.SUCCEEDED
        assert mail_server.emulator.stats()["created"] == {"domain:client.example": 1}

    def test_a_domain_that_existed_before_fails_without_a_create(self, alice, bob, mail_server):
        mail_server.emulator.add_domain("client.example")
        request = approved(alice, bob, Kind.CREATE_DOMAIN, "client.example")

        request_execute(request_id=request.pk)

        request.refresh_from_db()
        assert (request.status, request.result_code) == (Status.FAILED, "ALREADY_EXISTS")
        assert "POST domain" not in mail_server.emulator.stats()["calls"]


def overtaken(request: ProvisioningRequest, settings, mail_server, *, effect: bool) -> None:
    """Attempt 1's POST answers 1.6 s late (having created the mailbox if `effect`); after
    its 1 s lease, attempt 2 takes the request over and finishes before that answer comes."""
    settings.MAILDESK_LEASE_SECONDS = 1
    mail_server.emulator.add_fault(
        Fault(kind="delay", delay=1.6, effect=effect, route="user", method="POST")
    )

    def first_worker() -> None:
        try:
            request_execute(request_id=request.pk)
        finally:
            connection.close()

    first = threading.Thread(target=first_worker)
    first.start()

    # Once attempt 1's POST is at the server, its claim is committed: reading the request
    # before that could meet the writer thread's transaction, which SQLite's shared in-memory
    # test database refuses ("table is locked") rather than waits for.
    deadline = time.monotonic() + 5
    while not mail_server.emulator.stats()["calls"].get("POST user"):
        assert time.monotonic() < deadline, "attempt 1 never called the server"
        time.sleep(0.01)

    # Until attempt 1's lease has expired while it still waits for its answer (not a fixed
    # wait: a slow start of attempt 1 would leave attempt 2 a lease that still holds).
    def expired() -> bool:
        return ProvisioningRequest.objects.filter(
            pk=request.pk, status=Status.RUNNING, attempts=1, lease_expires_at__lt=timezone.now()
        ).exists()

    deadline = time.monotonic() + 5
    while not expired() and time.monotonic() < deadline:
        time.sleep(0.02)
    request_execute(request_id=request.pk)  # attempt 2
    first.join()
    request.refresh_from_db()


@pytest.mark.django_db(transaction=True)
def test_a_late_result_of_an_overtaken_attempt_is_discarded_and_recorded(
    alice, bob, mail_server, settings
):
    """Attempt 1's late answer must not overwrite the outcome, and the account is created once."""
    request = approved_mailbox(alice, bob)

    overtaken(request, settings, mail_server, effect=False)

    assert (request.status, request.attempts) == (Status.SUCCEEDED, 2)
    assert mail_server.emulator.stats()["created"] == {"user:jane@example.com": 1}
    assert "api.result_discarded" in actions(request)


@pytest.mark.django_db(transaction=True)
def test_a_late_success_of_an_overtaken_attempt_is_discarded_and_recorded(
    alice, bob, mail_server, settings
):
    """Attempt 1 created the mailbox and its success comes late: the successes' fence keeps
    attempt 2's outcome, which found the mailbox by reading back. (Attempt 2 has finished by
    then: this is the fence's status condition; its attempt condition is the next test's.)"""
    request = approved_mailbox(alice, bob)

    overtaken(request, settings, mail_server, effect=True)

    assert (request.status, request.attempts) == (Status.SUCCEEDED, 2)
    assert request.result_message.startswith("Created by an earlier attempt")
    assert mail_server.emulator.stats()["created"] == {"user:jane@example.com": 1}
    assert actions(request)[-1] == "api.result_discarded"


def test_a_success_of_an_attempt_overtaken_while_the_next_one_runs_is_discarded(alice, bob):
    """The successes' fence by attempt: attempt 1's success arrives while attempt 2 holds the
    request (running, as attempt 1 left it): attempt 2's claim stands."""
    queued = approved_mailbox(alice, bob)
    (first,) = _write_together([_Write(claim=queued.pk)])
    ProvisioningRequest.objects.filter(pk=queued.pk).update(attempts=2)  # attempt 2 took over

    _write_together([_Write(record=(first, AttemptResult(succeeded=True)))])

    queued.refresh_from_db()
    assert (queued.status, queued.attempts) == (Status.RUNNING, 2)
    assert actions(queued)[-1] == "api.result_discarded"


class TestSweeper:
    def test_it_republishes_requests_stuck_in_queued_and_with_expired_leases(
        self, alice, bob, mail_server, published, settings
    ):
        settings.MAILDESK_QUEUED_GRACE_SECONDS = 60
        stuck = approved_mailbox(alice, bob, "stuck@example.com")
        abandoned = approved_mailbox(alice, bob, "abandoned@example.com")
        fresh = approved_mailbox(alice, bob, "fresh@example.com")
        long_ago = timezone.now() - timedelta(minutes=10)
        ProvisioningRequest.objects.filter(pk=stuck.pk).update(queued_at=long_ago)
        ProvisioningRequest.objects.filter(pk=abandoned.pk).update(
            status=Status.RUNNING, attempts=1, lease_expires_at=long_ago
        )
        published()

        count = requests_sweep()

        assert count == 2
        assert sorted(args[0] for _, args, _ in published()) == sorted([stuck.pk, abandoned.pk])
        stuck.refresh_from_db()
        assert stuck.queued_at > long_ago  # not re-published again at the next sweep
        assert requests_sweep() == 1  # only the abandoned one, until a worker takes it
        fresh.refresh_from_db()
        assert fresh.status == Status.QUEUED


def test_the_password_reaches_no_task_message_audit_row_or_log(
    alice, bob, mail_server, published, caplog, django_capture_on_commit_callbacks
):
    caplog.set_level(logging.DEBUG)
    with django_capture_on_commit_callbacks(execute=True):
        request = approved_mailbox(alice, bob)
    messages = published()

    request_execute(request_id=request.pk)

    assert messages == [(EXECUTE, [request.pk], None)]
    for row in AuditEvent.objects.all():
        assert PASSWORD not in f"{row.message} {row.details}"
    assert PASSWORD not in caplog.text
    request.refresh_from_db()
    assert PASSWORD not in str(ProvisioningRequest.objects.filter(pk=request.pk).values().get())
