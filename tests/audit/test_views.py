"""The audit log pages (scope, filters, pages, export), its append-only rows, and logins."""

import csv
import html
import io
import json
import re
from datetime import UTC, datetime
from functools import partial
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.audit.models import AppendOnlyError, AuditEvent
from apps.audit.selectors import events_visible_to
from apps.audit.services import audit_record
from apps.provisioning import services
from apps.provisioning.models import ProvisioningRequest
from tests.conftest import USER_PASSWORD, require_postgresql
from tests.helpers import list_address, logged_in, queries_at_sizes

pytestmark = pytest.mark.django_db

Kind = ProvisioningRequest.Kind
OLDER_LINK = re.compile(r'href="\?([^"]*)">Older</a>')
EXPORT_COLUMNS = [
    "id",
    "occurred_at",
    "actor_label",
    "actor_ip",
    "action",
    "outcome",
    "target",
    "domain",
    "request_code",
    "ticket",
    "message",
    "correlation_id",
]


# --- Helpers -----------------------------------------------------------------------------------


def record(
    action: str = "api.call",
    *,
    actor=None,
    actor_label: str | None = None,
    target: str = "",
    domain: str = "",
    ticket: str = "",
    code: str = "",
    outcome: str = AuditEvent.Outcome.INFO,
    message: str = "",
) -> AuditEvent:
    """One event through the audit service; `ticket`/`code` come, as in life, from a request."""
    request = None
    if ticket or code:
        request = SimpleNamespace(
            code=code, target=target, domain=domain, ticket=ticket, correlation_id=None
        )
    return audit_record(
        action=action,
        actor=actor,
        actor_label=actor_label,
        request=request,
        target=target,
        domain=domain,
        outcome=outcome,
        message=message,
    )


def submit(requester, *, kind: str = Kind.CREATE_MAILBOX, target: str = "new.user@example.com"):
    return services.request_submit(
        requester=requester,
        kind=kind,
        target=target,
        parameters={},
        password="Qx9!Distinct-Secret-7734" if kind == Kind.CREATE_MAILBOX else None,
        ticket="HD-1234",
        reason="Setup.",
    )


list_url = partial(list_address, "audit:list")


def shown_ids(response) -> list[int]:
    assert response.status_code == 200
    return [event.pk for event in response.context["page"].items]


def visible(client: Client, **query: str) -> set[int]:
    response = client.get(reverse("audit:list"), query)
    ids = shown_ids(response)
    assert len(ids) < 50, "more than one page: use follow_older_links"
    return set(ids)


def follow_older_links(client: Client, first_url: str) -> tuple[list[int], int]:
    """The ids shown while following "Older" from the first page, and the number of pages."""
    ids, pages, next_url = [], 0, first_url
    while next_url:
        response = client.get(next_url)
        ids += shown_ids(response)
        pages += 1
        older = OLDER_LINK.search(response.content.decode())
        next_url = f"{reverse('audit:list')}?{html.unescape(older.group(1))}" if older else ""
        assert pages < 20, "the Older links never end"
    return ids, pages


def ids(events) -> set[int]:
    return {event.pk for event in events}


def export(client: Client, **query: str):
    return client.get(reverse("audit:export"), query)


def csv_rows(response) -> list[list[str]]:
    body = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(body)))


def at(day: str, clock: str = "12:00") -> datetime:
    return datetime.fromisoformat(f"{day}T{clock}:00").replace(tzinfo=UTC)


def snapshot(event: AuditEvent) -> dict[str, Any]:
    return AuditEvent.objects.filter(pk=event.pk).values().get()


# --- Scope ---------------------------------------------------------------------------------------


@pytest.fixture
def scoped_events(alice, bob, carol, charlie, audrey, root) -> dict[str, set[int]]:
    """Events of several people and domains; the ids each reader is expected to see."""
    clients = {user.username: logged_in(user) for user in (alice, charlie, audrey, root)}
    alice_mailbox = submit(alice)  # request.submitted by alice in example.com
    services.request_approve(request=alice_mailbox, actor=bob)  # by bob, in example.com
    worker_call = record(
        "api.call",
        target="new.user@example.com",
        domain="example.com",
        code=alice_mailbox.code,
        ticket="HD-1234",
    )
    alice_domain = submit(alice, kind=Kind.CREATE_DOMAIN, target="new-company.net")
    services.request_reject(request=alice_domain, actor=bob, reason="Not yet.")
    unrelated_new_domain = record("api.call", target="new-company.net", domain="new-company.net")
    carol_mailbox = submit(carol, target="c@other.org")
    other_org_error = record(
        "api.error",
        target="c@other.org",
        domain="other.org",
        outcome=AuditEvent.Outcome.FAILURE,
        message="Other-org secret",
    )
    bob_login = record("auth.login", actor=bob)
    # In alice's domain, though neither by her nor about her requests.
    example_com_event = record("api.call", target="someone@example.com", domain="example.com")
    alice_codes = [alice_mailbox.code, alice_domain.code]
    alice_sees = ids(
        AuditEvent.objects.filter(actor=alice)  # her logins and submissions
        | AuditEvent.objects.filter(request_code__in=alice_codes)  # bob's decisions, the worker
    ) | {example_com_event.pk}
    assert worker_call.pk in alice_sees
    assert alice_sees.isdisjoint(
        {unrelated_new_domain.pk, other_org_error.pk, bob_login.pk}
        | ids(AuditEvent.objects.filter(request_code=carol_mailbox.code))
    )
    return {
        "clients": clients,
        "all": ids(AuditEvent.objects.all()),
        "alice": alice_sees,
        "charlie": ids(AuditEvent.objects.filter(actor=charlie)),
    }


@pytest.mark.parametrize("reader", ["audrey", "root"])
def test_auditors_and_portal_admins_see_every_event(scoped_events, reader):
    assert visible(scoped_events["clients"][reader]) == scoped_events["all"]


def test_alice_sees_her_actions_her_domain_and_her_requests_only(scoped_events):
    client = scoped_events["clients"]["alice"]
    response = client.get(reverse("audit:list"))

    assert set(shown_ids(response)) == scoped_events["alice"]
    assert "Other-org secret" not in response.content.decode()
    assert "c@other.org" not in response.content.decode()


def test_charlie_sees_only_his_own_login(client, charlie, scoped_events):
    client.post(reverse("login"), {"username": "charlie", "password": USER_PASSWORD})
    logins = AuditEvent.objects.filter(actor=charlie, action="auth.login")

    shown = visible(client)

    assert shown == ids(logins)
    assert len(shown) == 2  # force_login in the fixture, and this one
    assert scoped_events["charlie"] < shown


def test_anonymous_visitors_are_sent_to_the_login_page(client):
    for address in (reverse("audit:list"), reverse("audit:export")):
        response = client.get(address)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


# --- Filters -------------------------------------------------------------------------------------


@pytest.fixture
def assorted(alice, bob, carol) -> dict[str, AuditEvent]:
    success, failure = AuditEvent.Outcome.SUCCESS, AuditEvent.Outcome.FAILURE
    return {
        "submitted": record(
            "request.submitted",
            actor=alice,
            target="a1@example.com",
            domain="example.com",
            ticket="HD-1",
            code="REQ-AAAAAAA1",
            outcome=success,
        ),
        "approved": record(
            "request.approved",
            actor=bob,
            target="a1@example.com",
            domain="example.com",
            ticket="HD-1",
            code="REQ-AAAAAAA1",
            outcome=success,
        ),
        "api_error": record(
            "api.error",
            target="a2@example.com",
            domain="example.com",
            ticket="HD-2",
            code="REQ-AAAAAAA2",
            outcome=failure,
            message="ALREADY_EXISTS",
        ),
        "refused": record(
            "request.cancel_refused",
            actor=alice,
            target="example.com",
            domain="example.com",
            ticket="HD-3",
            code="REQ-AAAAAAA3",
            outcome=AuditEvent.Outcome.REFUSED,
        ),
        "other_org": record(
            "request.submitted",
            actor=carol,
            target="c@other.org",
            domain="other.org",
            ticket="HD-1",
            code="REQ-AAAAAAA4",
            outcome=success,
        ),
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"actor": "alice"}, {"submitted", "refused"}),
        ({"actor": "worker"}, {"api_error"}),
        ({"actor": "nobody"}, set()),
        ({"target": "a1@example.com"}, {"submitted", "approved"}),
        ({"target": " A1@Example.COM "}, {"submitted", "approved"}),
        ({"target": "example.com"}, {"submitted", "approved", "api_error", "refused"}),
        ({"target": "other.org"}, {"other_org"}),
        ({"ticket": "HD-1"}, {"submitted", "approved", "other_org"}),
        ({"action": "request.submitted"}, {"submitted", "other_org"}),
        ({"outcome": "failure"}, {"api_error"}),
        ({"outcome": "refused"}, {"refused"}),
        ({"actor": "alice", "outcome": "success"}, {"submitted"}),
    ],
)
def test_the_auditor_filters_the_log(audrey, assorted, query, expected):
    client = logged_in(audrey)
    shown = visible(client, **query) - ids(AuditEvent.objects.filter(action="auth.login"))

    assert shown == {assorted[name].pk for name in expected}


def test_the_filters_apply_within_the_readers_scope(alice, assorted):
    assert visible(logged_in(alice), ticket="HD-1") == {
        assorted["submitted"].pk,
        assorted["approved"].pk,
    }


@pytest.fixture
def dated(audrey) -> dict[str, AuditEvent]:
    # Written directly: the service stamps the current time, and these need past dates.
    return {
        name: AuditEvent.objects.create(action="api.call", actor_label="worker", occurred_at=when)
        for name, when in [
            ("jan10", at("2024-01-10")),
            ("jan15_early", at("2024-01-15", "00:00")),
            ("jan15_late", at("2024-01-15", "23:59")),
            ("jan20", at("2024-01-20")),
        ]
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"since": "2024-01-12"}, {"jan15_early", "jan15_late", "jan20"}),
        ({"until": "2024-01-15"}, {"jan10", "jan15_early", "jan15_late"}),
        ({"since": "2024-01-15", "until": "2024-01-15"}, {"jan15_early", "jan15_late"}),
        ({"since": "2024-01-16", "until": "2024-01-19"}, set()),
    ],
)
def test_the_date_range_includes_whole_days(audrey, dated, query, expected):
    shown = visible(logged_in(audrey), action="api.call", **query)

    assert shown == {dated[name].pk for name in expected}


def test_an_inverted_date_range_shows_an_error_not_a_500(audrey, dated):
    response = logged_in(audrey).get(
        reverse("audit:list"), {"since": "2024-01-20", "until": "2024-01-10"}
    )

    assert response.status_code == 200
    page = html.unescape(response.content.decode())
    assert "The end of the range is before its start." in page
    assert "Some filters were not understood" in page


@pytest.mark.parametrize(
    "query",
    [
        {"since": "yesterday"},
        {"until": "2024-13-45"},
        {"outcome": "exploded"},
        {"before": "abc"},
        {"before": "-1"},
    ],
)
def test_filters_that_are_not_understood_show_a_message_not_a_500(audrey, query):
    response = logged_in(audrey).get(reverse("audit:list"), query)

    assert response.status_code == 200
    assert "Some filters were not understood" in response.content.decode()


# --- Pages ---------------------------------------------------------------------------------------


def test_keyset_pages_visit_every_event_once_newest_first(audrey):
    client = logged_in(audrey)
    for number in range(120):
        record("api.call", target=f"user{number}@example.com", domain="example.com")
    expected = list(AuditEvent.objects.order_by("-id").values_list("id", flat=True))

    shown, pages = follow_older_links(client, reverse("audit:list"))

    assert shown == expected
    assert len(set(shown)) == len(expected) == 121  # with audrey's login
    assert pages == 3


def test_keyset_pages_of_a_scoped_reader_skip_what_is_outside_the_scope(alice):
    client = logged_in(alice)
    for number in range(60):
        record("api.call", target=f"user{number}@example.com", domain="example.com")
        record("api.call", target=f"user{number}@other.org", domain="other.org")
    expected = list(
        AuditEvent.objects.exclude(domain="other.org").order_by("-id").values_list("id", flat=True)
    )

    shown, pages = follow_older_links(client, reverse("audit:list"))

    assert shown == expected
    assert len(shown) == 61
    assert pages == 2


def test_keyset_pages_keep_the_filters(audrey):
    client = logged_in(audrey)
    for number in range(70):
        record("api.call", target=f"u{number}@example.com", domain="example.com")
        record("api.error", target=f"u{number}@example.com", domain="example.com")
    expected = list(
        AuditEvent.objects.filter(action="api.error").order_by("-id").values_list("id", flat=True)
    )

    shown, pages = follow_older_links(client, list_url(action="api.error"))

    assert shown == expected
    assert pages == 2


def count_queries(client: Client, address: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(address)
    assert response.status_code == 200
    return len(queries)


@pytest.mark.parametrize("reader", ["audrey", "alice"])
def test_a_page_costs_the_same_queries_with_5_and_60_events(request, reader):
    client = logged_in(request.getfixturevalue(reader))
    first = reverse("audit:list")
    for number in range(5):
        record("api.call", target=f"a{number}@example.com", domain="example.com")
    client.get(first)  # warm up
    with_5 = count_queries(client, first)

    for number in range(55):
        record("api.call", target=f"b{number}@example.com", domain="example.com")
    with_60 = count_queries(client, first)
    before = AuditEvent.objects.order_by("-id").values_list("id", flat=True)[20]
    further = count_queries(client, f"{first}?before={before}")

    assert with_5 == with_60 == further


# --- Page sizes ----------------------------------------------------------------------------------


@pytest.fixture
def busy_log(alice, bob, dave, carol) -> None:
    """250 events in example.com by several people and the worker, 50 in other.org."""
    actors = [alice, bob, dave, None]
    for number in range(250):
        record("api.call", actor=actors[number % 4], target=f"u{number}@example.com",
               domain="example.com")  # fmt: skip
    for number in range(50):
        record("api.call", actor=carol, target=f"u{number}@other.org", domain="other.org")


@pytest.mark.parametrize("reader", ["audrey", "bob"])
def test_a_page_costs_the_same_queries_at_size_10_and_100(request, busy_log, reader):
    # bob is scoped (example.com, his own actions and requests); the rows have several actors,
    # so that a query per row (an N+1) would cost 90 more at size 100.
    costs = queries_at_sizes(logged_in(request.getfixturevalue(reader)), list_url)

    assert costs[10] == costs[100]
    assert costs[10][0] == costs[10][1]


@pytest.mark.parametrize("size", ["7", "1000", "abc", "-10", "0", "10.0", "\x00"])
def test_an_invalid_size_says_so_and_shows_the_default_size(audrey, busy_log, size):
    response = logged_in(audrey).get(reverse("audit:list"), {"size": size})

    assert response.status_code == 200
    page = html.unescape(response.content.decode())
    assert "Choose 10, 25, 50 or 100 rows per page; this page shows the default." in page
    assert "Some filters were not understood" in page
    assert len(response.context["page"].items) == 50


def test_the_size_selector_shows_the_size_of_the_page(audrey, busy_log):
    client = logged_in(audrey)
    default = client.get(reverse("audit:list")).content.decode()
    chosen = client.get(list_url(size="25")).content.decode()

    assert '<option value="50" selected>' in default
    assert '<option value="25" selected>' in chosen


def test_the_older_links_keep_the_size(audrey, busy_log):
    client = logged_in(audrey)
    expected = list(AuditEvent.objects.order_by("-id").values_list("id", flat=True))

    shown, pages = follow_older_links(client, list_url(size="100"))

    assert shown == expected
    assert pages == (len(expected) + 99) // 100 == 4


@pytest.mark.parametrize("reader", ["alice", "bob", "carol", "charlie", "root"])
def test_a_readers_pages_hold_exactly_their_scope_once_newest_first(
    request, scoped_events, busy_log, reader
):
    # alice's scope is the union of her actions, example.com and her requests (one of them in
    # a domain she holds no role in): events in several parts must show once, in id order.
    user = request.getfixturevalue(reader)
    client = logged_in(user)
    expected = list(events_visible_to(user).order_by("-id").values_list("id", flat=True))

    shown, _ = follow_older_links(client, list_url(size="25"))

    assert shown == expected
    assert len(expected) > 25 or reader == "charlie"


# --- Export --------------------------------------------------------------------------------------


def test_the_auditor_exports_the_filtered_rows_in_id_order(audrey, assorted):
    response = export(logged_in(audrey), target="example.com")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = csv_rows(response)
    assert rows[0] == EXPORT_COLUMNS
    expected = ["submitted", "approved", "api_error", "refused"]
    assert [int(line[0]) for line in rows[1:]] == [assorted[name].pk for name in expected]
    approved = dict(zip(EXPORT_COLUMNS, rows[2], strict=True))
    assert approved["actor_label"] == "bob"
    assert approved["action"] == "request.approved"
    assert approved["target"] == "a1@example.com"
    assert approved["ticket"] == "HD-1"


def test_the_export_with_no_filter_has_every_event(root, assorted):
    rows = csv_rows(export(logged_in(root)))

    assert [int(line[0]) for line in rows[1:]] == sorted(ids(AuditEvent.objects.all()))


@pytest.mark.parametrize("value", ['=HYPERLINK("http://x.test","y")', "+1+2", "-2+3", "@SUM(A1)"])
def test_the_export_neutralises_spreadsheet_formulas(audrey, value):
    record("auth.login_failed", actor_label=value, message=value)

    rows = csv_rows(export(logged_in(audrey), action="auth.login_failed"))

    exported = dict(zip(EXPORT_COLUMNS, rows[1], strict=True))
    assert exported["actor_label"] == "'" + value
    assert exported["message"] == "'" + value


def test_an_export_with_an_inverted_range_is_refused_not_a_500(audrey):
    response = export(logged_in(audrey), since="2024-01-20", until="2024-01-10")

    assert response.status_code == 400


@pytest.mark.parametrize("reader", ["alice", "charlie"])
def test_only_auditors_export(request, reader, assorted):
    client = logged_in(request.getfixturevalue(reader))

    assert export(client).status_code == 404
    assert b"Export CSV" not in client.get(reverse("audit:list")).content


def test_the_auditor_sees_the_export_link(audrey):
    assert b"Export CSV" in logged_in(audrey).get(reverse("audit:list")).content


# --- Append-only ---------------------------------------------------------------------------------


@pytest.fixture
def event(alice) -> AuditEvent:
    return record("request.submitted", actor=alice, target="a@example.com", domain="example.com")


def test_an_event_cannot_be_saved_again(event):
    before = snapshot(event)
    event.action = "forged"

    with pytest.raises(AppendOnlyError):
        event.save()
    assert snapshot(event) == before


def test_an_event_cannot_be_deleted(event):
    with pytest.raises(AppendOnlyError):
        event.delete()
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_events_cannot_be_updated_in_bulk(event):
    before = snapshot(event)

    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).update(action="forged")
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.update(action="forged")
    assert snapshot(event) == before


def test_events_cannot_be_deleted_in_bulk(event):
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.filter(pk=event.pk).exists()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_auditevent SET action = 'forged' WHERE id = %s",
        "UPDATE audit_auditevent SET message = 'forged'",
        "DELETE FROM audit_auditevent WHERE id = %s",
        "TRUNCATE audit_auditevent",
    ],
)
def test_postgresql_refuses_raw_updates_and_deletes(event, statement):
    require_postgresql("the append-only trigger exists on PostgreSQL only")
    before = snapshot(event)

    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement, [event.pk] if "%s" in statement else None)

    assert snapshot(event) == before


# --- Logins --------------------------------------------------------------------------------------


def test_a_login_through_the_login_page_is_recorded_with_the_ip(client, alice):
    response = client.post(
        reverse("login"),
        {"username": "alice", "password": USER_PASSWORD},
        REMOTE_ADDR="203.0.113.7",
    )

    assert response.status_code == 302
    login = AuditEvent.objects.get(action="auth.login")
    assert login.actor == alice
    assert login.actor_label == "alice"
    assert login.actor_ip == "203.0.113.7"
    assert login.outcome == AuditEvent.Outcome.SUCCESS


@pytest.mark.parametrize("username", ["alice", "mallory"])
def test_a_failed_login_is_recorded_with_the_username_and_no_password(client, alice, username):
    typed = "Wr0ng-Guess-Secret!"

    response = client.post(
        reverse("login"), {"username": username, "password": typed}, REMOTE_ADDR="198.51.100.9"
    )

    assert response.status_code == 200
    failed = AuditEvent.objects.get()
    assert failed.action == "auth.login_failed"
    assert failed.actor is None
    assert failed.actor_label == username
    assert failed.details["username"] == username
    assert failed.actor_ip == "198.51.100.9"
    assert failed.outcome == AuditEvent.Outcome.FAILURE
    stored = json.dumps(snapshot(failed), default=str)
    assert typed not in stored
    assert "Wr0ng" not in stored
    assert "********" not in stored  # not even Django's masked copy of it


def test_the_failed_login_appears_on_the_auditors_page(client, audrey, alice):
    client.post(reverse("login"), {"username": "alice", "password": "nope-Nope-1!"})

    page = logged_in(audrey).get(reverse("audit:list"), {"action": "auth.login_failed"})

    assert len(shown_ids(page)) == 1
    assert "nope-Nope-1!" not in html.unescape(page.content.decode())
