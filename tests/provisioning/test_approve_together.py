"""Approving a ticket's requests together: exactly what the approver reviewed, or nothing."""

import logging
import threading
import time

import pytest
from django.db import DatabaseError, connection, transaction

from apps.accounts.models import Delegation, MailDomain
from apps.audit.models import AuditEvent
from apps.core.exceptions import ApplicationError
from apps.provisioning import execution, selectors, services, tasks, views
from apps.provisioning.models import ProvisioningRequest
from apps.provisioning.publishing import EXECUTE_TOGETHER_TASK
from apps.provisioning.selectors import LARGEST_APPROVAL, awaiting_together, may_decide
from tests.conftest import APPROVER, REQUESTER, make_user, require_postgresql
from tests.helpers import actions, logged_in, open_mailbox, verify_audit

pytestmark = pytest.mark.django_db

Status = ProvisioningRequest.Status
LIST = "/requests/"
APPROVE_TOGETHER = "/requests/approve-together/"
NOT_UNDERSTOOD = "That approval was not understood; nothing was approved."


def open_mailboxes(requester, count, *, ticket="HD-7", first=0) -> list[ProvisioningRequest]:
    return [
        open_mailbox(requester, f"new{n}@example.com", ticket=ticket)
        for n in range(first, first + count)
    ]


def statuses(requests) -> list[str]:
    return [ProvisioningRequest.objects.get(pk=request.pk).status for request in requests]


def published_ids(published) -> list[int]:
    messages = published()
    assert {task for task, _, _ in messages} <= {EXECUTE_TOGETHER_TASK}
    return [request_id for _, (ids,), _ in messages for request_id in ids]


def ids(requests) -> list[int]:
    return [request.pk for request in requests]


def approve_together(actor, requests, ticket="HD-7", **kwargs) -> int:
    return services.requests_approve_together(
        actor=actor, ticket=ticket, reviewed=ids(requests), **kwargs
    )


# --- The service --------------------------------------------------------------------------------


def test_an_approver_approves_what_they_reviewed_each_audited_and_published(
    alice, bob, published, django_capture_on_commit_callbacks
):
    opened = open_mailboxes(alice, 3)

    with django_capture_on_commit_callbacks(execute=True):
        approved = approve_together(bob, opened, ip="192.0.2.9")

    assert approved == 3
    assert statuses(opened) == [Status.QUEUED] * 3
    assert set(ProvisioningRequest.objects.values_list("decided_by", flat=True)) == {bob.pk}
    rows = AuditEvent.objects.filter(action="request.approved").order_by("id")
    assert [row.request_code for row in rows] == [request.code for request in opened]
    assert {(row.actor_label, row.actor_ip, row.details["together"]) for row in rows} == {
        ("bob", "192.0.2.9", 3)
    }
    assert published_ids(published) == ids(opened)
    assert verify_audit()[0] == 0


def test_what_awaits_together_is_what_each_may_be_decided_alone(alice, bob, dave, carol, root):
    """The set approved together follows `may_decide`, the rule of approving alone: not one's
    own, not another domain's, not a domain no longer managed, not a new domain without the
    grant (an approver of a domain's name is not a new-domain approver)."""
    old = MailDomain.objects.create(name="old.example", is_active=True)
    eve = make_user("eve", domains={old: [APPROVER]})
    fay = make_user("fay", domains={old: [REQUESTER]})
    opened = open_mailboxes(alice, 2) + open_mailboxes(dave, 1, first=5)
    opened += [
        open_mailbox(fay, address, ticket="HD-7") for address in ("a@old.example", "b@old.example")
    ]
    MailDomain.objects.filter(name="old.example").update(is_active=False)
    new_domain = services.request_submit(
        requester=alice, kind="create_domain", target="old.example", ticket="HD-7",
        parameters={}, reason="back again",
    )  # fmt: skip
    # A new domain's name that eve approves in once it is managed: still not hers to approve.
    fresh_domain = services.request_submit(
        requester=alice, kind="create_domain", target="fresh.example", ticket="HD-7",
        parameters={}, reason="new customer",
    )  # fmt: skip
    fresh = MailDomain.objects.create(name="fresh.example", is_active=True)
    Delegation.objects.create(user=eve, domain=fresh, role=APPROVER)
    opened += [new_domain, fresh_domain]

    for approver in (alice, bob, dave, carol, eve, root):
        together = awaiting_together(approver, "HD-7")
        alone = [r for r in opened if may_decide(approver, r) and r.requested_by_id != approver.pk]
        assert ids(together) == ids(alone), approver.username


def test_an_approver_of_a_domain_no_longer_managed_approves_nothing_of_it_together(db):
    old = MailDomain.objects.create(name="old.example", is_active=True)
    eve = make_user("eve", domains={old: [APPROVER]})
    fay = make_user("fay", domains={old: [REQUESTER]})
    opened = [open_mailbox(fay, "a@old.example", ticket="HD-5")]
    MailDomain.objects.filter(pk=old.pk).update(is_active=False)

    with pytest.raises(ApplicationError, match=r"0 now, 1 then"):
        approve_together(eve, opened, ticket="HD-5")
    assert statuses(opened) == [Status.PENDING]


def test_own_requests_and_other_domains_are_not_the_approvers_to_approve(alice, dave, carol):
    others = open_mailboxes(alice, 2)
    (own,) = open_mailboxes(dave, 1, first=5)

    with pytest.raises(ApplicationError, match=r"2 now, 3 then"):
        approve_together(dave, [*others, own])  # his own among them: refused, all of them
    assert statuses([*others, own]) == [Status.PENDING] * 3
    assert approve_together(dave, others) == 2
    assert statuses([*others, own]) == [Status.QUEUED, Status.QUEUED, Status.PENDING]
    # carol approves in other.org only: none of these await her.
    with pytest.raises(ApplicationError, match=r"0 now, 1 then"):
        approve_together(carol, [own])
    assert statuses([own]) == [Status.PENDING]


def test_requests_opened_after_the_review_wait_for_theirs(
    alice, bob, published, django_capture_on_commit_callbacks
):
    reviewed = open_mailboxes(alice, 2)
    later = open_mailboxes(alice, 1, first=2)

    with django_capture_on_commit_callbacks(execute=True):
        approve_together(bob, reviewed)

    assert statuses(reviewed + later) == [Status.QUEUED, Status.QUEUED, Status.PENDING]
    assert published_ids(published) == ids(reviewed)


def test_a_request_not_shown_among_those_reviewed_approves_nothing(alice, bob):
    opened = open_mailboxes(alice, 3)

    with pytest.raises(ApplicationError, match=r"3 now, 2 then"):
        approve_together(bob, [opened[0], opened[2]])  # the middle one was not reviewed

    assert statuses(opened) == [Status.PENDING] * 3


def test_a_set_that_changed_since_the_review_approves_nothing_and_says_so(
    alice, bob, django_capture_on_commit_callbacks
):
    opened = open_mailboxes(alice, 3)
    services.request_cancel(request=opened[1], actor=alice)
    audit_rows = AuditEvent.objects.count()

    with (
        django_capture_on_commit_callbacks() as callbacks,
        pytest.raises(ApplicationError, match=r"changed since you looked \(2 now, 3 then\)"),
    ):
        approve_together(bob, opened)

    assert statuses(opened) == [Status.PENDING, Status.CANCELLED, Status.PENDING]
    assert callbacks == []
    refusal = AuditEvent.objects.get(action="request.approve_refused")
    assert (refusal.actor_label, refusal.outcome) == ("bob", AuditEvent.Outcome.REFUSED)
    assert refusal.details == {"ticket": "HD-7", "reviewed": 3, "found": 2}
    assert AuditEvent.objects.count() == audit_rows + 1


@pytest.mark.parametrize("count", [0, LARGEST_APPROVAL + 1])
def test_a_count_out_of_bounds_is_refused_before_anything_is_read(
    alice, bob, count, django_assert_num_queries
):
    (opened,) = open_mailboxes(alice, 1)

    with (
        django_assert_num_queries(0),
        pytest.raises(ApplicationError, match="Between 1 and"),
    ):
        services.requests_approve_together(
            actor=bob, ticket="HD-7", reviewed=list(range(opened.pk, opened.pk + count))
        )
    assert statuses([opened]) == [Status.PENDING]


@pytest.mark.django_db(transaction=True)
def test_a_request_approved_alone_meanwhile_is_not_approved_again_together(alice, bob, dave):
    """Another approver approves one of the ticket's requests alone, holding its row, while bob
    approves the ticket together: bob's approval waits for the row, then finds the set changed.
    (On PostgreSQL; SQLite takes one writer at a time.)"""
    require_postgresql("concurrent approvals need PostgreSQL; SQLite writes one at a time")
    opened = open_mailboxes(alice, 3)
    holding = threading.Event()
    outcome: list[object] = []

    def approve_alone_slowly() -> None:
        with transaction.atomic():
            request = ProvisioningRequest.objects.select_for_update().get(pk=opened[1].pk)
            holding.set()
            wait_until_someone_waits_for_a_lock()  # bob's approval together, for this row
            services.request_approve(request=request, actor=dave)
        connection.close()

    def approve_all() -> None:
        holding.wait(5)
        try:
            outcome.append(approve_together(bob, opened))
        except ApplicationError as error:
            outcome.append(error.message)
        connection.close()

    threads = [threading.Thread(target=approve_alone_slowly), threading.Thread(target=approve_all)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()

    assert len(outcome) == 1
    assert "2 now, 3 then" in str(outcome[0])
    assert statuses(opened) == [Status.PENDING, Status.QUEUED, Status.PENDING]
    approvals = AuditEvent.objects.filter(action="request.approved", request_code=opened[1].code)
    assert list(approvals.values_list("actor_label", flat=True)) == ["dave"]


def wait_until_someone_waits_for_a_lock() -> None:
    """Until another session of this database waits for a row lock (at most 5 s)."""
    deadline = time.monotonic() + 5
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            # pg_locks, not pg_stat_activity: that one is read once per transaction.
            cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
            if cursor.fetchone()[0]:
                return
            time.sleep(0.02)
    raise AssertionError("nobody waited for the row lock")


# --- The worker's side: one message, several requests ------------------------------------------


class FailingStatements:
    """A database that fails some statements of this connection (`connection.execute_wrapper`):
    the statements matching `fails(sql, params)`, `times` times (None: every time)."""

    def __init__(self, fails, times: int | None = None) -> None:
        self.fails = fails
        self.times = times
        self.failed = 0

    def __call__(self, execute, sql, params, many, context):
        if self.fails(sql, params or ()) and (self.times is None or self.failed < self.times):
            self.failed += 1
            raise DatabaseError("the database went away")
        return execute(sql, params, many, context)


def errors_logged(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


def each_created_once(requests) -> dict[str, int]:
    """The emulator's count of creations when each of `requests` made its mailbox once."""
    return {f"user:{request.target}": 1 for request in requests}


def recording_success_of(request):
    # The successes' parameters: two times, the message, then (id, attempt) pairs.
    return lambda sql, params: "SET status = 'succeeded'" in sql and request.pk in params[3::2]


def claiming(request):
    # The claim's parameters: the ids (claimed, and those claimed ahead) and times.
    return lambda sql, params: "SET status = 'running'" in sql and request.pk in params


def assert_only_the_second_left_running(opened, caplog) -> None:
    """The others of the message succeeded; the second, claimed, is left to its lease (then the
    sweeper takes it over), and the log says so."""
    second = opened[1]
    assert statuses(opened) == [Status.SUCCEEDED, Status.RUNNING, Status.SUCCEEDED]
    assert actions(second)[-1] == "api.call"
    assert errors_logged(caplog) == [
        f"Request {second.pk}: its attempt failed before its outcome was recorded; the sweeper "
        "takes it over"
    ]


class Writes:
    """What the worker's writer is given, transaction by transaction: a list per batch of
    (recorded id, claimed id) per write."""

    def __init__(self, monkeypatch) -> None:
        self.write = execution._writes._write_batch
        self.seen: list[list[tuple[int | None, int | None]]] = []
        monkeypatch.setattr(execution._writes, "_write_batch", self)

    def __call__(self, writes):
        self.seen.append(
            [(write.record[0].pk if write.record else None, write.claim) for write in writes]
        )
        return self.write(writes)


def test_a_message_claims_one_request_ahead_and_records_each_outcome_with_a_claim(
    alice, bob, mail_server, monkeypatch
):
    first, second, third, fourth = opened = open_mailboxes(alice, 4)
    approve_together(bob, opened)
    writes = Writes(monkeypatch)

    tasks.execute_requests.run(ids(opened))

    # While a request is called, the claim of the one after it is written (alone here, at
    # once: a worker thread with no others writing).
    assert writes.seen == [
        [(None, first.pk), (None, second.pk)],
        [(first.pk, third.pk)], [(second.pk, fourth.pk)], [(third.pk, None)], [(fourth.pk, None)],
    ]  # fmt: skip
    assert statuses(opened) == [Status.SUCCEEDED] * 4
    assert mail_server.emulator.stats()["created"] == each_created_once(opened)
    for request in opened:
        assert actions(request) == [
            "request.submitted", "request.approved", "api.call", "api.succeeded",
        ]  # fmt: skip
    assert "intact" in verify_audit()[1]


def test_an_outcome_and_the_claim_after_next_commit_as_one(alice, bob, mail_server):
    require_postgresql("the transaction of a row is PostgreSQL's xmin")
    first, second, third = opened = open_mailboxes(alice, 3)
    approve_together(bob, opened)

    tasks.execute_requests.run(ids(opened))

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT request_code, action, xmin::text FROM audit_auditevent "
            "WHERE action LIKE 'api.%%' ORDER BY id"
        )
        rows = cursor.fetchall()
    assert [(code, action) for code, action, _ in rows] == [
        (first.code, "api.call"), (second.code, "api.call"),
        (first.code, "api.succeeded"), (third.code, "api.call"),
        (second.code, "api.succeeded"), (third.code, "api.succeeded"),
    ]  # fmt: skip
    transactions = [xmin for _, _, xmin in rows]
    assert transactions[0] == transactions[1]  # the first two claims
    assert transactions[2] == transactions[3]  # first's outcome with third's claim
    assert len(set(transactions)) == 4


def test_an_outcome_that_fails_with_a_claim_is_written_alone_then_the_claim(
    alice, bob, mail_server, caplog, monkeypatch
):
    first, second, third = opened = open_mailboxes(alice, 3)
    approve_together(bob, opened)
    once = FailingStatements(recording_success_of(first), times=1)
    writes = Writes(monkeypatch)

    with connection.execute_wrapper(once):
        tasks.execute_requests.run(ids(opened))

    assert once.failed == 1
    assert writes.seen == [
        [(None, first.pk), (None, second.pk)],
        [(first.pk, third.pk)],  # the write that failed, learnt after the second's call
        [(second.pk, None)],
        [(first.pk, None)], [(None, third.pk)],  # its two halves, one after the other
        [(third.pk, None)],
    ]  # fmt: skip
    assert statuses(opened) == [Status.SUCCEEDED] * 3
    assert mail_server.emulator.stats()["created"] == each_created_once(opened)
    assert actions(first).count("api.succeeded") == 1
    assert actions(third).count("api.call") == 1
    assert errors_logged(caplog) == []


def test_one_request_in_trouble_does_not_strand_the_others_of_its_message(
    alice, bob, mail_server, caplog
):
    opened = open_mailboxes(alice, 3)
    second = opened[1]
    approve_together(bob, opened)

    with connection.execute_wrapper(FailingStatements(recording_success_of(second))):
        tasks.execute_requests.run(ids(opened))

    assert_only_the_second_left_running(opened, caplog)
    assert mail_server.emulator.stats()["created"] == each_created_once(opened)


# The second is claimed alone, in the message's first transaction; the third with the first's
# outcome (then again alone).
@pytest.mark.parametrize("which", [1, 2], ids=["claimed alone", "claimed with an outcome"])
def test_a_request_that_cannot_be_claimed_is_left_queued_and_the_next_runs(
    alice, bob, mail_server, caplog, which
):
    opened = open_mailboxes(alice, 4)
    unclaimed = opened[which]
    approve_together(bob, opened)

    with connection.execute_wrapper(FailingStatements(claiming(unclaimed))):
        tasks.execute_requests.run(ids(opened))

    succeeded, queued = Status.SUCCEEDED, Status.QUEUED
    assert statuses(opened) == [queued if n == which else succeeded for n in range(4)]
    # No call: the sweeper publishes it again.
    assert actions(unclaimed)[-1] == "request.approved"
    assert "user:" + unclaimed.target not in mail_server.emulator.stats()["created"]
    assert errors_logged(caplog) == [
        f"Request {unclaimed.pk}: could not be claimed; the sweeper publishes it again"
    ]


def test_a_bug_in_one_attempt_does_not_strand_the_others_of_its_message(
    alice, bob, mail_server, caplog, monkeypatch
):
    opened = open_mailboxes(alice, 3)
    second = opened[1]
    approve_together(bob, opened)
    unseal = execution.unseal

    def unseal_with_a_bug(token):
        if ProvisioningRequest.objects.filter(pk=second.pk, sealed_password=token).exists():
            raise RuntimeError("a bug")
        return unseal(token)

    monkeypatch.setattr(execution, "unseal", unseal_with_a_bug)

    tasks.execute_requests.run(ids(opened))

    assert_only_the_second_left_running(opened, caplog)


# --- In the browser: the list and the dashboard point to the review, which approves it --------


def test_the_review_lists_exactly_what_awaits_the_approver_and_carries_those_ids(alice, bob, dave):
    opened = open_mailboxes(alice, 3)
    open_mailbox(dave, "dave-own@example.com", ticket="HD-7")  # bob may approve it: listed
    page = logged_in(bob).get(APPROVE_TOGETHER, {"ticket": "HD-7"})

    awaiting = awaiting_together(bob, "HD-7")
    assert [item.pk for item in page.context["awaiting"]] == ids(awaiting)
    assert len(awaiting) == 4
    html = page.content.decode()
    assert f'name="reviewed" value="{",".join(map(str, ids(awaiting)))}"' in html
    assert "Approve all 4" in html
    for request in awaiting:
        assert request.target in html
    assert ids(opened) == ids(awaiting)[:3]


def test_the_list_of_a_ticket_points_its_approver_to_the_review(alice, bob, carol):
    open_mailboxes(alice, 3)

    page = logged_in(bob).get(LIST, {"ticket": "HD-7", "mine": "on"})  # a filter that hides them

    assert page.context["together"] == {"ticket": "HD-7", "count": 3}
    assert f'href="{APPROVE_TOGETHER}?ticket=HD-7"' in page.content.decode()
    for someone in (alice, carol):  # the requester, and an approver of another domain
        page = logged_in(someone).get(LIST, {"ticket": "HD-7"})
        assert page.context["together"] is None
        assert 'id="approve-together"' not in page.content.decode()


def test_the_review_of_a_ticket_with_nothing_awaiting_says_so(alice, carol):
    open_mailboxes(alice, 1)

    answer = logged_in(carol).get(APPROVE_TOGETHER, {"ticket": "HD-7"}, follow=True)

    assert answer.redirect_chain == [(f"{LIST}?ticket=HD-7", 302)]
    assert "No request of HD-7 awaits your approval." in answer.content.decode()


@pytest.mark.parametrize("ticket", ["", "<script>", "HD-7/../x", "x" * 80])
def test_the_review_of_a_malformed_ticket_says_so(bob, ticket):
    answer = logged_in(bob).get(APPROVE_TOGETHER, {"ticket": ticket}, follow=True)

    assert answer.redirect_chain == [(LIST, 302)]
    assert "Choose a ticket to review its requests together." in answer.content.decode()


def test_approving_the_review_queues_them_and_says_how_many(alice, bob):
    opened = open_mailboxes(alice, 3)
    browser = logged_in(bob)
    review = browser.get(APPROVE_TOGETHER, {"ticket": "HD-7"})

    answer = browser.post(
        APPROVE_TOGETHER,
        {"ticket": "HD-7", "reviewed": review.context["reviewed"]},
        follow=True,
    )

    assert answer.redirect_chain == [(f"{LIST}?ticket=HD-7", 302)]
    assert "3 requests of HD-7 approved and queued." in answer.content.decode()
    assert statuses(opened) == [Status.QUEUED] * 3
    assert answer.context["together"] is None  # nothing of HD-7 awaits bob any more


def test_a_stale_review_approves_nothing_and_says_why(alice, bob):
    opened = open_mailboxes(alice, 2)
    browser = logged_in(bob)
    review = browser.get(APPROVE_TOGETHER, {"ticket": "HD-7"})
    services.request_cancel(request=opened[0], actor=alice)

    answer = browser.post(
        APPROVE_TOGETHER, {"ticket": "HD-7", "reviewed": review.context["reviewed"]}, follow=True
    )

    assert answer.redirect_chain == [(f"{APPROVE_TOGETHER}?ticket=HD-7", 302)]
    assert "changed since you looked (1 now, 2 then)" in answer.content.decode()
    assert statuses(opened) == [Status.CANCELLED, Status.PENDING]


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"ticket": "HD-7"},
        {"ticket": "HD-7", "reviewed": ""},
        {"ticket": "HD-7", "reviewed": "last"},
        {"ticket": "HD-7", "reviewed": "1,,2"},
        {"ticket": "HD-7", "reviewed": "0"},
        {"ticket": "HD-7", "reviewed": "-5"},
        {"ticket": "HD-7", "reviewed": "\u0661"},
        {"ticket": "HD-7", "reviewed": "9" * 30},
        {"ticket": "HD-7", "reviewed": ",".join(["1"] * (LARGEST_APPROVAL + 1))},
        {"ticket": "<script>", "reviewed": "1"},
    ],
)
def test_an_approval_not_understood_changes_nothing(alice, bob, data):
    opened = open_mailboxes(alice, 1)
    browser = logged_in(bob)
    audit_rows = AuditEvent.objects.count()

    answer = browser.post(APPROVE_TOGETHER, data, follow=True)

    assert answer.status_code == 200
    assert NOT_UNDERSTOOD in answer.content.decode()
    assert statuses(opened) == [Status.PENDING]
    assert AuditEvent.objects.count() == audit_rows


def test_the_dashboard_points_an_approver_to_the_tickets_awaiting_them(alice, dave):
    open_mailboxes(alice, 3)
    open_mailbox(alice, "single@example.com", ticket="HD-8")
    open_mailboxes(dave, 2, ticket="HD-9", first=10)  # dave's own: not awaiting him

    page = logged_in(dave).get("/")

    assert page.context["awaiting_tickets"] == [{"ticket": "HD-7", "count": 3}]
    assert f'href="{APPROVE_TOGETHER}?ticket=HD-7"' in page.content.decode()


# Added after a read of the whole change: behaviours that had no test.


def test_a_request_of_another_ticket_among_those_reviewed_approves_nothing(alice, bob):
    opened = open_mailboxes(alice, 3)
    (other,) = open_mailboxes(alice, 1, ticket="HD-8", first=3)

    with pytest.raises(ApplicationError, match=r"3 now, 4 then"):
        approve_together(bob, [*opened, other])

    assert statuses([*opened, other]) == [Status.PENDING] * 4


def test_a_full_review_says_more_await_and_a_shorter_one_does_not(alice, bob, monkeypatch):
    open_mailboxes(alice, 3)
    browser = logged_in(bob)

    shorter = browser.get(APPROVE_TOGETHER, {"ticket": "HD-7"})
    monkeypatch.setattr(views, "LARGEST_APPROVAL", 2)
    monkeypatch.setattr(selectors, "LARGEST_APPROVAL", 2)
    full = browser.get(APPROVE_TOGETHER, {"ticket": "HD-7"})

    assert (shorter.context["more"], len(shorter.context["awaiting"])) == (False, 3)
    assert (full.context["more"], len(full.context["awaiting"])) == (True, 2)
    assert "More requests of HD-7 await you" in full.content.decode()


def test_a_database_refusal_of_an_approval_together_says_nothing_was_recorded(
    alice, bob, monkeypatch
):
    opened = open_mailboxes(alice, 2)

    def refuse(**kwargs):
        raise DatabaseError("the database went away")

    monkeypatch.setattr(views.services, "requests_approve_together", refuse)
    answer = logged_in(bob).post(
        APPROVE_TOGETHER,
        {"ticket": "HD-7", "reviewed": ",".join(map(str, ids(opened)))},
        follow=True,
    )

    assert answer.redirect_chain == [(f"{APPROVE_TOGETHER}?ticket=HD-7", 302)]
    assert views.NOT_RECORDED in answer.content.decode()
