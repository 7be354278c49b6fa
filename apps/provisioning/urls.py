from django.urls import path

from apps.provisioning import views

app_name = "provisioning"

urlpatterns = [
    path("requests/", views.request_list, name="list"),
    path("requests/new/", views.request_new, name="new"),
    path("requests/new/<slug:kind_slug>/", views.request_create, name="create"),
    path("requests/approve-together/", views.requests_approve_together, name="approve_together"),
    path("requests/<str:code>/", views.request_detail, name="detail"),
    path("requests/<str:code>/status/", views.request_status, name="status"),
    path("requests/<str:code>/approve/", views.request_approve, name="approve"),
    path("requests/<str:code>/reject/", views.request_reject, name="reject"),
    path("requests/<str:code>/cancel/", views.request_cancel, name="cancel"),
    path("requests/<str:code>/retry/", views.request_retry, name="retry"),
    path("requests/<str:code>/comments/", views.request_comment, name="comment"),
]
