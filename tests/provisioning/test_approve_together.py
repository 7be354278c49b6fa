"""Approving a ticket's requests together: exactly what the approver reviewed, or nothing."""

import pytest

from apps.audit.models import AuditEvent
from apps.core.exceptions import ApplicationError
from apps.provisioning import services, tasks
from apps.provisioning.models import ProvisioningRequest
from apps.provisioning.publishing import EXECUTE_TOGETHER_TASK
from tests.helpers import PASSWORD, logged_in, verify_audit

pytestmark = pytest.mark.django_db

Status = ProvisioningRequest.Status
LIST = "/requests/"
APPROVE_TOGETHER = "/requests/approve-together/"


def open_mailboxes(requester, count, *, ticket="HD-7", first=0) -> list[ProvisioningRequest]:
    return [
        open_mailbox(requester, f"new{n}@example.com", ticket) for n in range(first, first + count)
    ]


def open_mailbox(requester, address: str, ticket: str) -> ProvisioningRequest:
    return services.request_submit(
        requester=requester, kind="create_mailbox", target=address,
        parameters={"name": address.split("@")[0], "language": "", "quota_mb": None},
        password=PASSWORD, ticket=ticket, reason="new customer",
    )  # fmt: skip


def statuses(requests) -> list[str]:
    return [ProvisioningRequest.objects.get(pk=request.pk).status for request in requests]


def published_ids(published) -> list[int]:
    messages = published()
    assert {task for task, _, _ in messages} <= {EXECUTE_TOGETHER_TASK}
    return [request_id for _, (ids,), _ in messages for request_id in ids]


def test_an_approver_approves_what_they_reviewed_each_audited_and_published(
    alice, bob, published, django_capture_on_commit_callbacks
):
    opened = open_mailboxes(alice, 3)

    with django_capture_on_commit_callbacks(execute=True):
        approved = services.requests_approve_together(
            actor=bob, ticket="HD-7", up_to_id=opened[-1].pk, expected=3, ip="192.0.2.9"
        )

    assert approved == 3
    assert statuses(opened) == [Status.QUEUED] * 3
    assert set(ProvisioningRequest.objects.values_list("decided_by", flat=True)) == {bob.pk}
    rows = AuditEvent.objects.filter(action="request.approved").order_by("id")
    assert [row.request_code for row in rows] == [request.code for request in opened]
    assert {(row.actor_label, row.actor_ip, row.details["together"]) for row in rows} == {
        ("bob", "192.0.2.9", 3)
    }
    assert published_ids(published) == [request.pk for request in opened]
    assert verify_audit()[0] == 0


def test_own_requests_and_other_domains_are_not_the_approvers_to_approve(
    alice, dave, carol, published
):
    others = open_mailboxes(alice, 2)
    (own,) = open_mailboxes(dave, 1, first=5)

    assert services.requests_approve_together(
        actor=dave, ticket="HD-7", up_to_id=own.pk, expected=2
    ) == 2  # fmt: skip

    assert statuses(others) == [Status.QUEUED] * 2
    assert statuses([own]) == [Status.PENDING]
    # carol approves in other.org only: none of these await her.
    with pytest.raises(ApplicationError, match=r"0 now, 1 then"):
        services.requests_approve_together(actor=carol, ticket="HD-7", up_to_id=own.pk, expected=1)
    assert statuses([own]) == [Status.PENDING]


def test_requests_opened_after_the_review_wait_for_theirs(
    alice, bob, published, django_capture_on_commit_callbacks
):
    reviewed = open_mailboxes(alice, 2)
    later = open_mailboxes(alice, 1, first=2)

    with django_capture_on_commit_callbacks(execute=True):
        services.requests_approve_together(
            actor=bob, ticket="HD-7", up_to_id=reviewed[-1].pk, expected=2
        )

    assert statuses(reviewed + later) == [Status.QUEUED, Status.QUEUED, Status.PENDING]
    assert published_ids(published) == [request.pk for request in reviewed]


def test_a_set_that_changed_since_the_review_approves_nothing_and_says_so(
    alice, bob, published, django_capture_on_commit_callbacks
):
    opened = open_mailboxes(alice, 3)
    services.request_cancel(request=opened[1], actor=alice)
    audit_rows = AuditEvent.objects.count()

    with (
        django_capture_on_commit_callbacks() as callbacks,
        pytest.raises(ApplicationError, match=r"changed since you looked \(2 now, 3 then\)"),
    ):
        services.requests_approve_together(
            actor=bob, ticket="HD-7", up_to_id=opened[-1].pk, expected=3
        )

    assert statuses(opened) == [Status.PENDING, Status.CANCELLED, Status.PENDING]
    assert callbacks == []
    refusal = AuditEvent.objects.get(action="request.approve_refused")
    assert (refusal.actor_label, refusal.outcome) == ("bob", AuditEvent.Outcome.REFUSED)
    assert AuditEvent.objects.count() == audit_rows + 1


@pytest.mark.parametrize("expected", [0, -1, services.LARGEST_APPROVAL + 1])
def test_a_count_out_of_bounds_is_refused_before_anything_is_read(alice, bob, expected):
    (opened,) = open_mailboxes(alice, 1)

    with pytest.raises(ApplicationError, match="Between 1 and"):
        services.requests_approve_together(
            actor=bob, ticket="HD-7", up_to_id=opened.pk, expected=expected
        )
    assert statuses([opened]) == [Status.PENDING]


# --- The worker's side: one message, several requests ------------------------------------------


def test_one_request_in_trouble_does_not_strand_the_others_of_its_message(monkeypatch):
    executed = []

    def execute(*, request_id):
        executed.append(request_id)
        if request_id == 2:
            raise ConnectionError("the database went away")

    monkeypatch.setattr(tasks.execution, "request_execute", execute)

    tasks.execute_requests.run([1, 2, 3])

    assert executed == [1, 2, 3]


def test_a_message_of_several_requests_runs_each_attempt(alice, bob, mail_server, published):
    opened = open_mailboxes(alice, 3)
    services.requests_approve_together(actor=bob, ticket="HD-7", up_to_id=opened[-1].pk, expected=3)
    published()

    tasks.execute_requests.run([request.pk for request in opened])

    assert statuses(opened) == [Status.SUCCEEDED] * 3
    assert mail_server.emulator.stats()["created"] == {
        f"user:{request.target}": 1 for request in opened
    }


# --- In the browser: the list of a ticket offers it, the dashboard points there ---------------


def test_the_list_of_a_ticket_offers_its_approver_to_approve_what_it_shows(alice, bob, carol):
    opened = open_mailboxes(alice, 3)

    page = logged_in(bob).get(LIST, {"ticket": "HD-7", "status": "pending"})

    assert page.context["together"] == {"ticket": "HD-7", "count": 3, "up_to": opened[-1].pk}
    html = page.content.decode()
    assert 'id="approve-together"' in html
    assert "Approve all 3" in html
    assert f'name="up_to" value="{opened[-1].pk}"' in html
    for someone in (alice, carol):  # the requester, and an approver of another domain
        page = logged_in(someone).get(LIST, {"ticket": "HD-7"})
        assert page.context["together"] is None
        assert 'id="approve-together"' not in page.content.decode()


def test_approving_together_from_the_list_queues_them_and_says_how_many(alice, bob):
    opened = open_mailboxes(alice, 3)
    browser = logged_in(bob)

    answer = browser.post(
        APPROVE_TOGETHER, {"ticket": "HD-7", "up_to": opened[-1].pk, "expected": 3}, follow=True
    )

    assert answer.redirect_chain == [(f"{LIST}?ticket=HD-7", 302)]
    assert "3 requests of HD-7 approved and queued." in answer.content.decode()
    assert statuses(opened) == [Status.QUEUED] * 3
    assert answer.context["together"] is None  # nothing of HD-7 awaits bob any more


def test_a_stale_page_approves_nothing_and_says_why(alice, bob):
    opened = open_mailboxes(alice, 2)
    services.request_approve(request=opened[0], actor=bob)

    answer = logged_in(bob).post(
        APPROVE_TOGETHER, {"ticket": "HD-7", "up_to": opened[-1].pk, "expected": 2}, follow=True
    )

    assert "changed since you looked (1 now, 2 then)" in answer.content.decode()
    assert statuses(opened) == [Status.QUEUED, Status.PENDING]


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"ticket": "HD-7", "up_to": "last", "expected": "3"},
        {"ticket": "HD-7", "up_to": "1", "expected": "0"},
        {"ticket": "HD-7", "up_to": "-5", "expected": "1"},
        {"ticket": "<script>", "up_to": "1", "expected": "1"},
        {"ticket": "HD-7", "up_to": "1", "expected": str(services.LARGEST_APPROVAL + 1)},
        {"ticket": "HD-7", "up_to": "9" * 30, "expected": "1"},
    ],
)
def test_an_approval_not_understood_changes_nothing(alice, bob, data):
    opened = open_mailboxes(alice, 1)
    browser = logged_in(bob)
    audit_rows = AuditEvent.objects.count()

    answer = browser.post(APPROVE_TOGETHER, data, follow=True)

    assert answer.status_code == 200
    assert "nothing was approved" in answer.content.decode()
    assert statuses(opened) == [Status.PENDING]
    assert AuditEvent.objects.count() == audit_rows


def test_the_dashboard_points_an_approver_to_the_tickets_of_several_requests(alice, bob):
    open_mailboxes(alice, 3)
    open_mailbox(alice, "single@example.com", "HD-8")

    page = logged_in(bob).get("/")

    assert page.context["awaiting_tickets"] == [{"ticket": "HD-7", "count": 3}]
    assert f'href="{LIST}?ticket=HD-7&amp;status=pending"' in page.content.decode()
