"""Django's error reports (the HTML page of the admins' error e-mail, with each frame's local
variables) never show a password.

Each test makes a frame that holds a canary password fail for real, takes the frames and
variables Django's report would show, and searches those of the product's code. The frame
itself must be in the report, or the test proves nothing.
"""

import os
import sys
import uuid
from collections.abc import Callable
from types import SimpleNamespace

import pytest
import requests
import responses
from django.views.debug import ExceptionReporter

from apps.core.encryption import seal
from apps.iredadmin.client import IRedAdminClient
from apps.iredadmin.errors import TransientError
from apps.provisioning import execution, services

pytestmark = pytest.mark.django_db

API = "https://mail.example.com/iredadmin/api"


def report_of(failing: Callable[[], object], expected: type[BaseException]) -> str:
    """The product's frames of the error report: each function's name and local variables.

    The test's own frames are left out: they hold the canary by construction.
    """
    try:
        failing()
    except expected:
        frames = ExceptionReporter(None, *sys.exc_info()).get_traceback_frames()
    else:
        pytest.fail(f"expected {expected.__name__}")
    return "\n".join(
        f"in {frame['function']}: {frame['vars']}"
        for frame in frames
        if f"{os.sep}apps{os.sep}" in frame["filename"]
    )


def canary() -> str:
    return f"Cnry-{uuid.uuid4().hex}!"


def test_a_refused_submission_does_not_show_its_password(charlie):
    password = canary()

    def submit() -> None:
        services.request_submit(
            requester=charlie, kind="create_mailbox", target="new@example.com",
            parameters={"name": "New"}, password=password, ticket="HD-1", reason="starter",
        )  # fmt: skip

    report = report_of(submit, services.ApplicationError)

    assert "in request_submit" in report
    assert password not in report


def test_sealing_with_a_broken_key_does_not_show_the_password(settings):
    password = canary()
    settings.MAILDESK_ENCRYPTION_KEYS = ["not a Fernet key"]

    report = report_of(lambda: seal(password), Exception)

    assert "in seal" in report
    assert password not in report


@responses.activate
def test_a_failed_read_back_of_a_mailbox_does_not_show_its_password():
    password = canary()
    responses.post(f"{API}/login", json={"_success": True}, headers={"Set-Cookie": "s=1"})
    responses.post(
        f"{API}/verify_password/user/new@example.com",
        body=requests.ConnectionError("connection reset"),
    )
    client = IRedAdminClient(API, "postmaster@example.com", "Adm1n-Pa55!", dialect="current")

    report = report_of(
        lambda: execution._confirm_own_mailbox(client, "new@example.com", password),
        TransientError,
    )

    assert "in _confirm_own_mailbox" in report
    assert "in verify_user_password" in report
    assert password not in report
    assert "Adm1n-Pa55!" not in report


@responses.activate
def test_a_failed_creation_of_a_mailbox_does_not_show_its_password():
    password = canary()
    responses.post(f"{API}/login", json={"_success": True}, headers={"Set-Cookie": "s=1"})
    responses.post(f"{API}/user/new@example.com", body=requests.ConnectionError("reset"))
    client = IRedAdminClient(API, "postmaster@example.com", "Adm1n-Pa55!", dialect="current")
    request = SimpleNamespace(target="new@example.com", parameters={}, outcome_uncertain=False)

    report = report_of(lambda: execution._create_mailbox(client, request, password), TransientError)

    assert "in _create_mailbox" in report
    assert "in create_user" in report
    assert password not in report
    assert "Adm1n-Pa55!" not in report
