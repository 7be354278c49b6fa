"""One form per request kind, plus the forms of the request page.

Forms check shape with the server's own rules (`apps.iredadmin.validators`), so a request the
server would refuse is refused here, with a sentence; they write nothing and call no API.
"""

import re
from typing import Any

from crispy_forms.bootstrap import FieldWithButtons, StrictButton
from crispy_forms.helper import FormHelper
from crispy_forms.layout import Field, Layout
from django import forms
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError

from apps.accounts.models import Delegation
from apps.accounts.selectors import domains_for
from apps.core.pagination import page_size_field
from apps.iredadmin import validators
from apps.provisioning.models import ProvisioningRequest
from apps.provisioning.selectors import LARGEST_APPROVAL

Kind = ProvisioningRequest.Kind
MAX_PASSWORD_LENGTH = 256
LANGUAGE_CHOICES = sorted(validators.LANGUAGES.items(), key=lambda item: item[1])


def validate_ticket(value: str) -> str:
    value = value.strip()
    if not re.fullmatch(settings.TICKET_PATTERN, value):
        raise ValidationError(
            "Enter the help-desk ticket reference this request belongs to "
            f"(it must match {settings.TICKET_PATTERN})."
        )
    return value


class _RequestForm(forms.Form):
    """Fields every request has, and the form's helper (no <form> tag: the template has it)."""

    kind: str

    ticket = forms.CharField(
        max_length=64, help_text="The help-desk ticket this request belongs to, e.g. HD-1234."
    )
    reason = forms.CharField(
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why this is needed; the approver reads it.",
    )

    def __init__(self, *args: Any, user: AbstractBaseUser, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        self.helper = FormHelper()
        self.helper.form_tag = False

    def clean_ticket(self) -> str:
        return validate_ticket(self.cleaned_data["ticket"])

    def clean_reason(self) -> str:
        return self.cleaned_data["reason"].strip()

    # What `services.request_submit` needs, from the cleaned data.
    def target(self) -> str:
        raise NotImplementedError

    def parameters(self) -> dict[str, Any]:
        return {}

    def new_password(self) -> str | None:
        return None


def _quota_field(label: str, help_text: str, **kwargs: Any) -> forms.IntegerField:
    return forms.IntegerField(
        label=label,
        min_value=0,
        max_value=validators.MAX_QUOTA_MB,
        help_text=help_text,
        **kwargs,
    )


def _limit_field(label: str) -> forms.IntegerField:
    return forms.IntegerField(
        label=label,
        initial=0,
        min_value=-1,
        max_value=validators.MAX_ACCOUNT_LIMIT,
        help_text="0 for no limit, -1 to allow none.",
    )


def _requester_domains(user: AbstractBaseUser) -> list[tuple[str, str]]:
    return [
        (domain.name, domain.name)
        for domain in domains_for(user, Delegation.Role.REQUESTER).order_by("name")
    ]


class CreateDomainForm(_RequestForm):
    kind = Kind.CREATE_DOMAIN

    domain = forms.CharField(max_length=253, help_text="e.g. example.com")
    name = forms.CharField(
        label="Description", max_length=255, required=False, help_text="e.g. the company name."
    )
    quota_mb = _quota_field("Domain quota (MB)", "For all mailboxes together; 0 for no limit.",
                            initial=0)  # fmt: skip
    language = forms.ChoiceField(
        choices=LANGUAGE_CHOICES, initial="en_US", help_text="Default language of new mailboxes."
    )
    default_user_quota_mb = _quota_field(
        "Default mailbox quota (MB)", "Given to a new mailbox unless it asks for another.",
        initial=1024,
    )  # fmt: skip
    max_user_quota_mb = _quota_field("Largest mailbox quota (MB)", "0 for no limit.", initial=0)
    max_users = _limit_field("Maximum mailboxes")
    max_aliases = _limit_field("Maximum aliases")

    field_order = ["domain", "name", "quota_mb", "language", "default_user_quota_mb",
                   "max_user_quota_mb", "max_users", "max_aliases", "ticket", "reason"]  # fmt: skip

    def clean_domain(self) -> str:
        return validators.validate_domain_name(self.cleaned_data["domain"])

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        domain_quota = data.get("quota_mb") or 0
        default_quota = data.get("default_user_quota_mb") or 0
        largest = data.get("max_user_quota_mb") or 0
        if largest and default_quota > largest:
            self.add_error(
                "default_user_quota_mb", "The default cannot exceed the largest mailbox quota."
            )
        if domain_quota and largest > domain_quota:
            self.add_error("max_user_quota_mb", "A mailbox cannot exceed the domain's quota.")
        if domain_quota and default_quota > domain_quota:
            self.add_error("default_user_quota_mb", "The default exceeds the domain's quota.")
        return data

    def target(self) -> str:
        return self.cleaned_data["domain"]

    def parameters(self) -> dict[str, Any]:
        keys = ["name", "quota_mb", "language", "default_user_quota_mb", "max_user_quota_mb",
                "max_users", "max_aliases"]  # fmt: skip
        return {key: self.cleaned_data[key] for key in keys}


class DeleteDomainForm(_RequestForm):
    kind = Kind.DELETE_DOMAIN

    domain = forms.ChoiceField(choices=[])
    confirm = forms.CharField(
        label="Type the domain name to confirm",
        help_text="Deleting a domain deletes every mailbox in it.",
    )

    field_order = ["domain", "confirm", "ticket", "reason"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["domain"].choices = _requester_domains(self.user)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if "domain" in data and data.get("confirm", "").strip().lower() != data["domain"]:
            self.add_error("confirm", "This is not the domain chosen above.")
        return data

    def target(self) -> str:
        return self.cleaned_data["domain"]


class _MailboxForm(_RequestForm):
    local_part = forms.CharField(label="Address", max_length=64, help_text="The part before @.")
    domain = forms.ChoiceField(choices=[])

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["domain"].choices = _requester_domains(self.user)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if "local_part" in data and "domain" in data:
            try:
                data["address"] = validators.validate_new_mailbox_address(
                    f"{data['local_part']}@{data['domain']}"
                )
            except ValidationError as error:
                self.add_error("local_part", error)
        return data

    def target(self) -> str:
        return self.cleaned_data["address"]


class PasswordField(forms.CharField):
    """A new mailbox password: never rendered back into a page, with a generator button."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            max_length=MAX_PASSWORD_LENGTH,
            strip=False,
            widget=forms.PasswordInput(
                render_value=False, attrs={"autocomplete": "new-password", "spellcheck": "false"}
            ),
            **kwargs,
        )

    def validate(self, value: str) -> None:
        super().validate(value)
        validators.validate_mailbox_password(
            value,
            min_length=settings.IREDADMIN["PASSWORD_MIN_LENGTH"],
            max_length=settings.IREDADMIN["PASSWORD_MAX_LENGTH"],
        )


def password_with_generator() -> FieldWithButtons:
    return FieldWithButtons(
        Field("password"),
        StrictButton(
            "Generate",
            css_class="btn-outline-secondary",
            data_generate_password="id_password",  # noqa: S106 (the input's id, not a secret)
        ),
    )


class CreateMailboxForm(_MailboxForm):
    kind = Kind.CREATE_MAILBOX

    password = PasswordField(
        label="Initial password",
        help_text="Give it to the mailbox's owner; Maildesk will not show it again.",
    )
    name = forms.CharField(label="Display name", max_length=255, required=False)
    language = forms.ChoiceField(
        choices=[("", "The domain's default"), *LANGUAGE_CHOICES], required=False
    )
    quota_mb = _quota_field(
        "Quota (MB)", "Empty for the domain's default; 0 for no limit.", required=False
    )

    field_order = ["local_part", "domain", "password", "name", "language", "quota_mb",
                   "ticket", "reason"]  # fmt: skip

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.helper.layout = Layout(
            "local_part", "domain", password_with_generator(), "name", "language", "quota_mb",
            "ticket", "reason",
        )  # fmt: skip

    def parameters(self) -> dict[str, Any]:
        return {
            "name": self.cleaned_data["name"],
            "language": self.cleaned_data["language"],
            "quota_mb": self.cleaned_data["quota_mb"],
        }

    def new_password(self) -> str | None:
        return self.cleaned_data["password"]


class DeleteMailboxForm(_MailboxForm):
    kind = Kind.DELETE_MAILBOX

    confirm = forms.CharField(
        label="Type the full address to confirm", help_text="The mailbox and its mail go."
    )

    field_order = ["local_part", "domain", "confirm", "ticket", "reason"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if "address" in data and data.get("confirm", "").strip().lower() != data["address"]:
            self.add_error("confirm", "This is not the address above.")
        return data


REQUEST_FORMS: dict[str, type[_RequestForm]] = {
    Kind.CREATE_DOMAIN: CreateDomainForm,
    Kind.DELETE_DOMAIN: DeleteDomainForm,
    Kind.CREATE_MAILBOX: CreateMailboxForm,
    Kind.DELETE_MAILBOX: DeleteMailboxForm,
}


class RejectForm(forms.Form):
    reason = forms.CharField(
        label="Why is it rejected?", max_length=2000, widget=forms.Textarea(attrs={"rows": 2})
    )


_REQUEST_ID = re.compile(r"[1-9][0-9]{0,17}")  # a request's id: a bigint, in ASCII digits


class ApproveTogetherForm(forms.Form):
    """What the approver reviewed: a ticket, and the ids of its requests they were shown."""

    ticket = forms.CharField(max_length=64)
    reviewed = forms.CharField(max_length=20 * LARGEST_APPROVAL)  # ids, comma-separated

    def clean_ticket(self) -> str:
        return validate_ticket(self.cleaned_data["ticket"])

    def clean_reviewed(self) -> list[int]:
        parts = self.cleaned_data["reviewed"].split(",")
        if not 1 <= len(parts) <= LARGEST_APPROVAL or not all(map(_REQUEST_ID.fullmatch, parts)):
            raise ValidationError("Not a list of requests.")
        return [int(part) for part in parts]


class RetryForm(forms.Form):
    """A retry; a mailbox needs a new initial password (the first was destroyed)."""

    password = PasswordField(label="New initial password", required=False)

    def __init__(self, *args: Any, needs_password: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.helper = FormHelper()
        self.helper.form_tag = False
        if needs_password:
            self.fields["password"].required = True
            self.helper.layout = Layout(password_with_generator())
        else:
            del self.fields["password"]


class CommentForm(forms.Form):
    body = forms.CharField(
        label="Comment", max_length=4000, widget=forms.Textarea(attrs={"rows": 2})
    )


class RequestFilterForm(forms.Form):
    """Filters of the request list; every field optional."""

    status = forms.ChoiceField(
        choices=[("", "Any status"), *ProvisioningRequest.Status.choices], required=False
    )
    kind = forms.ChoiceField(choices=[("", "Any kind"), *Kind.choices], required=False)
    target = forms.CharField(label="Domain or address", max_length=320, required=False)
    ticket = forms.CharField(max_length=64, required=False)
    mine = forms.BooleanField(label="Only mine", required=False)
    before = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)
    size = page_size_field()

    def clean_target(self) -> str:
        return self.cleaned_data["target"].strip().lower()
