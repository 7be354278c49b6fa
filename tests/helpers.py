"""Small steps that several test modules take."""

from collections.abc import Callable
from io import StringIO

from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django_otp.oath import totp

from apps.accounts.services import ENROLMENT_KEY
from apps.audit.models import AuditEvent
from apps.provisioning import services
from apps.provisioning.models import ProvisioningRequest
from chaos.harness import free_port

__all__ = [
    "PASSWORD", "TWO_FACTOR", "actions", "approved_mailbox", "code", "enrolment_key",
    "free_port", "list_address", "logged_in", "open_mailbox", "queries_at_sizes", "verify_audit",
]  # fmt: skip

TWO_FACTOR = "/accounts/two-factor/"
PASSWORD = "Canary-Pa55word!"  # a mailbox password the server's rules accept


def code(key: bytes, drift: int = 0) -> str:
    """The TOTP code of `key` now (or `drift` time steps away)."""
    return f"{totp(key, drift=drift):06d}"


def enrolment_key(client: Client) -> bytes:
    """The key the enrolment page showed this session (as its QR code)."""
    client.get(TWO_FACTOR)
    return bytes.fromhex(client.session[ENROLMENT_KEY])


def open_mailbox(
    requester,
    address: str = "jane@example.com",
    *,
    ticket: str = "HD-1",
    password: str = PASSWORD,
    ip: str | None = None,
    **parameters,
) -> ProvisioningRequest:
    """A create-mailbox request opened through the service (pending)."""
    return services.request_submit(
        requester=requester,
        kind=ProvisioningRequest.Kind.CREATE_MAILBOX,
        target=address,
        parameters={"name": "Jane Doe", "language": "fr_FR", "quota_mb": 300, **parameters},
        password=password,
        ticket=ticket,
        reason="new starter",
        ip=ip,
    )


def approved_mailbox(alice, bob, address="jane@example.com", **parameters):
    """A create-mailbox request alice opened and bob approved (queued)."""
    return services.request_approve(request=open_mailbox(alice, address, **parameters), actor=bob)


def actions(request) -> list[str]:
    """The actions of a request's audit trail, oldest first."""
    return list(
        AuditEvent.objects.filter(request_code=request.code)
        .order_by("id")
        .values_list("action", flat=True)
    )


def logged_in(user) -> Client:
    """A test client signed in as `user`."""
    client = Client()
    client.force_login(user)
    return client


def verify_audit(*options: str) -> tuple[int, str, str]:
    """`manage.py verify_audit`: (exit status, what it printed, what it printed as errors)."""
    out, err = StringIO(), StringIO()
    try:
        call_command("verify_audit", *options, stdout=out, stderr=err)
    except SystemExit as exit_:
        return int(exit_.code), out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


def list_address(view_name: str, **query: str) -> str:
    """A list page's address with this query string (values as given, not encoded)."""
    return f"{reverse(view_name)}?{'&'.join(f'{key}={value}' for key, value in query.items())}"


def page_cost(
    client: Client, address: str, check: Callable | None = None
) -> tuple[int, int, int | None]:
    """(SQL queries, rows shown, the next page's `before`) of one page; `check(response, page)`
    may look at the page too."""
    with CaptureQueriesContext(connection) as queries:
        response = client.get(address)
    assert response.status_code == 200
    page = response.context["page"]
    if check is not None:
        check(response, page)
    return len(queries), len(page.items), page.next_before


def queries_at_sizes(
    client: Client, address_of: Callable[..., str], check: Callable | None = None
) -> dict[int, tuple[int, int]]:
    """SQL queries of a list's first page and of the page after it, at page sizes 10 and 100:
    {size: (first, next)}. Every page measured must be full."""
    client.get(address_of(size="10"))  # warm up (session, permissions)
    costs = {}
    for size in (10, 100):
        queries, shown, older = page_cost(client, address_of(size=str(size)), check)
        assert older is not None, "the first page must have a next one"
        deeper_queries, deeper_shown, _ = page_cost(
            client, address_of(size=str(size), before=str(older)), check
        )
        assert shown == deeper_shown == size, "both pages must be full"
        costs[size] = (queries, deeper_queries)
    return costs
