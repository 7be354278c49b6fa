"""Rotating the encryption key loses no waiting request."""

from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command

from apps.audit.models import AuditEvent
from apps.core.encryption import SealError, unseal
from apps.provisioning import services
from apps.provisioning.execution import request_execute
from apps.provisioning.models import ProvisioningRequest

pytestmark = pytest.mark.django_db

PASSWORD = "Rotate-Me-Pa55!"


def rotate() -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("rotate_keys", stdout=out, stderr=err)
    except SystemExit as exit_:
        return int(exit_.code), out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


def pending_mailbox(alice, address="jane@example.com") -> ProvisioningRequest:
    return services.request_submit(
        requester=alice, kind="create_mailbox", target=address, parameters={},
        password=PASSWORD, ticket="HD-1", reason="x",
    )  # fmt: skip


def test_a_rotation_reseals_waiting_passwords_and_the_old_key_can_go(alice, bob, settings,
                                                                      mail_server):  # fmt: skip
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.MAILDESK_ENCRYPTION_KEYS = [old]
    request = pending_mailbox(alice)
    settings.MAILDESK_ENCRYPTION_KEYS = [new, old]  # step 1: the new key first

    status, out, _ = rotate()
    settings.MAILDESK_ENCRYPTION_KEYS = [new]  # step 4: the old key removed

    request.refresh_from_db()
    assert status == 0
    assert "Sealed 1 waiting password" in out
    assert unseal(request.sealed_password) == PASSWORD
    services.request_approve(request=request, actor=bob)
    request_execute(request_id=request.pk)
    request.refresh_from_db()
    assert request.status == "succeeded"
    assert AuditEvent.objects.get(action="keys.rotated").details["resealed"] == 1


def test_without_the_rotation_removing_the_old_key_would_lose_the_password(alice, settings):
    old = Fernet.generate_key().decode()
    settings.MAILDESK_ENCRYPTION_KEYS = [old]
    request = pending_mailbox(alice)
    settings.MAILDESK_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]

    request.refresh_from_db()
    with pytest.raises(SealError):
        unseal(request.sealed_password)


def test_a_password_no_configured_key_opens_is_named_and_left_alone(alice, settings):
    settings.MAILDESK_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    lost = pending_mailbox(alice, "lost@example.com")
    token = lost.sealed_password
    settings.MAILDESK_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    readable = pending_mailbox(alice, "fine@example.com")

    status, out, err = rotate()

    assert status == 1
    assert lost.code in err
    assert "Sealed 1 waiting password" in out
    lost.refresh_from_db()
    assert lost.sealed_password == token
    readable.refresh_from_db()
    assert unseal(readable.sealed_password) == PASSWORD
