"""WebReducer settings: one file, driven by environment variables with safe local defaults.

A fresh clone runs with no variable set: SQLite, tasks run in process, an in-memory channel
layer. Setting DATABASE_URL and REDIS_URL switches to the production stack (PostgreSQL, Celery
workers over Redis, the Redis channel layer). See docs/configuration.md for every variable.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from webreducer.origins import LOOPBACK_HOSTS, host_of, local_port, origin_parse

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_secret(name: str, default: str = "") -> str:
    """A secret from `name`, or from the file `name`_FILE names (Docker and Compose secrets
    mount them as files, e.g. SECRET_KEY_FILE=/run/secrets/secret_key): the file's text
    without its trailing newline. Setting both is a mistake, refused."""
    path = os.environ.get(f"{name}_FILE", "")
    if not path:
        return env_str(name, default)
    if os.environ.get(name):
        raise ImproperlyConfigured(f"Set {name} or {name}_FILE, not both.")
    try:
        return Path(path).read_text().rstrip("\r\n")
    except OSError as error:
        raise ImproperlyConfigured(f"{name}_FILE: cannot read {path}: {error.strerror}") from None


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {value!r}")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {value!r}") from None


def env_list(name: str, default: list[str], *, secret: bool = False) -> list[str]:
    value = env_secret(name) if secret else os.environ.get(name)
    if value is None or value == "":
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


DEBUG = env_bool("DEBUG", default=True)
# The development default is refused by the `webreducer.E001` system check when DEBUG is off.
DEV_SECRET_KEY = "dev-only-insecure-secret-key-change-me"  # noqa: S105
SECRET_KEY = env_secret("SECRET_KEY", DEV_SECRET_KEY)
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# Two origins (webreducer/origins.py, docs/security.md): the app, and the public endpoints that
# serve users' content. Empty: the public origin is SITE_ROOT (one origin, as in development);
# read it through webreducer.origins.public_root().
# Unset: `make run`'s app origin on its PORT (8000), so every URL shown names the port served.
SITE_ROOT = origin_parse(env_str("SITE_ROOT", f"http://localhost:{local_port()}"), name="SITE_ROOT")
WR_PUBLIC_ORIGIN = env_str("WR_PUBLIC_ORIGIN") and origin_parse(
    env_str("WR_PUBLIC_ORIGIN"), name="WR_PUBLIC_ORIGIN"
)
# Never `*`, not even in development: the hosts the two origins name, and loopback.
ALLOWED_HOSTS = env_list(
    "ALLOWED_HOSTS",
    sorted({host_of(SITE_ROOT), host_of(WR_PUBLIC_ORIGIN or SITE_ROOT)} | LOOPBACK_HOSTS)
    if DEBUG
    else [],
)
# Host-only (no Domain), so the public host never receives them; Lax, so no other site's page
# can post with them; Secure whenever the app is served over https.
SESSION_COOKIE_DOMAIN = None
CSRF_COOKIE_DOMAIN = None
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = SITE_ROOT.startswith("https://")

INSTALLED_APPS = [
    "daphne",
    # django.contrib.admin, whose site refuses filters and sorting on secrets (admin_site.py).
    "webreducer.apps.AdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "allauth",
    "allauth.account",
    "webreducer.apps.WebReducerConfig",
    "accounts",
    "hooks",
    "sandbox",
]

MIDDLEWARE = [
    # First: refuses the other origin's routes, and its headers go on every public answer.
    "webreducer.origin_guards.OriginsMiddleware",
    # A page for people, JSON for programs, instead of Django's bare 404 and 405 answers.
    "webreducer.error_pages.ErrorPagesMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]
# The chain of the public write and read URLs (webreducer/handlers.py): what their answers need,
# in MIDDLEWARE's order. They have no session, user, CSRF token, messages or static files, so
# the rest of MIDDLEWARE (and LastSeenMiddleware, appended below) only cost them time.
WR_PUBLIC_MIDDLEWARE = [
    "webreducer.origin_guards.OriginsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "webreducer.urls"
WSGI_APPLICATION = "webreducer.wsgi.application"
ASGI_APPLICATION = "webreducer.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

# --- Database -----------------------------------------------------------------------------
# Persistent connections matter: a new connection per request costs ~10x in throughput
# (docs/performance.md). SQLite is the embedded default; IMMEDIATE transactions make its
# writers queue instead of failing with "database is locked".
#
# Web processes serve many requests at once (threads, or ASGI's one context per request): each
# borrows a connection from a bounded pool per process (psycopg_pool) only while it talks to
# the database, never across a sandbox call (hooks.dbrelease). Without the pool, uvicorn kept a
# connection per concurrent request for DB_CONN_MAX_AGE and a burst exhausted PostgreSQL's
# max_connections for everyone. A Celery worker process runs one task at a time and keeps one
# connection across tasks instead (CELERY_DB_REUSE_MAX below): webreducer/celery.py sets
# WR_DB_POOL_MAX_SIZE=0 there. 0 anywhere means persistent connections, one per thread.
DATABASE_URL = env_secret("DATABASE_URL")
WR_DB_POOL_MAX_SIZE = env_int("WR_DB_POOL_MAX_SIZE", 4)
WR_DB_POOL_TIMEOUT = env_float("WR_DB_POOL_TIMEOUT", 5.0)
if DATABASE_URL:
    DATABASES = {
        "default": dj_database_url.parse(
            DATABASE_URL,
            conn_max_age=0 if WR_DB_POOL_MAX_SIZE > 0 else env_int("DB_CONN_MAX_AGE", 600),
            conn_health_checks=True,
        )
    }
    if WR_DB_POOL_MAX_SIZE > 0 and DATABASES["default"]["ENGINE"].endswith("postgresql"):
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": 1,
            "max_size": WR_DB_POOL_MAX_SIZE,
            # A request waits this long for a free connection, then answers 503.
            "timeout": WR_DB_POOL_TIMEOUT,
        }
    elif WR_DB_POOL_MAX_SIZE > 0:
        DATABASES["default"]["CONN_MAX_AGE"] = env_int("DB_CONN_MAX_AGE", 600)
else:
    (BASE_DIR / "var").mkdir(exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(BASE_DIR / "var" / "db.sqlite3"),
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, Celery, Channels ----------------------------------------------------------------
REDIS_URL = env_secret("REDIS_URL")

# memory://localhost/: kombu warns "No hostname was supplied" for a bare memory://.
CELERY_BROKER_URL = REDIS_URL or "memory://localhost/"
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL  # embedded default: tasks run in process
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery's Django fixup closes the database connection around every task unless this is set:
# a reduce task would then spend ~4 ms of its ~10 connecting (and PostgreSQL forks a backend per
# task). Reused instead, recycled every this many tasks; before each task the worker drops a
# connection that is broken or older than CONN_MAX_AGE, as Django does per request
# (webreducer.celery). 0 restores a new connection per task.
CELERY_DB_REUSE_MAX = env_int("WR_WORKER_DB_REUSE_MAX", 1000)
CELERY_BEAT_SCHEDULE = {
    "reconcile": {
        "task": "hooks.tasks.reconcile",
        "schedule": env_float("WR_RECONCILE_EVERY", 5.0),
    },
}

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py 8 times socket reads out after 5 s by default, exactly channels_redis's
                # blocking BZPOPMIN: every idle receive() would fail (django/channels_redis#422).
                # Longer than the pop, it still notices a dead connection.
                "hosts": [
                    {"address": REDIS_URL, "socket_timeout": 30, "socket_connect_timeout": 5}
                ],
                # One web process's channels share one Redis list: room for bursts of
                # notifications for many hooks (channels_redis drops messages over capacity).
                "capacity": env_int("WR_CHANNEL_CAPACITY", 1000),
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Auth -----------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"

EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
# For django.core.mail.backends.filebased.EmailBackend (the browser tests read links from it).
EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH", str(BASE_DIR / "var" / "mail"))
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_secret("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "WebReducer <noreply@localhost>")

# --- REST framework -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "webreducer.schema.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "webreducer.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "WebReducer management API",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The API docs page serves Swagger UI from a pinned package, never from a CDN (docs/api.md).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "PREPROCESSING_HOOKS": ["webreducer.schema.management_api_only"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "webreducer.schema.document_errors",
    ],
    "ENUM_NAME_OVERRIDES": {
        "VersionStatusEnum": "hooks.models.Version.Status",
        "ReplayStatusEnum": "hooks.serializers.REPLAY_STATUSES",
        "OutcomeEnum": "hooks.models.Request.Outcome",
    },
}

# --- Static files ---------------------------------------------------------------------------
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "var" / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Keys out of every line (webreducer.log_redaction): a public URL's key is its credential.
    "filters": {"keys": {"()": "webreducer.log_redaction.KeyRedaction"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["keys"]}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # Django logs every 4xx as a warning with its path: for the public endpoints that is a line
    # per refused or unknown-key request (a log any visitor can flood) carrying the secret key
    # of the URL. Server errors (5xx) are still logged.
    # Django's own default handlers for these (DEBUG's console, runserver's) are replaced by
    # ours, which redacts keys.
    "loggers": {
        "django": {
            "handlers": ["console"],
            "level": env_str("LOG_LEVEL", "INFO"),
            "propagate": False,
        },
        "django.server": {"handlers": ["console"], "propagate": False},
        "django.request": {"level": "ERROR"},
    },
}

# --- WebReducer limits (docs/configuration.md); per-hook overrides live on Hook.limits ---------------------
WR_MAX_BODY_BYTES = env_int("WR_MAX_BODY_BYTES", 1024 * 1024)
WR_RATE_PER_SECOND = env_float("WR_RATE_PER_SECOND", 100.0)
WR_RATE_BURST = env_int("WR_RATE_BURST", 1000)
WR_MAX_CODE_BYTES = env_int("WR_MAX_CODE_BYTES", 64 * 1024)
WR_MAX_STATE_BYTES = env_int("WR_MAX_STATE_BYTES", 1024 * 1024)
WR_CPU_SECONDS = env_float("WR_CPU_SECONDS", 1.0)
WR_WALL_SECONDS = env_float("WR_WALL_SECONDS", 2.0)
WR_MEMORY_BYTES = env_int("WR_MEMORY_BYTES", 256 * 1024 * 1024)
WR_MAX_OUTPUT_BYTES = env_int("WR_MAX_OUTPUT_BYTES", 64 * 1024)
WR_MAX_SECRETS = env_int("WR_MAX_SECRETS", 50)
WR_MAX_SECRET_BYTES = env_int("WR_MAX_SECRET_BYTES", 4 * 1024)
# Rooms (states) per hook, the main room included; per hook: Hook.limits["max_rooms"].
WR_MAX_ROOMS = env_int("WR_MAX_ROOMS", 100_000)
# Requests folded per sandbox call; one batch is one transaction.
WR_BATCH_SIZE = env_int("WR_BATCH_SIZE", 1000)
# The request log keeps the state after each request up to this size (bigger ones are noted).
WR_LOG_STATE_MAX_BYTES = env_int("WR_LOG_STATE_MAX_BYTES", 64 * 1024)
# Fairness (docs/security.md, "One tenant cannot starve the others"): responder and query
# calls of one hook running at once in one web process; more answer 429 `hook_busy`.
WR_SANDBOX_CALLS_PER_HOOK = env_int("WR_SANDBOX_CALLS_PER_HOOK", 2)
# ...after waiting this long for one of them to end (a quick responder's burst just queues).
WR_SANDBOX_SLOT_WAIT_SECONDS = env_float("WR_SANDBOX_SLOT_WAIT_SECONDS", 0.1)
# Sandbox children run this much nicer than their parent, so web processes, workers and
# PostgreSQL keep the CPU when user code spins.
WR_SANDBOX_NICE = env_int("WR_SANDBOX_NICE", 10)
# Threads that run the public endpoints' sync code in an ASGI process (Django would run every
# sync view of the process on one thread).
WR_ASGI_PUBLIC_THREADS = env_int("WR_ASGI_PUBLIC_THREADS", 8)
# Development only: run user code with whatever isolation layers exist (see docs/sandbox.md).
WR_SANDBOX_ALLOW_WEAK = env_bool("WR_SANDBOX_ALLOW_WEAK", False)
# Warm children for responders and queries (sandbox/process.py, WarmPool; docs/sandbox.md):
# idle for at most this long, at most this many idle per process, this many calls each.
WR_SANDBOX_WARM_SECONDS = env_float("WR_SANDBOX_WARM_SECONDS", 30.0)
WR_SANDBOX_WARM_MAX = env_int("WR_SANDBOX_WARM_MAX", 32)
WR_SANDBOX_WARM_MAX_CALLS = env_int("WR_SANDBOX_WARM_MAX_CALLS", 1000)

# --- Proxies and request input (docs/security.md, "Proxies" and "Request input") ------------
# How many proxies in front of the app append to X-Forwarded-For; every per-IP limit takes the
# address that many hops from the right (webreducer.clientip), 0 the TCP peer. Also decides
# whether X-Forwarded-Proto is believed, by Django and by gunicorn alike.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
if TRUSTED_PROXY_COUNT < 0:
    raise ImproperlyConfigured("TRUSTED_PROXY_COUNT must be 0 or more")
if TRUSTED_PROXY_COUNT:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Checked by webreducer.inputs on every request, before the body is read, on both servers; the
# servers' own limits (gunicorn.conf.py, webreducer.asgiserver, deploy/nginx.conf) sit a little
# above these as a backstop.
WR_MAX_HEADER_BYTES = env_int("WR_MAX_HEADER_BYTES", 8 * 1024)  # one header, name and value
WR_MAX_HEADERS_BYTES = env_int("WR_MAX_HEADERS_BYTES", 32 * 1024)  # all headers together
WR_MAX_HEADERS = env_int("WR_MAX_HEADERS", 100)
WR_MAX_PATH_BYTES = env_int("WR_MAX_PATH_BYTES", 2 * 1024)
WR_MAX_QUERY_BYTES = env_int("WR_MAX_QUERY_BYTES", 4 * 1024)
WR_MAX_QUERY_FIELDS = env_int("WR_MAX_QUERY_FIELDS", 256)
# Any request's body; a hook's own limit (WR_MAX_BODY_BYTES or Hook.limits) is checked by the
# write endpoint below this ceiling, so an operator who raises a hook's limit raises this too.
WR_MAX_REQUEST_BODY_BYTES = env_int("WR_MAX_REQUEST_BODY_BYTES", WR_MAX_BODY_BYTES)
# The whole body must arrive within this many seconds of the request head (a stalled or
# trickling client otherwise holds a web worker as long as it likes).
WR_BODY_READ_SECONDS = env_float("WR_BODY_READ_SECONDS", 10.0)
# The Idempotency-Key header of a write (the ledger keeps keys up to 255 characters).
WR_MAX_IDEMPOTENCY_KEY_BYTES = env_int("WR_MAX_IDEMPOTENCY_KEY_BYTES", 255)
# Django's own count stays above ours, so its TooManyFieldsSent (an HTML 400) is never reached.
DATA_UPLOAD_MAX_NUMBER_FIELDS = max(1000, WR_MAX_QUERY_FIELDS)

# --- Secrets encryption ---------------------------------------------------------------------
# Comma-separated Fernet keys (`python -c "from cryptography.fernet import Fernet;
# print(Fernet.generate_key().decode())"`). The first encrypts; all decrypt, so a new key can be
# put first and `manage.py rotatesecrets` re-encrypts everything under it. The development
# default is refused by the `webreducer.E002` system check when DEBUG is off.
DEV_SECRETS_KEY = "ZGV2LW9ubHktd2VicmVkdWNlci1zZWNyZXRzLWtleSE="
WR_SECRETS_KEYS = env_list("WR_SECRETS_KEYS", [DEV_SECRETS_KEY], secret=True)

# --- Pipeline tuning --------------------------------------------------------------------------
# A reduce task folds one hook for at most this long, then queues the rest behind other hooks.
WR_REDUCE_SLICE_SECONDS = env_float("WR_REDUCE_SLICE_SECONDS", 5.0)
# Worker time per hook (hooks/worktime.py): a hook folds at most WR_WORKER_SHARE_SECONDS of
# every WR_WORKER_WINDOW_SECONDS (across all workers), then waits for the next window. 0: no cap.
WR_WORKER_SHARE_SECONDS = env_float("WR_WORKER_SHARE_SECONDS", 2.5)
WR_WORKER_WINDOW_SECONDS = env_float("WR_WORKER_WINDOW_SECONDS", 5.0)
WR_BUSY_RETRIES = env_int("WR_BUSY_RETRIES", 20)
WR_BUSY_RETRY_SECONDS = env_float("WR_BUSY_RETRY_SECONDS", 0.25)
# A hook whose reduce task fails (for a reason that is not one request) pauses this long, twice
# as long after every further failure in a row, at most the maximum (hooks/wakeup.py).
WR_REDUCE_BACKOFF_SECONDS = env_float("WR_REDUCE_BACKOFF_SECONDS", 1.0)
WR_REDUCE_BACKOFF_MAX_SECONDS = env_float("WR_REDUCE_BACKOFF_MAX_SECONDS", 60.0)
# The reconciler queues hooks whose oldest pending request is older than this.
WR_RECONCILE_AFTER = env_float("WR_RECONCILE_AFTER", 2.0)
# A web process sends its writes' wake-ups and owners' feed entries off the request, together,
# this long after the first one (hooks/deferred.py): write-to-applied may grow by as much.
# 0: on the request.
WR_WAKE_COALESCE_SECONDS = env_float("WR_WAKE_COALESCE_SECONDS", 0.005)
WHITENOISE_USE_FINDERS = DEBUG
# Mounts bench/views.py (the bare-INSERT baseline of bench/write_bench.py). Never in production.
WR_BENCH_VIEWS = env_bool("WR_BENCH_VIEWS", False)
# A dry run folds at most this many of the most recent requests, synchronously.
WR_DRY_RUN_MAX_REQUESTS = env_int("WR_DRY_RUN_MAX_REQUESTS", 10000)

# --- Request inspection and test cases (docs/api.md, docs/functions.md "Test cases") ---------
# The responder's answer kept with each request in the log (its body is cut beyond this).
WR_LOG_RESPONSE_MAX_BYTES = env_int("WR_LOG_RESPONSE_MAX_BYTES", 64 * 1024)
# A hook's test cases: how many, how many requests in all, each body, the whole document.
WR_MAX_TEST_CASES = env_int("WR_MAX_TEST_CASES", 100)
WR_MAX_TEST_REQUESTS = env_int("WR_MAX_TEST_REQUESTS", 1000)
WR_MAX_TEST_BODY_BYTES = env_int("WR_MAX_TEST_BODY_BYTES", 64 * 1024)
WR_MAX_TESTS_BYTES = env_int("WR_MAX_TESTS_BYTES", 1024 * 1024)
# A test run stops starting calls after this much time in all (each call keeps its own limits).
# It runs inside a web request: with the last calls' overrun it stays under gunicorn's default
# 30 s worker timeout.
WR_MAX_TEST_RUN_SECONDS = env_float("WR_MAX_TEST_RUN_SECONDS", 20.0)

# --- Accounts ---------------------------------------------------------------------------------
# Visitors, sign-in by emailed link, personal API tokens, clean-up (docs/accounts.md).
# allauth: email is the only login method and no password is ever asked for; accounts are made
# by accounts.services when someone first confirms a link (allauth's own sign-up stays closed).
ACCOUNT_ADAPTER = "accounts.adapter.AccountAdapter"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*"]
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_EMAIL_VERIFICATION = "none"  # following the emailed link is the verification
ACCOUNT_PREVENT_ENUMERATION = True
ACCOUNT_LOGIN_BY_CODE_ENABLED = False  # replaced by the link flow (codes are session-bound)
# allauth's rate limits ask accounts.adapter for the address, which reads TRUSTED_PROXY_COUNT.
ALLAUTH_TRUSTED_PROXY_COUNT = TRUSTED_PROXY_COUNT

WR_MAGIC_LINK_MAX_AGE_SECONDS = env_int("WR_MAGIC_LINK_MAX_AGE_SECONDS", 3600)
WR_MAGIC_LINKS_PER_EMAIL_PER_HOUR = env_int("WR_MAGIC_LINKS_PER_EMAIL_PER_HOUR", 5)
WR_MAGIC_LINKS_PER_IP_PER_HOUR = env_int("WR_MAGIC_LINKS_PER_IP_PER_HOUR", 20)
WR_MAGIC_LINK_CONFIRMS_PER_IP_PER_HOUR = env_int("WR_MAGIC_LINK_CONFIRMS_PER_IP_PER_HOUR", 60)
WR_VISITORS_PER_IP_PER_HOUR = env_int("WR_VISITORS_PER_IP_PER_HOUR", 20)
# Visitors untouched this long are deleted with their hooks by accounts.tasks.cleanup.
WR_VISITOR_MAX_AGE_DAYS = env_int("WR_VISITOR_MAX_AGE_DAYS", 30)
# Write throttles: ApiToken.last_used_at and User.last_seen_at are updated at most this often.
WR_TOKEN_LAST_USED_EVERY_SECONDS = env_int("WR_TOKEN_LAST_USED_EVERY_SECONDS", 60)
WR_LAST_SEEN_EVERY_SECONDS = env_int("WR_LAST_SEEN_EVERY_SECONDS", 3600)

MIDDLEWARE.append("accounts.middleware.LastSeenMiddleware")
# First, so that missing credentials answer 401 with WWW-Authenticate: Bearer (not 403).
REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"].insert(  # type: ignore[union-attr]
    0, "accounts.authentication.BearerTokenAuthentication"
)
CELERY_BEAT_SCHEDULE["accounts-cleanup"] = {
    "task": "accounts.tasks.cleanup",
    "schedule": env_float("WR_ACCOUNTS_CLEANUP_EVERY", 3600.0),
}
# --- end Accounts -----------------------------------------------------------------------------

# --- Realtime -------------------------------------------------------------------------------
# Live state over WebSocket and Server-Sent Events (docs/realtime.md).
# Open live connections per read key and per client IP, across all web processes.
WR_LIVE_MAX_PER_KEY = env_int("WR_LIVE_MAX_PER_KEY", 10_000)
WR_LIVE_MAX_PER_IP = env_int("WR_LIVE_MAX_PER_IP", 200)
# A process refreshes its connections' slots every third of this; a crashed one's expire after it.
WR_LIVE_SLOT_TTL = env_float("WR_LIVE_SLOT_TTL", 60.0)
# SSE comment line interval (proxies cut streams idle for 60 s or so).
WR_LIVE_KEEPALIVE_SECONDS = env_float("WR_LIVE_KEEPALIVE_SECONDS", 15.0)
# Each process re-reads the state of the hooks it serves this often even without a
# notification, so a lost broadcast only delays an update.
WR_LIVE_RESYNC_SECONDS = env_float("WR_LIVE_RESYNC_SECONDS", 10.0)
# Query runs for live subscribers at the same time in one process.
WR_LIVE_QUERY_CONCURRENCY = env_int("WR_LIVE_QUERY_CONCURRENCY", 4)
# A state change notification carries the new state's JSON text up to this size, so web
# processes deliver it without reading the database; larger states are re-read.
WR_LIVE_INLINE_STATE_BYTES = env_int("WR_LIVE_INLINE_STATE_BYTES", 64 * 1024)
# The two-way socket (WS /write/<key>/live, docs/realtime.md): threads that store its writes in
# one web process (each holds a database connection), and how many of them one hook may use at
# once there (the others stay free for other hooks).
WR_LIVE_WRITE_THREADS = env_int("WR_LIVE_WRITE_THREADS", 4)
WR_LIVE_WRITE_THREADS_PER_HOOK = env_int("WR_LIVE_WRITE_THREADS_PER_HOOK", 2)
# Writes a socket may have sent and not yet had acknowledged; more are answered 429 at once.
WR_LIVE_WRITES_IN_FLIGHT = env_int("WR_LIVE_WRITES_IN_FLIGHT", 256)
# Broadcasts (never stored): the largest body, and a rate per connection (sustained/burst).
WR_LIVE_BROADCAST_MAX_BYTES = env_int("WR_LIVE_BROADCAST_MAX_BYTES", 16 * 1024)
WR_LIVE_BROADCAST_PER_SECOND = env_float("WR_LIVE_BROADCAST_PER_SECOND", 30.0)
WR_LIVE_BROADCAST_BURST = env_int("WR_LIVE_BROADCAST_BURST", 60)
# Presence: a web process renews its sockets' presence every third of this; the sockets of a
# process that died drop out after it, and their leaves are folded by another process.
WR_PRESENCE_TTL_SECONDS = env_float("WR_PRESENCE_TTL_SECONDS", 15.0)
