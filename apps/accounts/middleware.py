"""Session limits: an idle timeout, an absolute timeout, and no session for a disabled user."""

import time
from collections.abc import Callable

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from apps.audit.services import audit_record
from apps.core.http import client_ip, send_to, url_with_next

STARTED = "maildesk_signed_in_at"
SEEN = "maildesk_last_activity_at"
# Activity is written to the session at most this often: not a database write per request.
SEEN_RESOLUTION = 30


class SessionLimitsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        session = request.session
        if not request.user.is_authenticated:
            if "_auth_user_id" in session:
                # A session of a user since disabled or deleted: it ends here, on the server.
                session.flush()
            return self.get_response(request)
        now = time.time()
        started = session.get(STARTED, now)
        seen = session.get(SEEN, now)
        idle = now - seen > settings.MAILDESK_SESSION_IDLE_SECONDS
        if idle or now - started > settings.MAILDESK_SESSION_ABSOLUTE_SECONDS:
            return self._end(request, "idle" if idle else "absolute")
        if STARTED not in session:
            session[STARTED] = now
        # Status polling of an open page is not the person being active.
        if SEEN not in session or (not _is_polling(request) and now - seen >= SEEN_RESOLUTION):
            session[SEEN] = now
        return self.get_response(request)

    def _end(self, request: HttpRequest, why: str) -> HttpResponse:
        audit_record(
            action="auth.session_expired",
            actor=request.user,
            ip=client_ip(request),
            details={"limit": why},
        )
        logout(request)
        messages.info(
            request,
            "You were signed out after a while without activity."
            if why == "idle"
            else "Your session reached its maximum length. Please sign in again.",
        )
        return send_to(request, url_with_next(reverse("login"), request.get_full_path()))


def _is_polling(request: HttpRequest) -> bool:
    return bool(getattr(request, "htmx", False)) and request.path.endswith("/status/")
