"""Someone with a role in hundreds of domains: the list pages still answer, with their scope.

A list page makes one branch of a union per domain (apps.core.pagination); past
MAX_DOMAIN_BRANCHES they become one branch, or SQLite would refuse the query (a UNION of over
500 parts) and planning would grow with the domains.
"""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from apps.accounts.models import Delegation, MailDomain
from apps.accounts.selectors import MAX_DOMAIN_BRANCHES, domain_branches
from apps.audit.services import audit_record
from apps.provisioning.models import ProvisioningRequest

pytestmark = pytest.mark.django_db

DOMAINS = 600


@pytest.fixture
def many(alice):
    user = get_user_model().objects.create_user("many", password="Many-Domains-1!")
    domains = MailDomain.objects.bulk_create(
        [MailDomain(name=f"d{number}.example") for number in range(DOMAINS)]
    )
    Delegation.objects.bulk_create(
        [Delegation(user=user, domain=domain, role=Delegation.Role.APPROVER) for domain in domains]
    )
    for name in ("d1.example", "d599.example", "elsewhere.example"):
        ProvisioningRequest.objects.create(
            kind=ProvisioningRequest.Kind.DELETE_DOMAIN, domain=name, target=name,
            requested_by=alice, ticket="T-1", reason="test",
        )  # fmt: skip
        audit_record(action="x.seen", domain=name, target=name)
    return user


def test_past_the_limit_the_domains_are_one_branch(many):
    assert len(domain_branches(many, per_domain=True)) == 1
    delegations = Delegation.objects.filter(user=many).order_by("pk")
    delegations.exclude(pk__in=delegations[:MAX_DOMAIN_BRANCHES].values("pk")).delete()
    assert len(domain_branches(many, per_domain=True)) == MAX_DOMAIN_BRANCHES


@pytest.mark.parametrize("page", ["provisioning:list", "audit:list"])
def test_the_list_pages_answer_with_exactly_the_scope(client, many, page):
    client.force_login(many)

    response = client.get(reverse(page), {"size": "100"})

    assert response.status_code == 200
    text = response.content.decode()
    assert "d1.example" in text
    assert "d599.example" in text
    assert "elsewhere.example" not in text
