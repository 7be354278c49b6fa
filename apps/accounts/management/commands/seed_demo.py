"""`python manage.py seed_demo`: demo accounts and roles for `make run` (refused in production)."""

import os
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from apps.accounts.models import Delegation, MailDomain

DEMO_DOMAIN = "example.com"
Role = Delegation.Role

# username, display name, what they do, portal admin?, roles in example.com, groups
DEMO_ACCOUNTS = [
    ("admin", "Ada Admin", "portal admin (Django admin at /admin/)", True, [], []),
    (
        "alice", "Alice Agent", "help-desk agent: requests mailboxes and new domains", False,
        [Role.REQUESTER], ["New-domain requesters"],
    ),
    (
        "bob", "Bob Lead", "mail team lead: approves them", False,
        [Role.REQUESTER, Role.APPROVER], ["New-domain approvers"],
    ),
    ("audrey", "Audrey Auditor", "auditor: reads the whole audit log", False, [], ["Auditors"]),
]  # fmt: skip


class Command(BaseCommand):
    help = "Create or refresh the demo accounts, with MAILDESK_DEMO_PASSWORD as their password."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--url", default="http://127.0.0.1:8000/", help="where the portal is reached"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError("Demo accounts are for development only (DJANGO_DEBUG is false).")
        password = os.environ.get("MAILDESK_DEMO_PASSWORD", "")
        if len(password) < 12:
            raise CommandError(
                "Set MAILDESK_DEMO_PASSWORD (12 characters or more); `make run` writes a "
                "random one into .env."
            )
        user_model = get_user_model()
        with transaction.atomic():
            domain, _ = MailDomain.objects.update_or_create(
                name=DEMO_DOMAIN, defaults={"is_active": True}
            )
            for username, full_name, _, is_admin, roles, groups in DEMO_ACCOUNTS:
                first_name, _, last_name = full_name.partition(" ")
                user, _ = user_model.objects.get_or_create(username=username)
                user.first_name, user.last_name = first_name, last_name
                user.email = f"{username}@maildesk.invalid"
                user.is_staff = user.is_superuser = is_admin
                user.is_active = True
                user.set_password(password)
                user.save()
                for role in roles:
                    Delegation.objects.get_or_create(user=user, domain=domain, role=role)
                user.groups.add(*Group.objects.filter(name__in=groups))

        self.stdout.write(f"\nMaildesk is at {options['url']}")
        self.stdout.write(f"Demo accounts, all with the password {password}:")
        for username, full_name, role, *_ in DEMO_ACCOUNTS:
            self.stdout.write(f"  {username:<8} {full_name:<16} {role}")
        self.stdout.write(
            f"Try it: sign in as alice, request a mailbox in {DEMO_DOMAIN}; sign in as bob in "
            "another browser (or after signing out) and approve it.\n"
        )
