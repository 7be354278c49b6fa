"""`python manage.py sweep_requests`: what the beat schedule runs, for cron or by hand."""

from typing import Any

from django.core.management.base import BaseCommand

from apps.provisioning.execution import requests_sweep


class Command(BaseCommand):
    help = (
        "Re-publish requests left queued past MAILDESK_QUEUED_GRACE_SECONDS and running "
        "requests whose lease expired. Celery beat runs this every MAILDESK_SWEEP_SECONDS."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        count = requests_sweep()
        self.stdout.write(f"Re-published {count} request(s).")
