"""Settings, read from the environment (12-factor).

No DATABASE_URL: SQLite file in the project folder. No REDIS_URL: Celery runs eagerly in-process.
"""

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


DEBUG = env_bool("OMS_DEBUG")
SECRET_KEY = os.environ.get("SECRET_KEY", "insecure-dev-key-set-SECRET_KEY-in-production")
ALLOWED_HOSTS = [h for h in os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    # Django
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Third party
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_fsm",
    # Local
    "oms",
    "inventory",
    "orders",
    "routing",
    "returns",
]

MIDDLEWARE = [
    "oms.logging.RequestLogMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "oms.urls"
WSGI_APPLICATION = "oms.wsgi.application"

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

# Database: PostgreSQL in production, SQLite embedded default.
DATABASE_URL = os.environ.get("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
    # Parameters bound on the server, and a statement run PG_PREPARE_THRESHOLD times on a connection
    # becomes a prepared statement: PostgreSQL stops parsing and planning the same capture, reserve
    # and ATP statements again and again (a third of its CPU per order capture). A pooler in
    # transaction mode must support prepared statements (PgBouncer >= 1.21 with
    # max_prepared_statements); PG_PREPARE_THRESHOLD=0 turns preparing off.
    _prepare = int(os.environ.get("PG_PREPARE_THRESHOLD", "5"))
    DATABASES["default"]["OPTIONS"] = {"server_side_binding": True, "prepare_threshold": _prepare or None}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("SQLITE_PATH", str(BASE_DIR / "db.sqlite3")),
            "OPTIONS": {
                # IMMEDIATE takes the write lock at BEGIN, so concurrent writers queue
                # instead of failing on lock upgrade; WAL lets readers run beside them.
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
IS_POSTGRES = DATABASES["default"]["ENGINE"].endswith("postgresql")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedStaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

LOGIN_URL = "/admin/login/"
# Messages can carry a one-time API key: keep them server-side, not in a cookie.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

# --- REST API ---------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["oms.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["oms.auth.HasScope"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "oms.api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "oms.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    "COERCE_DECIMAL_TO_STRING": True,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "OMS API",
    "DESCRIPTION": "Order capture, inventory and availability-to-promise, fulfilment, returns.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "LocationTypeEnum": "inventory.models.LocationType",
        "ChannelTypeEnum": "inventory.models.ChannelType",
        "OrderStatusEnum": "orders.models.OrderStatus",
        "PaymentStatusEnum": "orders.models.PaymentStatus",
        "HoldTypeEnum": "orders.models.HoldType",
        "FulfillmentMethodEnum": "orders.models.Order.Method",
        "RoutingMethodEnum": ["ship", "pickup", "curbside"],
        "FulfillmentStatusEnum": "orders.models.FulfillmentStatus",
        "SupplyStatusEnum": "inventory.models.IncomingSupply.Status",
        "ReservationStatusEnum": "inventory.models.Reservation.Status",
        "TrackingStatusEnum": "orders.carriers.models.TrackingStatus",
        "CarrierTrackingStatusEnum": "orders.carriers.models.CARRIER_STATUSES",
        "ReturnStatusEnum": "returns.models.ReturnStatus",
        "RefundStatusEnum": "returns.models.RefundStatus",
        "AppeasementStatusEnum": "returns.models.AppeasementStatus",
        "ReturnMethodEnum": "returns.models.Return.Method",
        "ReturnConditionEnum": "returns.models.Condition",
        "ReturnDispositionEnum": "returns.models.Disposition",
    },
}

# --- Celery -----------------------------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = REDIS_URL or None
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_TASK_DEFAULT_QUEUE", "celery")
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# The request path never waits on the broker: publishing fails fast, the outbox retries.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_timeout": 2, "socket_connect_timeout": 2}
CELERY_TASK_PUBLISH_RETRY = False
CELERY_BEAT_SCHEDULE = {
    "release-expired-reservations": {
        "task": "inventory.release_expired_reservations",
        "schedule": 30.0,
    },
    "relay-outbox": {"task": "oms.relay_outbox", "schedule": 5.0},
    "deliver-webhooks": {"task": "oms.deliver_webhooks", "schedule": 10.0},
    "purge-idempotency-records": {"task": "oms.purge_idempotency_records", "schedule": 3600.0},
    "poll-return-labels": {
        "task": "returns.poll_return_labels",
        "schedule": float(os.environ.get("RETURN_LABEL_POLL_SECONDS", "300")),
    },
    # Fulfilment SLAs (orders.services): each run is idempotent and safe beside another.
    "escalate-unaccepted-fulfillments": {"task": "orders.escalate_unaccepted", "schedule": 60.0},
    "flag-late-fulfillments": {"task": "orders.flag_late_fulfillments", "schedule": 60.0},
    "expire-uncollected-pickups": {"task": "orders.expire_pickups", "schedule": 900.0},
    "poll-carrier-tracking": {
        "task": "orders.poll_tracking",
        "schedule": float(os.environ.get("CARRIER_TRACKING_POLL_SECONDS", "60")),
    },
}

OUTBOX_MAX_ATTEMPTS = int(os.environ.get("OUTBOX_MAX_ATTEMPTS", "12"))

# --- Caches -----------------------------------------------------------------------------------
# "atp": the availability shown to shoppers, per (channel, SKU), with per-SKU generations that the
# inventory services bump on every stock change (inventory/atp_cache.py). Shared by all processes
# through Redis when REDIS_URL is set (short timeouts: a Redis outage only turns the cache off);
# process-local otherwise. Reservations and capture never read it: they check the stock rows.
ATP_CACHE_SECONDS = float(os.environ.get("ATP_CACHE_SECONDS", "60"))  # 0 turns the cache off
# API keys are looked up once per process and kept this long: a revoked key (or a changed scope or
# binding) keeps working in a process that has it cached for at most this many seconds.
API_KEY_CACHE_SECONDS = float(os.environ.get("API_KEY_CACHE_SECONDS", "5"))  # 0: every request reads
# Channels and hold rules, which every capture reads, likewise (oms/local_cache.py): an edit
# applies at once in the process that saved it and within this many seconds in the others.
CONFIG_CACHE_SECONDS = float(os.environ.get("CONFIG_CACHE_SECONDS", "5"))  # 0: every request reads
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "atp": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_timeout": 0.25, "socket_connect_timeout": 0.25},
        }
        if REDIS_URL
        else {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "atp",
            "OPTIONS": {"MAX_ENTRIES": 200_000},
        }
    ),
}

# --- Logging ----------------------------------------------------------------------------------
LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "line": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "line"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Our own request line replaces Django's, which would log the full query string.
        "django.server": {"level": "WARNING"},
        "django.request": {"level": "ERROR"},
    },
}
# Callables that receive each outbox event (webhook fan-out, channel feeds).
OUTBOX_EVENT_HANDLERS: list[str] = ["oms.webhooks.fan_out"]
WEBHOOK_TIMEOUT_SECONDS = float(os.environ.get("WEBHOOK_TIMEOUT_SECONDS", "5"))
WEBHOOK_MAX_ATTEMPTS = int(os.environ.get("WEBHOOK_MAX_ATTEMPTS", "10"))
IDEMPOTENCY_TTL_HOURS = int(os.environ.get("IDEMPOTENCY_TTL_HOURS", "48"))
# After this many location rejections an order goes to the sourcing exception queue.
ROUTING_MAX_ATTEMPTS = int(os.environ.get("ROUTING_MAX_ATTEMPTS", "3"))

# --- Fulfilment SLAs ---------------------------------------------------------------------------
# A fulfilment not accepted this many minutes after release is escalated: "reroute" rejects it
# ("not accepted in time", so routing sends it elsewhere) or "alert" only flags it (timeline +
# `fulfillment.late` webhook).
FULFILLMENT_ACCEPT_MINUTES = int(os.environ.get("FULFILLMENT_ACCEPT_MINUTES", "60"))
FULFILLMENT_ACCEPT_ESCALATION = os.environ.get("FULFILLMENT_ACCEPT_ESCALATION", "reroute").strip().lower()
if FULFILLMENT_ACCEPT_ESCALATION not in ("reroute", "alert"):
    raise ValueError("FULFILLMENT_ACCEPT_ESCALATION must be 'reroute' or 'alert'.")
# Days a ready pickup waits at the counter before it expires (cancelled, stock released, refunded).
PICKUP_EXPIRY_DAYS = int(os.environ.get("PICKUP_EXPIRY_DAYS", "7"))

# --- Email (customer notifications) ------------------------------------------------------------
# No EMAIL_HOST: mail is printed on the console (development). Tests use Django's locmem outbox.
EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
EMAIL_BACKEND = os.environ.get(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_FILE_PATH = os.environ.get("EMAIL_FILE_PATH") or None  # for EMAIL_BACKEND ….filebased.EmailBackend
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "587"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", not EMAIL_USE_SSL)  # STARTTLS on 587 unless implicit SSL
EMAIL_TIMEOUT = float(os.environ.get("EMAIL_TIMEOUT", "10"))
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "OMS Orders <orders@localhost>")
OMS_EMAIL_SENDER_NAME = os.environ.get("OMS_EMAIL_SENDER_NAME", "The OMS demo shop")
# --- Carriers ---------------------------------------------------------------------------------
CARRIER_TIMEOUT_SECONDS = float(os.environ.get("CARRIER_TIMEOUT_SECONDS", "10"))
# A parcel in transit is asked about at most this often; a failing carrier backs off from the base.
CARRIER_TRACKING_INTERVAL_SECONDS = float(os.environ.get("CARRIER_TRACKING_INTERVAL_SECONDS", "1800"))
CARRIER_TRACKING_BACKOFF_SECONDS = float(os.environ.get("CARRIER_TRACKING_BACKOFF_SECONDS", "60"))
CARRIER_TRACKING_MAX_DAYS = int(os.environ.get("CARRIER_TRACKING_MAX_DAYS", "60"))
CARRIER_WEBHOOK_TOLERANCE_SECONDS = int(os.environ.get("CARRIER_WEBHOOK_TOLERANCE_SECONDS", "300"))

# --- Payments and returns -----------------------------------------------------------------------
# Unset: refunds go to the in-process sandbox gateway. Set (e.g. to `manage.py run_sandbox_gateway`'s
# URL, or a real gateway speaking the same protocol): refunds go over HTTP.
PAYMENT_GATEWAY_URL = os.environ.get("PAYMENT_GATEWAY_URL", "")
PAYMENT_GATEWAY_API_KEY = os.environ.get("PAYMENT_GATEWAY_API_KEY", "")
PAYMENT_GATEWAY_TIMEOUT_SECONDS = float(os.environ.get("PAYMENT_GATEWAY_TIMEOUT_SECONDS", "10"))
# Gateway calls per refund before it is marked failed (retried with backoff in between).
REFUND_MAX_ATTEMPTS = int(os.environ.get("REFUND_MAX_ATTEMPTS", "8"))
# Appeasements an API key may issue without approval (people have per-role limits in the admin).
APPEASEMENT_API_KEY_LIMIT = os.environ.get("APPEASEMENT_API_KEY_LIMIT", "0")
