"""`manage.py seed_scale`: valid rows (the chains verify), the people measured, and refusals
that write nothing."""

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from apps.accounts.models import Delegation, MailDomain
from apps.accounts.selectors import may_approve_new_domain, may_request_new_domain
from apps.audit.models import AuditEvent
from apps.audit.selectors import events_visible_to
from apps.audit.services import audit_record
from apps.core import scale
from apps.provisioning.models import ProvisioningRequest
from apps.provisioning.selectors import requests_visible_to
from tests.conftest import make_user
from tests.helpers import verify_audit

pytestmark = pytest.mark.django_db
Status = ProvisioningRequest.Status


def seed(*arguments: str) -> str:
    output = io.StringIO()
    # Tests run with DEBUG off, as a deployment does.
    call_command("seed_scale", "--throwaway-database", *arguments, stdout=output)
    return output.getvalue()


def written() -> tuple[int, int, int, int]:
    return (
        AuditEvent.objects.count(),
        ProvisioningRequest.objects.count(),
        get_user_model().objects.count(),
        MailDomain.objects.count(),
    )


def user(username: str):
    return get_user_model().objects.get(username=username)


def test_it_writes_exactly_the_rows_asked_for_and_the_chains_verify():
    output = seed("--audit", "3000", "--requests", "400", "--own-requests", "60")

    assert "Wrote 3,000 audit rows and 400 requests (60 of them scale-requester's)" in output
    assert AuditEvent.objects.count() == 3000
    assert ProvisioningRequest.objects.count() == 400
    assert "The audit log is intact: 3000 row(s)." in verify_audit()[1]
    # Every chain carries rows, and the first row says what wrote them.
    assert AuditEvent.objects.values("chain").distinct().count() == 16
    assert AuditEvent.objects.order_by("id").first().action == scale.MARKER_ACTION


def test_the_rows_look_like_the_portals_own():
    seed("--audit", "3000", "--requests", "400", "--own-requests", "60")

    requests = ProvisioningRequest.objects
    assert requests.filter(requested_by=user(scale.REQUESTER)).count() == 60
    assert requests.filter(status__in=ProvisioningRequest.OPEN_STATUSES).exists()
    assert requests.filter(status=Status.SUCCEEDED).count() > 300
    # An event about a request carries the request's domain, as audit_record writes it.
    codes = dict(requests.values_list("code", "domain"))
    about_requests = AuditEvent.objects.exclude(request_code="")
    assert about_requests.count() > 2000
    for code, domain in about_requests.values_list("request_code", "domain"):
        assert codes[code] == domain
    # Nobody seeded can sign in.
    assert not any(person.has_usable_password() for person in get_user_model().objects.all())


def test_the_scoped_people_see_a_small_part():
    seed("--audit", "3000", "--requests", "400", "--own-requests", "60")
    requester, approver = user(scale.REQUESTER), user(scale.APPROVER)
    newcomer = user(scale.NEWCOMER)

    assert user(scale.ADMIN).is_superuser
    assert events_visible_to(user(scale.AUDITOR)).count() == 3000
    assert may_request_new_domain(requester)
    assert may_approve_new_domain(approver)
    assert set(Delegation.objects.filter(user=newcomer).values_list("domain__name", "role")) == {
        (scale.domain_name(scale.LATE_DOMAIN), Delegation.Role.APPROVER)
    }
    for person in (requester, approver, newcomer):
        assert 0 < requests_visible_to(person).count() < 200
        assert 0 < events_visible_to(person).count() < 1500
    # All the newcomer sees is recent: nothing in the older four fifths of the requests.
    oldest = requests_visible_to(newcomer).order_by("id").first()
    assert ProvisioningRequest.objects.filter(id__lt=oldest.id).count() >= 0.75 * 400


def test_a_database_seeded_earlier_takes_more_rows_only_when_asked():
    seed("--audit", "500", "--requests", "50", "--own-requests", "5")
    before = written()

    with pytest.raises(CommandError, match="--allow-existing"):
        seed("--audit", "500", "--requests", "50")
    assert written() == before

    seed("--audit", "500", "--requests", "50", "--own-requests", "5", "--allow-existing")
    assert AuditEvent.objects.count() == 1000
    assert ProvisioningRequest.objects.count() == 100
    assert "The audit log is intact: 1000 row(s)." in verify_audit()[1]


@pytest.mark.parametrize("allow_existing", [[], ["--allow-existing"]])
@pytest.mark.parametrize("present", ["an audit row", "a person", "a domain", "a request"])
def test_it_never_writes_into_a_database_holding_anything_of_someone_else(present, allow_existing):
    if present == "an audit row":
        audit_record(action="auth.login", actor_label="someone")
    elif present == "a person":
        make_user("alice")
    elif present == "a domain":
        MailDomain.objects.create(name="example.com")
    else:
        ProvisioningRequest.objects.create(
            kind="delete_mailbox", domain="example.com", target="x@example.com",
            ticket="HD-1", reason="r", requested_by=make_user("scale-someone"),
        )  # fmt: skip
    before = written()

    with pytest.raises(CommandError, match="seed_scale did not write"):
        seed("--audit", "100", "--requests", "10", "--own-requests", "1", *allow_existing)
    assert written() == before


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--audit", "-1"], "--audit must be between 0 and 50,000,000"),
        (["--requests", "-5"], "--requests must be between 0 and 10,000,000"),
        (["--requests", "10", "--own-requests", "11"], "--own-requests must be between 0 and 10"),
        (["--own-requests", "-1"], "--own-requests must be between 0"),
        (["--audit", "99999999999"], "--audit must be between"),
        (["--audit", "ten"], "invalid int value"),
    ],
)
def test_bad_counts_are_refused_and_nothing_is_written(arguments, message):
    with pytest.raises(CommandError, match=message):
        seed(*arguments)
    assert written() == (0, 0, 0, 0)


def test_production_settings_are_refused_unless_the_database_is_called_a_throwaway(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DJANGO_DEBUG is false: this looks like a deployment"):
        call_command("seed_scale", "--audit", "5", "--requests", "5", stdout=io.StringIO())
    assert written() == (0, 0, 0, 0)

    settings.DEBUG = True
    call_command("seed_scale", "--audit", "5", "--requests", "5", stdout=io.StringIO())
    assert AuditEvent.objects.count() > 0


def test_more_than_a_small_count_needs_postgresql():
    arguments = ("--audit", "10001", "--requests", "0", "--own-requests", "0")
    if connection.vendor == "postgresql":  # COPY takes any count
        seed(*arguments)
        assert AuditEvent.objects.count() == 10001
        return
    with pytest.raises(CommandError, match="need PostgreSQL"):
        seed(*arguments)
    assert written() == (0, 0, 0, 0)


def test_no_rows_at_all_is_valid():
    seed("--audit", "0", "--requests", "0", "--own-requests", "0")

    assert AuditEvent.objects.count() == ProvisioningRequest.objects.count() == 0
    assert "The audit log is intact: 0 row(s)." in verify_audit()[1]


REFUSAL = "maildesk_test_refuses_rows"


def refuse_new_rows(model) -> None:
    """From now on the database itself refuses every new row of `model`'s table: a real
    database error, not a mock. DDL is transactional on PostgreSQL and SQLite alike, so the
    test's rollback takes the refusal away again."""
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # NOT VALID: rows already there are not checked, every new one is.
            cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {REFUSAL} CHECK (false) NOT VALID")
        else:
            cursor.execute(
                f"CREATE TRIGGER {REFUSAL} BEFORE INSERT ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END"
            )


@pytest.mark.parametrize(
    "refused",
    [
        # Written by the ORM, after the domains and the first people.
        pytest.param(Delegation, id="people's roles"),
        # The last rows written, after the domains, the people and the requests (by COPY on
        # PostgreSQL, by INSERT elsewhere).
        pytest.param(AuditEvent, id="audit rows"),
    ],
)
def test_a_database_error_midway_stops_with_a_message_and_writes_nothing(refused):
    refuse_new_rows(refused)

    # A CommandError is what manage.py prints as one line, with no traceback; any other
    # exception reaches the person as a traceback.
    with pytest.raises(CommandError) as stopped:
        seed("--audit", "500", "--requests", "50", "--own-requests", "5")

    assert str(stopped.value).startswith("The database refused the rows; nothing was written: ")
    assert REFUSAL in str(stopped.value)  # the database's own reason
    assert written() == (0, 0, 0, 0)
