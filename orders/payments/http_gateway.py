"""The HTTP payment gateway adapter: `POST {base}/v1/refunds` with a JSON body, a bearer token
and an `Idempotency-Key`. 200 succeeded, 402 declined; 5xx or no answer is transient."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from .gateway import GatewayResult, GatewayUnavailable, RefundRequest
from .sandbox import request_body, result_from


class HttpGateway:
    name = "http"

    def __init__(self, *, base_url: str, api_key: str = "", timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def refund(self, request: RefundRequest) -> GatewayResult:
        headers = {"Content-Type": "application/json", "Idempotency-Key": request.idempotency_key}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        http_request = urllib.request.Request(
            f"{self.base_url}/v1/refunds",
            data=json.dumps(request_body(request)).encode(),
            method="POST",
            headers=headers,
        )
        try:
            with urllib.request.urlopen(http_request, timeout=self.timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise GatewayUnavailable(f"gateway unreachable: {exc.__class__.__name__}: {exc}") from None
        try:
            answer = json.loads(raw or b"{}")
        except ValueError:
            answer = {}
        if not isinstance(answer, dict):
            answer = {}
        return result_from(status, answer)
