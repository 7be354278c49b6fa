"""Scope: who may do what, where (apps.accounts.selectors), and which requests each person
reads and decides (apps.provisioning.selectors). Outside a person's scope a request is a 404."""

from collections.abc import Callable
from typing import Any

import pytest
from django.http import Http404

from apps.accounts.models import Delegation
from apps.accounts.selectors import (
    domains_for,
    holds_role,
    is_auditor,
    may_approve_new_domain,
    may_request_new_domain,
)
from apps.provisioning.models import ProvisioningRequest
from apps.provisioning.selectors import (
    may_comment,
    may_decide,
    request_get_for_user,
    request_scope,
    requests_awaiting_decision,
    requests_visible_to,
)
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

REQUESTER, APPROVER = Delegation.Role.REQUESTER, Delegation.Role.APPROVER
Kind = ProvisioningRequest.Kind
Status = ProvisioningRequest.Status
PERSONAS = ["alice", "bob", "dave", "carol", "charlie", "audrey", "root"]


@pytest.fixture
def persona(request: pytest.FixtureRequest, example_com: Any, other_org: Any) -> Callable:
    """A persona fixture by name, with both domains present."""
    return request.getfixturevalue


def names(domains: Any) -> list[str]:
    return sorted(domain.name for domain in domains)


def make_request(user: Any, kind: str, target: str, status: str = Status.PENDING) -> Any:
    """Test setup: a request row as the workflow would have left it (no scope check here)."""
    domain = target.split("@")[-1]
    return ProvisioningRequest.objects.create(
        kind=kind,
        domain=domain,
        target=target,
        ticket="HD-1",
        reason="setup",
        requested_by=user,
        status=status,
    )


def targets(requests: Any) -> set[str]:
    return {request.target for request in requests}


# --- apps.accounts.selectors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "requester_of", "approver_of"),
    [
        ("alice", ["example.com"], []),
        ("bob", [], ["example.com"]),
        ("dave", ["example.com"], ["example.com"]),
        ("carol", ["other.org"], ["other.org"]),
        ("charlie", [], []),
        ("audrey", [], []),
        ("root", ["example.com", "other.org"], ["example.com", "other.org"]),
    ],
)
def test_domains_for_lists_the_domains_where_each_persona_holds_the_role(
    persona, who, requester_of, approver_of
):
    user = persona(who)

    assert names(domains_for(user, REQUESTER)) == requester_of
    assert names(domains_for(user, APPROVER)) == approver_of


@pytest.mark.parametrize("who", ["alice", "dave", "root"])
def test_domains_for_leaves_out_a_deleted_domain(persona, example_com, who):
    user = persona(who)
    example_com.is_active = False
    example_com.save()

    assert "example.com" not in names(domains_for(user, REQUESTER))
    assert "example.com" not in names(domains_for(user, APPROVER))


def test_domains_for_lists_a_domain_once_even_with_several_delegations(example_com, other_org):
    user = make_user("erin", domains={example_com: [REQUESTER, APPROVER]})
    make_user("frank", domains={example_com: [REQUESTER]})

    assert names(domains_for(user, REQUESTER)) == ["example.com"]


@pytest.mark.parametrize(
    ("who", "role", "domain", "expected"),
    [
        ("alice", REQUESTER, "example.com", True),
        ("alice", APPROVER, "example.com", False),
        ("alice", REQUESTER, "other.org", False),
        ("bob", REQUESTER, "example.com", False),
        ("bob", APPROVER, "example.com", True),
        ("bob", APPROVER, "other.org", False),
        ("dave", REQUESTER, "example.com", True),
        ("dave", APPROVER, "example.com", True),
        ("dave", APPROVER, "other.org", False),
        ("carol", REQUESTER, "other.org", True),
        ("carol", APPROVER, "other.org", True),
        ("carol", REQUESTER, "example.com", False),
        ("carol", APPROVER, "example.com", False),
        ("charlie", REQUESTER, "example.com", False),
        ("charlie", APPROVER, "other.org", False),
        ("audrey", REQUESTER, "example.com", False),
        ("audrey", APPROVER, "example.com", False),
        ("root", REQUESTER, "example.com", True),
        ("root", APPROVER, "other.org", True),
    ],
)
def test_holds_role_answers_for_each_persona(persona, who, role, domain, expected):
    assert holds_role(persona(who), role, domain) is expected


@pytest.mark.parametrize(
    ("who", "may_request", "may_approve", "auditor"),
    [
        ("alice", True, False, False),
        ("bob", False, True, False),
        ("dave", False, False, False),
        ("carol", False, False, False),
        ("charlie", False, False, False),
        ("audrey", False, False, True),
        ("root", True, True, True),
    ],
)
def test_the_global_grants_of_each_persona(persona, who, may_request, may_approve, auditor):
    user = persona(who)

    assert may_request_new_domain(user) is may_request
    assert may_approve_new_domain(user) is may_approve
    assert is_auditor(user) is auditor


def test_an_inactive_account_holds_no_global_grant(alice, bob, audrey):
    for user in (alice, bob, audrey):
        user.is_active = False
        user.save()

    assert not may_request_new_domain(alice)
    assert not may_approve_new_domain(bob)
    assert not is_auditor(audrey)


# --- apps.provisioning.selectors ---------------------------------------------------------------


@pytest.fixture
def requests(alice, bob, dave, carol, charlie, root) -> dict[str, Any]:
    """One request of each kind of scope, by name."""
    return {
        "alice_mailbox": make_request(alice, Kind.CREATE_MAILBOX, "jane@example.com"),
        "dave_mailbox": make_request(dave, Kind.DELETE_MAILBOX, "old@example.com"),
        "alice_new_domain": make_request(alice, Kind.CREATE_DOMAIN, "new-domain.net"),
        "carol_mailbox": make_request(carol, Kind.CREATE_MAILBOX, "x@other.org"),
        # charlie made it back when he was a requester of other.org.
        "charlie_mailbox": make_request(charlie, Kind.DELETE_MAILBOX, "gone@other.org"),
        "root_mailbox": make_request(root, Kind.DELETE_MAILBOX, "root-made@example.com"),
        "alice_done": make_request(
            alice, Kind.DELETE_MAILBOX, "done@example.com", Status.SUCCEEDED
        ),
    }


ALL_TARGETS = {
    "jane@example.com",
    "old@example.com",
    "new-domain.net",
    "x@other.org",
    "gone@other.org",
    "root-made@example.com",
    "done@example.com",
}
EXAMPLE_COM = {"jane@example.com", "old@example.com", "root-made@example.com", "done@example.com"}
OTHER_ORG = {"x@other.org", "gone@other.org"}


@pytest.mark.parametrize(
    ("who", "visible"),
    [
        # Her own (the new domain too) and everything in example.com.
        ("alice", EXAMPLE_COM | {"new-domain.net"}),
        # example.com, and new domains since he approves them.
        ("bob", EXAMPLE_COM | {"new-domain.net"}),
        # example.com only: he does not approve new domains.
        ("dave", EXAMPLE_COM),
        ("carol", OTHER_ORG),
        # Only his own: he holds no role anywhere any more.
        ("charlie", {"gone@other.org"}),
        # The auditor reads the audit log, not the request pages.
        ("audrey", set()),
        ("root", ALL_TARGETS),
    ],
)
def test_requests_visible_to_each_persona(persona, requests, who, visible):
    assert targets(requests_visible_to(persona(who))) == visible


@pytest.mark.parametrize("deleted", [False, True])
@pytest.mark.parametrize("who", PERSONAS)
def test_the_list_pages_branches_cover_exactly_the_visible_requests(
    persona, requests, example_com, who, deleted
):
    # The list page reads the scope as a union of branches, one per domain; lookups read it as
    # one OR. Both must be the same set, a deleted domain's requests included.
    if deleted:
        example_com.is_active = False
        example_com.save()
    user = persona(who)
    branches = request_scope(user, per_domain=True)
    everything = ProvisioningRequest.objects.all()
    union = (
        set(everything)
        if branches is None
        else {item for branch in branches for item in everything.filter(branch.where)}
    )

    assert targets(union) == targets(requests_visible_to(user))


@pytest.mark.parametrize("who", PERSONAS)
def test_only_own_is_the_users_own_requests(persona, requests, who):
    user = persona(who)
    (branch,) = request_scope(user, per_domain=True, only_own=True)

    assert set(ProvisioningRequest.objects.filter(branch.where)) == set(
        ProvisioningRequest.objects.filter(requested_by=user)
    )


def test_a_new_domain_request_is_hidden_from_another_new_domain_requester(requests):
    erin = make_user("erin", groups=("New-domain requesters",))

    assert may_request_new_domain(erin)
    assert targets(requests_visible_to(erin)) == set()


def test_a_new_domain_request_is_visible_to_any_new_domain_approver(requests):
    fiona = make_user("fiona", groups=("New-domain approvers",))

    assert targets(requests_visible_to(fiona)) == {"new-domain.net"}


def test_requests_of_a_deleted_domain_stay_visible_to_its_staff(requests, example_com, dave):
    example_com.is_active = False
    example_com.save()

    assert targets(requests_visible_to(dave)) == EXAMPLE_COM


@pytest.mark.parametrize(
    ("who", "name"),
    [
        ("alice", "carol_mailbox"),
        ("carol", "alice_mailbox"),
        ("carol", "alice_new_domain"),
        ("dave", "alice_new_domain"),
        ("charlie", "alice_mailbox"),
        ("bob", "charlie_mailbox"),
        ("audrey", "carol_mailbox"),
    ],
)
def test_request_get_for_user_is_a_404_outside_the_users_scope(persona, requests, who, name):
    with pytest.raises(Http404):
        request_get_for_user(user=persona(who), code=requests[name].code)


@pytest.mark.parametrize(
    ("who", "name"),
    [
        ("alice", "alice_mailbox"),
        ("alice", "dave_mailbox"),
        ("bob", "alice_new_domain"),
        ("carol", "charlie_mailbox"),
        ("charlie", "charlie_mailbox"),
        ("root", "alice_new_domain"),
    ],
)
def test_request_get_for_user_returns_a_request_in_scope(persona, requests, who, name):
    found = request_get_for_user(user=persona(who), code=requests[name].code)

    assert found == requests[name]


def test_request_get_for_user_is_a_404_for_an_unknown_code(root, requests):
    with pytest.raises(Http404):
        request_get_for_user(user=root, code="REQ-NOSUCH22")


@pytest.mark.parametrize(
    ("who", "awaiting"),
    [
        ("alice", set()),
        # example.com and new domains; never the succeeded one.
        ("bob", {"jane@example.com", "old@example.com", "root-made@example.com", "new-domain.net"}),
        # example.com except his own.
        ("dave", {"jane@example.com", "root-made@example.com"}),
        # other.org except her own.
        ("carol", {"gone@other.org"}),
        ("charlie", set()),
        ("audrey", set()),
        # Every pending request except his own.
        ("root", {"jane@example.com", "old@example.com", "new-domain.net"} | OTHER_ORG),
    ],
)
def test_requests_awaiting_decision_are_pending_in_scope_and_never_ones_own(
    persona, requests, who, awaiting
):
    assert targets(requests_awaiting_decision(persona(who))) == awaiting


def test_a_request_no_longer_awaits_a_decision_once_decided(requests, dave):
    ProvisioningRequest.objects.filter(pk=requests["alice_mailbox"].pk).update(status=Status.QUEUED)

    assert targets(requests_awaiting_decision(dave)) == {"root-made@example.com"}


@pytest.mark.parametrize(
    ("who", "name", "expected"),
    [
        ("bob", "alice_mailbox", True),
        ("bob", "alice_new_domain", True),
        ("bob", "carol_mailbox", False),
        ("dave", "alice_mailbox", True),
        ("dave", "alice_new_domain", False),
        ("carol", "alice_mailbox", False),
        ("carol", "charlie_mailbox", True),
        ("alice", "alice_mailbox", False),
        ("alice", "dave_mailbox", False),
        ("charlie", "charlie_mailbox", False),
        ("audrey", "alice_mailbox", False),
        ("root", "carol_mailbox", True),
        ("root", "alice_new_domain", True),
    ],
)
def test_may_decide_only_within_the_approvers_scope(persona, requests, who, name, expected):
    assert may_decide(persona(who), requests[name]) is expected


@pytest.mark.parametrize(
    ("who", "name", "expected"),
    [
        ("alice", "alice_mailbox", True),  # the requester
        ("alice", "alice_new_domain", True),
        ("charlie", "charlie_mailbox", True),  # still the requester, without a role now
        ("bob", "alice_mailbox", True),  # the approver
        ("bob", "alice_new_domain", True),
        ("dave", "alice_mailbox", True),  # staff of the domain
        ("alice", "dave_mailbox", True),
        ("dave", "alice_new_domain", False),
        ("carol", "alice_mailbox", False),
        ("charlie", "alice_mailbox", False),
        ("audrey", "alice_mailbox", False),  # reads everything, writes nothing
        ("audrey", "alice_new_domain", False),
    ],
)
def test_may_comment_for_the_requester_and_the_domains_staff_only(
    persona, requests, who, name, expected
):
    assert may_comment(persona(who), requests[name]) is expected
