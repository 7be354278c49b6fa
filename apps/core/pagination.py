"""Keyset pagination: pages by "rows with an id below the last one seen", newest first.

Page 10,000 costs what page 1 costs: no OFFSET to skip, and no COUNT of the whole table. The
page knows only whether there is a next one (it fetches one row more than it shows).

A reader who sees only part of a table (their own requests, their domains...) pages through a
union of branches, one per part: each branch walks its own index in id order and stops after a
page's worth of rows, and the page keeps the newest of what they found. An OR of the parts
would make PostgreSQL walk the whole table's id index and filter: a reader whose rows all lie
late in the table (a domain added last month) paid for every older row on their last page.
"""

from dataclasses import dataclass
from functools import reduce
from operator import or_
from typing import Generic, TypeVar

from django import forms
from django.core.exceptions import EmptyResultSet
from django.db import connections
from django.db.models import BigIntegerField, ExpressionWrapper, F, Model, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.http import QueryDict

T = TypeVar("T", bound=Model)

# Page sizes people may choose (`?size=`); each list view has its own default among them.
PAGE_SIZES = (10, 25, 50, 100)


@dataclass
class KeysetPage(Generic[T]):
    items: list[T]
    # The `before` value of the next (older) page, or None on the last page.
    next_before: int | None
    is_first: bool


@dataclass(frozen=True)
class Branch:
    """One part of what a reader may see, e.g. "the events of domain X"."""

    where: Q
    # Whether an index gives this branch's rows in id order (a column equal to one value,
    # with an index on (column, id)). If not (rows matching any of a list of values), the
    # branch gathers its matches newer than the walking branches' page and sorts them: walking
    # the id index instead would read every older row of the table when the matches run out.
    walk: bool = True


def within(queryset: QuerySet[T], branches: list[Branch] | None) -> QuerySet[T]:
    """The rows of any of `branches` as one filter (None: every row): for lookups and exports,
    which are not paged."""
    if branches is None:
        return queryset
    return queryset.filter(reduce(or_, (branch.where for branch in branches)))


def page_size_field() -> forms.TypedChoiceField:
    """The `size` field of a list's filter form: empty means the list's default."""
    return forms.TypedChoiceField(
        label="Per page",
        choices=[(str(size), str(size)) for size in PAGE_SIZES],
        coerce=int,
        empty_value=None,
        required=False,
        # static/js/maildesk.js sends the form when the size changes (no Filter click needed).
        widget=forms.Select(attrs={"data-submit-on-change": "true"}),
        error_messages={
            "invalid_choice": (
                f"Choose {_sizes_in_words()} rows per page; this page shows the default."
            )
        },
    )


def _sizes_in_words() -> str:
    *others, last = (str(size) for size in PAGE_SIZES)
    return f"{', '.join(others)} or {last}"


def with_default_size(query: QueryDict, size: int) -> QueryDict:
    """The query with the list's default page size when it names none, so that the size
    selector shows the size of the page."""
    if query.get("size"):
        return query
    query = query.copy()
    query["size"] = str(size)
    return query


def page_links(query: QueryDict, page: KeysetPage) -> dict[str, str]:
    """Query strings of the links to the first page and the next one, other filters kept."""
    first = query.copy()
    first.pop("before", None)
    following = first.copy()
    following["before"] = str(page.next_before)
    return {"first_query": first.urlencode(), "next_query": following.urlencode()}


def keyset_page(
    queryset: QuerySet[T],
    *,
    before: int | None,
    size: int,
    branches: list[Branch] | None = None,
) -> KeysetPage[T]:
    """The page of `queryset` (or of the union of its `branches`) below id `before`."""
    if branches is None:
        rows = queryset
    elif len(branches) == 1 and branches[0].walk:
        rows = queryset.filter(branches[0].where)
    else:
        rows = _newest_of_each(queryset, branches, before, size)
    rows = rows.order_by("-pk")
    if before is not None:
        rows = rows.filter(pk__lt=before)
    items = list(rows[: size + 1])
    has_more = len(items) > size
    items = items[:size]
    return KeysetPage(
        items=items,
        next_before=items[-1].pk if has_more else None,
        is_first=before is None,
    )


def _newest_of_each(
    queryset: QuerySet[T], branches: list[Branch], before: int | None, size: int
) -> QuerySet[T]:
    """`queryset` narrowed to the newest size + 1 ids of each branch.

    Each branch is a subquery with its own ORDER BY and LIMIT, wrapped as a derived table so
    that SQLite takes it too (it refuses ORDER BY and LIMIT in a bare UNION part). A gathering
    branch costs as many rows as it matches, unless it is bounded: when the walking branches
    found size + 1 rows, an older row of a gathering branch cannot be on the page, so it is
    asked only for rows newer than those (one query more, which costs what the walks cost).
    PostgreSQL then reads that short id range instead of every match.
    """
    walked = [_part(queryset, branch, before, size) for branch in branches if branch.walk]
    walked = [part for part in walked if part is not None]
    floor = None
    if walked and not all(branch.walk for branch in branches):
        sql, params = _union(walked)
        # Names of the ORM's own SQL; the values are parameters.
        newest = f"SELECT * FROM ({sql}) AS walked ORDER BY 1 DESC LIMIT 1 OFFSET %s"  # noqa: S608
        with connections[queryset.db].cursor() as cursor:
            cursor.execute(newest, [*params, size])
            row = cursor.fetchone()
        floor = row[0] if row else None
    gathered = [
        _part(queryset, branch, before, size, floor=floor) for branch in branches if not branch.walk
    ]
    parts = walked + [part for part in gathered if part is not None]
    if not parts:
        return queryset.none()
    sql, params = _union(parts)
    return queryset.filter(pk__in=RawSQL(sql, params))  # noqa: S611


def _part(
    queryset: QuerySet[T], branch: Branch, before: int | None, size: int, floor: int | None = None
) -> tuple[str, tuple] | None:
    """The SQL of one branch's newest size + 1 ids (above `floor`); None if it matches nothing."""
    rows = queryset.filter(branch.where)
    if before is not None:
        rows = rows.filter(pk__lt=before)
    if floor is not None:
        rows = rows.filter(pk__gt=floor)
    # Ordered by "id + 0", no index can give the order: PostgreSQL gathers and sorts.
    newest = F("pk") if branch.walk else ExpressionWrapper(F("pk") + 0, BigIntegerField())
    rows = rows.order_by(newest.desc()).values("pk")[: size + 1]
    try:
        return rows.query.get_compiler(using=rows.db).as_sql()
    except EmptyResultSet:  # e.g. a user without any domain
        return None


def _union(parts: list[tuple[str, tuple]]) -> tuple[str, list]:
    sql = " UNION ".join(
        f"SELECT * FROM ({part}) AS branch_{number}"  # noqa: S608
        for number, (part, _) in enumerate(parts)
    )
    return sql, [value for _, params in parts for value in params]
