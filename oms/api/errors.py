"""One error envelope for every API error: {"error": {"code", "message", "fields"}}."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, JsonResponse
from django.views import defaults
from django_fsm import ConcurrentTransition, TransitionNotAllowed
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from oms.errors import DomainError, InsufficientStock

DRF_CODES = {
    exceptions.ValidationError: "validation_error",
    exceptions.ParseError: "validation_error",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.NotAuthenticated: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
}


def envelope(code: str, message: str, fields: dict | None = None, **extra) -> dict:
    body = {"code": code, "message": message, "fields": fields or {}}
    body.update(extra)
    return {"error": body}


def _flatten(detail, path: str = "", out: dict | None = None) -> dict[str, str]:
    """DRF's nested error detail as flat paths: {"adjustments[0].delta": "..."}."""
    out = {} if out is None else out
    if isinstance(detail, dict):
        for key, value in detail.items():
            if key == "non_field_errors":
                sub = path or "non_field_errors"
            elif isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
                sub = f"{path}[{key}]"
            else:
                sub = f"{path}.{key}" if path else str(key)
            _flatten(value, sub, out)
    elif isinstance(detail, list):
        if all(not isinstance(v, dict | list) for v in detail):
            if detail:
                out[path or "non_field_errors"] = " ".join(str(v) for v in detail)
        else:
            for i, value in enumerate(detail):
                _flatten(value, f"{path}[{i}]", out)
    else:
        out[path or "non_field_errors"] = str(detail)
    return out


def exception_handler(exc, context):
    if isinstance(exc, DomainError):
        extra = {"skus": exc.skus} if isinstance(exc, InsufficientStock) else {}
        return Response(envelope(exc.code, exc.message, exc.fields, **extra), status=exc.status)
    if isinstance(exc, TransitionNotAllowed):  # a backstop: services check states first
        return Response(envelope("invalid_transition", str(exc)), status=409)
    if isinstance(exc, ConcurrentTransition):
        return Response(envelope("conflict", "The record changed concurrently; retry."), status=409)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    code = next((c for cls, c in DRF_CODES.items() if isinstance(exc, cls)), "error")
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        fields = _flatten(detail)
        first = next(iter(fields.items()), ("", "Invalid input."))
        message = first[1] if first[0] == "non_field_errors" else f"{first[0]}: {first[1]}"
        response.data = envelope(code, message, fields)
    elif isinstance(exc, exceptions.ParseError):
        response.data = envelope(code, f"Malformed request body: {exc.detail}")
    else:
        response.data = envelope(code, str(exc.detail))
    return response


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def json_404(request, exception=None):
    """404 in the envelope for API paths; Django's page for the admin and console."""
    if not _is_api(request):
        return defaults.page_not_found(request, exception)
    return JsonResponse(envelope("not_found", "Not found."), status=status.HTTP_404_NOT_FOUND)


def json_500(request):
    if not _is_api(request):
        return defaults.server_error(request)
    return JsonResponse(envelope("server_error", "Internal error; it has been logged."), status=500)
