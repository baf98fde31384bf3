"""Settings for Storyboard, read from the environment.

The embedded default (no environment at all) is one process on SQLite with the in-memory
channel layer and media on local disk. Set PRODUCTION=1 for a deployment; it refuses to start
without a real SECRET_KEY and turns on every transport-security setting `check --deploy` asks for.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent


def envbool(name: str, default: str = "False") -> bool:
    return os.getenv(name, default).strip().lower() in ("1", "true", "yes", "on")


def envint(name: str, default: int) -> int:
    return int(os.getenv(name, str(default)))


def envlist(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.getenv(name, default).split(",") if item.strip()]


PRODUCTION = envbool("PRODUCTION")
DEBUG = envbool("DEBUG", "False" if PRODUCTION else "True")

SECRET_KEY = os.getenv("SECRET_KEY", "")
if not SECRET_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured("PRODUCTION=1 needs a SECRET_KEY of at least 50 characters.")
    # A fixed key is fine for the embedded demo: it signs nothing that leaves this machine.
    SECRET_KEY = "insecure-development-key-only-for-the-embedded-demo-" + "x" * 20

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "" if PRODUCTION else "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS")
# The public address of this instance; providers call back here and invitation links use it.
SITE_URL = os.getenv("SITE_URL", "http://127.0.0.1:8000").rstrip("/")

# Notification emails go through SMTP when EMAIL_HOST is set; otherwise they are printed to
# the console in development and not sent at all in production (notify.py checks for a mailer).
if os.getenv("EMAIL_HOST"):
    MAILERS = {"default": {
        "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "OPTIONS": {"host": os.environ["EMAIL_HOST"], "port": envint("EMAIL_PORT", 587),
                    "username": os.getenv("EMAIL_HOST_USER", ""),
                    "password": os.getenv("EMAIL_HOST_PASSWORD", ""),
                    "use_tls": envbool("EMAIL_USE_TLS", "1")},
    }}
elif PRODUCTION:
    MAILERS = {}
else:
    MAILERS = {"default": {"BACKEND": "django.core.mail.backends.console.EmailBackend"}}
DEFAULT_FROM_EMAIL = os.getenv("DEFAULT_FROM_EMAIL", "storyboard@localhost")

INSTALLED_APPS = [
    # Storyboard's runserver (Daphne's, which serves HTTP and websockets, plus the embedded
    # task worker) must win over staticfiles' one, so these two come first.
    "storyboard",
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "channels",
    "django_tasks_db",
    "axes",
    "django_ratelimit",
    "accounts",
    # The JSON API (storyboard/api.py); listed for its docs page's own copy of Swagger UI.
    "ninja",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Adds SECURE_CSP (below) to every response that does not set its own policy.
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # After authentication, so each line carries the user id; static files (WhiteNoise, above)
    # are not logged.
    "storyboard.logs.RequestLogMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as axes asks: turns a locked-out login into its 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "storyboard.urls"
ASGI_APPLICATION = "storyboard.asgi.application"
WSGI_APPLICATION = "storyboard.wsgi.application"

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
                "accounts.context_processors.teams",
            ],
            "builtins": ["storyboard.templatetags.storyboard"],
        },
    },
]

# Data lives under var/ by default so a checkout stays clean and one `rm -rf var` resets it.
VAR_DIR = Path(os.getenv("VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DATABASES = {
    "default": dj_database_url.parse(
        os.getenv("DATABASE_URL", f"sqlite:///{VAR_DIR / 'storyboard.sqlite3'}"),
        conn_max_age=0,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE makes writers queue on `timeout` instead of failing with "database is locked"
    # when a read transaction upgrades to a write; WAL lets readers run beside the writer.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not :memory:, so threads and the live-server process see the same test database.
    # SQLITE_TEST_NAME lets two test runs on one checkout keep out of each other's way.
    DATABASES["default"]["TEST"] = {
        "NAME": os.getenv("SQLITE_TEST_NAME", str(VAR_DIR / "test-storyboard.sqlite3"))
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A pool of open connections per process (psycopg's, through Django): without one every
    # request and every database call of a websocket consumer connects anew, which cost a third
    # of an edit's way from one browser to another in the studio test (p50 86 → 53 ms).
    pool = envbool("DATABASE_POOL", "True" if PRODUCTION else "False")
    if pool:
        from psycopg_pool import ConnectionPool

        # `check`: a connection is tried (one empty round trip) as it leaves the pool, so
        # after a database restart or failover the pool drops its dead connections instead of
        # failing one request (or killing one worker loop) with each.
        pool = {"min_size": 2, "max_size": envint("DATABASE_POOL_MAX", 20), "timeout": 10,
                "check": ConnectionPool.check_connection}
    DATABASES["default"]["OPTIONS"] = {"pool": pool}
    # Named explicitly: the live-server process of the browser tests derives its database from
    # TEST.NAME, and would otherwise prefix the already-prefixed name a second time.
    DATABASES["default"]["TEST"] = {
        "NAME": os.getenv("PG_TEST_NAME", f"test_{DATABASES['default']['NAME']}")
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "sb:home"
LOGOUT_REDIRECT_URL = "accounts:login"

AUTHENTICATION_BACKENDS = [
    # Refuses a locked-out login before the password is checked (see storyboard.throttle).
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Channel layer sizes, set for the fan-out we aim at: 500 people on one board, edits in bursts.
# Both layers' defaults are written out, so nobody has to look them up to know what happens.
CHANNEL_LAYER_SIZES = {
    # Messages waiting on one channel before the layer drops new ones without a word. The
    # default, 100, is reached by a burst of pushes (a chain of takes finishing, a reorder
    # storm) while a busy server is still writing the last one out. A queued push is a small
    # dict pointing at one shared HTML string, so a thousand cost little memory.
    "capacity": 1000,
    # A push nobody read for a minute is dropped (in memory its socket also leaves its groups,
    # so it hears nothing more). A board that far behind re-syncs when it reconnects.
    "expiry": 60,
    # A socket leaves its groups a day after joining them. Daphne closes every websocket after
    # a day (its websocket_timeout); the board reconnects at once, joining afresh and
    # re-syncing (static/js/board.js), so nobody is left in a group that no longer sends.
    "group_expiry": 86400,
}

REDIS_URL = os.getenv("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [{
                    "address": REDIS_URL,
                    # channels_redis waits for a socket's next message with a blocking read of
                    # 5 s (BZPOPMIN, RedisChannelLayer.brpop_timeout), and redis-py 8 gives every
                    # connection a 5 s read timeout by default: on a board quiet for 5 s the
                    # client gave up just before Redis answered "nothing yet", the consumer died
                    # with TimeoutError and the socket closed without a close frame. The read
                    # timeout must outlast the blocking read with room for a slow reply; 15 s
                    # still notices a Redis that stopped answering.
                    "socket_timeout": 15,
                    "socket_connect_timeout": 5,
                    # Notices a Redis that went away (restart, failover) on a connection that
                    # sits idle between pushes. Explicit: redis-py's defaults have moved before.
                    "socket_keepalive": True,
                }],
                "prefix": os.getenv("CHANNEL_PREFIX", "asgi"),
                # On Redis all the sockets of one server process share one queue, and a group
                # send puts one message on it however many of its sockets are on the board, so
                # `capacity` bounds a whole process's backlog, and each socket's buffer inside
                # it. Every channel is a consumer's own, so no channel_capacity override.
                **CHANNEL_LAYER_SIZES,
            },
        }
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": REDIS_URL}}
else:
    # Per process: fine for the embedded default, which runs everything in one process.
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer",
                                  "CONFIG": CHANNEL_LAYER_SIZES}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Throttles (storyboard.throttle; the README's Security section). Failed logins lock out an
# account and a client separately, in the database (django-axes); the other limits count in
# the cache above (django-ratelimit).
LOGIN_FAILURES_PER_ACCOUNT = envint("LOGIN_FAILURES_PER_ACCOUNT", 5)
LOGIN_FAILURES_PER_CLIENT = envint("LOGIN_FAILURES_PER_CLIENT", 20)
LOGIN_LOCKOUT_MINUTES = envint("LOGIN_LOCKOUT_MINUTES", 15)
SIGNUPS_PER_HOUR = envint("SIGNUPS_PER_HOUR", 5)  # accounts created per client
INVITATIONS_PER_HOUR = envint("INVITATIONS_PER_HOUR", 30)  # links created per person
INVITATION_ACCEPTS_PER_HOUR = envint("INVITATION_ACCEPTS_PER_HOUR", 10)  # per person
GENERATIONS_PER_MINUTE = envint("GENERATIONS_PER_MINUTE", 10)  # takes started per person
API_REQUESTS_PER_MINUTE = envint("API_REQUESTS_PER_MINUTE", 120)  # per API token
# Review links: wrong passwords per link and client, guest comments/decisions/entries per
# client, and tokens that open no link per client.
GUEST_PASSWORD_TRIES_PER_HOUR = envint("GUEST_PASSWORD_TRIES_PER_HOUR", 10)
GUEST_POSTS_PER_MINUTE = envint("GUEST_POSTS_PER_MINUTE", 20)
GUEST_UNKNOWN_LINKS_PER_HOUR = envint("GUEST_UNKNOWN_LINKS_PER_HOUR", 30)
# How many proxies of ours append to X-Forwarded-For; 0 (direct) means REMOTE_ADDR is the client.
TRUSTED_PROXY_COUNT = envint("TRUSTED_PROXY_COUNT", 0)

AXES_HANDLER = "storyboard.throttle.LoginLockout"
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
# LoginLockout counts how many of the two limits above are reached; one is enough to lock.
AXES_FAILURE_LIMIT = 1
AXES_COOLOFF_TIME = timedelta(minutes=LOGIN_LOCKOUT_MINUTES)
AXES_LOCKOUT_CALLABLE = "storyboard.throttle.login_lockout_response"
AXES_CLIENT_IP_CALLABLE = "storyboard.throttle.client_ip"
# Failures are what lockouts need; a row for every successful login would only grow.
AXES_DISABLE_ACCESS_LOG = True
# Quiet start-up; each failure and lockout is still logged.
AXES_VERBOSE = False
# A successful login does not wipe the client's failures: otherwise an attacker could log in
# to an account of their own every few guesses and never reach the per-client limit.
AXES_RESET_ON_SUCCESS = False
RATELIMIT_IP_META_KEY = "storyboard.throttle.ratelimit_ip"
if REDIS_URL:
    # Django's own RedisCache is not on django-ratelimit's list, but it increments with
    # Redis's atomic INCR on a store every server shares, which is all the limits need.
    SILENCED_SYSTEM_CHECKS = ["django_ratelimit.W001"]
else:
    # Local memory is per process, which django-ratelimit refuses; the embedded default is one
    # process, so its counts are exact. Several servers need REDIS_URL (the README says so).
    SILENCED_SYSTEM_CHECKS = ["django_ratelimit.E003", "django_ratelimit.W001"]
if not MAILERS:
    # Production without EMAIL_HOST sends no notification email on purpose (notify.py skips
    # it; the bell and the notifications page still work).
    SILENCED_SYSTEM_CHECKS.append("mail.W001")

# Background jobs: Django's Tasks API on the database. `manage.py worker` runs workers; the
# embedded default runs one inside the server process (so the in-memory channel layer reaches
# the browsers), which EMBEDDED_WORKER=0 turns off.
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
EMBEDDED_WORKER = envbool("EMBEDDED_WORKER", "False" if PRODUCTION else "True")
# Every worker process writes a heartbeat row this often (storyboard.models.WorkerBeat);
# /healthz fails when the freshest one is older than WORKER_STALE_AFTER. The gap leaves room
# for a beat delayed by a busy database without paging anyone.
WORKER_HEARTBEAT_EVERY = float(os.getenv("WORKER_HEARTBEAT_EVERY", "10"))
WORKER_STALE_AFTER = float(os.getenv("WORKER_STALE_AFTER", "60"))
# Every worker process runs the reconciler this often (storyboard.worker.reconcile_forever).
WORKER_RECONCILE_EVERY = float(os.getenv("WORKER_RECONCILE_EVERY", "30"))

VIDEO_PROVIDERS = {
    "local": {
        "BACKEND": "storyboard.providers.local.LocalProvider",
        "OPTIONS": {"queue_delay": float(os.getenv("LOCAL_QUEUE_DELAY", "0"))},
    },
}
if os.getenv("FAL_KEY"):
    # Base URLs can point elsewhere (a local emulator, a proxy); the defaults are fal's own.
    VIDEO_PROVIDERS["fal"] = {
        "BACKEND": "storyboard.providers.fal.FalProvider",
        "OPTIONS": {
            "key": os.environ["FAL_KEY"], "user_id": os.getenv("FAL_USER_ID", ""),
            **{option: os.environ[var] for option, var in (
                ("queue_url", "FAL_QUEUE_URL"), ("rest_url", "FAL_REST_URL"),
                ("jwks_url", "FAL_JWKS_URL"), ("ca_file", "FAL_CA_FILE"),
            ) if os.getenv(var)},
            **({"cdn_hosts": envlist("FAL_CDN_HOSTS")} if os.getenv("FAL_CDN_HOSTS") else {}),
        },
    }
if os.getenv("EACHLABS_KEY"):
    # Like fal's: the base URL can point elsewhere, and results may come from other hosts.
    # EACHLABS_MODELS (JSON) maps endpoints to eachlabs models over the documented defaults
    # (storyboard.providers.eachlabs.DEFAULT_MODELS), e.g. {"my/endpoint": "a-model-slug"}.
    VIDEO_PROVIDERS["eachlabs"] = {
        "BACKEND": "storyboard.providers.eachlabs.EachlabsProvider",
        "OPTIONS": {
            "key": os.environ["EACHLABS_KEY"],
            "webhook_secret": os.getenv("EACHLABS_WEBHOOK_SECRET", ""),
            **{option: os.environ[var] for option, var in (
                ("api_url", "EACHLABS_API_URL"), ("ca_file", "EACHLABS_CA_FILE"),
            ) if os.getenv(var)},
            **({"cdn_hosts": envlist("EACHLABS_CDN_HOSTS")}
               if os.getenv("EACHLABS_CDN_HOSTS") else {}),
            **({"models": json.loads(os.environ["EACHLABS_MODELS"])}
               if os.getenv("EACHLABS_MODELS") else {}),
        },
    }
DEFAULT_VIDEO_PROVIDER = os.getenv("VIDEO_PROVIDER", "local")
# The public https address providers can reach for webhooks and input files. Empty: no
# webhooks (takes are polled) and providers that need input URLs cannot be used.
WEBHOOK_BASE_URL = os.getenv("WEBHOOK_BASE_URL", "").rstrip("/")
# Limits for fetching finished videos from providers (see storyboard.providers.download).
DOWNLOADS = {
    "max_bytes": envint("DOWNLOAD_MAX_BYTES", 500 * 1024 * 1024),
    "deadline": float(os.getenv("DOWNLOAD_DEADLINE", "300")),
    # Escape hatches for a local emulator only: private networks to allow, a CA to trust.
    "extra_networks": envlist("DOWNLOAD_EXTRA_NETWORKS"),
    "verify": os.getenv("DOWNLOAD_CA_FILE") or True,
}
# Outgoing webhooks to teams' own endpoints (storyboard.webhooks): the downloader's SSRF rules.
WEBHOOKS = {
    # Plain http endpoints, for development and tests only; production sends over https.
    "allow_http": envbool("WEBHOOKS_ALLOW_HTTP"),
    # Private networks endpoints may point into (a test receiver on 127.0.0.1): none by default.
    "extra_networks": envlist("WEBHOOKS_EXTRA_NETWORKS"),
    "verify": os.getenv("WEBHOOKS_CA_FILE") or True,
    "connect_timeout": float(os.getenv("WEBHOOKS_CONNECT_TIMEOUT", "5")),
    "timeout": float(os.getenv("WEBHOOKS_TIMEOUT", "10")),
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
# Media is never served from a public URL: every file goes through an access-checked view.
MEDIA_ROOT = Path(os.getenv("MEDIA_ROOT", VAR_DIR / "media"))
MEDIA_URL = "/media-not-served-directly/"

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
if os.getenv("S3_BUCKET"):
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": os.environ["S3_BUCKET"],
            "endpoint_url": os.getenv("S3_ENDPOINT_URL") or None,
            "region_name": os.getenv("S3_REGION") or None,
            "access_key": os.getenv("S3_ACCESS_KEY_ID") or None,
            "secret_key": os.getenv("S3_SECRET_ACCESS_KEY") or None,
            "default_acl": "private",
            # Signature V4 everywhere: newer regions and most S3-compatible servers accept no
            # other, and boto would otherwise sign some URLs with V2.
            "signature_version": "s3v4",
            "querystring_auth": True,
            # Seconds a signed media URL works. Short: it is a bearer credential for one file,
            # and the page asks again (through the access check) for every view.
            "querystring_expire": envint("S3_URL_EXPIRY", 300),
            "file_overwrite": False,
        },
    }
# Without collectstatic (the embedded default), WhiteNoise serves straight from the finders.
WHITENOISE_USE_FINDERS = not PRODUCTION

# Upload limits. Request bodies are streamed to disk above this size; the per-kind caps are
# enforced by storyboard.media after the bytes arrive.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
FILE_UPLOAD_TEMP_DIR = None

INVITATION_DAYS = envint("INVITATION_DAYS", 7)

# Content-Security-Policy for every page: scripts and styles only from our own static files,
# no inline script, no eval (htmx is configured without either in base.html). Signed S3 URLs
# are the one other origin pages load from: media views redirect <video>/<img> there.
MEDIA_ORIGINS: list[str] = []
if os.getenv("S3_BUCKET"):
    _bucket, _region = os.environ["S3_BUCKET"], os.getenv("S3_REGION")
    if os.getenv("S3_ENDPOINT_URL"):
        _endpoint = urlsplit(os.environ["S3_ENDPOINT_URL"])
        # Path-style (endpoint/bucket/key) and virtual-hosted (bucket.endpoint/key) URLs.
        MEDIA_ORIGINS = [f"{_endpoint.scheme}://{_endpoint.netloc}",
                         f"{_endpoint.scheme}://{_bucket}.{_endpoint.netloc}"]
    else:
        MEDIA_ORIGINS = [f"https://{_bucket}.s3.amazonaws.com"]
        if _region:
            MEDIA_ORIGINS.append(f"https://{_bucket}.s3.{_region}.amazonaws.com")
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    # Templates set `style="--hue: …"` and `style="width: …%"` on elements. Attribute styles
    # cannot run script or load anything, unlike <style> elements, which stay 'self' only.
    "style-src-attr": [CSP.UNSAFE_INLINE],
    "img-src": [CSP.SELF, "data:", *MEDIA_ORIGINS],
    "media-src": [CSP.SELF, *MEDIA_ORIGINS],
    # In CSP3 'self' also matches ws:/wss: on our own host, which the board's websocket uses.
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}

SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

if PRODUCTION:
    if len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5:
        raise ImproperlyConfigured("SECRET_KEY must be at least 50 varied characters.")
    SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", "True")
    # Probes often speak plain HTTP to the server itself, behind the proxy that ends TLS.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    # On by default so `check --deploy` is clean; set SECURE_HSTS_PRELOAD=0 if the domain must
    # stay off browsers' preload lists (e.g. it also serves plain-HTTP subdomains).
    SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", "True")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# LOG_FORMAT=json: one JSON object per line (storyboard.logs), what a log collector indexes;
# "text" reads better on a terminal. Request lines and take transitions carry their fields
# either way (logger "storyboard.requests" at INFO, "storyboard.takes" at INFO).
LOG_FORMAT = os.getenv("LOG_FORMAT", "json" if PRODUCTION else "text")
if LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured("LOG_FORMAT must be json or text.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "storyboard.logs.JsonFormatter"},
                   "text": {"format": "%(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": os.getenv("LOG_LEVEL", "INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"},
                # httpx logs every request's full URL at INFO: a team's webhook address may
                # carry its receiver's token in the query. Our own lines say what was sent.
                "httpx": {"level": "WARNING"}},
}
