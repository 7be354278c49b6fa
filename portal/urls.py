from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from apps.accounts.forms import AdminSignInForm, SignInForm

# The admin site signs people in too: it gets the same guarded form.
admin.site.login_form = AdminSignInForm

urlpatterns = [
    path("", include("apps.core.urls")),
    path("", include("apps.provisioning.urls")),
    path("audit/", include("apps.audit.urls")),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(
            authentication_form=SignInForm, redirect_authenticated_user=True
        ),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/", include("apps.accounts.urls")),
    path("admin/", admin.site.urls),
]
