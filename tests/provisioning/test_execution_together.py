"""Threads of one worker process claim together and record together (group commit).

Each thread runs `request_execute` as a task thread of the worker would, against the emulator.
The tests hold the first batch of claims (or of records) until the other threads are waiting,
so that the next batch certainly holds several; the writes themselves are the real ones.
"""

import threading
import time
from collections.abc import Sequence

import pytest
from django.db import connection

from apps.iredadmin.emulator import Fault
from apps.provisioning import execution
from apps.provisioning.execution import _Write as Write
from apps.provisioning.group_commit import GroupCommit
from apps.provisioning.models import ProvisioningRequest
from tests.conftest import require_postgresql
from tests.helpers import PASSWORD, actions, approved_mailbox, verify_audit

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _postgresql() -> None:
    # SQLite takes one writer at a time: another thread's open transaction makes a batch's
    # BEGIN IMMEDIATE fail with "database table is locked" (the worker's database is PostgreSQL).
    require_postgresql("threads writing at once need PostgreSQL; SQLite writes one at a time")


Status = ProvisioningRequest.Status


class Batches:
    """Wraps the writer of a process: counts the claims and the records of each batch, and holds
    the first batch with a claim (a record) until `hold["claim"]` (`hold["record"]`) of them
    have arrived, in it or waiting behind it: the rest are then written in the next batch."""

    def __init__(self, group: GroupCommit, hold: dict[str, int]) -> None:
        self.group = group
        self.hold = dict(hold)
        self.write = group._write_batch
        self.sizes: dict[str, list[int]] = {"claim": [], "record": []}
        self.holding = threading.Event()  # set once the first batch held is being written

    def __call__(self, writes: Sequence) -> list:
        for kind, sizes in self.sizes.items():
            count = sum(getattr(write, kind) is not None for write in writes)
            if count and kind in self.hold:
                expected = self.hold.pop(kind)
                self.holding.set()
                for _ in range(500):
                    if count + self.waiting(kind) >= expected:
                        break
                    threading.Event().wait(0.01)
            if count:
                sizes.append(count)
        return self.write(writes)

    def waiting(self, kind: str) -> int:
        """Writes of this kind waiting behind the batch (claims and records share the queue)."""
        return sum(getattr(slot.item, kind) is not None for slot in list(self.group._waiting))

    @property
    def claims(self) -> list[int]:
        return self.sizes["claim"]

    @property
    def records(self) -> list[int]:
        return self.sizes["record"]


def watch(monkeypatch, hold: dict[str, int]) -> Batches:
    batches = Batches(execution._writes, hold)
    monkeypatch.setattr(execution._writes, "_write_batch", batches)
    return batches


def execute_in_threads(request_ids: list[int], *, after: threading.Event | None = None) -> None:
    """Each id executed by its own thread, as the task threads of one worker process would;
    with `after`, the first thread alone, then the others once `after` is set."""
    errors: list[BaseException] = []

    def worker_thread(request_id: int) -> None:
        try:
            execution.request_execute(request_id=request_id)
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker_thread, args=(pk,)) for pk in request_ids]
    for number, thread in enumerate(threads):
        if number == 1 and after is not None:
            assert after.wait(10)
        thread.start()
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive(), "a worker thread is stuck"
    assert not errors, errors


def test_requests_claimed_and_recorded_together_each_get_their_own_call_and_audit_trail(
    alice, bob, mail_server, monkeypatch
):
    requests = [approved_mailbox(alice, bob, f"user{n}@example.com") for n in range(8)]
    batches = watch(monkeypatch, {"claim": 8, "record": 8})

    execute_in_threads([request.pk for request in requests])

    assert max(batches.claims) > 1
    assert sum(batches.claims) == 8
    assert max(batches.records) > 1
    assert sum(batches.records) == 8
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
    assert "intact" in verify_audit()[1]


def test_one_request_delivered_twice_in_the_same_batch_is_called_once(
    alice, bob, mail_server, monkeypatch
):
    twice = approved_mailbox(alice, bob, "twice@example.com")
    other = approved_mailbox(alice, bob, "other@example.com")
    batches = watch(monkeypatch, {"claim": 4})

    # The first claim is held being written until the three others wait behind it.
    execute_in_threads([other.pk, twice.pk, twice.pk, other.pk], after=batches.holding)

    assert batches.claims == [1, 3]
    assert mail_server.emulator.stats()["created"] == {
        "user:twice@example.com": 1,
        "user:other@example.com": 1,
    }
    assert mail_server.emulator.stats()["calls"]["POST user"] == 2
    assert actions(twice).count("api.call") == 1
    assert actions(other).count("api.call") == 1


def test_successes_recorded_together_keep_their_own_messages(alice, bob, mail_server):
    """Plain successes and ones confirmed by reading back (whose answer was lost before), in
    one record batch."""
    plain = [approved_mailbox(alice, bob, f"plain{n}@example.com") for n in range(2)]
    confirmed = [approved_mailbox(alice, bob, f"again{n}@example.com") for n in range(2)]
    for request in confirmed:  # an earlier attempt created it, and its answer was lost
        mail_server.emulator.add_mailbox(request.target, PASSWORD)
        ProvisioningRequest.objects.filter(pk=request.pk).update(outcome_uncertain=True)
    everyone = plain + confirmed

    claimed = execution._write_together([Write(claim=request.pk) for request in everyone])
    attempted = [(request, execution._attempt(request)) for request in claimed]
    assert all(result.succeeded for _, result in attempted)
    execution._write_together([Write(record=one) for one in attempted])

    for request in plain + confirmed:
        request.refresh_from_db()
        assert request.status == Status.SUCCEEDED
    assert [request.result_message for request in plain] == ["", ""]
    assert {request.result_message for request in confirmed} == {
        "Created by an earlier attempt whose answer was lost (confirmed on the server)."
    }
    assert "intact" in verify_audit()[1]


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
    batches = watch(monkeypatch, {"record": 3})

    execute_in_threads([fine.pk, taken.pk, busy.pk])

    assert max(batches.records) > 1
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
    assert "intact" in verify_audit()[1]


def test_a_thread_calls_its_next_request_while_its_claim_ahead_waits_for_the_writer(
    alice, bob, mail_server, monkeypatch
):
    """A message of three: after the first call, its thread hands in the first's outcome with
    the third's claim and calls the second at once, though the writer is held writing another
    thread's claim; the writer writes what was handed in meanwhile right after. Neither worker
    thread ever writes."""
    first, second, third = message = [
        approved_mailbox(alice, bob, f"m{n}@example.com") for n in range(3)
    ]
    other = approved_mailbox(alice, bob, "other@example.com")
    mail_server.emulator.configure(latency=0.2)  # time for the other thread to start writing
    attempt, write = execution._attempt, execution._writes._write_batch
    second_attempted = threading.Event()
    seen_while_held: list[bool] = []
    first_recorded_by: list[str] = []
    batches_written_by: set[str] = set()

    def attempt_noting_the_second(request):
        if request.pk == second.pk:
            second_attempted.set()  # its call is under way for the next 0.2 s
        return attempt(request)

    def hold_the_others_claim_until_the_second_is_called(writes):
        batches_written_by.add(threading.current_thread().name)
        if any(item.record and item.record[0].pk == first.pk for item in writes):
            first_recorded_by.append(threading.current_thread().name)
        if any(item.claim == other.pk for item in writes) and second_attempted.wait(10):
            queued = [slot.item for slot in list(execution._writes._waiting)]
            seen_while_held.append(
                any(
                    item.claim == third.pk and item.record[0].pk == first.pk
                    for item in queued
                    if item.record
                )
            )
        return write(writes)

    monkeypatch.setattr(execution, "_attempt", attempt_noting_the_second)
    monkeypatch.setattr(
        execution._writes, "_write_batch", hold_the_others_claim_until_the_second_is_called
    )

    def other_thread() -> None:
        try:
            # Once the message's first two claims are written (its first call is under way).
            running = ProvisioningRequest.objects.filter(pk=second.pk, status=Status.RUNNING)
            deadline = time.monotonic() + 10
            while not running.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            execution.request_execute(request_id=other.pk)
        finally:
            connection.close()

    others = threading.Thread(target=other_thread, name="other")
    others.start()
    try:
        execution.requests_execute([request.pk for request in message])
    finally:
        others.join(30)

    # The second's call was under way while the third's claim (with the first's outcome) still
    # waited behind the other thread's write.
    assert seen_while_held == [True]
    assert first_recorded_by == ["maildesk-writer"]
    assert batches_written_by == {"maildesk-writer"}
    for request in [*message, other]:
        request.refresh_from_db()
        assert (request.status, request.attempts) == (Status.SUCCEEDED, 1)
    assert mail_server.emulator.stats()["created"] == {
        f"user:{request.target}": 1 for request in [*message, other]
    }
    assert "intact" in verify_audit()[1]


@pytest.mark.parametrize("prepared", [True, False], ids=["prepared", "not-prepared"])
def test_the_writer_prepares_the_statements_it_runs_again_and_again(
    alice, bob, mail_server, settings, prepared
):
    """Its claims and records are parsed and planned once per connection; nothing else's."""
    settings.MAILDESK_PREPARED_STATEMENTS = prepared
    execution._before_batch()  # what the writer thread runs before each of its batches
    for number in range(7):
        request = approved_mailbox(alice, bob, f"p{number}@example.com")
        (claimed,) = execution._write_together([Write(claim=request.pk)])
        execution._write_together([Write(record=(claimed, execution._attempt(claimed)))])

    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        statements = [row[0] for row in cursor.fetchall()]
    claims = [text for text in statements if "SET status = 'running'" in text]
    successes = [text for text in statements if "SET status = 'succeeded'" in text]
    assert (len(claims), len(successes)) == ((1, 1) if prepared else (0, 0))
