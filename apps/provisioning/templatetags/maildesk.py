from urllib.parse import quote

from django import template
from django.conf import settings
from django.utils.html import format_html
from django.utils.safestring import SafeString

register = template.Library()

_STATUS_CLASSES = {
    "pending": "text-bg-warning",
    "queued": "text-bg-info",
    "running": "text-bg-primary",
    "succeeded": "text-bg-success",
    "failed": "text-bg-danger",
    "rejected": "text-bg-secondary",
    "cancelled": "text-bg-light border",
}
_OUTCOME_CLASSES = {
    "success": "text-bg-success",
    "failure": "text-bg-danger",
    "refused": "text-bg-warning",
    "info": "text-bg-light border",
}


@register.filter
def status_class(status: str) -> str:
    return _STATUS_CLASSES.get(status, "text-bg-light")


@register.filter
def outcome_class(outcome: str) -> str:
    return _OUTCOME_CLASSES.get(outcome, "text-bg-light")


@register.simple_tag
def ticket_link(ticket: str) -> SafeString:
    """The ticket reference, linked to the help desk when TICKET_URL_TEMPLATE is set."""
    if not settings.TICKET_URL_TEMPLATE:
        return format_html("{}", ticket)
    url = settings.TICKET_URL_TEMPLATE.replace("{ticket}", quote(ticket, safe=""))
    if not url.startswith(("https://", "http://")):
        return format_html("{}", ticket)
    return format_html('<a href="{}" rel="noopener noreferrer" target="_blank">{}</a>', url, ticket)
