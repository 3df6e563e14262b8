"""Top-level URL routes."""
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from core import api
from core.problems import problem_response

api_patterns = [
    path("auth/token/", api.TokenObtainApi.as_view(), name="token-obtain"),
    path("auth/token/refresh/", api.TokenRefreshApi.as_view(), name="token-refresh"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("events/", api.EventFeedApi.as_view(), name="event-feed"),
    path("", include("transactions.urls")),
    path("", include("analytics.urls")),
    path("", include("realtime.urls")),
]

urlpatterns = [
    path("", RedirectView.as_view(url="/dashboard/", permanent=False)),
    path("api/", include(api_patterns)),
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("dashboard/", include("dashboard_ui.urls")),
    path("healthz", api.healthz, name="healthz"),
    path("readyz", api.readyz, name="readyz"),
]


def handler404(request, exception=None):
    if request.path.startswith("/api/"):
        return problem_response(request, 404, "not_found", "No API endpoint at this path.")
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def handler500(request):
    if request.path.startswith("/api/"):
        return problem_response(request, 500, "server_error", "The server failed; the error is logged.")
    from django.views.defaults import server_error

    return server_error(request)
