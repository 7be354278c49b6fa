"""`python manage.py reset_2fa USERNAME`: a lost phone, when no portal admin can sign in."""

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.accounts.services import second_factor_reset


class Command(BaseCommand):
    help = "Remove a person's two-factor devices; they set one up at their next sign-in."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user = get_user_model().objects.get(username=options["username"])
        except get_user_model().DoesNotExist:
            raise CommandError(f"There is no user {options['username']!r}.") from None
        removed = second_factor_reset(user=user, actor=None, actor_label="manage.py reset_2fa")
        self.stdout.write(
            f"Removed {removed} device(s) of {user.get_username()}; they set up two-factor "
            "authentication again at their next sign-in. (Audited.)"
        )
