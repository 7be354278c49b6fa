"""Writing audit events: `audit_append` writes a batch in one INSERT, read back as written."""

import inspect
import uuid
from types import SimpleNamespace

import pytest

from apps.audit.models import AppendOnlyError, AuditEvent
from apps.audit.services import ACTOR_LABEL_LIMIT, audit_append, audit_event, audit_record
from tests.helpers import verify_audit

pytestmark = pytest.mark.django_db


def test_a_batch_reads_back_as_written_with_ids_in_its_order(alice):
    request = SimpleNamespace(
        code="R-7", target="jane@example.com", domain="example.com", ticket="HD-9",
        correlation_id=uuid.uuid4(),
    )  # fmt: skip
    events = [
        audit_event(action="api.call", request=request, details={"attempt": 1}),
        audit_event(
            action="request.approved",
            actor=alice,
            ip="2001:DB8::1",
            message="ok\n",
            outcome=AuditEvent.Outcome.SUCCESS,
            details={"nested": {"b": [1.5, None], "a": "é"}},
        ),
        audit_event(action="sign_in.failed", actor_label="x" * 400, ip="not an address"),
    ]

    assert audit_append(events) is events

    assert events[2].actor_label == "x" * ACTOR_LABEL_LIMIT  # capped before it is written

    ids = [event.pk for event in events]
    assert None not in ids
    assert ids == sorted(ids)
    for event in events:
        stored = AuditEvent.objects.get(pk=event.pk)
        for field in AuditEvent._meta.concrete_fields:
            assert getattr(stored, field.attname) == getattr(event, field.attname), field.name
    assert AuditEvent.objects.get(pk=ids[0]).correlation_id == request.correlation_id
    assert AuditEvent.objects.get(pk=ids[1]).actor_ip == "2001:db8::1"
    assert AuditEvent.objects.get(pk=ids[1]).details == {"nested": {"b": [1.5, None], "a": "é"}}
    assert verify_audit()[0] == 0  # chained in the batch's order


def test_written_events_are_not_written_again(alice):
    (event,) = audit_append([audit_event(action="request.submitted", actor=alice)])

    with pytest.raises(AppendOnlyError):
        event.save()
    assert AuditEvent.objects.count() == 1


def test_an_empty_batch_writes_nothing():
    assert audit_append([]) == []
    assert AuditEvent.objects.count() == 0


def test_audit_record_takes_exactly_the_arguments_of_audit_event():
    # Two explicit keyword lists, on purpose (readable at the call sites); this keeps them one.
    assert inspect.signature(audit_record).parameters == inspect.signature(audit_event).parameters
