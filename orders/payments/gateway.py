"""The payment gateway adapter: what the OMS asks of a payment service provider.

Only refunds go through it today (authorisation and capture happen at the storefront and are
recorded on the order). An adapter answers a refund with a `GatewayResult` (succeeded, or
declined for good), raises `GatewayUnavailable` when the gateway cannot be reached or answers
5xx (the caller retries later with the same idempotency key, so a refund is never paid
twice), and `GatewayError` when it refuses the request itself (bad credentials, malformed).

`get_gateway()` picks the adapter from settings: `PAYMENT_GATEWAY_URL` set → the HTTP adapter
(the sandbox service, or a real gateway speaking the same small protocol); unset → the
in-process sandbox, so the embedded mode works with nothing else running.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from django.conf import settings


@dataclass(frozen=True)
class RefundRequest:
    payment_reference: str  # the PSP's id of the original charge (Payment.reference)
    payment_method: str
    amount: Decimal
    currency: str
    idempotency_key: str  # one per Refund row: a retried call never refunds twice
    order: str = ""  # the order number, for the gateway's own records


@dataclass(frozen=True)
class GatewayResult:
    succeeded: bool
    reference: str = ""  # the gateway's refund id
    code: str = ""  # decline code when not succeeded
    message: str = ""


class GatewayUnavailable(Exception):
    """Could not reach the gateway or it answered 5xx: try again later, same idempotency key."""


class GatewayError(Exception):
    """The gateway refused the request itself (credentials, malformed, key reused): do not retry."""


class PaymentGateway(Protocol):
    name: str

    def refund(self, request: RefundRequest) -> GatewayResult: ...


def get_gateway() -> PaymentGateway:
    if settings.PAYMENT_GATEWAY_URL:
        from .http_gateway import HttpGateway

        return HttpGateway(
            base_url=settings.PAYMENT_GATEWAY_URL,
            api_key=settings.PAYMENT_GATEWAY_API_KEY,
            timeout=settings.PAYMENT_GATEWAY_TIMEOUT_SECONDS,
        )
    from .sandbox import InProcessSandboxGateway

    return InProcessSandboxGateway()
