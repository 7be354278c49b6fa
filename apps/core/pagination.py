"""Keyset pagination: pages by "rows with an id below the last one seen", newest first.

Page 10,000 costs what page 1 costs: no OFFSET to skip, and no COUNT of the whole table. The
page knows only whether there is a next one (it fetches one row more than it shows).
"""

from dataclasses import dataclass
from typing import Generic, TypeVar

from django.db.models import Model, QuerySet
from django.http import QueryDict

T = TypeVar("T", bound=Model)


@dataclass
class KeysetPage(Generic[T]):
    items: list[T]
    # The `before` value of the next (older) page, or None on the last page.
    next_before: int | None
    is_first: bool


def page_links(query: QueryDict, page: KeysetPage) -> dict[str, str]:
    """Query strings of the links to the first page and the next one, other filters kept."""
    first = query.copy()
    first.pop("before", None)
    following = first.copy()
    following["before"] = str(page.next_before)
    return {"first_query": first.urlencode(), "next_query": following.urlencode()}


def keyset_page(queryset: QuerySet[T], *, before: int | None, size: int) -> KeysetPage[T]:
    rows = queryset.order_by("-pk")
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
