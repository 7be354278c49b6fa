"""The request pages: scope, forms, secrets, actions, detail, status, dashboard and list."""

import html
import random
import re
from functools import partial
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.provisioning import services
from apps.provisioning.models import ProvisioningRequest, RequestComment
from apps.provisioning.selectors import requests_visible_to
from tests.helpers import list_address, logged_in, queries_at_sizes

pytestmark = pytest.mark.django_db

Kind = ProvisioningRequest.Kind
Status = ProvisioningRequest.Status

MAILBOX_PASSWORD = "Qx9!Distinct-Secret-7734"
NEW_PASSWORD = "Rw4#Second-Secret-5521"
EXECUTE_TASK = "provisioning.execute_request"
NO_CACHE = ("no-cache", "no-store", "max-age=0")
CODE_LINK = re.compile(r'href="/requests/(REQ-[0-9A-Z]+)/"')
OLDER_LINK = re.compile(r'href="\?([^"]*)">Older</a>')


# --- Helpers -------------------------------------------------------------------------------------


def submit(
    requester,
    *,
    kind: str = Kind.CREATE_MAILBOX,
    target: str = "new.user@example.com",
    ticket: str = "HD-1234",
    **parameters: Any,
) -> ProvisioningRequest:
    """Open a request through the service, as the form would."""
    return services.request_submit(
        requester=requester,
        kind=kind,
        target=target,
        parameters=parameters,
        password=MAILBOX_PASSWORD if kind == Kind.CREATE_MAILBOX else None,
        ticket=ticket,
        reason="New starter in accounting.",
    )


def set_state(item: ProvisioningRequest, status: str, **fields: Any) -> ProvisioningRequest:
    """Put a request in a state directly (setup only); a finished request holds no secret."""
    if status in ProvisioningRequest.TERMINAL_STATUSES:
        fields.setdefault("sealed_password", "")
        fields.setdefault("finished_at", timezone.now())
    ProvisioningRequest.objects.filter(pk=item.pk).update(status=status, **fields)
    item.refresh_from_db()
    return item


def make_failed(
    item: ProvisioningRequest,
    message: str = "The mailbox exists already.",
    code: str = "ALREADY_EXISTS",
) -> ProvisioningRequest:
    return set_state(item, Status.FAILED, result_code=code, result_message=message, attempts=1)


def url(name: str, item: ProvisioningRequest | str) -> str:
    code = item if isinstance(item, str) else item.code
    return reverse(f"provisioning:{name}", kwargs={"code": code})


def create_url(slug: str) -> str:
    return reverse("provisioning:create", kwargs={"kind_slug": slug})


def text(response) -> str:
    """The page as a person reads it: entities decoded."""
    return html.unescape(response.content.decode())


def row(item: ProvisioningRequest) -> dict[str, Any]:
    return ProvisioningRequest.objects.filter(pk=item.pk).values().get()


def shown_codes(response) -> list[str]:
    return CODE_LINK.findall(response.content.decode())


def shown_codes_in(fragment: str) -> list[str]:
    return CODE_LINK.findall(fragment)


def section(response, heading_id: str) -> str:
    """The HTML of the dashboard section labelled by `heading_id` ("" if absent)."""
    page = response.content.decode()
    match = re.search(
        rf'<section[^>]*aria-labelledby="{heading_id}"[^>]*>(.*?)</section>', page, re.S
    )
    return match.group(1) if match else ""


def assert_no_server_error(response) -> None:
    assert response.status_code < 500
    assert b"Traceback" not in response.content


def mailbox_data(**overrides: str) -> dict[str, str]:
    data = {
        "local_part": "new.user",
        "domain": "example.com",
        "password": MAILBOX_PASSWORD,
        "name": "New User",
        "language": "",
        "quota_mb": "",
        "ticket": "HD-1234",
        "reason": "New starter in accounting.",
    }
    return {**data, **overrides}


def domain_data(**overrides: str) -> dict[str, str]:
    data = {
        "domain": "new-company.net",
        "name": "New Company Ltd",
        "quota_mb": "0",
        "language": "en_US",
        "default_user_quota_mb": "1024",
        "max_user_quota_mb": "0",
        "max_users": "0",
        "max_aliases": "0",
        "ticket": "HD-1234",
        "reason": "Acquisition.",
    }
    return {**data, **overrides}


def delete_domain_data(**overrides: str) -> dict[str, str]:
    data = {
        "domain": "example.com",
        "confirm": "example.com",
        "ticket": "HD-1234",
        "reason": "Customer left.",
    }
    return {**data, **overrides}


def delete_mailbox_data(**overrides: str) -> dict[str, str]:
    data = {
        "local_part": "old.user",
        "domain": "example.com",
        "confirm": "old.user@example.com",
        "ticket": "HD-1234",
        "reason": "Left the company.",
    }
    return {**data, **overrides}


def bulk_requests(
    requester,
    count: int,
    *,
    domain: str = "example.com",
    prefix: str = "user",
    kind: str = Kind.CREATE_MAILBOX,
) -> None:
    ProvisioningRequest.objects.bulk_create(
        ProvisioningRequest(
            kind=kind,
            domain=domain,
            target=f"{prefix}{number}@{domain}",
            ticket=f"HD-{number}",
            reason="Bulk setup.",
            requested_by=requester,
        )
        for number in range(count)
    )


def follow_older_links(client: Client, first_url: str) -> tuple[list[str], int]:
    """Every code shown while following "Older" from the first page, and the number of pages."""
    codes, pages, next_url = [], 0, first_url
    while next_url:
        response = client.get(next_url)
        assert response.status_code == 200
        codes += shown_codes(response)
        pages += 1
        older = OLDER_LINK.search(response.content.decode())
        next_url = (
            f"{reverse('provisioning:list')}?{html.unescape(older.group(1))}" if older else ""
        )
        assert pages < 20, "the Older links never end"
    return codes, pages


@pytest.fixture
def pending(alice) -> ProvisioningRequest:
    """alice's create-mailbox request in example.com, awaiting approval."""
    return submit(alice)


# --- 1. Scope ------------------------------------------------------------------------------------

# (URL name, the method it answers, a body that would be valid for someone in scope)
ENDPOINTS = [
    ("detail", "get", {}),
    ("status", "get", {}),
    ("approve", "post", {}),
    ("reject", "post", {"reason": "Not needed."}),
    ("cancel", "post", {}),
    ("retry", "post", {"password": NEW_PASSWORD}),
    ("comment", "post", {"body": "Any news?"}),
]


@pytest.mark.parametrize("outsider_name", ["carol", "charlie"])
@pytest.mark.parametrize(("name", "method", "data"), ENDPOINTS, ids=[e[0] for e in ENDPOINTS])
def test_a_request_outside_the_users_scope_is_404_and_untouched(
    request,
    outsider_name,
    name,
    method,
    data,
    pending,
    mail_server,
    published,
    django_capture_on_commit_callbacks,
):
    outsider = request.getfixturevalue(outsider_name)
    item = make_failed(pending) if name == "retry" else pending
    before = row(item)
    client = logged_in(outsider)

    with django_capture_on_commit_callbacks(execute=True):
        response = getattr(client, method)(url(name, item), data)
        other_method = "post" if method == "get" else "get"
        other = getattr(client, other_method)(url(name, item), data)
        unknown = getattr(client, other_method)(url(name, "REQ-ZZZZZZZZ"), data)

    assert response.status_code == 404
    # The other method answers as it does for a code that does not exist: nothing leaks.
    assert other.status_code == unknown.status_code
    assert other.status_code in (404, 405)
    assert item.code.encode() not in response.content + other.content
    assert row(item) == before
    assert not RequestComment.objects.filter(request=item).exists()
    assert list(
        AuditEvent.objects.filter(request_code=item.code, outcome="success").values_list(
            "action", flat=True
        )
    ) == ["request.submitted"]
    assert published() == []
    assert mail_server.emulator.stats()["requests"] == 0


@pytest.mark.parametrize(("name", "method", "data"), ENDPOINTS, ids=[e[0] for e in ENDPOINTS])
def test_anonymous_visitors_are_sent_to_the_login_page(client, name, method, data, pending):
    before = row(pending)

    response = getattr(client, method)(url(name, pending), data)

    assert response.status_code == 302
    assert response["Location"].startswith(f"{reverse('login')}?next=")
    assert row(pending) == before


@pytest.mark.parametrize(("name", "method", "data"), ENDPOINTS, ids=[e[0] for e in ENDPOINTS])
def test_an_unknown_code_is_404(bob, name, method, data, pending):
    response = getattr(logged_in(bob), method)(url(name, "REQ-ZZZZZZZZ"), data)

    assert response.status_code == 404


def test_carol_reads_her_own_domains_requests_but_not_example_coms(carol, pending):
    other = submit(carol, target="x@other.org")

    assert logged_in(carol).get(url("detail", other)).status_code == 200
    assert logged_in(carol).get(url("detail", pending)).status_code == 404


@pytest.mark.parametrize(
    "slug", ["create-mailbox", "delete-mailbox", "delete-domain", "create-domain"]
)
def test_a_user_without_any_role_cannot_open_any_request_form(charlie, slug):
    client = logged_in(charlie)

    assert client.get(create_url(slug)).status_code == 404
    assert client.post(create_url(slug), mailbox_data()).status_code == 404
    assert not ProvisioningRequest.objects.exists()


def test_an_approver_without_a_requester_role_cannot_open_mailbox_forms(bob):
    assert logged_in(bob).get(create_url("create-mailbox")).status_code == 404
    assert logged_in(bob).get(create_url("create-domain")).status_code == 404


def test_an_unknown_kind_is_404(alice):
    assert logged_in(alice).get(create_url("create-alias")).status_code == 404


def test_alice_may_open_the_create_domain_form(alice):
    assert logged_in(alice).get(create_url("create-domain")).status_code == 200


def test_carols_mailbox_form_offers_only_her_domain(carol, example_com):
    response = logged_in(carol).get(create_url("create-mailbox"))

    assert response.status_code == 200
    assert response.context["form"].fields["domain"].choices == [("other.org", "other.org")]
    assert '<option value="other.org"' in response.content.decode()
    assert '<option value="example.com"' not in response.content.decode()


def test_carol_cannot_open_the_create_domain_form(carol):
    assert logged_in(carol).get(create_url("create-domain")).status_code == 404


# --- 2. Forms ------------------------------------------------------------------------------------

VALID_FORMS = [
    ("create-domain", domain_data, Kind.CREATE_DOMAIN, "new-company.net"),
    ("delete-domain", delete_domain_data, Kind.DELETE_DOMAIN, "example.com"),
    ("create-mailbox", mailbox_data, Kind.CREATE_MAILBOX, "new.user@example.com"),
    ("delete-mailbox", delete_mailbox_data, Kind.DELETE_MAILBOX, "old.user@example.com"),
]


@pytest.mark.parametrize(
    ("slug", "data", "kind", "target"), VALID_FORMS, ids=[f[0] for f in VALID_FORMS]
)
def test_each_form_renders_and_a_valid_post_opens_a_pending_request(
    alice, slug, data, kind, target
):
    client = logged_in(alice)

    page = client.get(create_url(slug))
    response = client.post(create_url(slug), data())

    assert page.status_code == 200
    assert b'name="ticket"' in page.content
    created = ProvisioningRequest.objects.get()
    assert response.status_code == 302
    assert response["Location"] == url("detail", created)
    assert (created.kind, created.target, created.status) == (kind, target, Status.PENDING)
    assert created.requested_by == alice
    assert created.ticket == "HD-1234"
    assert list(
        AuditEvent.objects.filter(request_code=created.code).values_list("action", "actor_label")
    ) == [("request.submitted", "alice")]


def test_the_create_domain_form_stores_every_seed_field(alice):
    data = domain_data(
        quota_mb="10240",
        default_user_quota_mb="512",
        max_user_quota_mb="2048",
        max_users="50",
        max_aliases="-1",
        language="de_DE",
    )

    logged_in(alice).post(create_url("create-domain"), data)

    assert ProvisioningRequest.objects.get().parameters == {
        "name": "New Company Ltd",
        "quota_mb": 10240,
        "language": "de_DE",
        "default_user_quota_mb": 512,
        "max_user_quota_mb": 2048,
        "max_users": 50,
        "max_aliases": -1,
    }


def assert_refused(response, message: str) -> None:
    assert_no_server_error(response)
    assert response.status_code == 200
    assert message in text(response)
    assert not ProvisioningRequest.objects.exists()
    assert not AuditEvent.objects.filter(action="request.submitted").exists()


DOMAIN_ERROR = "Enter a domain name such as example.com"


@pytest.mark.parametrize(
    "domain", ["exa mple.com", "a..b.com", "../x", "example", "-x.com", "x.c", "a/b.com", ""]
)
def test_an_invalid_new_domain_is_refused_with_a_sentence(alice, domain):
    response = logged_in(alice).post(create_url("create-domain"), domain_data(domain=domain))

    assert_refused(response, DOMAIN_ERROR if domain else "This field is required.")


def test_a_domain_already_managed_is_refused(alice, example_com):
    response = logged_in(alice).post(create_url("create-domain"), domain_data(domain="example.com"))

    assert_refused(response, "example.com is already managed by Maildesk.")


@pytest.mark.parametrize("local_part", ["john+tag", "john/x"])
def test_a_new_address_with_plus_or_slash_is_refused(alice, local_part):
    response = logged_in(alice).post(
        create_url("create-mailbox"), mailbox_data(local_part=local_part)
    )

    assert_refused(response, "A new mailbox address cannot contain '+' or '/'.")


@pytest.mark.parametrize("local_part", [".john", "jo..hn", "jo hn", "x" * 65])
def test_a_malformed_local_part_is_refused(alice, local_part):
    response = logged_in(alice).post(
        create_url("create-mailbox"), mailbox_data(local_part=local_part)
    )

    assert_no_server_error(response)
    assert response.context["form"].errors["local_part"]
    assert not ProvisioningRequest.objects.exists()


PASSWORD_RULES = [
    ("Ab1!xyz", "Use at least 8 characters."),  # PW_SHORTER_THAN_MIN_LENGTH
    ("12345678!", "Include a letter."),  # PW_NO_LETTER
    ("abcdefg1!", "Include an upper-case letter."),  # PW_NO_UPPERCASE
    ("Abcdefgh!", "Include a digit."),  # PW_NO_DIGIT_NUMBER
    ("Abcdefgh1", "Include one of #$%&*+-,.:;!=<>'\"?@[]/(){}_`~"),  # PW_NO_SPECIAL_CHAR
    ("Abcdefg1!é", "Use only printable ASCII characters and spaces."),  # PW_NON_ASCII
    ("", "This field is required."),  # PW_EMPTY
]


@pytest.mark.parametrize(("password", "sentence"), PASSWORD_RULES)
def test_a_password_failing_the_policy_gives_its_sentence(alice, password, sentence):
    response = logged_in(alice).post(create_url("create-mailbox"), mailbox_data(password=password))

    assert_refused(response, sentence)


def test_the_password_length_limits_come_from_the_settings(alice, settings):
    settings.IREDADMIN = {
        **settings.IREDADMIN,
        "PASSWORD_MIN_LENGTH": 12,
        "PASSWORD_MAX_LENGTH": 20,
    }
    client = logged_in(alice)

    short = client.post(create_url("create-mailbox"), mailbox_data(password="Abcdefg1!xy"))
    long = client.post(create_url("create-mailbox"), mailbox_data(password="Abcdefg1!" * 3))

    assert "Use at least 12 characters." in text(short)
    assert_refused(long, "Use at most 20 characters.")


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"quota_mb": "-1"}, "quota_mb", "greater than or equal to 0"),
        ({"quota_mb": str(2**31)}, "quota_mb", "less than or equal to 2147483647"),
        ({"quota_mb": "ten"}, "quota_mb", "Enter a whole number."),
        ({"max_users": "-2"}, "max_users", "greater than or equal to -1"),
        (
            {"default_user_quota_mb": "2048", "max_user_quota_mb": "1024"},
            "default_user_quota_mb",
            "The default cannot exceed the largest mailbox quota.",
        ),
        (
            {"quota_mb": "1000", "max_user_quota_mb": "2000", "default_user_quota_mb": "100"},
            "max_user_quota_mb",
            "A mailbox cannot exceed the domain's quota.",
        ),
        (
            {"quota_mb": "1000", "default_user_quota_mb": "2000"},
            "default_user_quota_mb",
            "The default exceeds the domain's quota.",
        ),
    ],
)
def test_domain_quotas_out_of_range_or_inconsistent_are_refused(alice, overrides, field, message):
    response = logged_in(alice).post(create_url("create-domain"), domain_data(**overrides))

    assert_refused(response, message)
    assert response.context["form"].errors[field]


@pytest.mark.parametrize("quota", ["-1", str(2**31), "1.5"])
def test_a_mailbox_quota_out_of_range_is_refused(alice, quota):
    response = logged_in(alice).post(create_url("create-mailbox"), mailbox_data(quota_mb=quota))

    assert_no_server_error(response)
    assert response.context["form"].errors["quota_mb"]
    assert not ProvisioningRequest.objects.exists()


@pytest.mark.parametrize(
    ("ticket", "message"),
    [
        ("", "This field is required."),
        ("not a ticket", "Enter the help-desk ticket reference"),
        ("HD-", "Enter the help-desk ticket reference"),
        ("HD-12; DROP", "Enter the help-desk ticket reference"),
    ],
)
@pytest.mark.parametrize("slug", ["create-mailbox", "create-domain"])
def test_a_missing_or_malformed_ticket_is_refused(alice, slug, ticket, message):
    data = mailbox_data if slug == "create-mailbox" else domain_data

    response = logged_in(alice).post(create_url(slug), data(ticket=ticket))

    assert_refused(response, message)
    assert response.context["form"].errors["ticket"]


def test_the_ticket_format_follows_the_ticket_pattern_setting(alice, settings):
    settings.TICKET_PATTERN = r"INC\d{6}"
    client = logged_in(alice)

    refused = client.post(create_url("create-mailbox"), mailbox_data(ticket="HD-1234"))
    assert_refused(refused, "Enter the help-desk ticket reference")
    accepted = client.post(create_url("create-mailbox"), mailbox_data(ticket="INC123456"))

    assert accepted.status_code == 302
    assert ProvisioningRequest.objects.get().ticket == "INC123456"


@pytest.mark.parametrize(
    ("slug", "data", "message"),
    [
        (
            "delete-domain",
            delete_domain_data(confirm="example.org"),
            "This is not the domain chosen above.",
        ),
        ("delete-domain", delete_domain_data(confirm=""), "This field is required."),
        (
            "delete-mailbox",
            delete_mailbox_data(confirm="old.user@example.org"),
            "This is not the address above.",
        ),
        (
            "delete-mailbox",
            delete_mailbox_data(confirm="old.user"),
            "This is not the address above.",
        ),
    ],
)
def test_a_confirmation_that_does_not_match_is_refused(alice, slug, data, message):
    response = logged_in(alice).post(create_url(slug), data)

    assert_refused(response, message)


@pytest.mark.parametrize(
    ("slug", "data"),
    [
        ("create-mailbox", mailbox_data(domain="other.org")),
        ("delete-mailbox", delete_mailbox_data(domain="other.org", confirm="old.user@other.org")),
        ("delete-domain", delete_domain_data(domain="other.org", confirm="other.org")),
        ("create-mailbox", mailbox_data(domain="nowhere.test")),
    ],
)
def test_a_tampered_domain_outside_the_delegation_is_refused(alice, other_org, slug, data):
    response = logged_in(alice).post(create_url(slug), data)

    assert_refused(response, "Select a valid choice.")
    assert response.context["form"].errors["domain"]


def test_a_second_open_request_for_the_same_target_names_the_open_one(alice, dave, pending):
    response = logged_in(dave).post(create_url("create-mailbox"), mailbox_data())

    assert_no_server_error(response)
    assert response.status_code == 200
    assert f"{pending.code} for new.user@example.com is still open" in text(response)
    assert list(ProvisioningRequest.objects.all()) == [pending]


# --- 3. Secrets ----------------------------------------------------------------------------------


def test_the_new_mailbox_password_appears_on_no_page_after_submission(alice, bob):
    client = logged_in(alice)
    response = client.post(create_url("create-mailbox"), mailbox_data(), follow=True)
    item = ProvisioningRequest.objects.get()
    pages = {"after submit": response}
    for reader_name, reader in [("alice", client), ("bob", logged_in(bob))]:
        for page, address in [
            ("detail", url("detail", item)),
            ("status", url("status", item)),
            ("list", reverse("provisioning:list")),
            ("dashboard", reverse("core:dashboard")),
            ("audit", reverse("audit:list")),
        ]:
            pages[f"{page} for {reader_name}"] = reader.get(address)

    for name, page in pages.items():
        assert page.status_code == 200, name
        assert MAILBOX_PASSWORD not in text(page), name
    assert item.code in text(pages["detail for bob"])
    assert MAILBOX_PASSWORD not in item.sealed_password
    assert not AuditEvent.objects.filter(details__icontains="Distinct-Secret").exists()


def test_a_form_with_an_error_does_not_echo_the_password_back(alice):
    response = logged_in(alice).post(create_url("create-mailbox"), mailbox_data(ticket="bad"))

    assert response.status_code == 200
    assert MAILBOX_PASSWORD not in text(response)
    assert re.search(r'<input type="password" name="password"[^>]*>', response.content.decode())
    assert 'value="new.user"' in response.content.decode()  # other fields are kept


def test_a_retry_form_with_an_error_does_not_echo_the_password_back(bob, pending):
    make_failed(pending)

    response = logged_in(bob).post(url("retry", pending), {"password": "weakpassword"})

    assert response.status_code == 400
    assert "weakpassword" not in text(response)


def assert_never_cached(response) -> None:
    cache_control = response["Cache-Control"]
    for directive in NO_CACHE:
        assert directive in cache_control


def test_the_create_pages_are_never_cached(alice):
    client = logged_in(alice)

    assert_never_cached(client.get(create_url("create-mailbox")))
    assert_never_cached(client.post(create_url("create-mailbox"), mailbox_data(ticket="bad")))
    assert_never_cached(client.post(create_url("create-mailbox"), mailbox_data()))


def test_the_retry_answers_are_never_cached(bob, pending):
    make_failed(pending)
    client = logged_in(bob)

    assert_never_cached(client.post(url("retry", pending), {}))
    assert_never_cached(client.post(url("retry", pending), {"password": NEW_PASSWORD}))


# --- 4. Actions ----------------------------------------------------------------------------------


def test_approve_without_a_csrf_token_is_403_and_changes_nothing(bob, pending, published):
    client = Client(enforce_csrf_checks=True)
    client.force_login(bob)
    before = row(pending)

    response = client.post(url("approve", pending))

    assert response.status_code == 403
    assert row(pending) == before
    assert not AuditEvent.objects.filter(action="request.approved").exists()
    assert published() == []


def test_approve_with_the_csrf_token_of_the_page_works(
    bob, pending, django_capture_on_commit_callbacks
):
    client = Client(enforce_csrf_checks=True)
    client.force_login(bob)
    client.get(url("detail", pending))
    token = client.cookies["csrftoken"].value

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url("approve", pending), {"csrfmiddlewaretoken": token})

    assert response.status_code == 302
    pending.refresh_from_db()
    assert pending.status == Status.QUEUED


@pytest.mark.parametrize("name", ["approve", "reject", "cancel", "retry", "comment"])
@pytest.mark.parametrize("user_name", ["alice", "bob"])
def test_actions_refuse_get(request, user_name, name, pending, published):
    before = row(pending)

    response = logged_in(request.getfixturevalue(user_name)).get(url(name, pending))

    assert response.status_code == 405
    assert row(pending) == before
    assert published() == []


def test_bob_approves_and_one_execution_is_published(
    bob, pending, published, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = logged_in(bob).post(url("approve", pending))

    assert response.status_code == 302
    assert response["Location"] == url("detail", pending)
    pending.refresh_from_db()
    assert pending.status == Status.QUEUED
    assert pending.decided_by == bob
    assert published() == [(EXECUTE_TASK, [pending.pk], None)]
    assert (
        AuditEvent.objects.filter(
            action="request.approved", actor=bob, request_code=pending.code
        ).count()
        == 1
    )
    page = logged_in(bob).get(url("detail", pending))
    assert "is approved and queued" not in text(page)  # the message was shown once


def test_the_approval_message_is_shown_after_the_redirect(
    bob, pending, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = logged_in(bob).post(url("approve", pending), follow=True)

    assert f"{pending.code} is approved and queued." in text(response)


@pytest.mark.parametrize("approver_name", ["dave", "root"])
def test_nobody_approves_their_own_request(
    request, approver_name, published, django_capture_on_commit_callbacks
):
    approver = request.getfixturevalue(approver_name)
    request.getfixturevalue("example_com")
    item = submit(approver)

    with django_capture_on_commit_callbacks(execute=True):
        response = logged_in(approver).post(url("approve", item), follow=True)

    assert response.status_code == 200
    assert "Nobody can approve a request they made." in text(response)
    item.refresh_from_db()
    assert item.status == Status.PENDING
    assert item.decided_by is None
    assert published() == []


def test_reject_needs_a_reason(bob, pending):
    response = logged_in(bob).post(url("reject", pending), {"reason": "  "}, follow=True)

    assert "Say why the request is rejected" in text(response)
    pending.refresh_from_db()
    assert pending.status == Status.PENDING


def test_bob_rejects_with_a_reason_the_requester_reads(alice, bob, pending):
    response = logged_in(bob).post(url("reject", pending), {"reason": "Use the shared mailbox."})

    assert response.status_code == 302
    pending.refresh_from_db()
    assert pending.status == Status.REJECTED
    assert pending.rejection_reason == "Use the shared mailbox."
    assert pending.sealed_password == ""
    page = text(logged_in(alice).get(url("detail", pending)))
    assert "Rejected by bob:" in page
    assert "Use the shared mailbox." in page


def test_the_requester_cancels_her_pending_request(alice, pending):
    response = logged_in(alice).post(url("cancel", pending), follow=True)

    assert f"{pending.code} is cancelled." in text(response)
    pending.refresh_from_db()
    assert pending.status == Status.CANCELLED
    assert pending.sealed_password == ""


def test_an_approver_cannot_cancel_someone_elses_request(bob, pending):
    response = logged_in(bob).post(url("cancel", pending), follow=True)

    assert "Only the person who made a request can cancel it." in text(response)
    pending.refresh_from_db()
    assert pending.status == Status.PENDING


def test_a_cancelled_request_cannot_be_approved(
    alice, bob, pending, published, django_capture_on_commit_callbacks
):
    logged_in(alice).post(url("cancel", pending))

    with django_capture_on_commit_callbacks(execute=True):
        response = logged_in(bob).post(url("approve", pending), follow=True)

    assert f"{pending.code} cannot be approved: it is cancelled." in text(response)
    pending.refresh_from_db()
    assert pending.status == Status.CANCELLED
    assert published() == []


def test_retry_of_a_failed_mailbox_without_a_password_is_400(
    bob, pending, published, django_capture_on_commit_callbacks
):
    make_failed(pending)

    with django_capture_on_commit_callbacks(execute=True):
        response = logged_in(bob).post(url("retry", pending), {"password": ""})

    assert response.status_code == 400
    assert response.context["retry_form"].errors["password"] == ["This field is required."]
    assert "This field is required." in text(response)
    pending.refresh_from_db()
    assert pending.status == Status.FAILED
    assert published() == []


def test_retry_of_a_failed_mailbox_with_a_new_password_queues_it(
    bob, pending, published, django_capture_on_commit_callbacks
):
    make_failed(pending)

    with django_capture_on_commit_callbacks(execute=True):
        response = logged_in(bob).post(url("retry", pending), {"password": NEW_PASSWORD})

    assert response.status_code == 302
    pending.refresh_from_db()
    assert pending.status == Status.QUEUED
    assert pending.sealed_password
    assert NEW_PASSWORD not in pending.sealed_password
    assert published() == [(EXECUTE_TASK, [pending.pk], None)]
    assert AuditEvent.objects.filter(action="request.retried", actor=bob).count() == 1


def test_retry_of_a_failed_deletion_needs_no_password(
    alice, bob, published, django_capture_on_commit_callbacks
):
    item = make_failed(submit(alice, kind=Kind.DELETE_MAILBOX, target="old@example.com"))

    with django_capture_on_commit_callbacks(execute=True):
        response = logged_in(bob).post(url("retry", item), {})

    assert response.status_code == 302
    item.refresh_from_db()
    assert item.status == Status.QUEUED
    assert item.sealed_password == ""
    assert published() == [(EXECUTE_TASK, [item.pk], None)]


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("approve", {}),
        ("reject", {"reason": "No."}),
        ("cancel", {}),
        ("retry", {"password": NEW_PASSWORD}),
        ("comment", {"body": "Auditor here."}),
    ],
)
def test_the_auditor_reads_but_changes_nothing(
    audrey, pending, published, name, data, django_capture_on_commit_callbacks
):
    item = make_failed(pending) if name == "retry" else pending
    before = row(item)

    with django_capture_on_commit_callbacks(execute=True):
        response = logged_in(audrey).post(url(name, item), data)

    assert response.status_code == 404
    assert row(item) == before
    assert not RequestComment.objects.exists()
    assert published() == []


def test_a_requester_cannot_retry(alice, pending, published, django_capture_on_commit_callbacks):
    make_failed(pending)

    with django_capture_on_commit_callbacks(execute=True):
        logged_in(alice).post(url("retry", pending), {"password": NEW_PASSWORD})

    pending.refresh_from_db()
    assert pending.status == Status.FAILED
    assert published() == []


def test_a_comment_appears_in_the_timeline(alice, bob, pending):
    response = logged_in(alice).post(
        url("comment", pending), {"body": "The CEO asks <b>today</b>, please."}
    )

    assert response.status_code == 302
    assert RequestComment.objects.get().author == alice
    page = logged_in(bob).get(url("detail", pending)).content.decode()
    assert "The CEO asks &lt;b&gt;today&lt;/b&gt;, please." in page
    assert "<b>today</b>" not in page


def test_an_empty_comment_is_refused(alice, pending):
    response = logged_in(alice).post(url("comment", pending), {"body": "   "}, follow=True)

    assert "A comment needs some text" in text(response)
    assert not RequestComment.objects.exists()


# --- 5. Detail page ------------------------------------------------------------------------------


def action_forms(response, item: ProvisioningRequest) -> set[str]:
    page = response.content.decode()
    return {
        name
        for name in ("approve", "reject", "cancel", "retry", "comment")
        if f'action="{url(name, item)}"' in page
    }


def test_the_approver_sees_approve_and_reject_on_others_pending_requests(bob, pending):
    response = logged_in(bob).get(url("detail", pending))

    assert response.status_code == 200
    assert action_forms(response, pending) == {"approve", "reject", "comment"}
    assert ">Approve</button>" in response.content.decode()


def test_the_requester_sees_cancel_and_not_approve(alice, pending):
    response = logged_in(alice).get(url("detail", pending))

    assert action_forms(response, pending) == {"cancel", "comment"}
    assert ">Approve</button>" not in response.content.decode()


def test_an_approver_does_not_see_approve_on_his_own_request(dave, example_com):
    item = submit(dave)

    response = logged_in(dave).get(url("detail", item))

    assert "approve" not in action_forms(response, item)
    assert "cancel" in action_forms(response, item)


def test_the_auditor_reads_a_request_through_the_audit_log_not_its_page(audrey, pending):
    assert logged_in(audrey).get(url("detail", pending)).status_code == 404

    history = logged_in(audrey).get(f"/audit/?request={pending.code}").content.decode()

    assert "request.submitted" in history
    assert pending.target in history


def test_the_approver_sees_retry_on_a_failed_request(bob, pending):
    make_failed(pending)

    response = logged_in(bob).get(url("detail", pending))

    assert action_forms(response, pending) == {"retry", "comment"}
    assert 'type="password"' in response.content.decode()


def test_the_ticket_is_a_link_when_a_url_template_is_set(settings, alice, pending):
    settings.TICKET_URL_TEMPLATE = "https://helpdesk.example/t/{ticket}"

    page = logged_in(alice).get(url("detail", pending)).content.decode()

    assert '<a href="https://helpdesk.example/t/HD-1234"' in page


@pytest.mark.parametrize("template", [None, ""])
def test_the_ticket_is_plain_text_without_a_url_template(settings, alice, pending, template):
    settings.TICKET_URL_TEMPLATE = template

    page = logged_in(alice).get(url("detail", pending)).content.decode()

    assert "HD-1234" in page
    assert "helpdesk" not in page
    assert not re.search(r"<a [^>]*>HD-1234</a>", page)


@pytest.mark.parametrize("template", [None, "https://helpdesk.example/t/{ticket}"])
def test_a_ticket_with_markup_characters_is_escaped(settings, alice, template):
    settings.TICKET_URL_TEMPLATE = template
    item = submit(alice, ticket='HD-1"><script>alert(1)</script>')

    page = logged_in(alice).get(url("detail", item)).content.decode()

    assert "<script>alert(1)" not in page
    assert '"><script>' not in page
    assert "HD-1&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_failed_request_shows_the_message_and_the_raw_code(alice, pending):
    make_failed(
        pending, message="A mailbox with this address exists already.", code="ALREADY_EXISTS"
    )

    page = text(logged_in(alice).get(url("detail", pending)))

    assert "A mailbox with this address exists already." in page
    assert "ALREADY_EXISTS" in page


def test_the_timeline_shows_each_state_change_in_order(alice, bob, pending):
    services.request_approve(request=pending, actor=bob)

    page = logged_in(alice).get(url("detail", pending)).content.decode()
    timeline = page[page.index("Timeline") :]

    assert timeline.index("request.submitted") < timeline.index("request.approved")
    assert ">bob<" in timeline
    assert ">alice<" in timeline


# --- 6. Status partial ---------------------------------------------------------------------------


def test_the_status_partial_of_a_pending_request_does_not_poll(alice, pending):
    response = logged_in(alice).get(url("status", pending))

    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-status="pending"' in page
    assert "Awaiting approval" in page
    assert "hx-get" not in page
    assert "hx-trigger" not in page
    assert "<html" not in page  # a fragment, not a page


@pytest.mark.parametrize("status", [Status.QUEUED, Status.RUNNING])
def test_the_status_partial_polls_while_the_request_executes(alice, pending, status):
    set_state(pending, status)

    response = logged_in(alice).get(url("status", pending))

    page = response.content.decode()
    assert f'data-status="{status}"' in page
    assert f'hx-get="{url("status", pending)}?reload=' in page
    assert 'hx-trigger="every' in page
    assert "HX-Refresh" not in response


@pytest.mark.parametrize("status", [Status.SUCCEEDED, Status.FAILED])
def test_a_finished_status_stops_polling(alice, pending, status):
    set_state(pending, status)

    response = logged_in(alice).get(url("status", pending))

    page = response.content.decode()
    assert f'data-status="{status}"' in page
    assert "hx-get" not in page
    assert "hx-trigger" not in page
    assert "HX-Refresh" not in response


def test_the_detail_page_polls_with_reload(alice, pending):
    set_state(pending, Status.RUNNING)

    page = logged_in(alice).get(url("detail", pending)).content.decode()

    assert f'hx-get="{url("status", pending)}?reload=1"' in page


def test_a_request_that_just_finished_reloads_the_page_once(alice, pending):
    client = logged_in(alice)
    set_state(pending, Status.RUNNING)
    running = client.get(url("status", pending), {"reload": "1"})
    set_state(pending, Status.SUCCEEDED)

    finished = client.get(url("status", pending), {"reload": "1"})

    assert "HX-Refresh" not in running
    assert finished["HX-Refresh"] == "true"


# --- 7. Dashboard --------------------------------------------------------------------------------


def test_bob_sees_awaiting_approval_first(alice, bob, dave, pending):
    response = logged_in(bob).get(reverse("core:dashboard"))

    page = response.content.decode()
    assert response.status_code == 200
    assert "Awaiting your approval" in page
    first_section = re.search(r'<section[^>]*aria-labelledby="([^"]+)"', page).group(1)
    assert first_section == "awaiting-title"
    assert shown_codes_in(section(response, "awaiting-title")) == [pending.code]


def test_awaiting_lists_the_oldest_first_and_not_ones_own(alice, dave, pending):
    second = submit(alice, target="second@example.com")
    own = submit(dave, target="daves@example.com")

    response = logged_in(dave).get(reverse("core:dashboard"))

    assert shown_codes_in(section(response, "awaiting-title")) == [pending.code, second.code]
    assert own.code in shown_codes_in(section(response, "open-title"))


def test_alice_sees_her_open_requests_and_recent_outcomes(alice, bob, pending):
    done = submit(alice, target="done@example.com")
    services.request_reject(request=done, actor=bob, reason="Duplicate.")

    response = logged_in(alice).get(reverse("core:dashboard"))

    assert "Awaiting your approval" not in response.content.decode()
    assert shown_codes_in(section(response, "open-title")) == [pending.code]
    assert shown_codes_in(section(response, "recent-title")) == [done.code]


def test_everyone_sees_failures_in_their_scope_with_the_reason(alice, bob, dave, carol, charlie):
    mine = make_failed(submit(alice, target="fail@example.com"), message="Example-com reason.")
    theirs = make_failed(submit(carol, target="fail@other.org"), message="Other-org reason.")
    expectations = {alice: mine, bob: mine, dave: mine, carol: theirs, charlie: None}

    for user, visible in expectations.items():
        failures = section(logged_in(user).get(reverse("core:dashboard")), "failures-title")
        failures_text = html.unescape(failures)
        hidden = {mine, theirs} - {visible}
        if visible:
            assert shown_codes_in(failures) == [visible.code], user
            assert visible.result_message in failures_text, user
        else:
            assert "No failures." in failures_text, user
        for item in hidden:
            assert item.code not in failures, user
            assert item.result_message not in failures_text, user


# --- 8. Request list -----------------------------------------------------------------------------


@pytest.fixture
def assorted(alice, dave, carol) -> dict[str, ProvisioningRequest]:
    requests = {
        "alice_mailbox": submit(alice, target="a1@example.com", ticket="HD-1"),
        "dave_delete": submit(
            dave, kind=Kind.DELETE_MAILBOX, target="old@example.com", ticket="HD-2"
        ),
        "alice_domain": submit(alice, kind=Kind.DELETE_DOMAIN, target="example.com", ticket="HD-3"),
        "carol_mailbox": submit(carol, target="c@other.org", ticket="HD-1"),
    }
    services.request_cancel(request=requests["alice_domain"], actor=alice)
    return requests


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, ["alice_domain", "dave_delete", "alice_mailbox"]),
        ({"status": "pending"}, ["dave_delete", "alice_mailbox"]),
        ({"status": "cancelled"}, ["alice_domain"]),
        ({"kind": "delete_mailbox"}, ["dave_delete"]),
        ({"target": "example.com"}, ["alice_domain", "dave_delete", "alice_mailbox"]),
        ({"target": " A1@Example.com "}, ["alice_mailbox"]),
        ({"target": "other.org"}, []),
        ({"ticket": "HD-1"}, ["alice_mailbox"]),
        ({"mine": "on"}, ["dave_delete"]),
        ({"status": "pending", "mine": "on", "kind": "create_mailbox"}, []),
    ],
)
def test_the_request_list_filters(dave, assorted, query, expected):
    response = logged_in(dave).get(reverse("provisioning:list"), query)

    assert response.status_code == 200
    assert shown_codes(response) == [assorted[name].code for name in expected]


def test_carol_lists_only_other_org(carol, assorted):
    response = logged_in(carol).get(reverse("provisioning:list"))

    assert shown_codes(response) == [assorted["carol_mailbox"].code]


def test_keyset_pagination_shows_every_request_once_newest_first(alice, bob, carol):
    bulk_requests(alice, 60)
    bulk_requests(carol, 7, domain="other.org")  # outside bob's scope, interleaved by id
    bulk_requests(alice, 3, prefix="late")
    expected = list(
        ProvisioningRequest.objects.filter(domain="example.com")
        .order_by("-id")
        .values_list("code", flat=True)
    )

    codes, pages = follow_older_links(logged_in(bob), reverse("provisioning:list"))

    assert codes == expected
    assert len(set(codes)) == 63
    assert pages == 3


def test_keyset_pagination_keeps_the_filters(alice, bob):
    bulk_requests(alice, 40)
    bulk_requests(alice, 40, prefix="gone", kind=Kind.DELETE_MAILBOX)
    expected = list(
        ProvisioningRequest.objects.filter(kind=Kind.DELETE_MAILBOX)
        .order_by("-id")
        .values_list("code", flat=True)
    )

    codes, pages = follow_older_links(
        logged_in(bob), f"{reverse('provisioning:list')}?kind=delete_mailbox"
    )

    assert codes == expected
    assert pages == 2


def count_queries(client: Client, address: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(address)
    assert response.status_code == 200
    return len(queries)


def test_a_list_page_costs_the_same_queries_with_5_and_60_requests(alice, bob):
    client = logged_in(bob)
    first = reverse("provisioning:list")
    bulk_requests(alice, 5)
    services.request_approve(request=ProvisioningRequest.objects.first(), actor=bob)
    client.get(first)  # warm up (sessions, content types)
    with_5 = count_queries(client, first)

    bulk_requests(alice, 55, prefix="more")
    with_60 = count_queries(client, first)
    before = ProvisioningRequest.objects.order_by("-id").values_list("id", flat=True)[30]
    second_page = count_queries(client, f"{first}?before={before}")

    assert with_5 == with_60
    assert second_page == with_60


@pytest.mark.parametrize("before", ["abc", "-1", "0", "1e9", "1.5"])
def test_an_invalid_before_value_shows_a_message_not_an_error(alice, before, pending):
    response = logged_in(alice).get(reverse("provisioning:list"), {"before": before})

    assert_no_server_error(response)
    assert response.status_code == 200
    assert "Some filters were not understood" in text(response)
    assert shown_codes(response) == [pending.code]


def test_a_before_value_beyond_any_id_is_not_a_server_error(alice, pending):
    response = logged_in(alice).get(reverse("provisioning:list"), {"before": "9" * 40})

    assert_no_server_error(response)
    assert response.status_code == 200


# --- Page sizes ----------------------------------------------------------------------------------


@pytest.fixture
def busy_requests(alice, bob, dave, carol, root) -> None:
    """Requests of several requesters, decided by several people (so that a query per row, an
    N+1, would show): alice 200 in example.com and 30 new domains, dave 120 in example.com,
    carol 40 in other.org."""
    deciders = [bob, dave, root, None]

    def made(requester, number: int, domain: str, kind: str = Kind.CREATE_MAILBOX):
        decider = deciders[number % 4] if requester != deciders[number % 4] else None
        target = domain if kind == Kind.CREATE_DOMAIN else f"{requester}{number}@{domain}"
        return ProvisioningRequest(
            kind=kind, domain=domain, target=target, ticket=f"HD-{number}", reason="Bulk.",
            requested_by=requester, decided_by=decider,
            status=Status.SUCCEEDED if decider else Status.CANCELLED,
        )  # fmt: skip

    rows = [made(alice, number, "example.com") for number in range(200)]
    rows += [made(dave, number, "example.com") for number in range(120)]
    rows += [made(carol, number, "other.org") for number in range(40)]
    rows += [made(alice, number, f"new{number}.example.net", Kind.CREATE_DOMAIN)
             for number in range(30)]  # fmt: skip
    random.Random(7).shuffle(rows)  # interleaved by id, as in life
    ProvisioningRequest.objects.bulk_create(rows)


list_url = partial(list_address, "provisioning:list")


def every_row_shown(response, page) -> None:
    assert len(shown_codes(response)) == len(page.items)


@pytest.mark.parametrize(
    ("reader", "query"),
    [("alice", {"mine": "on"}), ("bob", {}), ("dave", {"status": "succeeded"}), ("root", {})],
)
def test_a_list_page_costs_the_same_queries_at_size_10_and_100(
    request, busy_requests, reader, query
):
    client = logged_in(request.getfixturevalue(reader))
    costs = queries_at_sizes(client, partial(list_url, **query), check=every_row_shown)

    assert costs[10] == costs[100]
    assert costs[10][0] == costs[10][1]


@pytest.mark.parametrize("size", ["7", "1000", "abc", "-25", "0", "25.0", "\x00"])
def test_an_invalid_size_says_so_and_shows_the_default_size(alice, busy_requests, size):
    response = logged_in(alice).get(reverse("provisioning:list"), {"size": size})

    assert_no_server_error(response)
    assert response.status_code == 200
    assert "Choose 10, 25, 50 or 100 rows per page; this page shows the default." in text(response)
    assert "Some filters were not understood" in text(response)
    assert len(shown_codes(response)) == 25


def test_the_size_selector_shows_the_size_of_the_page(alice, busy_requests):
    client = logged_in(alice)

    assert '<option value="25" selected>' in text(client.get(reverse("provisioning:list")))
    assert '<option value="100" selected>' in text(client.get(list_url(size="100")))


@pytest.mark.parametrize("reader", ["alice", "bob", "dave", "carol", "charlie", "root"])
def test_a_readers_pages_hold_exactly_their_scope_once_newest_first(request, busy_requests, reader):
    # alice's own requests are in example.com (also her domain) and in new domains (hers
    # alone); bob sees example.com and every new domain: parts overlap, each row shows once.
    user = request.getfixturevalue(reader)
    expected = list(requests_visible_to(user).order_by("-id").values_list("code", flat=True))

    codes, _ = follow_older_links(logged_in(user), list_url(size="25"))

    assert codes == expected
    assert len(expected) > 25 or reader == "charlie"


def test_only_mine_pages_through_exactly_the_readers_own_requests(alice, busy_requests):
    expected = list(
        ProvisioningRequest.objects.filter(requested_by=alice)
        .order_by("-id")
        .values_list("code", flat=True)
    )

    codes, pages = follow_older_links(logged_in(alice), list_url(mine="on", size="100"))

    assert codes == expected
    assert pages == 3


# --- Trouble the people using the portal must see ---------------------------------------------


def test_the_dashboard_says_when_requests_wait_for_an_operator(client, alice, bob):
    from apps.provisioning.models import ProvisioningRequest as Request

    waiting = services.request_submit(
        requester=alice, kind="delete_mailbox", target="old@example.com", parameters={},
        ticket="HD-9", reason="leaver",
    )  # fmt: skip
    Request.objects.filter(pk=waiting.pk).update(
        status="queued",
        needs_operator=True,
        result_code="INVALID_CREDENTIALS",
        result_message="The mail server refused Maildesk's admin login: check IREDADMIN_PASSWORD.",
    )
    client.force_login(alice)

    page = client.get("/").content.decode()

    assert "Maildesk cannot work with the mail server." in page
    assert "check IREDADMIN_PASSWORD" in page
    assert "1 approved request waits until it is fixed" in page


def test_an_action_whose_audit_row_cannot_be_written_does_not_happen(client, alice, bob):
    from django.db import connection

    pending = services.request_submit(
        requester=alice, kind="delete_mailbox", target="old@example.com", parameters={},
        ticket="HD-9", reason="leaver",
    )  # fmt: skip
    client.force_login(bob)  # before the audit storage fails: a sign-in is audited too
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE FUNCTION audit_down() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'audit storage down'; END; $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                "CREATE TRIGGER audit_down BEFORE INSERT ON audit_auditevent "
                "FOR EACH ROW EXECUTE FUNCTION audit_down()"
            )
        else:
            cursor.execute(
                "CREATE TRIGGER audit_down BEFORE INSERT ON audit_auditevent "
                "BEGIN SELECT RAISE(ABORT, 'audit storage down'); END"
            )

    response = client.post(f"/requests/{pending.code}/approve/", follow=True)

    assert response.status_code == 200
    assert "could not write this to the audit log, so nothing was done" in response.content.decode()
    pending.refresh_from_db()
    assert pending.status == "pending"
