"""Domain errors. Services raise these; the API layer turns them into the error envelope."""

from __future__ import annotations


class DomainError(Exception):
    code = "error"
    status = 400

    def __init__(self, message: str, *, fields: dict | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.fields = fields or {}
        if code:
            self.code = code


class ValidationFailed(DomainError):
    code = "validation_error"
    status = 400


class NotFound(DomainError):
    code = "not_found"
    status = 404


class PermissionDenied(DomainError):
    code = "permission_denied"
    status = 403


class Conflict(DomainError):
    code = "conflict"
    status = 409


class InsufficientStock(DomainError):
    code = "insufficient_stock"
    status = 409

    def __init__(self, message: str, *, skus: list[str], fields: dict | None = None):
        super().__init__(message, fields=fields)
        self.skus = skus


class InvalidTransition(DomainError):
    code = "invalid_transition"
    status = 409
