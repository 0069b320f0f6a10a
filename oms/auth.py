"""API-key authentication and scope checks for the REST API."""

from __future__ import annotations

import hmac
import time
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from rest_framework import authentication, exceptions, permissions

from .models import ApiKey, hash_key

LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiKeyPrincipal:
    """What `request.user` is for an API-key request: authenticated, not a Django user."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    pk = None

    def __init__(self, key: ApiKey):
        self.key = key

    def __str__(self) -> str:
        return f"api-key:{self.key.prefix}"


# hash of the raw key → (when it was read, the key): a per-process cache of usable keys.
_keys: dict[str, tuple[float, ApiKey]] = {}


def usable_key(raw: str) -> ApiKey | None:
    """The usable key for a raw secret, or None. Read from the database at most once every
    API_KEY_CACHE_SECONDS per process: revoking a key (or changing its scopes or binding) takes
    effect within that many seconds. Unknown keys are never cached."""
    digest = hash_key(raw)
    ttl = settings.API_KEY_CACHE_SECONDS
    now = time.monotonic()
    hit = _keys.get(digest)
    if hit is not None and now - hit[0] < ttl:
        return hit[1]
    prefix = ApiKey.parse_prefix(raw)
    key = (
        ApiKey.objects.usable().select_related("channel", "location").filter(prefix=prefix).first() if prefix else None
    )
    if key is None or not hmac.compare_digest(key.hashed_key, digest):
        _keys.pop(digest, None)
        return None
    if ttl > 0:
        if len(_keys) > 10_000:
            _keys.clear()
        _keys[digest] = (now, key)
    return key


def forget_keys() -> None:
    _keys.clear()


def touch(key: ApiKey) -> None:
    """Record last_used_at at most once a minute: no write per request on hot read paths."""
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Api-Key"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, raw = header.partition(" ")
        if scheme != self.keyword:
            raise exceptions.AuthenticationFailed("Use the header 'Authorization: Api-Key <key>'.")
        key = usable_key(raw.strip())
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        touch(key)
        request._request.api_key = key  # for logging and Actor.from_request
        return ApiKeyPrincipal(key), key

    def authenticate_header(self, request) -> str:
        return self.keyword


class HasScope(permissions.BasePermission):
    """Views declare `required_scopes = {"GET": "inventory:read", "POST": "inventory:write"}`
    (or a single string for every method). A view without scopes is closed."""

    message = "This API key lacks the required scope."

    def has_permission(self, request, view) -> bool:
        key = request.auth if isinstance(request.auth, ApiKey) else None
        if key is None:
            if request.user is None or not request.user.is_authenticated:
                raise exceptions.NotAuthenticated("Authentication required: 'Authorization: Api-Key <key>'.")
            return False
        scope = required_scope(view, request.method)
        if scope is None:
            # An unsupported method falls through to DRF's 405; a handled one without a scope is closed.
            return request.method.lower() not in view.http_method_names or not hasattr(view, request.method.lower())
        if not key.has_scope(scope):
            self.message = f"This API key lacks the scope '{scope}'."
            return False
        return True


def required_scope(view, method: str) -> str | None:
    scopes = getattr(view, "required_scopes", None)
    if isinstance(scopes, str):
        return scopes
    if isinstance(scopes, dict):
        if method in ("HEAD", "OPTIONS"):
            method = "GET"
        return scopes.get(method)
    return None
