"""Idempotency-Key for API POSTs: the first answer is stored and replayed byte for byte.

The key is claimed with an insert that commits at once (requests are not atomic as a whole),
so a concurrent duplicate sees it immediately, waits for the first answer and replays it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from datetime import timedelta

from django.conf import settings
from django.http import HttpResponse
from django.utils import timezone
from rest_framework.response import Response

from .api.errors import envelope
from .fastsql import fetch, insert_unless_conflict
from .models import IdempotencyRecord

WAIT_SECONDS = 15.0
POLL_SECONDS = 0.05
ABANDONED_AFTER = timedelta(minutes=2)
HEADER = "Idempotency-Key"
_FINISH_SQL = (
    "UPDATE oms_idempotencyrecord SET state = %s, response_status = %s, response_body = %s,"
    " response_content_type = %s WHERE id = %s"
)


def _principal(request) -> str:
    key = getattr(request, "auth", None)
    if key is not None and hasattr(key, "prefix"):
        return f"key:{key.pk}"
    return f"user:{request.user.pk}"


def _fingerprint(request) -> str:
    body = json.dumps(request.data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{request.method} {request.path}\n{body}".encode()).hexdigest()


def _replay(record: IdempotencyRecord) -> HttpResponse:
    response = HttpResponse(
        bytes(record.response_body),
        status=record.response_status,
        content_type=record.response_content_type,
    )
    response["Idempotent-Replayed"] = "true"
    return response


def _error(status: int, code: str, message: str) -> Response:
    return Response(envelope(code, message, {HEADER: message}), status=status)


def idempotent(handler):
    """Wrap an APIView handler (post) so that retries with the same key replay its answer."""

    @functools.wraps(handler)
    def wrapper(view, request, *args, **kwargs):
        key = request.headers.get(HEADER, "").strip()
        if not key:
            return handler(view, request, *args, **kwargs)
        if len(key) > 255:
            return _error(400, "validation_error", "Idempotency-Key must be at most 255 characters.")
        principal, fingerprint = _principal(request), _fingerprint(request)
        record = IdempotencyRecord(
            principal=principal, key=key, method=request.method, path=request.path, fingerprint=fingerprint
        )
        if not insert_unless_conflict(record):  # one statement, committed at once
            return _existing(principal, key, fingerprint)
        try:
            try:
                response = handler(view, request, *args, **kwargs)
            except Exception as exc:
                response = view.handle_exception(exc)  # domain and validation errors become 4xx
            if response.status_code >= 500:
                raise RuntimeError("server error")
        except Exception:
            record.delete()  # a retry may try again
            raise
        view.finalize_response(request, response, *args, **kwargs)
        response.render()
        fetch(
            _FINISH_SQL,
            [
                IdempotencyRecord.State.DONE,
                response.status_code,
                bytes(response.content),
                response.get("Content-Type", "application/json"),
                record.pk,
            ],
            rows=False,
        )
        return response

    return wrapper


def _existing(principal: str, key: str, fingerprint: str):
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        record = IdempotencyRecord.objects.filter(principal=principal, key=key).first()
        if record is None:  # the first attempt failed and let go of the key: not ours to run now
            return _error(409, "conflict", "A request with this Idempotency-Key failed; retry it.")
        if record.fingerprint != fingerprint:
            return _error(
                422,
                "idempotency_mismatch",
                "This Idempotency-Key was used with a different request body.",
            )
        if record.state == IdempotencyRecord.State.DONE:
            return _replay(record)
        if record.created_at < timezone.now() - ABANDONED_AFTER:
            # Its process died mid-request; free the key so the next retry runs afresh.
            IdempotencyRecord.objects.filter(pk=record.pk, state=IdempotencyRecord.State.IN_FLIGHT).delete()
            return _error(
                409,
                "conflict",
                "An earlier request with this Idempotency-Key was interrupted; retry it.",
            )
        if time.monotonic() > deadline:
            return _error(409, "conflict", "A request with this Idempotency-Key is still in flight.")
        time.sleep(POLL_SECONDS)


def purge_expired() -> int:
    cutoff = timezone.now() - timedelta(hours=settings.IDEMPOTENCY_TTL_HOURS)
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
