"""Changes of state happen only through POST with a valid CSRF token, and are audited."""

import pytest
from django.test import Client

from apps.audit.models import AuditEvent
from apps.provisioning import services
from apps.provisioning.models import ProvisioningRequest

pytestmark = pytest.mark.django_db


@pytest.fixture
def pending(alice):
    return services.request_submit(
        requester=alice, kind="delete_mailbox", target="old@example.com", parameters={},
        ticket="HD-1", reason="leaver",
    )  # fmt: skip


def state() -> tuple:
    return (
        list(ProvisioningRequest.objects.order_by("pk").values()),
        AuditEvent.objects.exclude(action__startswith="auth.").count(),
    )


NEW_MAILBOX = {
    "local_part": "x",
    "domain": "example.com",
    "password": "Csrf-Pa55word!",
    "ticket": "HD-2",
    "reason": "x",
}


# Who posts where, with what; "{code}" and "{pk}" stand for the pending request's.
@pytest.mark.parametrize(
    ("who", "url", "data"),
    [
        ("bob", "/requests/{code}/approve/", {}),
        ("bob", "/requests/{code}/reject/", {"reason": "no"}),
        ("alice", "/requests/{code}/cancel/", {}),
        ("bob", "/requests/{code}/comments/", {"body": "hi"}),
        ("alice", "/requests/new/create-mailbox/", NEW_MAILBOX),
        ("bob", "/requests/approve-together/", {"ticket": "HD-1", "reviewed": "{pk}"}),
    ],
)
def test_a_change_without_a_csrf_token_is_refused(request, pending, who, url, data):
    client = Client(enforce_csrf_checks=True)
    client.force_login(request.getfixturevalue(who))
    url = url.format(code=pending.code)
    data = {name: value.format(pk=pending.pk) for name, value in data.items()}
    before = state()

    answer = client.post(url, data)

    assert answer.status_code == 403
    assert state() == before


def test_with_its_token_the_same_change_goes_through(alice, bob, pending):
    client = Client(enforce_csrf_checks=True)
    client.force_login(bob)
    token = client.get(f"/requests/{pending.code}/").context["csrf_token"]

    client.post(f"/requests/{pending.code}/approve/", {"csrfmiddlewaretoken": str(token)})

    pending.refresh_from_db()
    assert pending.status == "queued"


def test_the_review_of_an_approval_together_changes_nothing(bob, pending, client):
    client.force_login(bob)
    before = state()

    assert client.get("/requests/approve-together/", {"ticket": "HD-1"}).status_code == 200
    assert state() == before


@pytest.mark.parametrize("action", ["approve", "reject", "cancel", "retry", "comments"])
def test_no_change_of_state_answers_a_get(bob, pending, action, client):
    client.force_login(bob)
    before = state()

    assert client.get(f"/requests/{pending.code}/{action}/").status_code == 405
    assert state() == before


def test_self_approval_is_refused_and_audited_for_a_superuser_too(root, example_com):
    mine = services.request_submit(
        requester=root, kind="delete_mailbox", target="mine@example.com", parameters={},
        ticket="HD-3", reason="x",
    )  # fmt: skip
    client = Client()
    client.force_login(root)

    answer = client.post(f"/requests/{mine.code}/approve/", follow=True)

    assert "Nobody can approve a request they made." in answer.content.decode()
    mine.refresh_from_db()
    assert mine.status == "pending"
    refused = AuditEvent.objects.get(action="request.approve_refused")
    assert (refused.actor, refused.outcome) == (root, "refused")
