"""Threads of one worker process claim together and record together (group commit).

Each thread runs `request_execute` as a task thread of the worker would, against the emulator.
The tests hold the first batch until the other threads are waiting, so that the next batch
certainly holds several requests; the writes themselves are the real ones.
"""

import threading
from collections.abc import Sequence
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from apps.iredadmin.emulator import Fault
from apps.provisioning import execution
from apps.provisioning.group_commit import GroupCommit
from apps.provisioning.models import ProvisioningRequest
from tests.provisioning.test_execution import actions, approved_mailbox

pytestmark = pytest.mark.django_db(transaction=True)

Status = ProvisioningRequest.Status


class Batches:
    """Wraps a GroupCommit's write: records each batch's size, holds the first batch until
    `hold_for` other threads are waiting behind it."""

    def __init__(self, group: GroupCommit, hold_for: int) -> None:
        self.group = group
        self.hold_for = hold_for
        self.write = group._write_batch
        self.sizes: list[int] = []

    def __call__(self, items: Sequence) -> list:
        if not self.sizes:
            for _ in range(500):
                if len(self.group._waiting) >= self.hold_for:
                    break
                threading.Event().wait(0.01)
        self.sizes.append(len(items))
        return self.write(items)


def watch(monkeypatch, group: GroupCommit, hold_for: int) -> Batches:
    batches = Batches(group, hold_for)
    monkeypatch.setattr(group, "_write_batch", batches)
    return batches


def execute_in_threads(request_ids: list[int]) -> None:
    def worker_thread(request_id: int) -> None:
        try:
            execution.request_execute(request_id=request_id)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker_thread, args=(pk,)) for pk in request_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)


def verify_audit() -> str:
    out = StringIO()
    call_command("verify_audit", stdout=out)
    return out.getvalue()


def test_requests_claimed_and_recorded_together_each_get_their_own_call_and_audit_trail(
    alice, bob, mail_server, monkeypatch
):
    requests = [approved_mailbox(alice, bob, f"user{n}@example.com") for n in range(8)]
    claims = watch(monkeypatch, execution._claims, hold_for=7)
    records = watch(monkeypatch, execution._records, hold_for=7)

    execute_in_threads([request.pk for request in requests])

    assert max(claims.sizes) > 1
    assert sum(claims.sizes) == 8
    assert max(records.sizes) > 1
    assert sum(records.sizes) == 8
    created = mail_server.emulator.stats()["created"]
    assert created == {f"user:user{n}@example.com": 1 for n in range(8)}
    for request in requests:
        request.refresh_from_db()
        assert (request.status, request.attempts, request.sealed_password) == (
            Status.SUCCEEDED, 1, ""
        )  # fmt: skip
        assert actions(request) == [
            "request.submitted", "request.approved", "api.call", "api.succeeded",
        ]  # fmt: skip
    assert "intact" in verify_audit()


def test_one_request_delivered_twice_in_the_same_batch_is_called_once(
    alice, bob, mail_server, monkeypatch
):
    twice = approved_mailbox(alice, bob, "twice@example.com")
    other = approved_mailbox(alice, bob, "other@example.com")
    claims = watch(monkeypatch, execution._claims, hold_for=3)

    execute_in_threads([other.pk, twice.pk, twice.pk, other.pk])

    assert claims.sizes[1:] == [3]
    assert mail_server.emulator.stats()["created"] == {
        "user:twice@example.com": 1,
        "user:other@example.com": 1,
    }
    assert mail_server.emulator.stats()["calls"]["POST user"] == 2
    assert actions(twice).count("api.call") == 1
    assert actions(other).count("api.call") == 1


def test_different_outcomes_recorded_together_each_take_their_own_path(
    alice, bob, mail_server, monkeypatch
):
    """A success, a refusal and a transient failure in one record batch."""
    mail_server.emulator.add_mailbox("taken@example.com", "Someone-Else-1!")
    mail_server.emulator.add_fault(
        Fault(kind="status", status=503, method="POST", route="user", target="busy@example.com")
    )
    fine = approved_mailbox(alice, bob, "fine@example.com")
    taken = approved_mailbox(alice, bob, "taken@example.com")
    busy = approved_mailbox(alice, bob, "busy@example.com")
    records = watch(monkeypatch, execution._records, hold_for=2)

    execute_in_threads([fine.pk, taken.pk, busy.pk])

    assert max(records.sizes) > 1
    for request in (fine, taken, busy):
        request.refresh_from_db()
    assert (fine.status, fine.result_code) == (Status.SUCCEEDED, "")
    assert (taken.status, taken.result_code, taken.sealed_password) == (
        Status.FAILED, "ALREADY_EXISTS", ""
    )  # fmt: skip
    assert busy.status == Status.QUEUED
    assert busy.not_before is not None
    assert busy.sealed_password
    assert actions(fine)[-1] == "api.succeeded"
    assert actions(taken)[-1] == "api.failed"
    assert actions(busy)[-1] == "api.retry_scheduled"
    assert "intact" in verify_audit()
