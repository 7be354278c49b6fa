from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "apps.audit"
    verbose_name = "Audit log"

    def ready(self) -> None:
        # Logins and failed logins happen inside Django's auth views (the portal's and the
        # admin's); the auth signals are the one place that sees them all.
        from apps.audit import receivers  # noqa: F401
