"""Minimal settings: PostgreSQL from DATABASE_URL (pooled like the product), DRF; no auth on the endpoint, or with
STATUS_SITE_AUTH=jwt stock simplejwt bearer tokens and a staff user's model permission (the signed-in variant)."""
import os
from datetime import timedelta
from urllib.parse import urlparse

_db = urlparse(os.environ["DATABASE_URL"])
SECRET_KEY = "baseline-only-not-a-secret-0123456789abcdef0123456789abcdef"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "rest_framework", "items"]
MIDDLEWARE = ["django.middleware.security.SecurityMiddleware", "django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "status_site.urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _db.path.lstrip("/"),
        "USER": _db.username or "postgres",
        "HOST": _db.hostname,
        "PORT": _db.port or 5432,
        "OPTIONS": {"pool": {"min_size": 1, "max_size": 10, "timeout": 10}},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
}
SIGNED_IN = os.environ.get("STATUS_SITE_AUTH", "") == "jwt"
if SIGNED_IN:
    REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"] = ["rest_framework_simplejwt.authentication.JWTAuthentication"]
    REST_FRAMEWORK["DEFAULT_PERMISSION_CLASSES"] = ["rest_framework.permissions.IsAdminUser", "items.permissions.MayApprove"]
    del REST_FRAMEWORK["UNAUTHENTICATED_USER"]
    SIMPLE_JWT = {"ACCESS_TOKEN_LIFETIME": timedelta(hours=1)}
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}}
