"""`python manage.py iredadmin_emulator`: serve the bundled iRedAdmin-Pro emulator."""

import ipaddress
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.iredadmin.config import admin_password
from apps.iredadmin.emulator import CURRENT, LEGACY, Emulator
from apps.iredadmin.emulator_http import EmulatorServer
from apps.iredadmin.validators import server_accepts_domain, server_accepts_email


class Command(BaseCommand):
    help = (
        "Serve a local iRedAdmin-Pro emulator (the RESTful API under /iredadmin/api) for "
        "development, tests and benchmarks. The admin account defaults to IREDADMIN_USERNAME "
        "and IREDADMIN_PASSWORD, so the portal's own settings log in to it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="address to bind")
        parser.add_argument(
            "--allow-remote",
            action="store_true",
            help="allow a non-loopback --host (the control API has no authentication)",
        )
        parser.add_argument("--port", type=int, default=8091)
        parser.add_argument("--dialect", choices=[CURRENT, LEGACY], default=CURRENT)
        parser.add_argument("--admin-username", help="global admin email (IREDADMIN_USERNAME)")
        parser.add_argument(
            "--admin-password",
            help="global admin password (IREDADMIN_PASSWORD); visible in `ps`, prefer the file",
        )
        parser.add_argument("--admin-password-file", help="read the admin password from a file")
        parser.add_argument("--prefix", default="/iredadmin", help="mount point of the app")
        parser.add_argument("--latency", type=float, default=0.0, help="seconds added per call")
        parser.add_argument(
            "--session-timeout", type=float, default=1800.0, help="idle session expiry (s)"
        )
        parser.add_argument(
            "--domain",
            action="append",
            default=[],
            help="create this domain at start-up when the state is empty (repeatable)",
        )
        parser.add_argument(
            "--state-file", help="keep domains and mailboxes in this JSON file across restarts"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        username = (options["admin_username"] or settings.IREDADMIN["USERNAME"]).strip()
        password = self._admin_password(options)
        if not server_accepts_email(username.lower()):
            raise CommandError(f"--admin-username must be an email address, not {username!r}.")
        if not options["allow_remote"] and not _is_loopback(options["host"]):
            raise CommandError(
                f"--host {options['host']} is reachable from other machines, and the "
                "emulator's control API (reset, faults) has no authentication. Bind to "
                "127.0.0.1, or add --allow-remote on a network you trust."
            )
        if options["latency"] < 0 or options["session_timeout"] <= 0:
            raise CommandError("--latency cannot be negative and --session-timeout must be > 0.")
        for domain in options["domain"]:
            if not server_accepts_domain(domain):
                raise CommandError(f"--domain {domain!r} is not a valid domain name.")

        emulator = Emulator(
            dialect=options["dialect"],
            prefix=options["prefix"],
            state_file=options["state_file"],
        )
        emulator.add_admin(username, password)
        emulator.configure(latency=options["latency"], session_timeout=options["session_timeout"])
        if not emulator.accounts()["domains"]:
            for domain in options["domain"]:
                emulator.add_domain(domain)
        try:
            server = EmulatorServer(emulator, host=options["host"], port=options["port"])
        except OSError as exc:
            raise CommandError(
                f"Cannot listen on {options['host']}:{options['port']} ({exc.strerror}); "
                "is another emulator running? Choose another --port."
            ) from None

        self.stdout.write(
            f"iRedAdmin-Pro emulator ({options['dialect']} dialect) serving {server.url}\n"
            f"  admin: {username}\n"
            f"  control API: {server.control_url}/stats\n"
            "Press Ctrl+C to stop."
        )
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            self.stdout.write("Stopped.")

    def _admin_password(self, options: dict[str, Any]) -> str:
        if options["admin_password"] and options["admin_password_file"]:
            raise CommandError("Give --admin-password or --admin-password-file, not both.")
        if options["admin_password_file"]:
            try:
                return Path(options["admin_password_file"]).read_text().rstrip("\r\n")
            except OSError as exc:
                raise CommandError(f"Cannot read --admin-password-file: {exc.strerror}.") from None
        password = options["admin_password"] or admin_password()
        if not password:
            raise CommandError(
                "No admin password: give --admin-password-file (or --admin-password), or set "
                "IREDADMIN_PASSWORD (make run writes one into .env)."
            )
        return password


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
