"""Keyset pages over a union of branches hold exactly the rows of the branches' OR, once each,
newest first, whatever the page size and however the branches interleave."""

import random
from functools import reduce
from operator import or_

import pytest
from django.db.models import Q

from apps.audit.models import AuditEvent
from apps.core.pagination import Branch, keyset_page

pytestmark = pytest.mark.django_db

MINE = ["REQ-MINE0001", "REQ-MINE0002", "REQ-MINE0003"]


@pytest.fixture
def events() -> None:
    """150 events over three domains and a few request codes, interleaved at random."""
    rng = random.Random(5)
    AuditEvent.objects.bulk_create(
        AuditEvent(
            actor_label="worker",
            action="api.call",
            domain=rng.choice(["a.example", "b.example", "c.example"]),
            # A run of the same code now and then, as a request's events come together.
            request_code=rng.choice([*MINE, "REQ-OTHER0001", "", "", ""]),
            previous_seal="-",
            seal="-",
        )
        for _ in range(150)
    )


def pages(branches: list[Branch], size: int) -> tuple[list[int], int]:
    """Every id shown following the pages, and the number of pages."""
    shown, before, count = [], None, 0
    while True:
        page = keyset_page(AuditEvent.objects.all(), before=before, size=size, branches=branches)
        shown += [event.pk for event in page.items]
        count += 1
        if page.next_before is None:
            return shown, count
        before = page.next_before


def expected(branches: list[Branch]) -> list[int]:
    rows = AuditEvent.objects.filter(reduce(or_, (branch.where for branch in branches)))
    return list(rows.order_by("-id").values_list("id", flat=True))


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 10, 25, 200])
@pytest.mark.parametrize(
    "branches",
    [
        # Walked and gathered branches together: the gathered one is bounded by the walks.
        [Branch(Q(domain="a.example")), Branch(Q(request_code__in=MINE), walk=False)],
        [
            Branch(Q(domain="a.example")),
            Branch(Q(domain="b.example")),
            Branch(Q(request_code__in=MINE[:1]), walk=False),
        ],
        # A sparse walk: the gathered branch is mostly unbounded.
        [Branch(Q(request_code="REQ-OTHER0001")), Branch(Q(request_code__in=MINE), walk=False)],
        [Branch(Q(request_code__in=MINE), walk=False)],
        [Branch(Q(domain="a.example")), Branch(Q(domain="c.example"))],
    ],
    ids=["domain+codes", "two-domains+code", "sparse+codes", "codes-only", "two-domains"],
)
def test_the_pages_hold_exactly_the_rows_of_the_or(events, branches, size):
    wanted = expected(branches)
    assert len(wanted) > 20

    shown, count = pages(branches, size)

    assert shown == wanted
    assert count == max(1, -(-len(wanted) // size))


def test_a_branch_that_matches_nothing_is_left_out(events):
    branches = [Branch(Q(domain="a.example")), Branch(Q(pk__in=[])), Branch(Q(pk__in=[]), False)]

    shown, _ = pages(branches, 10)

    assert shown == expected(branches[:1])


def test_no_branch_that_can_match_is_an_empty_page(events):
    page = keyset_page(
        AuditEvent.objects.all(), before=None, size=10, branches=[Branch(Q(pk__in=[]))] * 2
    )

    assert page.items == []
    assert page.next_before is None
