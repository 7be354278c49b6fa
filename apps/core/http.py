from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str | None:
    """The address the request came from, as the server saw it (for the audit log)."""
    return request.META.get("REMOTE_ADDR") or None
