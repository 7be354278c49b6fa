"""The sign-in forms of the portal and of Django admin, with the checks both need."""

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm

from apps.accounts.throttle import address_is_throttled, record_address_refusal
from apps.core.http import client_ip


class SignInGuards:
    """Checks made before anything tries the password.

    - An over-long username is refused: Django's form limits the length on the widget only, so
      a longer name would reach `authenticate()`, and django-axes would then fail to store it
      in its 255-character column (a server error on PostgreSQL).
    - An address with too many failures across all usernames is refused (password spraying):
      django-axes counts per username and address, which one address can sidestep by trying a
      few passwords on every username.
    """

    def clean_username(self) -> str:
        username = self.cleaned_data["username"]
        limit = get_user_model()._meta.get_field(get_user_model().USERNAME_FIELD).max_length
        if len(username) > limit:
            raise forms.ValidationError(f"A username has at most {limit} characters.")
        return username

    def clean(self) -> dict:
        ip = client_ip(self.request) if self.request else None
        if ip and address_is_throttled(ip):
            record_address_refusal(self.cleaned_data.get("username"), ip)
            minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
            raise forms.ValidationError(
                f"Too many failed sign-ins from your network. Try again in {minutes} minutes.",
                code="throttled",
            )
        return super().clean()


class SignInForm(SignInGuards, AuthenticationForm):
    pass


class AdminSignInForm(SignInGuards, AdminAuthenticationForm):
    pass
