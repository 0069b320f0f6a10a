"""A deterministic sandbox payment gateway, like a PSP's test mode.

The same rules answer in-process (`InProcessSandboxGateway`, the embedded default) and over
HTTP (`make_server`, run by `manage.py run_sandbox_gateway`), so tests and demos exercise the
real HTTP adapter against a real socket. Test references (Payment.reference) steer it:

- contains "decline"     → 402 declined (`card_declined`), for good
- contains "unavailable" → 503 on every attempt (the caller retries, then gives up)
- contains "flaky"       → 503 on the first attempt of each idempotency key, then success
- anything else          → 200 succeeded, refund id `re_sbx_<hash of the idempotency key>`

Idempotency: the first final answer per `Idempotency-Key` is kept and replayed; the same key
with another body is refused (409), as real gateways do.
"""

from __future__ import annotations

import hashlib
import json
import threading
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .gateway import GatewayError, GatewayResult, GatewayUnavailable, RefundRequest

SUCCEEDED, DECLINED = "succeeded", "declined"


class SandboxLedger:
    """What the sandbox has answered, per idempotency key (thread-safe, in memory)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._answers: dict[str, tuple[str, int, dict]] = {}  # key -> (fingerprint, status, body)
        self._attempts: dict[str, int] = {}

    def answer(self, key: str, body: dict) -> tuple[int, dict]:
        if not key:
            return 400, {"error": "missing_idempotency_key", "message": "Send an Idempotency-Key header."}
        fingerprint = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        with self._lock:
            seen = self._answers.get(key)
            if seen is not None:
                if seen[0] != fingerprint:
                    return 409, {"error": "idempotency_mismatch", "message": "Key reused with another request."}
                return seen[1], {**seen[2], "replayed": True}
            attempt = self._attempts[key] = self._attempts.get(key, 0) + 1
            status, answer = decide(body, key, attempt)
            if status < 500:  # transient failures are not remembered: a retry may succeed
                self._answers[key] = (fingerprint, status, answer)
            return status, answer

    def get(self, key: str) -> dict | None:
        with self._lock:
            seen = self._answers.get(key)
            return None if seen is None else {"status_code": seen[1], **seen[2], "attempts": self._attempts[key]}


def decide(body: dict, key: str, attempt: int) -> tuple[int, dict]:
    reference = str(body.get("payment_reference", "")).lower()
    try:
        amount = Decimal(str(body.get("amount")))
    except (InvalidOperation, ValueError):
        return 400, {"error": "invalid_amount", "message": "amount must be a decimal string."}
    if not amount.is_finite() or amount <= 0 or amount != amount.quantize(Decimal("0.01")):
        return 400, {"error": "invalid_amount", "message": "amount must be positive, in cents."}
    if "unavailable" in reference or ("flaky" in reference and attempt == 1):
        return 503, {"error": "unavailable", "message": "Sandbox gateway is temporarily unavailable."}
    if "decline" in reference:
        return 402, {"status": DECLINED, "code": "card_declined", "message": "The issuer declined the refund."}
    refund_id = "re_sbx_" + hashlib.sha256(key.encode()).hexdigest()[:16]
    return 200, {"status": SUCCEEDED, "id": refund_id, "amount": str(amount), "currency": body.get("currency", "")}


def result_from(status: int, answer: dict) -> GatewayResult:
    """Map a sandbox/HTTP answer to the adapter's result (or its exceptions)."""
    if status >= 500:
        raise GatewayUnavailable(f"gateway answered {status}: {answer.get('message', '')}".strip())
    if status == 402 or answer.get("status") == DECLINED:
        return GatewayResult(succeeded=False, code=answer.get("code", "declined"), message=answer.get("message", ""))
    if 200 <= status < 300 and answer.get("status") == SUCCEEDED:
        return GatewayResult(succeeded=True, reference=answer.get("id", ""))
    raise GatewayError(f"gateway refused the request ({status}): {answer.get('message') or answer.get('error', '')}")


def request_body(request: RefundRequest) -> dict:
    return {
        "payment_reference": request.payment_reference,
        "payment_method": request.payment_method,
        "amount": str(request.amount),
        "currency": request.currency,
        "order": request.order,
    }


_ledger = SandboxLedger()


class InProcessSandboxGateway:
    """The sandbox's rules without a socket: the default when no gateway URL is configured."""

    name = "sandbox"

    def __init__(self, ledger: SandboxLedger | None = None) -> None:
        self.ledger = ledger or _ledger

    def refund(self, request: RefundRequest) -> GatewayResult:
        return result_from(*self.ledger.answer(request.idempotency_key, request_body(request)))


# --- The HTTP service ---------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: SandboxServer
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet unless asked
        if self.server.verbose:
            super().log_message(fmt, *args)

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self) -> bool:
        if not self.server.api_key:
            return True
        return self.headers.get("Authorization", "") == f"Bearer {self.server.api_key}"

    def do_GET(self):  # noqa: N802 (http.server's naming)
        if self.path == "/healthz":
            return self._send(200, {"status": "ok"})
        if self.path.startswith("/v1/refunds/") and self._authorised():
            found = self.server.ledger.get(self.path.removeprefix("/v1/refunds/"))
            return self._send(200, found) if found else self._send(404, {"error": "not_found"})
        return self._send(404, {"error": "not_found"})

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path != "/v1/refunds":
            return self._send(404, {"error": "not_found"})
        if not self._authorised():
            return self._send(401, {"error": "unauthorised", "message": "Bad or missing bearer token."})
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError
        except ValueError:
            return self._send(400, {"error": "malformed", "message": "Send a JSON object."})
        status, answer = self.server.ledger.answer(self.headers.get("Idempotency-Key", ""), body)
        return self._send(status, answer)


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], *, api_key: str = "", verbose: bool = False):
        super().__init__(address, _Handler)
        self.ledger = SandboxLedger()
        self.api_key = api_key
        self.verbose = verbose

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


def make_server(host: str = "127.0.0.1", port: int = 0, *, api_key: str = "", verbose: bool = False) -> SandboxServer:
    return SandboxServer((host, port), api_key=api_key, verbose=verbose)
