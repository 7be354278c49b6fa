import logging
from datetime import timedelta
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import DatabaseError
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.accounts.models import Delegation
from apps.accounts.selectors import domains_for, may_request_new_domain
from apps.audit.models import AuditEvent
from apps.core.exceptions import ApplicationError
from apps.core.http import client_ip
from apps.core.pagination import keyset_page, page_links, with_default_size
from apps.provisioning import services
from apps.provisioning.forms import (
    REQUEST_FORMS,
    ApproveTogetherForm,
    CommentForm,
    RejectForm,
    RequestFilterForm,
    RetryForm,
    validate_ticket,
)
from apps.provisioning.models import ProvisioningRequest
from apps.provisioning.selectors import (
    LARGEST_APPROVAL,
    awaiting_together,
    may_comment,
    may_decide,
    request_get_for_user,
    request_scope,
    requests_awaiting_decision,
    requests_visible_to,
)

logger = logging.getLogger(__name__)

Kind = ProvisioningRequest.Kind
Status = ProvisioningRequest.Status
PAGE_SIZE = 25

# URL slugs of the request kinds: /requests/new/create-mailbox/
KIND_SLUGS = {kind.value.replace("_", "-"): kind for kind in Kind}


@login_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    user = request.user
    visible = requests_visible_to(user)
    mine = visible.filter(requested_by=user)
    # A configuration problem (bad admin password, IP not allowed...) holds every request:
    # everyone should see it, not only whoever opens one of the requests.
    since = timezone.now() - timedelta(hours=24)
    blocked = visible.filter(needs_operator=True).filter(
        Q(status=Status.QUEUED) | Q(status=Status.FAILED, finished_at__gte=since)
    )
    pending = requests_awaiting_decision(user)
    awaiting = list(pending.order_by("id")[:20])
    context = {
        "operator_problem": blocked.order_by("-updated_at").first(),
        "waiting_for_operator": blocked.filter(status=Status.QUEUED).count(),
        "awaiting": awaiting,
        # Tickets of several requests each (a new customer's mailboxes), to approve together;
        # shown within the awaiting list, so not looked for when nothing awaits.
        "awaiting_tickets": list(
            pending.values("ticket")
            .annotate(count=Count("id"))
            .filter(count__gte=2)
            .order_by("-count", "ticket")[:5]
        )
        if awaiting
        else [],
        "my_open": list(mine.filter(status__in=ProvisioningRequest.OPEN_STATUSES)[:20]),
        "my_recent": list(
            mine.filter(status__in=ProvisioningRequest.TERMINAL_STATUSES).order_by(
                "-finished_at", "-id"
            )[:10]
        ),
        "failures": list(visible.filter(status=Status.FAILED).order_by("-finished_at")[:10]),
        "kinds": _kinds_for(user),
    }
    return render(request, "provisioning/dashboard.html", context)


@login_required
@require_GET
def request_list(request: HttpRequest) -> HttpResponse:
    filters = RequestFilterForm(with_default_size(request.GET, PAGE_SIZE))
    requests = ProvisioningRequest.objects.select_related("requested_by", "decided_by")
    before, size, mine, ticket = None, PAGE_SIZE, False, ""
    if filters.is_valid():
        data = filters.cleaned_data
        if data["status"]:
            requests = requests.filter(status=data["status"])
        if data["kind"]:
            requests = requests.filter(kind=data["kind"])
        if data["target"]:
            requests = requests.filter(Q(target=data["target"]) | Q(domain=data["target"]))
        ticket = data["ticket"].strip()
        if ticket:
            requests = requests.filter(ticket=ticket)
        before, size, mine = data["before"], data["size"], data["mine"]
    else:
        messages.error(request, "Some filters were not understood; showing all requests.")
    page = keyset_page(
        requests,
        before=before,
        size=size,
        branches=request_scope(request.user, per_domain=True, only_own=mine),
    )
    # How many of the ticket's requests await this user: the list links to their review.
    awaiting = (
        requests_awaiting_decision(request.user).filter(ticket=ticket).count() if ticket else 0
    )
    return render(
        request,
        "provisioning/request_list.html",
        {
            "filters": filters,
            "page": page,
            "together": {"ticket": ticket, "count": awaiting} if awaiting else None,
            **page_links(request.GET, page),
        },
    )


@login_required
@require_GET
def request_new(request: HttpRequest) -> HttpResponse:
    kinds = _kinds_for(request.user)
    if not kinds:
        messages.info(request, "You may not open requests yet: ask a portal admin.")
    return render(request, "provisioning/request_new.html", {"kinds": kinds})


@sensitive_post_parameters("password")
@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def request_create(request: HttpRequest, kind_slug: str) -> HttpResponse:
    if kind_slug not in dict(_kinds_for(request.user)):
        raise Http404("No such request kind for you.")
    kind = KIND_SLUGS[kind_slug]
    form_class = REQUEST_FORMS[kind]
    form = form_class(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        try:
            created = services.request_submit(
                requester=request.user,
                kind=kind,
                target=form.target(),
                parameters=form.parameters(),
                password=form.new_password(),
                ticket=form.cleaned_data["ticket"],
                reason=form.cleaned_data["reason"],
                ip=client_ip(request),
            )
        except ApplicationError as error:
            form.add_error(None, error.message)
        except DatabaseError:
            logger.exception("A request could not be submitted")
            form.add_error(None, NOT_RECORDED)
        else:
            messages.success(request, f"{created.code} is waiting for approval.")
            return redirect("provisioning:detail", code=created.code)
    return render(request, "provisioning/request_form.html", {"form": form, "kind": Kind(kind)})


@never_cache
@login_required
@require_GET
def request_detail(request: HttpRequest, code: str) -> HttpResponse:
    item = request_get_for_user(user=request.user, code=code)
    return render(request, "provisioning/request_detail.html", _detail_context(request, item))


@login_required
@require_GET
def request_status(request: HttpRequest, code: str) -> HttpResponse:
    """The status badge, polled by htmx while the request executes."""
    item = request_get_for_user(user=request.user, code=code)
    response = render(request, "provisioning/_request_status.html", {"item": item})
    if request.GET.get("reload") == "1" and not item.is_active:
        # It just finished: reload the page once to show the outcome and the timeline.
        response["HX-Refresh"] = "true"
    return response


@login_required
@require_POST
def request_approve(request: HttpRequest, code: str) -> HttpResponse:
    item = request_get_for_user(user=request.user, code=code)
    return _act(
        request,
        item,
        lambda: services.request_approve(request=item, actor=request.user, ip=client_ip(request)),
        f"{item.code} is approved and queued.",
    )


@login_required
@require_http_methods(["GET", "POST"])
def requests_approve_together(request: HttpRequest) -> HttpResponse:
    """GET: the requests of a ticket awaiting this approver, every one of them, to review; POST:
    approve exactly those (the form carries their ids), or nothing if the set changed."""
    if request.method == "GET":
        return _review_together(request)
    form = ApproveTogetherForm(request.POST)
    if not form.is_valid():
        messages.error(request, "That approval was not understood; nothing was approved.")
        return redirect("provisioning:list")
    data = form.cleaned_data
    try:
        approved = services.requests_approve_together(
            actor=request.user,
            ticket=data["ticket"],
            reviewed=data["reviewed"],
            ip=client_ip(request),
        )
    except ApplicationError as error:
        messages.error(request, error.message)
    except DatabaseError:
        logger.exception(
            "Approving the requests of %s together: the database refused", data["ticket"]
        )
        messages.error(request, NOT_RECORDED)
    else:
        messages.success(
            request,
            f"{approved} request{pluralize(approved)} of {data['ticket']} approved and queued.",
        )
        return redirect(_with_ticket("provisioning:list", data["ticket"]))
    return redirect(_with_ticket("provisioning:approve_together", data["ticket"]))  # look again


def _review_together(request: HttpRequest) -> HttpResponse:
    try:
        ticket = validate_ticket(request.GET.get("ticket", ""))
    except ValidationError:
        messages.error(request, "Choose a ticket to review its requests together.")
        return redirect("provisioning:list")
    awaiting = awaiting_together(request.user, ticket)
    if not awaiting:
        messages.info(request, f"No request of {ticket} awaits your approval.")
        return redirect(_with_ticket("provisioning:list", ticket))
    return render(
        request,
        "provisioning/approve_together.html",
        {
            "ticket": ticket,
            "awaiting": awaiting,
            "reviewed": ",".join(str(item.pk) for item in awaiting),
            # Only a full review can have more behind it.
            "more": len(awaiting) == LARGEST_APPROVAL
            and requests_awaiting_decision(request.user)
            .filter(ticket=ticket, pk__gt=awaiting[-1].pk)
            .exists(),
        },
    )


def _with_ticket(view_name: str, ticket: str) -> str:
    return f"{reverse(view_name)}?{urlencode({'ticket': ticket})}"


@login_required
@require_POST
def request_reject(request: HttpRequest, code: str) -> HttpResponse:
    item = request_get_for_user(user=request.user, code=code)
    form = RejectForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Say why the request is rejected: the requester will read it.")
        return redirect("provisioning:detail", code=item.code)
    return _act(
        request,
        item,
        lambda: services.request_reject(
            request=item,
            actor=request.user,
            reason=form.cleaned_data["reason"],
            ip=client_ip(request),
        ),
        f"{item.code} is rejected.",
    )


@login_required
@require_POST
def request_cancel(request: HttpRequest, code: str) -> HttpResponse:
    item = request_get_for_user(user=request.user, code=code)
    return _act(
        request,
        item,
        lambda: services.request_cancel(request=item, actor=request.user, ip=client_ip(request)),
        f"{item.code} is cancelled.",
    )


@sensitive_post_parameters("password")
@never_cache
@login_required
@require_POST
def request_retry(request: HttpRequest, code: str) -> HttpResponse:
    item = request_get_for_user(user=request.user, code=code)
    form = RetryForm(request.POST, needs_password=item.kind == Kind.CREATE_MAILBOX)
    if not form.is_valid():
        context = _detail_context(request, item)
        context["retry_form"] = form
        return render(request, "provisioning/request_detail.html", context, status=400)
    return _act(
        request,
        item,
        lambda: services.request_retry(
            request=item,
            actor=request.user,
            password=form.cleaned_data.get("password") or None,
            ip=client_ip(request),
        ),
        f"{item.code} is queued again.",
    )


@login_required
@require_POST
def request_comment(request: HttpRequest, code: str) -> HttpResponse:
    item = request_get_for_user(user=request.user, code=code)
    form = CommentForm(request.POST)
    if not form.is_valid():
        messages.error(request, "A comment needs some text (at most 4,000 characters).")
        return redirect("provisioning:detail", code=item.code)
    return _act(
        request,
        item,
        lambda: services.request_comment(
            request=item, author=request.user, body=form.cleaned_data["body"], ip=client_ip(request)
        ),
        "Comment added.",
    )


# --- Helpers -----------------------------------------------------------------------------------


NOT_RECORDED = (
    "Maildesk could not write this to the audit log, so nothing was done. Try again in a "
    "moment; if it keeps happening, tell an operator."
)


def _act(request: HttpRequest, item: ProvisioningRequest, action, success: str) -> HttpResponse:
    """Run one service call; its refusal becomes a message. Back to the request page."""
    try:
        action()
    except ApplicationError as error:
        messages.error(request, error.message)
    except DatabaseError:
        # The action and its audit row are one transaction: neither happened.
        logger.exception("Request %s: the database refused an action", item.code)
        messages.error(request, NOT_RECORDED)
    else:
        messages.success(request, success)
    return redirect("provisioning:detail", code=item.code)


def _kinds_for(user) -> list[tuple[str, str]]:
    """(URL slug, label) of the request kinds this user may open."""
    kinds = []
    if domains_for(user, Delegation.Role.REQUESTER).exists():
        kinds += [Kind.CREATE_MAILBOX, Kind.DELETE_MAILBOX, Kind.DELETE_DOMAIN]
    if may_request_new_domain(user):
        kinds.append(Kind.CREATE_DOMAIN)
    return [(kind.value.replace("_", "-"), kind.label) for kind in kinds]


_PARAMETER_LABELS = {
    "name": "Name",
    "quota_mb": "Quota",
    "language": "Language",
    "default_user_quota_mb": "Default mailbox quota",
    "max_user_quota_mb": "Largest mailbox quota",
    "max_users": "Maximum mailboxes",
    "max_aliases": "Maximum aliases",
}


def _parameter_rows(item: ProvisioningRequest) -> list[tuple[str, str]]:
    """The request's settings as (label, value) for people; empty means the default."""
    rows = []
    for key, value in item.parameters.items():
        label = _PARAMETER_LABELS.get(key, key)
        if key == "name":
            label = "Description" if item.kind == Kind.CREATE_DOMAIN else "Display name"
        if value in (None, ""):
            shown = "default"
        elif key.endswith("_mb"):
            shown = "no limit" if value == 0 else f"{value} MB"
        else:
            shown = str(value)
        rows.append((label, shown))
    return rows


def _detail_context(request: HttpRequest, item: ProvisioningRequest) -> dict:
    user = request.user
    decides = may_decide(user, item)
    events = AuditEvent.objects.filter(request_code=item.code).order_by("id")
    comments = {comment.pk: comment for comment in item.comments.select_related("author")}
    timeline = [(event, comments.get(event.details.get("comment_id"))) for event in events]
    return {
        "item": item,
        "parameters": _parameter_rows(item),
        "timeline": timeline,
        "may_approve": decides
        and item.status == Status.PENDING
        and item.requested_by_id != user.pk,
        "may_reject": decides and item.status == Status.PENDING,
        "may_cancel": item.status == Status.PENDING and item.requested_by_id == user.pk,
        "may_retry": decides and item.status == Status.FAILED,
        "may_comment": may_comment(user, item),
        "reject_form": RejectForm(),
        "retry_form": RetryForm(needs_password=item.kind == Kind.CREATE_MAILBOX),
        "comment_form": CommentForm(),
        "status_url": reverse("provisioning:status", kwargs={"code": item.code}),
    }
