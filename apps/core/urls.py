from django.urls import path

from apps.core import views
from apps.provisioning.views import dashboard

app_name = "core"

urlpatterns = [
    path("", dashboard, name="dashboard"),
    path("healthz", views.healthz, name="healthz"),
]
