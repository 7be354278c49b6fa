"""Small steps that several test modules take."""

from collections.abc import Callable
from io import StringIO

from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from chaos.harness import free_port

__all__ = ["free_port", "list_address", "logged_in", "queries_at_sizes", "verify_audit"]


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
