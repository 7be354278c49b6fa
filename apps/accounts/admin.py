from django.contrib import admin

from apps.accounts.models import Delegation, MailDomain


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
