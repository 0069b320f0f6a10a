"""One log line per request and per task, with ids; never headers, bodies or query strings."""

from __future__ import annotations

import logging
import time
import uuid

request_log = logging.getLogger("oms.request")
task_log = logging.getLogger("oms.task")


class RequestLogMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = request.headers.get("X-Request-ID", "")[:64] or uuid.uuid4().hex
        request.request_id = request_id
        started = time.perf_counter()
        response = self.get_response(request)
        elapsed_ms = (time.perf_counter() - started) * 1000
        key = getattr(request, "api_key", None)
        user = getattr(request, "user", None)
        principal = (
            f"key={key.prefix}"
            if key is not None
            else (f"user={user.pk}" if user is not None and user.is_authenticated else "anon")
        )
        response["X-Request-ID"] = request_id
        request_log.info(
            "request id=%s %s %s status=%s %s ms=%.1f",
            request_id,
            request.method,
            request.path,  # path only: query strings may carry personal data
            response.status_code,
            principal,
            elapsed_ms,
        )
        return response


_task_started: dict[str, float] = {}


def connect_task_logging() -> None:
    from celery.signals import task_postrun, task_prerun

    @task_prerun.connect(weak=False)
    def _prerun(task_id=None, task=None, **_):
        _task_started[task_id] = time.perf_counter()

    @task_postrun.connect(weak=False)
    def _postrun(task_id=None, task=None, state=None, **_):
        started = _task_started.pop(task_id, None)
        elapsed = (time.perf_counter() - started) * 1000 if started else 0.0
        task_log.info("task id=%s name=%s state=%s ms=%.1f", task_id, task.name, state, elapsed)
