"""Django settings, read from the environment (see docs/operations.md for every variable)."""
from datetime import timedelta
from pathlib import Path

from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from django.core.exceptions import ImproperlyConfigured

from core.env import env_bool, env_choice, env_date, env_int, env_str, env_time_zone
from core.env import env_database, env_hosts, env_log_level, env_pattern, env_rate, env_url
from core.env import env_host_ports, env_sentinel_master_url, env_currency_thresholds
from core.redis import SENTINEL_KWARGS, broker_url, channel_layer_host, master_params

BASE_DIR = Path(__file__).resolve().parent.parent

# The checkout's local env file (.env.local, written by `make run`) fills in variables the environment
# does not set, so the server, Celery and every manage.py command share one secret (core/localenv.py).
from core.localenv import load as _load_local_env  # noqa: E402

_load_local_env(BASE_DIR)

DEBUG = env_bool("DJANGO_DEBUG", False)

# No default, in any mode: a key published in the repository lets anyone sign a session or a JWT.
SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if SECRET_KEY is None:
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY must be set: in the environment (production, see the Procfile) or in .env.local, "
        "which `make run` writes with a random key"
    )
if SECRET_KEY == "dev-only-insecure-key-do-not-use-in-production":
    raise ImproperlyConfigured("DJANGO_SECRET_KEY is the development key once published in the repository: set a random one")

ALLOWED_HOSTS = env_hosts("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    # Login lockouts (core/security.py) and Content-Security-Policy.
    "axes",
    "csp",
    "core",
    "transactions",
    "analytics",
    "realtime",
    "dashboard_ui",
]

MIDDLEWARE = [
    # First: times everything after it (core/metrics_http.py; docs/metrics.md).
    "core.metrics_http.MetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Cache-Control: no-store under /api/, NUL refused in /admin/ query strings (core/security.py).
    "core.security.SecurityHeadersMiddleware",
    # django-csp's, with the settings' policy built once per process (core/security.py).
    "core.security.CSPMiddleware",
    # WhiteNoise, async-capable (core/staticfiles.py).
    "core.staticfiles.StaticFilesMiddleware",
    "core.middleware.RequestIdMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as axes asks: turns a locked-out sign-in into the lockout answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "core.urls"
ASGI_APPLICATION = "core.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database -------------------------------------------------------------
DATABASES = {"default": env_database("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
# Parsed whatever the engine, so a bad value fails on a laptop too, not first in production.
DATABASE_POOL = env_bool("DATABASE_POOL", True)
# Each Celery pool process listens for the projector's wake-ups itself (analytics.wakeup's fast lane);
# off: every wake-up is a Celery task through the broker, as before the lane existed.
PROJECTOR_FAST_LANE = env_bool("PROJECTOR_FAST_LANE", True)
DATABASE_POOL_SIZE = env_int("DATABASE_POOL_SIZE", 10, minimum=1)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and DATABASE_POOL:
    # A connection per request costs a PostgreSQL backend start (several ms); a
    # pool keeps warm connections, and is safe under ASGI where CONN_MAX_AGE is not.
    DATABASES["default"]["OPTIONS"] = {"pool": {"min_size": 1, "max_size": DATABASE_POOL_SIZE, "timeout": 10}}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE takes SQLite's write lock at BEGIN, so concurrent commands queue
    # instead of failing with "database is locked" when they upgrade a read lock.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- redis: channel layer and Celery broker --------------------------------
REDIS_URL = env_url("REDIS_URL", None, ("redis", "rediss", "unix"), redis_db=True)
# Redis Sentinel (docs/scaling.md): host:port of each Sentinel; REDIS_URL then names the master, redis://mymaster/0,
# and the channel layer, the broker, the cache and every other client follow the master through failovers.
REDIS_SENTINELS = env_host_ports("REDIS_SENTINELS")
if REDIS_SENTINELS:
    REDIS_URL = env_sentinel_master_url("REDIS_URL", REDIS_URL, "REDIS_SENTINELS")
CELERY_BROKER_URL = env_url(
    "CELERY_BROKER_URL", None if REDIS_SENTINELS else REDIS_URL, ("redis", "rediss", "amqp", "amqps", "pyamqp"), redis_db=True
)
if CELERY_BROKER_URL is None and REDIS_SENTINELS:
    CELERY_BROKER_URL = broker_url(REDIS_URL, REDIS_SENTINELS)
# Part of every channel-layer key in Redis; parsed even in embedded mode, which does not use it.
CHANNELS_PREFIX = env_pattern("CHANNELS_PREFIX", "ledgerpulse", r"[A-Za-z0-9_.:-]{1,64}", "1 to 64 of A-Z a-z 0-9 _ . : -")

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # Pub/sub: a group is a Redis subscription of each web process's one hub (realtime/hub.py),
            # so membership ends with the process's connection and can never go stale, and a batch is
            # one PUBLISH however many processes listen (docs/architecture.md, "Realtime").
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {
                # redis-py 8 does not retry by default: after a Redis restart the subscription stayed
                # dead and the first publish failed. With retries the connection comes back and
                # re-subscribes by itself; the batches lost meanwhile show as a gap in the chain.
                # The health check pings an idle subscription, so a dead peer is noticed.
                "hosts": [
                    channel_layer_host(
                        REDIS_URL,
                        REDIS_SENTINELS,
                        socket_timeout=30,
                        socket_connect_timeout=5,
                        health_check_interval=15,
                        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
                    )
                ],
                "prefix": CHANNELS_PREFIX,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Embedded default: without a broker, tasks run in-process (after commit, since
# they are only ever enqueued from on_commit callbacks).
CELERY_TASK_ALWAYS_EAGER = CELERY_BROKER_URL is None
if CELERY_TASK_ALWAYS_EAGER:
    CELERY_BROKER_URL = "memory://"
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
# Celery's Django fixup closes Django's whole connection pool before and after every task in a
# prefork worker, so each projector run opened a new PostgreSQL connection (a few ms idle, far
# more under load, on the path of every dashboard update). With DB_REUSE_MAX it does so only
# every 2,000 tasks; celery_app hands each task's connection back to the pool instead (and drops
# one that broke), and a forked pool process still closes what it inherited.
CELERY_DB_REUSE_MAX = 1000
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A request must never hang on a broker that is down: publishing gives up fast
# and the periodic catch-up projects whatever the lost wake-up left behind.
CELERY_BROKER_CONNECTION_TIMEOUT = 1.0
# A task not acknowledged within this long is handed to another worker (acks_late):
# the projector is safe to run twice, so this bounds the delay after a lost worker.
BROKER_VISIBILITY_TIMEOUT = env_int("CELERY_VISIBILITY_TIMEOUT", 600, minimum=1)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": BROKER_VISIBILITY_TIMEOUT,
    # How often a worker looks for such tasks (kombu's default is 10 s).
    "unacked_restore_interval": min(10, BROKER_VISIBILITY_TIMEOUT),
    "socket_timeout": 2.0,
    "socket_connect_timeout": 1.0,
}
if CELERY_BROKER_URL.startswith("sentinel://"):
    # kombu asks the Sentinels where this master is (on every reconnect, so it follows a failover).
    CELERY_BROKER_TRANSPORT_OPTIONS["master_name"] = master_params(REDIS_URL)[0]
    CELERY_BROKER_TRANSPORT_OPTIONS["sentinel_kwargs"] = dict(SENTINEL_KWARGS)
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.1, "interval_max": 0.1}
CELERY_BEAT_SCHEDULE = {
    "weekly-income-catch-up": {
        "task": "analytics.catch_up_projections",
        "schedule": float(env_int("PROJECTION_CATCH_UP_SECONDS", 5, minimum=1)),
    },
    "purge-idempotency-records": {"task": "core.purge_idempotency_records", "schedule": 3600.0},
    "purge-realtime-tickets": {"task": "realtime.purge_tickets", "schedule": 3600.0},
    "purge-expired-sessions": {"task": "core.purge_expired_sessions", "schedule": 3600.0},
}

# --- analytics --------------------------------------------------------------
ANALYTICS_TIME_ZONE = env_time_zone("ANALYTICS_TIME_ZONE", "UTC")
ANALYTICS_WEEK_START = env_choice("ANALYTICS_WEEK_START", "monday", ("monday", "sunday"))
# Every occurred_at that reaches the log must be one the projector can place in a week
# (pandas handles 1677-2262; a far-future date would move every dashboard's "this week").
OCCURRED_AT_EARLIEST = env_date("OCCURRED_AT_EARLIEST", "1970-01-01")
# At most a year ahead: "this week" on every dashboard must stay near the present.
OCCURRED_AT_MAX_AHEAD = timedelta(hours=env_int("OCCURRED_AT_MAX_AHEAD_HOURS", 24, minimum=0, maximum=24 * 366))
if OCCURRED_AT_EARLIEST.year < 1900:
    raise ImproperlyConfigured(f"OCCURRED_AT_EARLIEST={OCCURRED_AT_EARLIEST.date()} must be 1900-01-01 or later")
# /readyz answers 503 once the oldest event the projection has not applied is this old.
READYZ_MAX_PROJECTION_LAG_SECONDS = env_int("READYZ_MAX_PROJECTION_LAG_SECONDS", 60, minimum=1, maximum=86_400)

# --- write path ---------------------------------------------------------------
# Four-eyes control: per currency, the amount (major units) at and above which an approval needs two
# different approvers, e.g. EUR:10000,USD:10000. Currencies not named need one. Empty by default.
APPROVAL_DUAL_CONTROL = env_currency_thresholds("APPROVAL_DUAL_CONTROL")
# How long an append waits for the event store's lock before answering a retryable 503.
EVENT_STORE_LOCK_TIMEOUT_MS = env_int("EVENT_STORE_LOCK_TIMEOUT_MS", 2000, minimum=1, maximum=60_000)
# Readers stop before a hole in the positions younger than this (almost surely a commit in
# flight); an older one they prove final, waiting at most EVENT_STORE_HOLE_WAIT_MS (appends
# queue behind that wait). See core.eventstore.
EVENT_STORE_HOLE_GRACE_MS = env_int("EVENT_STORE_HOLE_GRACE_MS", 250, minimum=0, maximum=60_000)
EVENT_STORE_HOLE_WAIT_MS = env_int("EVENT_STORE_HOLE_WAIT_MS", 50, minimum=1, maximum=5_000)
# An Idempotency-Key whose request died (no answer stored) can be retried after this long.
IDEMPOTENCY_LEASE_SECONDS = env_int("IDEMPOTENCY_LEASE_SECONDS", 10, minimum=1, maximum=3600)

# --- realtime ---------------------------------------------------------------
# realtime/ imports no domain package: the snapshot it sends comes from here.
REALTIME_SNAPSHOT_PROVIDER = "analytics.snapshot.dashboard_snapshot"
REALTIME_GROUP = "admin_dashboard"
# Websocket security (docs/operations.md, "Websocket security").
from core.origins import env_origins  # noqa: E402 - a parser only, no app state
# Origins (scheme://host[:port], exact) allowed to open /ws/dashboard/ besides the one the server is reached at.
WEBSOCKET_ALLOWED_ORIGINS = env_origins("WEBSOCKET_ALLOWED_ORIGINS")
# The socket after this many open ones of the same user is closed with 4429.
REALTIME_MAX_SOCKETS_PER_USER = env_int("REALTIME_MAX_SOCKETS_PER_USER", 20, minimum=1, maximum=10_000)
# Every open socket re-checks its user (active, staff, permission, session, password) this often,
# besides at once on every change made through the ORM.
REALTIME_ACCESS_RECHECK_SECONDS = env_int("REALTIME_ACCESS_RECHECK_SECONDS", 30, minimum=1, maximum=3600)
# A permission (app_label.codename) a staff user also needs for the websocket; empty: staff suffices.
REALTIME_VIEW_PERMISSION = env_pattern(
    "REALTIME_VIEW_PERMISSION", "", r"|[a-z_][a-z0-9_]*\.[A-Za-z0-9_]+", "empty or app_label.codename, e.g. transactions.view_transaction"
) or None
# core/ does not import analytics: readiness asks this function for the projection lag.
HEALTH_PROJECTION_LAG = "analytics.selectors.projection_lag"

# --- the ASGI server (Procfile `web:`, docs/operations.md "Slow clients and floods") ------
# core/http.py: a request's head must be complete this long after the connection (or its first byte),
# its body this long after the head; otherwise 408 and the connection is closed.
HTTP_HEADER_TIMEOUT_SECONDS = env_int("HTTP_HEADER_TIMEOUT_SECONDS", 10, minimum=1, maximum=300)
HTTP_BODY_TIMEOUT_SECONDS = env_int("HTTP_BODY_TIMEOUT_SECONDS", 30, minimum=1, maximum=3600)
# Read by the Procfile's uvicorn command; parsed here too, so a bad value stops every process naming it.
WEB_CONCURRENCY = env_int("WEB_CONCURRENCY", 2, minimum=1, maximum=256)
# Open connections per web process, websockets included (uvicorn counts both): thousands of dashboards.
WEB_LIMIT_CONCURRENCY = env_int("WEB_LIMIT_CONCURRENCY", 10_000, minimum=1, maximum=1_000_000)
WEB_BACKLOG = env_int("WEB_BACKLOG", 1024, minimum=1, maximum=65_535)
# Threads per web process that run Django's WSGI handler for plain HTTP requests (core/asgi.py).
# Each holds at most one database connection, so the pool (DATABASE_POOL_SIZE) must not be smaller.
WEB_THREADS = env_int("WEB_THREADS", 8, minimum=1, maximum=256)
# core/logfilters.py: at most this many identical records (logger, level, message template) per
# interval reach the log; then one line says how many more there were.
LOG_REPEAT_LIMIT = env_int("LOG_REPEAT_LIMIT", 10, minimum=1, maximum=1_000_000)
LOG_REPEAT_INTERVAL_SECONDS = env_int("LOG_REPEAT_INTERVAL_SECONDS", 10, minimum=1, maximum=86_400)

# --- auth, REST -------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/dashboard/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# --- client address, login lockouts -------------------------------------------
from core.clientip import env_networks  # noqa: E402 - a parser only, no app state

# Peers whose X-Forwarded-For is believed (core/clientip.py); empty: REMOTE_ADDR is the client.
TRUSTED_PROXIES = env_networks("TRUSTED_PROXIES", "")
# Clients that see /readyz's checks and counts without signing in; everyone else gets only the status.
READYZ_DETAIL_NETWORKS = env_networks("READYZ_DETAIL_NETWORKS", "127.0.0.0/8,::1/128")

# --- metrics (GET /metrics, docs/metrics.md) -----------------------------------
# Clients that may scrape; empty: none (then only METRICS_TOKEN opens it).
METRICS_ALLOWED_NETWORKS = env_networks("METRICS_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")
# A bearer token that opens /metrics from anywhere: 32 to 256 printable ASCII characters, no spaces.
METRICS_TOKEN = env_str("METRICS_TOKEN")
if METRICS_TOKEN is not None and not (32 <= len(METRICS_TOKEN) <= 256 and all("!" <= c <= "~" for c in METRICS_TOKEN)):
    # The value is a secret: the message does not repeat it.
    raise ImproperlyConfigured("METRICS_TOKEN must be 32 to 256 printable ASCII characters without spaces (its value is not shown)")
# The Celery worker's own metrics endpoint (core/metrics_worker.py), for containers where the web's /metrics
# cannot read the worker's files. Unset: none; 0: any free port (reported in the group's metrics directory).
METRICS_PORT = env_int("METRICS_PORT", None, maximum=65535)
# The address it binds: an IP address (0.0.0.0 or :: for every interface, 127.0.0.1 for this machine only).
METRICS_BIND = env_str("METRICS_BIND", "0.0.0.0")
try:
    import ipaddress as _ipaddress

    _ipaddress.ip_address(METRICS_BIND)
except ValueError:
    raise ImproperlyConfigured(f"METRICS_BIND={METRICS_BIND!r} is not an IP address; use e.g. 0.0.0.0, 127.0.0.1 or ::") from None

AUTHENTICATION_BACKENDS = [
    # First: refuses locked-out accounts and addresses before a password is checked.
    "core.security.LoginLimitBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# After LOGIN_FAILURE_LIMIT failed sign-ins for one username (from any address), or from one client
# address (for any username), every sign-in of that account or address is refused for
# LOGIN_LOCKOUT_MINUTES, on the token endpoint, /accounts/login/ and /admin/login/ alike.
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1, maximum=1000)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1, maximum=7 * 24 * 60))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_CLIENT_IP_CALLABLE = "core.clientip.client_ip"
AXES_USERNAME_CALLABLE = "core.security.lockout_username"
AXES_LOCKOUT_CALLABLE = "core.security.lockout_response"
# Attempts during a lockout neither extend it nor write a row: a flood costs one read each.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# A success does not clear the address's failures (else guessing could alternate with one's own login).
AXES_RESET_ON_SUCCESS = False
# No row per successful sign-in: the table would grow without bound.
AXES_DISABLE_ACCESS_LOG = True
AXES_HTTP_RESPONSE_CODE = 429

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # JWT first: its WWW-Authenticate header makes "no credentials" a 401, not a 403.
        # simplejwt's, refusing tokens issued before a password change as token_not_valid (core/security.py).
        "core.security.JWTAuthenticationRevocable",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["core.permissions.IsStaff"],
    "DEFAULT_PARSER_CLASSES": ["core.parsers.DecimalJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "core.negotiation.StrictContentNegotiation",
    "EXCEPTION_HANDLER": "core.problems.problem_exception_handler",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "COERCE_DECIMAL_TO_STRING": True,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {"auth": env_rate("AUTH_THROTTLE_RATE", "10/min")},
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # X-Forwarded-For is never read by DRF itself: throttles key on core.clientip (core/api.py).
    "NUM_PROXIES": 0,
}
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=15),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=1),
    "AUTH_HEADER_TYPES": ("Bearer",),
    # Every token carries a hash of the password hash; a password change refuses access and refresh tokens.
    "CHECK_REVOKE_TOKEN": True,
    "REVOKE_TOKEN_CLAIM": "hash_password",
}

# --- Content-Security-Policy (django-csp) --------------------------------------
# Every HTML page: scripts, styles, images and connections from this origin only, no inline code.
# 'self' covers the same-origin websocket (ws:/wss:) in current browsers. Swagger UI (/api/docs/) adds hashes of its own inline blocks per response.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Ledgerpulse API",
    "DESCRIPTION": """Verify payment transactions and read weekly income, the audit trail and the event feed.

**Getting started.** `POST /api/auth/token/` with your username and password, then press *Authorize*
and paste the `access` token (it lasts 15 minutes; `/api/auth/token/refresh/` renews it). Browsers
signed in at `/accounts/login/` use their session instead (send `X-CSRFToken` on POSTs).

* Money is always a decimal string with the currency's minor digits (`"12.50"`, `"1200"` for JPY).
* Errors are RFC 9457 `application/problem+json`; `errors[].field` names each field at fault.
* Every POST that changes data takes an `Idempotency-Key`: retries with the same key and body return
  the first answer and change nothing.
* `position` (returned by approve/reject) and `as_of` are positions in the event log: pass a position
  as `min_position` to read your own write, or as `at` to see the past.
* Live updates: `POST /api/realtime/tickets/`, then open the websocket `/ws/dashboard/?ticket=...`.""",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI from the sidecar package: no CDN at run time.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Throttle counters and other short-lived shared state: Redis when there is one.
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL, "KEY_PREFIX": "ledgerpulse"}}
    if REDIS_SENTINELS:
        CACHES["default"]["OPTIONS"] = {"pool_class": "core.redis.SentinelCachePool", "sentinels": REDIS_SENTINELS}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Bodies over 1 MiB are refused before they are parsed.
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

# --- i18n, time, static -----------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
# Only `collectstatic` needs it (production); whitenoise serves from the apps otherwise.
STATIC_ROOT = env_str("DJANGO_STATIC_ROOT")
# Serve straight from the apps' static folders: no collectstatic step for `make run`.
WHITENOISE_USE_FINDERS = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# --- production hardening (check --deploy) -----------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", not DEBUG)
SECURE_SSL_REDIRECT = env_bool("DJANGO_SSL_REDIRECT", False)
# Health probes (kubelet, compose) come over plain HTTP from inside: a redirect would pass any probe
# (a 3xx counts as success) and hide an unready process.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("DJANGO_BEHIND_PROXY", False) else None

# One JSON object per line from every logger (json, production's default), or readable lines (console:
# make run); request ids, redaction and the fields: core/logconfig.py, docs/logs-and-traces.md.
LOG_FORMAT = env_choice("LOG_FORMAT", "json", ("json", "console"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"structured": {"()": "core.logconfig.formatter", "log_format": LOG_FORMAT}},
    # Websocket tickets never reach a log line (realtime/log_redaction.py).
    # A log that cannot flood: identical records (logger, level, template) beyond LOG_REPEAT_LIMIT per
    # LOG_REPEAT_INTERVAL_SECONDS become one "repeated N more times" line (core/logfilters.py).
    "filters": {
        "redact_tickets": {"()": "realtime.log_redaction.RedactTickets"},
        "throttle_repeats": {"()": "core.logfilters.RepeatThrottle", "limit": LOG_REPEAT_LIMIT, "interval": LOG_REPEAT_INTERVAL_SECONDS},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "structured", "filters": ["throttle_repeats", "redact_tickets"]}
    },
    "root": {"handlers": ["console"], "level": env_log_level("LOG_LEVEL", "INFO")},
    # One line per task run drowns everything else at hundreds of runs a second.
    "loggers": {
        "celery.app.trace": {"level": "WARNING"},
        # The worker's "celery@host ready." line is what supervisors and scripts/stack.py wait for: written at
        # any LOG_LEVEL (a few lines at start and stop), as Celery's own --loglevel=info did before.
        "celery.apps.worker": {"level": "INFO"},
        # Django gives "django" a console handler of its own under DEBUG, and the record then propagates to
        # the root's too: every django.request warning was printed twice under make run. Root's handler only.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        # uvicorn's own plain-text handler on "uvicorn" (which uvicorn.error propagates to) is replaced by ours;
        # its level stays what uvicorn's --log-level set.
        "uvicorn": {"handlers": ["console"], "propagate": False},
        # axes logs every attempt at INFO; lockouts are WARNING.
        "axes": {"level": "WARNING"},
        # uvicorn logs "WebSocket /ws/dashboard/?ticket=..." at INFO on uvicorn.error, whole scopes on
        # uvicorn.asgi (trace); redact on the loggers themselves, whichever handlers uvicorn adds.
        # uvicorn.error writes through the "uvicorn" logger's handler, not the root's: throttle it on the logger too.
        "uvicorn.error": {"filters": ["throttle_repeats", "redact_tickets"]},
        "uvicorn.asgi": {"filters": ["redact_tickets"]},
        # Configuring a logger drops its handlers: give uvicorn's access log ours (it is off under make run).
        "uvicorn.access": {"handlers": ["console"], "filters": ["redact_tickets"], "propagate": False},
    },
}

# --- traces (OpenTelemetry, docs/logs-and-traces.md) ---------------------------
# Off unless an OTLP/HTTP collector is named; the exporter reads the OTEL_EXPORTER_OTLP_* variables itself.
OTEL_EXPORTER_OTLP_ENDPOINT = env_url("OTEL_EXPORTER_OTLP_ENDPOINT", None, ("http", "https"))
OTEL_SERVICE_NAME = env_pattern("OTEL_SERVICE_NAME", "ledgerpulse", r"[A-Za-z0-9_.:-]{1,64}", "1 to 64 of A-Z a-z 0-9 _ . : -")
TRACING_ENABLED = OTEL_EXPORTER_OTLP_ENDPOINT is not None
