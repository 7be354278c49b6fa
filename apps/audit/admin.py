from django.contrib import admin

from apps.audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the audit log is append-only, even for portal admins."""

    list_display = ["occurred_at", "actor_label", "action", "outcome", "target", "request_code"]
    list_filter = ["outcome"]
    search_fields = ["target", "request_code", "ticket", "actor_label"]
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
