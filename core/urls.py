"""Top-level URL routes."""
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpResponsePermanentRedirect
from django.urls import Resolver404, include, path, re_path, resolve
from django.views.decorators.csrf import csrf_exempt
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from core import api
from core.problems import problem_response
from core.security import allow_own_inline_blocks


@csrf_exempt  # a POST to a wrong path deserves a 404, not a CSRF failure page
def api_not_found(request):
    """Every unknown path under /api/: problem+json 404 in every mode.

    Django's own 404 handling is not enough: under DEBUG (what `make run` uses) it answers
    an HTML page listing the URLconf instead of calling handler404.
    """
    if settings.APPEND_SLASH and not request.path.endswith("/"):
        # What CommonMiddleware would have done, had this catch-all not matched first.
        try:
            match = resolve(f"{request.path_info}/")
        except Resolver404:
            match = None
        if match is not None and match.func is not api_not_found:
            if request.method in ("GET", "HEAD"):
                return HttpResponsePermanentRedirect(request.get_full_path(force_append_slash=True))
            return problem_response(request, 404, "not_found", f"No API endpoint at this path; did you mean {request.path}/ (with a trailing slash)?")
    return problem_response(request, 404, "not_found", "No API endpoint at this path.")


api_patterns = [
    path("auth/token/", api.TokenObtainApi.as_view(), name="token-obtain"),
    path("auth/token/refresh/", api.TokenRefreshApi.as_view(), name="token-refresh"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # Swagger UI's page carries an inline script and style: its policy allows exactly those, by hash.
    path("docs/", allow_own_inline_blocks(SpectacularSwaggerView.as_view(url_name="schema")), name="swagger-ui"),
    path("events/", api.EventFeedApi.as_view(), name="event-feed"),
    path("", include("transactions.urls")),
    path("", include("analytics.urls")),
    path("", include("realtime.urls")),
    # Last: whatever nothing above matched.
    re_path(r"^", api_not_found),  # a prefix match: any rest of the path, newlines included
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


def handler400(request, exception=None):
    if request.path.startswith("/api/"):
        return problem_response(request, 400, "bad_request", "The request was refused as malformed.")
    from django.views.defaults import bad_request

    return bad_request(request, exception)


def handler403(request, exception=None):
    if request.path.startswith("/api/"):
        return problem_response(request, 403, "permission_denied", "You do not have permission to perform this action.")
    from django.views.defaults import permission_denied

    return permission_denied(request, exception)


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
