"""The product as people use it, in Debian's Chromium driven by Playwright.

A help-desk agent requests a mailbox, a team lead approves it, and the page follows the
execution (htmx polling) until it succeeded. The portal runs in a live server thread, a Celery
worker in another thread (in-memory broker), and the emulator on a real socket. Screenshots
of every page go to test-artifacts/browser/.
"""

from collections.abc import Iterator

import pytest
from celery import current_app
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from django.db import connections

from tests.browser.pages import ARTIFACTS, sign_in
from tests.helpers import open_mailbox

pytestmark = pytest.mark.django_db(transaction=True)


def _close_connections(**kwargs: object) -> None:
    connections.close_all()


@pytest.fixture
def celery_worker(mail_server) -> Iterator[None]:
    """A Celery worker thread consuming the in-memory broker the portal publishes to."""
    # The worker thread's database connection is its own; close it after each task, or the
    # test database could not be dropped at the end.
    task_postrun.connect(_close_connections)
    with start_worker(current_app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        yield
    task_postrun.disconnect(_close_connections)


class Screens:
    def __init__(self, page, prefix: str = "") -> None:
        self.page = page
        self.prefix = prefix
        self.count = 0

    def shot(self, name: str) -> None:
        self.count += 1
        path = ARTIFACTS / f"{self.prefix}{self.count:02d}-{name}.png"
        self.page.screenshot(path=path, full_page=True)


def test_a_requested_mailbox_is_approved_and_seen_to_succeed(
    browser, live_server, alice, bob, mail_server, celery_worker
):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    screens = Screens(page)
    base = live_server.url

    # The agent signs in and requests a mailbox, with a generated password.
    page.goto(f"{base}/accounts/login/")
    screens.shot("login")
    sign_in(page, base, "alice")
    screens.shot("dashboard-alice")
    page.get_by_role("link", name="Create mailbox").first.click()
    page.get_by_label("Address").fill("jane.doe")
    page.get_by_label("Domain").select_option("example.com")
    page.get_by_role("button", name="Generate").click()
    generated = page.get_by_label("Initial password").input_value()
    page.get_by_label("Display name").fill("Jane Doe")
    page.get_by_label("Quota (MB)").fill("512")
    page.get_by_label("Ticket").fill("HD-1234")
    page.get_by_label("Reason").fill("New starter in accounting, starts Monday.")
    screens.shot("request-form")
    page.get_by_role("button", name="Submit for approval").click()
    page.get_by_text("is waiting for approval").wait_for()
    screens.shot("request-submitted")
    assert len(generated) == 16
    assert generated not in page.content()
    page.get_by_role("button", name="Sign out").click()

    # The team lead finds it awaiting approval and approves it.
    sign_in(page, base, "bob")
    page.get_by_text("Awaiting your approval").wait_for()
    screens.shot("dashboard-bob")
    page.get_by_role("link", name="REQ-").first.click()
    screens.shot("request-review")
    page.get_by_role("button", name="Approve").click()
    page.get_by_text("is approved and queued").wait_for()
    screens.shot("request-approved")

    # The page follows the execution and reloads itself once it is done.
    page.locator('[data-status="succeeded"]').first.wait_for(timeout=20_000)
    page.get_by_text("Done.").wait_for()
    screens.shot("request-succeeded")
    assert "api.succeeded" in page.content()
    assert generated not in page.content()

    mailbox = mail_server.emulator.mailbox("jane.doe@example.com")
    assert (mailbox["name"], mailbox["quota"]) == ("Jane Doe", 512)
    assert screens.count == 8


def test_a_new_customers_mailboxes_are_approved_together_and_seen_to_succeed(
    browser, live_server, alice, bob, mail_server, celery_worker
):
    targets = [f"starter{n}@example.com" for n in range(3)]
    for target in targets:
        open_mailbox(alice, target, ticket="HD-900")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    screens = Screens(page, prefix="together-")
    base = live_server.url

    # The team lead is pointed from the dashboard to the ticket's review, sees every request
    # it approves, and approves them.
    sign_in(page, base, "bob")
    page.get_by_text("3 requests of HD-900").wait_for()
    screens.shot("dashboard")
    page.get_by_role("link", name="review and approve them together").click()
    page.get_by_role("button", name="Approve all 3").wait_for()
    for target in targets:
        assert page.locator("#reviewed-requests").get_by_text(target).count() == 1
    screens.shot("ticket-review")
    page.get_by_role("button", name="Approve all 3").click()
    page.get_by_text("3 requests of HD-900 approved and queued.").wait_for()
    screens.shot("ticket-approved")

    # The worker runs them; the ticket's list shows them done.
    page.goto(f"{base}/requests/?ticket=HD-900&status=succeeded")
    for _ in range(100):
        if page.locator('[data-status="succeeded"]').count() == 3:
            break
        page.wait_for_timeout(200)
        page.reload()
    screens.shot("ticket-succeeded")

    assert page.locator('[data-status="succeeded"]').count() == 3
    assert mail_server.emulator.stats()["created"] == {f"user:{t}": 1 for t in targets}


def test_no_page_breaks_the_content_security_policy(browser, live_server, root, alice):
    """Chromium reports every resource or inline code the policy blocked in the console."""
    from apps.provisioning import services

    request = services.request_submit(
        requester=alice, kind="delete_mailbox", target="old@example.com", parameters={},
        ticket="HD-1", reason="leaver",
    )  # fmt: skip
    page = browser.new_page()
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(f"{page.url}: {message.text}")
            if "Content Security Policy" in message.text
            else None
        ),
    )
    base = live_server.url
    sign_in(page, base, "root")
    for path in [
        "/", "/requests/", "/requests/new/", "/requests/new/create-mailbox/",
        "/requests/new/create-domain/", f"/requests/{request.code}/", "/requests/?ticket=HD-1",
        "/requests/approve-together/?ticket=HD-1",
        "/audit/",
        "/admin/", "/admin/auth/user/", f"/admin/auth/user/{alice.pk}/change/",
        "/admin/accounts/maildomain/", "/admin/accounts/maildomain/add/",
        "/admin/audit/auditevent/",
    ]:  # fmt: skip
        page.goto(base + path)
        page.wait_for_load_state("networkidle")
    page.goto(f"{base}/requests/new/create-mailbox/")
    page.get_by_role("button", name="Generate").click()  # our own script still runs
    assert page.get_by_label("Initial password").input_value() != ""
    page.goto(f"{base}/requests/?status=pending")
    with page.expect_navigation():
        page.get_by_label("Per page").select_option("10")  # applies without a Filter click

    assert "size=10" in page.url
    assert "status=pending" in page.url
    assert page.get_by_label("Per page").input_value() == "10"
    assert violations == []
