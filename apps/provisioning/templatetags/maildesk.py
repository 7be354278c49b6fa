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


_ACTION_LABELS = {
    "request.submitted": "Submitted",
    "request.approved": "Approved",
    "request.rejected": "Rejected",
    "request.cancelled": "Cancelled",
    "request.retried": "Queued again by an approver",
    "request.commented": "Comment",
    "api.call": "Sent to the mail server",
    "api.succeeded": "Done on the mail server",
    "api.failed": "Failed",
    "api.retry_scheduled": "Trouble reaching the mail server; trying again later",
    "api.result_discarded": "A late answer from an overtaken attempt (ignored)",
    "auth.login": "Signed in",
    "auth.logout": "Signed out",
    "auth.login_failed": "Failed sign-in",
}

_SUCCESS_SENTENCES = {
    "create_domain": "The domain {target} is ready on the mail server; a portal admin can "
    "now delegate it.",
    "delete_domain": "The domain {target} and its mailboxes are deleted from the mail server.",
    "create_mailbox": "The mailbox {target} is ready on the mail server.",
    "delete_mailbox": "The mailbox {target} is deleted from the mail server.",
}


@register.filter
def action_label(action: str) -> str:
    """An audit action for people: `request.approve_refused` -> "Refused: approve"."""
    if action.endswith("_refused"):
        return "Refused: " + action.rpartition(".")[2].removesuffix("_refused")
    return _ACTION_LABELS.get(action, action)


@register.filter
def success_sentence(request) -> str:
    return _SUCCESS_SENTENCES[request.kind].format(target=request.target)


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
