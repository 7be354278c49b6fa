from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "apps.core"
    verbose_name = "Maildesk core"

    def ready(self) -> None:
        from apps.core import checks  # noqa: F401 (registers the deployment checks)
