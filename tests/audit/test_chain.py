"""The audit log's hash chain: `verify_audit` finds a changed, deleted or inserted row."""

import threading

import pytest
from django.core.management import CommandError
from django.db import connection, transaction

from apps.audit import chain
from apps.audit.models import AuditEvent
from apps.audit.services import audit_record
from tests.conftest import require_postgresql
from tests.helpers import verify_audit as verify

pytestmark = pytest.mark.django_db


def tamper(*statements: tuple[str, list]) -> None:
    """Change rows behind the model's back, as someone with database access would."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_append_only")
        for sql, params in statements:
            cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_event_append_only")


@pytest.fixture
def events(alice):
    written = [
        audit_record(action="request.submitted", actor=alice, ip="2001:DB8::1", target=f"u{i}@x.io",
                     message=f"event {i}", details={"n": i, "nested": {"b": 1, "a": [1.5]}})
        for i in range(5)
    ]  # fmt: skip
    return written


def test_an_untouched_log_is_intact(events):
    status, out, _ = verify()

    assert status == 0
    assert "intact: 5 row(s)" in out
    assert f"Anchor: {events[-1].chain}.{events[-1].pk}:" in out


def test_each_row_links_to_the_one_before(events):
    assert events[0].previous_seal == chain.GENESIS
    assert [e.previous_seal for e in events[1:]] == [e.seal for e in events[:-1]]


def test_a_changed_row_is_named(events):
    tamper(("UPDATE audit_auditevent SET message = %s WHERE id = %s", ["nothing", events[2].pk]))

    status, _, err = verify()

    assert status == 1
    assert f"row {events[2].pk} " in err
    assert "was changed" in err


def test_a_deleted_row_is_found_at_the_row_after_it(events):
    tamper(("DELETE FROM audit_auditevent WHERE id = %s", [events[1].pk]))

    status, _, err = verify()

    assert status == 1
    assert f"row {events[2].pk} " in err
    assert f"does not follow row {events[0].pk}" in err


def test_a_row_inserted_without_the_key_is_found(events, settings):
    forged = AuditEvent(
        action="request.approved", actor_label="mallory", details={}, chain=events[-1].chain
    )
    content = {name: getattr(forged, name) for name in chain.SEALED_FIELDS}
    settings.MAILDESK_AUDIT_KEY = "not-the-real-key"
    forged.previous_seal, forged.seal = events[-1].seal, chain.seal(events[-1].seal, content)
    settings.MAILDESK_AUDIT_KEY = ""
    forged.save()
    audit_record(action="request.cancelled", actor_label="alice")  # life goes on after it

    status, _, err = verify()

    assert status == 1
    assert f"row {forged.pk} " in err
    assert "was changed" in err


def test_a_row_slipped_in_between_is_found(events):
    # A copy of a genuine row, moved between two others: its seal is genuine, its place is not.
    tamper(
        (
            "INSERT INTO audit_auditevent (occurred_at, actor_label, action, outcome, target, "
            "domain, request_code, ticket, message, details, chain, previous_seal, seal) "
            "SELECT occurred_at, actor_label, action, outcome, target, domain, request_code, "
            "ticket, message, details, chain, previous_seal, seal FROM audit_auditevent "
            "WHERE id = %s",
            [events[3].pk],
        ),
    )
    audit_record(action="request.cancelled", actor_label="alice")

    status, _, err = verify()

    assert status == 1
    assert "does not follow" in err or "was changed" in err


@pytest.mark.django_db(transaction=True)
def test_writers_in_parallel_keep_their_chains_whole():
    require_postgresql("parallel writers need PostgreSQL; SQLite writes one at a time")
    errors: list[BaseException] = []

    def write(number: int) -> None:
        try:
            for index in range(20):
                audit_record(action="test.parallel", actor_label=f"t{number}-{index}")
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    status, out, err = verify()
    assert errors == []
    assert status == 0, err
    assert "intact: 160 row(s)" in out


def noted_anchor() -> str:
    out = verify()[1]
    return out.split("Anchor: ")[1].split()[0]


def test_rows_removed_from_the_end_are_found_with_an_earlier_anchor(events, alice):
    anchor = noted_anchor()
    audit_record(action="request.submitted", actor=alice, message="after the note")
    assert verify("--anchor", anchor)[0] == 0

    tamper(("DELETE FROM audit_auditevent WHERE id >= %s", [events[-1].id]))

    status, _, err = verify("--anchor", anchor)
    assert status == 1
    assert f"row {events[-1].id}, the end of chain {events[-1].chain} when the anchor was" in err
    assert verify()[0] == 0  # without the anchor, a shorter log looks whole


@pytest.mark.django_db(transaction=True)
def test_the_end_of_any_one_chain_is_pinned_by_the_anchor(events, alice):
    def on_another_chain() -> None:
        # Pinned: the chain a new thread takes depends on how many threads started before it
        # (in earlier tests too), and could be the main thread's.
        chain._this_thread.chain = (events[-1].chain + 1) % chain.CHAINS
        audit_record(action="x.other", actor=alice)

    other = threading.Thread(target=on_another_chain)
    other.start()
    other.join()
    last_of_other_chain = AuditEvent.objects.get(action="x.other")
    assert last_of_other_chain.chain != events[-1].chain
    audit_record(action="request.submitted", actor=alice)  # the newest row, on the first chain
    anchor = noted_anchor()

    tamper(("DELETE FROM audit_auditevent WHERE id = %s", [last_of_other_chain.id]))

    assert verify()[0] == 0  # the other chain merely looks shorter
    assert verify("--anchor", anchor)[0] == 1


def test_an_anchor_whose_pinned_row_was_replaced_is_refused(events):
    anchor = noted_anchor()
    # Someone holding the key rewrites the newest row under its own id, validly sealed: the
    # chains verify, but the anchor remembers the row's old seal.
    pinned = events[-1]
    forged = AuditEvent(
        action="request.approved", actor_label="mallory", details={}, chain=pinned.chain,
        occurred_at=pinned.occurred_at,
    )  # fmt: skip
    content = {name: getattr(forged, name) for name in chain.SEALED_FIELDS}
    tamper(
        ("DELETE FROM audit_auditevent WHERE id = %s", [pinned.id]),
        (
            "INSERT INTO audit_auditevent (id, occurred_at, actor_label, action, outcome, target, "
            "domain, request_code, ticket, message, details, chain, previous_seal, seal) "
            "VALUES (%s, %s, 'mallory', 'request.approved', 'info', '', '', '', '', '', '{}', "
            "%s, %s, %s)",
            [pinned.id, pinned.occurred_at, pinned.chain, pinned.previous_seal,
             chain.seal(pinned.previous_seal, content)],
        ),
    )  # fmt: skip
    assert verify()[0] == 0  # every chain verifies: the forger had the key

    status, _, err = verify("--anchor", anchor)

    assert status == 1
    assert "the rows that ended the chains when the anchor was taken are not those rows" in err


@pytest.mark.django_db(transaction=True)
def test_a_row_committed_below_the_anchor_after_it_was_taken_is_no_alarm(alice):
    """Writers of different chains do not wait for each other, so a row with a lower id can
    commit after one with a higher id, and after an anchor was taken."""
    require_postgresql("concurrent writers need PostgreSQL; SQLite writes one at a time")
    inserted, release = threading.Event(), threading.Event()

    def slow_writer() -> None:
        try:
            with transaction.atomic():
                audit_record(action="x.slow", actor=alice)  # takes id N, commits later
                inserted.set()
                release.wait(10)
        finally:
            connection.close()

    slow = threading.Thread(target=slow_writer)
    slow.start()
    assert inserted.wait(10)
    fast = threading.Thread(target=audit_record, kwargs={"action": "x.fast", "actor": alice})
    fast.start()
    fast.join()
    anchor = noted_anchor()  # sees the fast row (N + 1) only
    release.set()
    slow.join()

    rows = {row.action: row for row in AuditEvent.objects.filter(action__startswith="x.")}
    assert rows["x.slow"].id < rows["x.fast"].id
    assert rows["x.slow"].chain != rows["x.fast"].chain
    status, out, err = verify("--anchor", anchor)
    assert status == 0, err
    assert "Every row the anchor pinned is still there" in out


def test_a_seal_noted_before_the_log_had_several_chains_still_works_as_an_anchor(events):
    noted = events[-1].seal
    assert verify("--anchor", noted)[0] == 0

    tamper(("DELETE FROM audit_auditevent WHERE id = %s", [events[-1].id]))

    status, _, err = verify("--anchor", noted)
    assert status == 1
    assert f"no row carries the seal {noted}" in err


def test_an_empty_log_has_nothing_to_anchor():
    status, out, _ = verify()
    assert status == 0
    assert "The log is empty: there is nothing to anchor yet." in out


def test_a_malformed_anchor_is_refused_with_a_message(events):
    with pytest.raises(CommandError, match="--anchor takes the value an earlier run printed"):
        verify("--anchor", "yesterday")


@pytest.mark.django_db(transaction=True)
def test_each_thread_writes_to_its_own_chain_and_the_chains_stay_whole(alice):
    def write() -> None:
        for _ in range(3):
            audit_record(action="x.thread", actor=alice)

    threads = [threading.Thread(target=write) for _ in range(3)]
    for thread in threads:
        thread.start()
        thread.join()  # one after the other: SQLite allows one writer

    rows = list(AuditEvent.objects.filter(action="x.thread").order_by("id"))
    assert len({row.chain for row in rows}) == 3
    for number in {row.chain for row in rows}:
        on_chain = [row for row in rows if row.chain == number]
        assert [r.previous_seal for r in on_chain[1:]] == [r.seal for r in on_chain[:-1]]
    assert verify()[0] == 0


def test_a_thread_that_takes_the_chains_in_turn_keeps_each_of_them_whole(alice):
    """A worker process's writer moves to the next chain before each batch."""
    start = chain.chain_of_this_thread()
    turns = chain.CHAINS + 2
    for _ in range(turns):
        audit_record(action="x.turns", actor=alice)
        chain.take_next_chain()
    for _ in range(chain.CHAINS - turns % chain.CHAINS):  # the test's thread back where it was
        chain.take_next_chain()
    assert chain.chain_of_this_thread() == start

    rows = list(AuditEvent.objects.filter(action="x.turns").order_by("id"))
    assert [row.chain for row in rows] == [(start + turn) % chain.CHAINS for turn in range(turns)]
    assert verify()[0] == 0
