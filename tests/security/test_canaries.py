"""New mailbox passwords leave no trace: canaries through every path, then searched everywhere.

Unique canary passwords go in through the browser (typed by a requester), through the services,
through a transient failure and its retry, a refusal, an approver's retry with a new password,
and a rejection. Then every place a secret could leak is searched: a dump of the database,
every Redis key, the Celery message bodies (decoded, read before the worker took them), all log
output of the portal and of the worker, and every page each person can open. After submission
a canary may be nowhere, plain or URL-encoded or JSON-escaped.

Needs PostgreSQL, Redis and Chromium (skipped locally without them; required in CI).
"""

import base64
import json
import logging
import subprocess
import time
import uuid
from urllib.parse import quote, quote_plus

import pytest
import redis
from django.db import connection
from django.test import Client

from apps.iredadmin.emulator import Fault
from apps.provisioning import services
from apps.provisioning.models import ProvisioningRequest
from tests.browser.pages import sign_in

pytestmark = pytest.mark.django_db(transaction=True)

CANARIES = {
    path: f"Cnry-{path}-{uuid.uuid4().hex[:12]}!"
    for path in ("browser", "service", "retried", "refused", "new-password", "rejected")
}


def encodings(secret: str) -> set[str]:
    return {secret, quote(secret), quote_plus(secret), json.dumps(secret)[1:-1]}


def submit(alice, address: str, password: str) -> ProvisioningRequest:
    return services.request_submit(
        requester=alice, kind="create_mailbox", target=address,
        parameters={"name": "Canary"}, password=password, ticket="HD-7", reason="canary",
    )  # fmt: skip


def redis_contents(url: str) -> tuple[str, list[str]]:
    """Every key and value of the Redis database, and the decoded bodies of task messages."""
    client = redis.Redis.from_url(url)
    text, bodies = [], []
    for key in client.scan_iter():
        kind = client.type(key)
        if kind == b"string":
            values = [client.get(key)]
        elif kind == b"list":
            values = client.lrange(key, 0, -1)
        elif kind == b"hash":
            values = [item for pair in client.hgetall(key).items() for item in pair]
        elif kind == b"set":
            values = list(client.smembers(key))
        elif kind == b"zset":
            values = client.zrange(key, 0, -1)
        else:
            values = []
        for value in values:
            raw = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
            text.append(f"{key!r} {raw}")
            try:
                message = json.loads(raw)
                bodies.append(base64.b64decode(message["body"]).decode("utf-8", "replace"))
            except (ValueError, KeyError, TypeError):
                pass
    return "\n".join(text), bodies


def database_dump() -> str:
    db = connection.settings_dict
    return subprocess.run(
        ["pg_dump", "--data-only", "-h", db["HOST"] or "127.0.0.1", "-p", str(db["PORT"] or 5432),
         "-U", db["USER"], db["NAME"]],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip


def every_page(people, codes: list[str]) -> list[str]:
    """The text of every page these people can open, the audit export and the admin included."""
    urls = [
        "/",
        "/requests/",
        "/requests/new/",
        "/requests/new/create-mailbox/",
        "/audit/",
        "/audit/export.csv",
        "/admin/",
        "/admin/audit/auditevent/",
        "/admin/auth/user/",
    ]
    for code in codes:
        urls += [f"/requests/{code}/", f"/requests/{code}/status/", f"/audit/?request={code}"]
    pages = []
    for person in people:
        client = Client()
        client.force_login(person)
        for url in urls:
            response = client.get(url)
            body = b"".join(response.streaming_content) if response.streaming else response.content
            pages.append(f"{person.username} {url} {response.status_code}\n{body.decode()}")
    return pages


def test_canary_passwords_appear_nowhere_after_submission(
    browser, live_server, alice, bob, root, audrey, mail_server, start_worker, redis_url, caplog
):
    caplog.set_level(logging.DEBUG)
    seen_in_browser: list[str] = []
    page = browser.new_page()

    # Typed into the browser by the requester, approved in the browser by the approver.
    sign_in(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/requests/new/create-mailbox/")
    page.get_by_label("Address").fill("typed")
    page.get_by_label("Domain").select_option("example.com")
    page.get_by_label("Initial password").fill(CANARIES["browser"])
    page.get_by_label("Ticket").fill("HD-7")
    page.get_by_label("Reason").fill("canary")
    page.get_by_role("button", name="Submit for approval").click()
    page.get_by_text("is waiting for approval").wait_for()
    seen_in_browser.append(page.content())
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, live_server.url, "bob")
    page.get_by_role("link", name="REQ-").first.click()
    page.get_by_role("button", name="Approve").click()
    page.get_by_text("is approved and queued").wait_for()
    seen_in_browser.append(page.content())

    # Through the services, a transient failure and retry, a refusal, a rejection.
    requests = [ProvisioningRequest.objects.get(target="typed@example.com")]
    mail_server.emulator.add_fault(Fault(kind="status", status=503, target="retried@example.com"))
    mail_server.emulator.add_mailbox("taken@example.com", "Belongs-To-Someone-1!")
    for address, canary in [
        ("service@example.com", "service"),
        ("retried@example.com", "retried"),
        ("taken@example.com", "refused"),
    ]:
        request = submit(alice, address, CANARIES[canary])
        services.request_approve(request=request, actor=bob)
        requests.append(request)  # fmt: skip
    rejected = submit(alice, "rejected@example.com", CANARIES["rejected"])
    services.request_reject(request=rejected, actor=bob, reason="not needed")

    # The task messages, read in Redis before any worker takes them.
    _, queued_bodies = redis_contents(redis_url)
    assert len(queued_bodies) >= 4, "the approvals' messages should be waiting in Redis"

    log = start_worker()
    deadline = time.monotonic() + 60
    while any(r.status not in ("succeeded", "failed") for r in requests):
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
        for request in requests:
            request.refresh_from_db()
    taken = requests[-1]
    assert taken.status == "failed"
    services.request_retry(request=taken, actor=bob, password=CANARIES["new-password"])
    while taken.status not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
        taken.refresh_from_db()
    assert [r.status for r in requests[:3]] == ["succeeded"] * 3
    page.goto(f"{live_server.url}/requests/{requests[0].code}/")
    seen_in_browser.append(page.content())

    redis_text, later_bodies = redis_contents(redis_url)
    codes = [r.code for r in requests] + [rejected.code]
    haystacks = {
        "database dump": database_dump(),
        "Redis keys": redis_text,
        "Celery message bodies": "\n".join(queued_bodies + later_bodies),
        "worker log": log.read_text(),
        "portal log": caplog.text,
        "browser pages": "\n".join(seen_in_browser),
        "pages": "\n".join(every_page([alice, bob, root, audrey], codes)),
    }
    found = [
        f"{name} in {where}"
        for name, canary in CANARIES.items()
        for where, text in haystacks.items()
        for form in encodings(canary)
        if form in text
    ]
    assert found == []
    # The searches were real: the places hold what they should.
    assert "typed@example.com" in haystacks["database dump"]
    for request in requests:  # each approval's message was read: [[id], {}, ...]
        assert f"[[{request.pk}], {{}}" in haystacks["Celery message bodies"]
    assert "api.succeeded" in haystacks["pages"]
