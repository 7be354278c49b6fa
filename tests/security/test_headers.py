"""Security headers on every response, and no caching of pages that show a password."""

from pathlib import Path

import pytest
from django.urls import reverse

from apps.provisioning import services

pytestmark = pytest.mark.django_db


@pytest.fixture
def pages(alice, bob):
    request = services.request_submit(
        requester=alice, kind="delete_mailbox", target="old@example.com", parameters={},
        ticket="HD-1", reason="leaver",
    )  # fmt: skip
    return [
        "/",
        "/requests/",
        "/requests/new/",
        "/requests/new/create-mailbox/",
        f"/requests/{request.code}/",
        f"/requests/{request.code}/status/",
        "/audit/",
        "/healthz",
    ]


def test_every_page_carries_the_security_headers(client, alice, pages):
    responses = [(reverse("login"), client.get(reverse("login")))]
    client.force_login(alice)
    responses += [(url, client.get(url)) for url in pages]
    for url, response in responses:
        assert response.status_code == 200, url
        policy = response["Content-Security-Policy"]
        directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
        assert directives["script-src"] == "'self'", url  # no inline script
        assert directives["object-src"] == "'none'"
        assert directives["base-uri"] == "'none'"
        assert directives["frame-ancestors"] == "'none'"
        assert "unsafe-inline" not in policy
        assert "unsafe-eval" not in policy
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Referrer-Policy"] == "same-origin"
        assert response["X-Frame-Options"] == "DENY"
        assert "camera=()" in response["Permissions-Policy"]


def test_no_template_carries_inline_script_or_style():
    for template in Path("templates").rglob("*.html"):
        text = template.read_text()
        assert "<script>" not in text, template
        assert " style=" not in text, template
        assert " on" + "click=" not in text, template
        assert "javascript:" not in text, template


def test_the_page_that_takes_a_new_password_is_never_cached(client, alice):
    client.force_login(alice)

    cache_control = client.get("/requests/new/create-mailbox/")["Cache-Control"]

    assert "no-store" in cache_control
    assert "no-cache" in cache_control
