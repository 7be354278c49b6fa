from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.accounts.models import Delegation, MailDomain
from apps.accounts.services import second_factor_reset
from apps.core.http import client_ip

# The devices' keys stay out of the admin: a reset (below) is all an admin needs.
if admin.site.is_registered(TOTPDevice):
    admin.site.unregister(TOTPDevice)
User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class StaffAdmin(UserAdmin):
    actions = ["reset_two_factor"]

    @admin.action(
        description="Reset two-factor authentication (they set it up again)",
        permissions=["change"],  # seeing the staff list is not enough
    )
    def reset_two_factor(self, request: HttpRequest, queryset: QuerySet) -> None:
        # Only a superuser resets a superuser: otherwise a lesser admin could strip the
        # second factor of the accounts that can do the most.
        allowed = queryset if request.user.is_superuser else queryset.filter(is_superuser=False)
        for user in allowed:
            second_factor_reset(user=user, actor=request.user, ip=client_ip(request))
        messages.success(
            request,
            f"Two-factor authentication reset for {len(allowed)} person(s), and their sessions "
            "ended; they sign in and set it up again.",
        )
        if skipped := queryset.count() - len(allowed):
            messages.warning(
                request, f"{skipped} superuser(s) left as they were: only a superuser resets one."
            )


class DelegationInline(admin.TabularInline):
    model = Delegation
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(MailDomain)
class MailDomainAdmin(admin.ModelAdmin):
    list_display = ["name", "is_active", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name"]
    inlines = [DelegationInline]


@admin.register(Delegation)
class DelegationAdmin(admin.ModelAdmin):
    list_display = ["domain", "user", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["domain__name", "user__username"]
    autocomplete_fields = ["user", "domain"]
