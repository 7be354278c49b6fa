"""`python manage.py rotate_keys`: re-seal every waiting password with the newest key.

Rotation, step by step (docs/security.md):
1. put the new key first in MAILDESK_ENCRYPTION_KEYS, keeping the old one after it;
2. restart web and workers: new passwords are sealed with the new key, old ones still open;
3. run this command: every password still waiting is sealed again with the new key;
4. remove the old key and restart.
"""

from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from apps.audit.services import audit_record
from apps.core.encryption import SealError, reseal
from apps.provisioning.models import ProvisioningRequest


class Command(BaseCommand):
    help = (
        "Seal every password of an open request again with the first key of "
        "MAILDESK_ENCRYPTION_KEYS, so that older keys can be removed."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        resealed, unreadable = 0, []
        waiting = ProvisioningRequest.objects.exclude(sealed_password="").values_list(
            "pk", "code", "sealed_password"
        )
        for pk, code, token in waiting.iterator():
            try:
                fresh = reseal(token)
            except SealError:
                unreadable.append(code)
                continue
            # Only if unchanged meanwhile: a worker may have used and wiped it since.
            resealed += ProvisioningRequest.objects.filter(pk=pk, sealed_password=token).update(
                sealed_password=fresh
            )
        with transaction.atomic():
            audit_record(
                action="keys.rotated",
                actor_label="manage.py rotate_keys",
                details={"resealed": resealed, "unreadable": unreadable},
            )
        self.stdout.write(f"Sealed {resealed} waiting password(s) again with the newest key.")
        if unreadable:
            self.stderr.write(
                f"{len(unreadable)} could not be opened with any configured key: "
                f"{', '.join(unreadable)}. Put the key they were sealed with back into "
                "MAILDESK_ENCRYPTION_KEYS and run this again, or retry them with new passwords."
            )
            raise SystemExit(1)
        self.stdout.write("Every waiting password now opens with the newest key alone.")
