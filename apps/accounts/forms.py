from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm


class UsernameLengthMixin:
    """Refuses an over-long username before anything tries to authenticate it.

    Django's sign-in form only sets `maxlength` on the widget, so a longer name reaches
    `authenticate()`; the failed-login signal then makes django-axes write it into a
    255-character column, which PostgreSQL refuses with a server error.
    """

    def clean_username(self) -> str:
        username = self.cleaned_data["username"]
        limit = get_user_model()._meta.get_field(get_user_model().USERNAME_FIELD).max_length
        if len(username) > limit:
            raise forms.ValidationError(f"A username has at most {limit} characters.")
        return username


class SignInForm(UsernameLengthMixin, AuthenticationForm):
    pass


class AdminSignInForm(UsernameLengthMixin, AdminAuthenticationForm):
    pass
