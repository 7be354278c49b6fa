import csv
from collections.abc import Iterator

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from apps.accounts.selectors import is_auditor
from apps.audit.forms import EventFilterForm
from apps.audit.models import AuditEvent
from apps.audit.selectors import event_scope, events_visible_to
from apps.core.pagination import keyset_page, page_links, with_default_size

PAGE_SIZE = 50
EXPORT_COLUMNS = ["id", "occurred_at", "actor_label", "actor_ip", "action", "outcome", "target",
                  "domain", "request_code", "ticket", "message", "correlation_id"]  # fmt: skip


@login_required
@require_GET
def event_list(request: HttpRequest) -> HttpResponse:
    filters = EventFilterForm(with_default_size(request.GET, PAGE_SIZE))
    events = AuditEvent.objects.all()
    before, size = None, PAGE_SIZE
    if filters.is_valid():
        events = filters.apply(events)
        before, size = filters.cleaned_data["before"], filters.cleaned_data["size"]
    else:
        messages.error(request, "Some filters were not understood: fix them to filter the log.")
    page = keyset_page(
        events,
        before=before,
        size=size,
        branches=event_scope(request.user, per_domain=True),
    )
    return render(
        request,
        "audit/event_list.html",
        {
            "filters": filters,
            "page": page,
            **page_links(request.GET, page),
            "may_export": is_auditor(request.user) or request.user.is_superuser,
        },
    )


class _Echo:
    def write(self, value: str) -> str:
        return value


@login_required
@require_GET
def event_export(request: HttpRequest) -> StreamingHttpResponse:
    """The filtered log as CSV, streamed in id order (auditors and portal admins)."""
    if not (is_auditor(request.user) or request.user.is_superuser):
        raise Http404("No export for you.")
    filters = EventFilterForm(request.GET)
    if not filters.is_valid():
        return HttpResponse(
            "The filters were not understood; fix them on the audit page.", status=400,
            content_type="text/plain; charset=utf-8",
        )  # fmt: skip
    events = filters.apply(events_visible_to(request.user)).order_by("id")
    writer = csv.writer(_Echo())

    def rows() -> Iterator[str]:
        yield writer.writerow(EXPORT_COLUMNS)
        for event in events.values_list(*EXPORT_COLUMNS).iterator(chunk_size=2000):
            yield writer.writerow([_csv_safe(value) for value in event])

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="maildesk-audit.csv"'
    return response


def _csv_safe(value: object) -> object:
    """Neutralise spreadsheet formulas: a cell starting with = + - @ is read as text."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value
