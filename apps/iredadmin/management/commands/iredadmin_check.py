"""`python manage.py iredadmin_check`: can Maildesk reach and use the configured server?"""

import time
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand

from apps.iredadmin.client import LEGACY, IRedAdminClient
from apps.iredadmin.config import client_from_settings
from apps.iredadmin.errors import IRedAdminError, RejectedError, TransientError

# A name under the reserved .invalid top-level domain: it exists on no server.
PROBE_DOMAIN = "maildesk-probe.invalid"


class Command(BaseCommand):
    help = (
        "Check that the configured iRedAdmin-Pro server (IREDADMIN_URL) answers and that "
        "Maildesk's admin credentials work. Exits with status 1 when something is wrong."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            client = client_from_settings()
        except (ValueError, ImproperlyConfigured) as exc:
            self._fail(f"The iRedAdmin-Pro settings are not usable: {exc}")
        self.stdout.write(f"Checking iRedAdmin-Pro at {client.base_url} as {client.username}")
        with client:
            started = time.monotonic()
            try:
                client.login()
            except IRedAdminError as exc:
                self._fail(self._explain(exc))
            elapsed_ms = (time.monotonic() - started) * 1000
            self.stdout.write(
                f"  OK  The server answers and the login works "
                f"({client.dialect} API dialect, {elapsed_ms:.0f} ms)."
            )
            if client.dialect == LEGACY:
                self.stdout.write(
                    "  --  This is the 2016 (legacy) API: it cannot read accounts back, so "
                    "Maildesk cannot confirm the outcome of an interrupted call."
                )
            else:
                try:
                    domains = client.list_domains()
                except IRedAdminError as exc:
                    self._fail(self._explain(exc))
                self.stdout.write(f"  OK  The API can be read: {len(domains)} domain(s) visible.")
                self._check_global_admin(client)
        self.stdout.write(self.style.SUCCESS("All good: Maildesk can work with this server."))

    def _check_global_admin(self, client: IRedAdminClient) -> None:
        """Creating domains needs a global admin. Reading a domain that cannot exist tells:
        a global admin hears that it does not exist, any other admin is refused."""
        try:
            client.get_domain(PROBE_DOMAIN)
        except RejectedError as exc:
            if exc.code != "INVALID_DOMAIN_NAME":
                self._fail(self._explain(exc))
        except IRedAdminError as exc:
            self._fail(self._explain(exc))
        self.stdout.write("  OK  The account is a global admin, as Maildesk needs.")

    def _explain(self, error: IRedAdminError) -> str:
        text = f"{error.message} [{error.code}]"
        if isinstance(error, TransientError):
            text += (
                "\n      Check IREDADMIN_URL, that the server is running, and that this host "
                "can reach it (firewall, proxy, DNS)."
            )
        return text

    def _fail(self, explanation: str) -> None:
        self.stderr.write(f"  FAILED  {explanation}")
        raise SystemExit(1)
