import time

from django import forms
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from apps.accounts import services
from apps.accounts.middleware import STARTED
from apps.core.http import url_with_next

# How long after a password sign-in a person may set up a second factor.
ENROL_WITHIN_SECONDS = 10 * 60


class TokenForm(forms.Form):
    token = forms.CharField(
        label="Code from your authenticator app",
        min_length=6,
        max_length=6,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}
        ),
    )

    def clean_token(self) -> str:
        token = self.cleaned_data["token"].strip()
        if not token.isdigit():
            raise forms.ValidationError("The code is six digits.")
        return token


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def two_factor(request: HttpRequest) -> HttpResponse:
    """Verify this session with a TOTP code; enrol a device first if there is none."""
    device = services.confirmed_device(request.user)
    enrolling = device is None
    if enrolling:
        if not _signed_in_recently(request):
            # Setting up a second factor needs the password just typed: a session left open
            # (or one that outlived a reset) cannot bind a device of someone else's.
            logout(request)
            messages.info(request, "Sign in again with your password to set up two-factor.")
            return redirect(url_with_next(reverse("login"), reverse("accounts:two_factor")))
        device = services.enrolment_device(request)
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        verified = services.second_factor_verify(
            request=request, device=device, token=form.cleaned_data["token"]
        )
        if verified:
            messages.success(
                request, "Two-factor authentication is set up." if enrolling else "Verified."
            )
            return redirect(_next(request))
        form.add_error(
            "token", "That code is not right. Check your phone's clock, and wait for a new one."
        )
    context = {"form": form, "enrolling": enrolling, "next": _next(request)}
    if enrolling:
        context.update(services.enrolment_details(device))
    return render(request, "accounts/two_factor.html", context)


def _signed_in_recently(request: HttpRequest) -> bool:
    return time.time() - request.session.get(STARTED, 0) <= ENROL_WITHIN_SECONDS


def _next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or "/"
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return "/"
    return target
