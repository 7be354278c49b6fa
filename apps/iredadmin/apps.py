from django.apps import AppConfig


class IRedAdminConfig(AppConfig):
    name = "apps.iredadmin"
    verbose_name = "iRedAdmin-Pro service"
