"""The whole pipeline with its real pieces: a Celery worker process, Redis, PostgreSQL, and
the emulator over a real socket. Submit and approve happen here, through the services the
views call; the worker picks the task up from Redis and writes to the same database.

Needs the suite to run on PostgreSQL (`DATABASE_URL=postgres://...`, as CI does) and Redis.
"""

import time
from pathlib import Path

import pytest

from apps.audit.models import AuditEvent
from apps.provisioning import services
from apps.provisioning.models import ProvisioningRequest
from tests import helpers

pytestmark = pytest.mark.django_db(transaction=True)

Status = ProvisioningRequest.Status
PASSWORD = "Integration-Pa55!"


def wait_until_finished(request: ProvisioningRequest, log: Path) -> ProvisioningRequest:
    deadline = time.monotonic() + 30
    while True:
        request.refresh_from_db()
        if request.status in ProvisioningRequest.TERMINAL_STATUSES:
            return request
        assert time.monotonic() < deadline, f"still {request.status}\n{log.read_text()}"
        time.sleep(0.2)


def open_mailbox(alice, target: str, *, ticket: str = "HD-4242") -> ProvisioningRequest:
    return helpers.open_mailbox(
        alice, target, ticket=ticket, password=PASSWORD, ip="192.0.2.10",
        name="Jane Doe", language="de_DE", quota_mb=512,
    )  # fmt: skip


def submit_and_approve(alice, bob) -> ProvisioningRequest:
    request = open_mailbox(alice, "jane@example.com")
    # Committed at once (transactional test): the task is published to Redis on commit.
    return services.request_approve(request=request, actor=bob, ip="192.0.2.20")


def audit_trail(request: ProvisioningRequest) -> list[tuple]:
    return list(
        AuditEvent.objects.filter(request_code=request.code)
        .order_by("id")
        .values_list("action", "actor_label", "actor_ip", "outcome", "target", "ticket", "message")
    )


@pytest.fixture
def worker(start_worker) -> Path:
    return start_worker()


def test_an_approved_mailbox_is_created_by_the_worker(alice, bob, mail_server, worker):
    request = wait_until_finished(submit_and_approve(alice, bob), worker)

    assert request.status == Status.SUCCEEDED, worker.read_text()
    assert request.sealed_password == ""
    mailbox = mail_server.emulator.mailbox("jane@example.com")
    assert (mailbox["name"], mailbox["language"], mailbox["quota"]) == ("Jane Doe", "de_DE", 512)
    assert mail_server.emulator.stats()["created"] == {"user:jane@example.com": 1}
    target, ticket = "jane@example.com", "HD-4242"
    assert audit_trail(request) == [
        ("request.submitted", "alice", "192.0.2.10", "success", target, ticket, ""),
        ("request.approved", "bob", "192.0.2.20", "success", target, ticket, ""),
        ("api.call", "worker", None, "info", target, ticket, ""),
        ("api.succeeded", "worker", None, "success", target, ticket, ""),
    ]
    assert PASSWORD not in worker.read_text()


def test_a_refusal_by_the_server_fails_the_request_with_its_message(
    alice, bob, mail_server, worker
):
    mail_server.emulator.add_mailbox("jane@example.com", "Belongs-To-Someone-1!")

    request = wait_until_finished(submit_and_approve(alice, bob), worker)

    assert request.status == Status.FAILED
    assert request.result_code == "ALREADY_EXISTS"
    assert request.result_message == "The address or domain already exists on the mail server."
    assert request.sealed_password == ""
    target, ticket = "jane@example.com", "HD-4242"
    assert audit_trail(request) == [
        ("request.submitted", "alice", "192.0.2.10", "success", target, ticket, ""),
        ("request.approved", "bob", "192.0.2.20", "success", target, ticket, ""),
        ("api.call", "worker", None, "info", target, ticket, ""),
        ("api.failed", "worker", None, "failure", target, ticket, "ALREADY_EXISTS"),
    ]


def test_a_ticket_approved_together_is_created_by_the_worker_each_with_its_trail(
    alice, bob, mail_server, worker, settings
):
    # Published for one worker thread: 12 requests go out as messages of 8 and 4 (publishing.py).
    settings.MAILDESK_WORKER_THREADS_TOTAL = 1
    targets = [f"starter{n}@example.com" for n in range(12)]
    opened = [open_mailbox(alice, target, ticket="HD-77") for target in targets]

    services.requests_approve_together(
        actor=bob, ticket="HD-77", reviewed=[r.pk for r in opened], ip="192.0.2.20"
    )

    for request in opened:
        request = wait_until_finished(request, worker)
        assert request.status == Status.SUCCEEDED, worker.read_text()
        assert [row[:4] for row in audit_trail(request)] == [
            ("request.submitted", "alice", "192.0.2.10", "success"),
            ("request.approved", "bob", "192.0.2.20", "success"),
            ("api.call", "worker", None, "info"),
            ("api.succeeded", "worker", None, "success"),
        ]
    assert mail_server.emulator.stats()["created"] == {f"user:{target}": 1 for target in targets}
