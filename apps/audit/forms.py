from datetime import date, datetime, time, timedelta

from django import forms
from django.db.models import QuerySet
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.core.pagination import page_size_field

EARLIEST, LATEST = date(2000, 1, 1), date(2999, 12, 31)


class EventFilterForm(forms.Form):
    """Filters of the audit log. Each uses an index, so that every page stays cheap."""

    actor = forms.CharField(max_length=150, required=False, help_text="A username, or worker.")
    target = forms.CharField(label="Domain or address", max_length=320, required=False)
    ticket = forms.CharField(max_length=64, required=False)
    request = forms.CharField(
        label="Request", max_length=16, required=False, help_text="e.g. REQ-7K2M9QXH"
    )
    action = forms.CharField(max_length=64, required=False, help_text="e.g. request.approved")
    outcome = forms.ChoiceField(
        choices=[("", "Any outcome"), *AuditEvent.Outcome.choices], required=False
    )
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    before = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)
    size = page_size_field()

    def _in_range(self, field: str) -> date | None:
        day = self.cleaned_data.get(field)
        # The calendar's edges would overflow once shifted to UTC.
        if day is not None and not EARLIEST <= day <= LATEST:
            raise forms.ValidationError(f"Enter a date between {EARLIEST} and {LATEST}.")
        return day

    def clean_since(self) -> date | None:
        return self._in_range("since")

    def clean_until(self) -> date | None:
        return self._in_range("until")

    def clean(self) -> dict:
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            self.add_error("until", "The end of the range is before its start.")
        return data

    def apply(self, events: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
        data = self.cleaned_data
        if data["actor"]:
            events = events.filter(actor_label=data["actor"].strip())
        target = data["target"].strip().lower()
        if target:
            # An address is a target; a bare domain matches everything in that domain.
            events = events.filter(target=target) if "@" in target else events.filter(domain=target)
        if data["ticket"]:
            events = events.filter(ticket=data["ticket"].strip())
        if data["request"]:
            events = events.filter(request_code=data["request"].strip().upper())
        if data["action"]:
            events = events.filter(action=data["action"].strip())
        if data["outcome"]:
            events = events.filter(outcome=data["outcome"])
        if data["since"]:
            events = events.filter(occurred_at__gte=_start_of(data["since"]))
        if data["until"]:
            events = events.filter(occurred_at__lt=_start_of(data["until"] + timedelta(days=1)))
        return events


def _start_of(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))
