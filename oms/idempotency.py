"""Idempotency-Key for API POSTs: the first answer is stored and replayed byte for byte.

By default the key is claimed with an insert that commits at once (requests are not atomic as
a whole), so a concurrent duplicate sees it immediately, waits for the first answer and replays
it. With `@idempotent(atomic=True)` (order capture) the claim, the handler's writes and the
stored answer commit together instead: one commit rather than three, and a request that dies
half-way leaves neither a claim nor a finished order without its answer. A concurrent duplicate
then waits in the database on the claim's unique key and replays the answer once it commits.
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
from .fastsql import fetch, insert_unless_conflict, new
from .models import IdempotencyRecord
from .transactions import all_or_nothing

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


def idempotent(handler=None, *, atomic: bool = False):
    """Wrap an APIView handler (post) so that retries with the same key replay its answer.

    atomic=True runs the handler inside the claim's transaction: only for handlers whose work
    is all in the database (nothing sent out while they run; the outbox sends after commit)."""
    if handler is None:
        return functools.partial(idempotent, atomic=atomic)

    @functools.wraps(handler)
    def wrapper(view, request, *args, **kwargs):
        key = request.headers.get(HEADER, "").strip()
        if not key:
            return handler(view, request, *args, **kwargs)
        if len(key) > 255:
            return _error(400, "validation_error", "Idempotency-Key must be at most 255 characters.")
        principal, fingerprint = _principal(request), _fingerprint(request)
        record = new(
            IdempotencyRecord,
            principal=principal,
            key=key,
            method=request.method,
            path=request.path,
            fingerprint=fingerprint,
        )
        run = _run_atomic if atomic else _run
        return run(record, lambda: _answer(handler, view, request, args, kwargs))

    return wrapper


def _answer(handler, view, request, args, kwargs):
    """The handler's answer, rendered; domain and validation errors become their 4xx answer."""
    try:
        response = handler(view, request, *args, **kwargs)
    except Exception as exc:
        response = view.handle_exception(exc)  # re-raises what has no 4xx answer
    if response.status_code >= 500:
        raise RuntimeError("server error")
    view.finalize_response(request, response, *args, **kwargs)
    response.render()
    return response


def _run(record: IdempotencyRecord, answer):
    if not insert_unless_conflict(record):  # one statement, committed at once
        return _existing(record.principal, record.key, record.fingerprint)
    try:
        response = answer()
    except Exception:
        record.delete()  # a retry may try again
        raise
    _finish(record, response)
    return response


class _Refused(Exception):
    """An error answer inside the claim's transaction: it rolls back, the answer is kept."""

    def __init__(self, response):
        self.response = response


class _Taken(Exception):
    pass


def _run_atomic(record: IdempotencyRecord, answer):
    try:
        with all_or_nothing():
            # Waits while a duplicate's transaction holds the same key, then conflicts if it committed.
            if not insert_unless_conflict(record):
                raise _Taken
            response = answer()  # a server error rolls everything back: a retry runs afresh
            if response.status_code >= 400:
                raise _Refused(response)
            _finish(record, response)
            return response
    except _Taken:
        return _existing(record.principal, record.key, record.fingerprint)
    except _Refused as refused:
        response = refused.response
    # Nothing the handler wrote stayed; its answer is stored alone so that a retry gets it too.
    record.pk = None
    record.state = IdempotencyRecord.State.DONE
    record.response_status, record.response_body, record.response_content_type = _stored(response)
    if not insert_unless_conflict(record):  # a duplicate answered first: the first answer stands
        return _existing(record.principal, record.key, record.fingerprint)
    return response


def _stored(response) -> tuple[int, bytes, str]:
    """What is kept of an answer to replay it: status, body, content type."""
    return response.status_code, bytes(response.content), response.get("Content-Type", "application/json")


def _finish(record: IdempotencyRecord, response) -> None:
    fetch(_FINISH_SQL, [IdempotencyRecord.State.DONE, *_stored(response), record.pk], rows=False)


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
