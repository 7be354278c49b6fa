from django.conf import settings
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect


def client_ip(request: HttpRequest) -> str | None:
    """The address the request came from, for the audit log and the sign-in throttle.

    Behind MAILDESK_PROXY_COUNT trusted reverse proxies, the address the outermost of them saw
    (X-Forwarded-For, counted from the right: entries further left are the client's to forge).
    """
    proxies = settings.MAILDESK_PROXY_COUNT
    if proxies:
        forwarded = [
            part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
        ]
        forwarded = [part for part in forwarded if part]
        if len(forwarded) >= proxies:
            return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR") or None


def send_to(request: HttpRequest, url: str) -> HttpResponse:
    """Send the browser to `url`, from a whole page or from an htmx fragment request.

    An htmx request would swap a plain redirect's target page into the fragment; HX-Redirect
    makes htmx load it as a whole page instead.
    """
    if getattr(request, "htmx", False):
        response = HttpResponse(status=204)
        response["HX-Redirect"] = url
        return response
    return redirect(url)


def url_with_next(url: str, next_url: str) -> str:
    """`url` with `?next=`, encoded: a `&` or `#` in the next URL stays part of it."""
    query = QueryDict(mutable=True)
    query["next"] = next_url
    return f"{url}?{query.urlencode(safe='/')}"  # as Django's own redirect to the login page
