"""No IDOR: every URL that takes an identifier answers 404 to anyone outside its scope.

The test walks the project's URL patterns. Each pattern with a parameter must have a case in
CASES below, or `test_every_url_with_an_identifier_has_a_scope_case` fails: a new URL cannot
arrive without its scope being tested. For each case, people of another scope (a requester and
an approver of another domain, an auditor, someone with no role) read and write it: 404 every
time, nothing changes, nothing is published, and the mail server hears nothing.
"""

from dataclasses import dataclass

import pytest
from django.contrib.admin.sites import site as admin_site
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from apps.audit.models import AuditEvent
from apps.provisioning import services
from apps.provisioning.models import ProvisioningRequest
from tests.conftest import APPROVER, REQUESTER, make_user

pytestmark = pytest.mark.django_db

FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Case:
    """How to reach one URL of a request outside the visitor's scope."""

    methods: tuple[str, ...]
    data: dict
    needs: str = "pending"  # which request: pending, failed, new_domain; or "kind" slugs


CASES: dict[str, Case] = {
    "provisioning:detail": Case(("GET",), {}),
    "provisioning:status": Case(("GET",), {}),
    "provisioning:approve": Case(("POST",), {}),
    "provisioning:reject": Case(("POST",), {"reason": "no"}),
    "provisioning:cancel": Case(("POST",), {}),
    "provisioning:retry": Case(("POST",), {"password": "Retry-Pa55word!"}, needs="failed"),
    "provisioning:comment": Case(("POST",), {"body": "hello"}),
    "provisioning:create": Case(("GET", "POST"), {"ticket": "HD-1", "reason": "x"}, needs="kind"),
}


def named_patterns(resolver: URLResolver, namespace: str = "", prefix: str = "") -> dict:
    """Every URL pattern of the project: {namespaced name: route}, admin excluded."""
    found = {}
    for entry in resolver.url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            if entry.app_name == "admin":
                continue
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            found.update(named_patterns(entry, inner, route))
        elif isinstance(entry, URLPattern) and entry.name:
            found[f"{namespace}{entry.name}"] = route
    return found


def takes_identifier(route: str) -> bool:
    return "<" in route or "(?P<" in route


def test_every_url_with_an_identifier_has_a_scope_case():
    with_identifier = {
        name for name, route in named_patterns(get_resolver()).items() if takes_identifier(route)
    }

    assert with_identifier == set(CASES), (
        "A URL that takes an identifier needs a scope case in tests/security/test_scope.py"
    )


@pytest.fixture
def outsiders(example_com, other_org, audrey, charlie):
    """People of another scope than example.com's requests."""
    return {
        "requester elsewhere": make_user("rita", domains={other_org: [REQUESTER]}),
        "approver elsewhere": make_user("abe", domains={other_org: [APPROVER]}),
        "auditor": audrey,
        "no role": charlie,
    }


@pytest.fixture
def targets(alice):
    def submit(target: str, kind: str = "delete_mailbox") -> ProvisioningRequest:
        return services.request_submit(
            requester=alice, kind=kind, target=target, parameters={}, ticket="HD-1",
            reason="scope test",
        )  # fmt: skip

    failed = submit("failed@example.com")
    ProvisioningRequest.objects.filter(pk=failed.pk).update(status="failed", result_code="X")
    return {
        "pending": submit("pending@example.com"),
        "failed": ProvisioningRequest.objects.get(pk=failed.pk),
        "new_domain": submit("brand-new.example", kind="create_domain"),
    }


def snapshot() -> tuple:
    return (
        list(ProvisioningRequest.objects.order_by("pk").values()),
        AuditEvent.objects.exclude(outcome=AuditEvent.Outcome.REFUSED).count(),
    )


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("who", ["requester elsewhere", "approver elsewhere", "auditor", "no role"])
def test_outsiders_get_404_and_change_nothing(
    name, who, outsiders, targets, client, mail_server, published,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    case = CASES[name]
    client.force_login(outsiders[who])
    if case.needs == "kind":
        # Opening a request of a kind: outsiders may not open requests in example.com, and
        # only new-domain requesters may open a domain.
        urls = [reverse(name, kwargs={"kind_slug": "create-domain"})]
        if who in ("auditor", "no role"):
            urls += [reverse(name, kwargs={"kind_slug": slug}) for slug in
                     ("create-mailbox", "delete-mailbox", "delete-domain")]  # fmt: skip
    else:
        urls = [reverse(name, kwargs={"code": targets[case.needs].code}),
                reverse(name, kwargs={"code": targets["new_domain"].code})]  # fmt: skip
    before = snapshot()

    with django_capture_on_commit_callbacks(execute=True):
        for url in urls:
            for method in case.methods:
                answer = client.generic(method, url, data=_encoded(case.data), content_type=FORM)
                assert answer.status_code == 404, (method, url, answer.status_code)

    assert snapshot() == before
    assert published() == []
    assert mail_server.emulator.stats()["requests"] == 0


def _encoded(data: dict) -> str:
    from urllib.parse import urlencode

    return urlencode(data)


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if len(c.methods) == 1))
def test_a_method_the_url_does_not_take_answers_the_same_for_any_code(name, client, charlie,
                                                                       targets):  # fmt: skip
    """A 405 before the lookup tells nothing about whether a code exists."""
    case = CASES[name]
    other = "POST" if case.methods == ("GET",) else "GET"
    client.force_login(charlie)
    kwargs = ({"kind_slug": "create-mailbox"} if case.needs == "kind"
              else {"code": targets["pending"].code})  # fmt: skip
    unknown = {"kind_slug": "no-such-kind"} if case.needs == "kind" else {"code": "REQ-NONE0000"}

    existing = client.generic(other, reverse(name, kwargs=kwargs)).status_code
    missing = client.generic(other, reverse(name, kwargs=unknown)).status_code

    assert existing == missing == 405


def test_the_admin_is_closed_to_everyone_but_portal_admins(client, alice, bob, audrey, charlie,
                                                           targets):  # fmt: skip
    """Django admin: every registered model's pages, for every non-staff persona."""
    pending = targets["pending"]
    urls = [reverse("admin:index")]
    for model in admin_site._registry:
        meta = model._meta
        urls.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
        urls.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_add"))
    event = AuditEvent.objects.filter(request_code=pending.code).first()
    urls.append(reverse("admin:audit_auditevent_change", args=[event.pk]))
    urls.append(reverse("admin:auth_user_change", args=[alice.pk]))
    for user in (alice, bob, audrey, charlie):
        client.force_login(user)
        for url in urls:
            answer = client.get(url)
            assert answer.status_code in (302, 404), (user.username, url, answer.status_code)
            if answer.status_code == 302:
                assert answer["Location"].startswith(reverse("admin:login"))
