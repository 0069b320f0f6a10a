"""The built-in sandbox carrier: a small HTTP service with realistic, deterministic progress,
and `SandboxAdapter`, the OMS side that talks to it over real HTTP.

Start it with `manage.py run_sandbox_carrier --port 8070` (loopback only). It has no database:
labels live in the process, and a tracking number alone is enough to know where its parcel is.

Deterministic rules
-------------------
* Tracking number: ``SBX`` + scenario digit + label creation time in milliseconds (13 digits)
  + a 3-digit sequence + a check digit (sum of the digits before it, mod 10), e.g.
  ``SBX017636368000000017``. Anything else is unknown to the sandbox.
* Scenario, chosen from the recipient's postal code when the label is bought:
  ``00000`` → 2 *undeliverable*, ``99999`` → 1 *delayed*, anything else → 0 *normal*.
* Timeline, in carrier time since the label was created (``express`` halves every step):

  ====  =================  ===========================================================
  at    status             normal (0)
  ====  =================  ===========================================================
  0 h   label_created      Shipping label created, awaiting item
  2 h   in_transit         Picked up                               (origin city)
  8 h   in_transit         Departed origin facility                (origin city)
  20 h  in_transit         Arrived at destination facility         (destination city)
  24 h  out_for_delivery   Out for delivery                        (destination city)
  27 h  delivered          Delivered, left at front door           (destination city)
  ====  =================  ===========================================================

  *delayed*: the first three steps, then 12 h exception "Weather delay", 36 h in_transit
  "Arrived at destination facility", 40 h out_for_delivery, 43 h delivered.
  *undeliverable*: normal up to out_for_delivery, then 27 h exception "Delivery attempted:
  address not found" and 48 h exception "Returned to sender" (it never delivers).
* Carrier time runs at ``speed`` × real time (``--speed 3600``: one carrier hour per real
  second). An event's ``occurred_at`` is the real time it became due. Event ids are
  ``<tracking number>-<step>``, so the same event always has the same id.
* A label may be voided while its parcel has not moved (only ``label_created`` so far);
  after that the sandbox answers 409 ``label_in_use``.

Test controls (same API key): ``POST /v1/sandbox/advance {"seconds": N}`` moves carrier time
forward by N seconds for every label; ``POST /v1/sandbox/fail {"count": N, "status": 503}``
makes the next N authenticated requests fail with that status.

HTTP API (``Authorization: Bearer <api key>``, JSON): ``GET /v1/health`` (no key),
``POST /v1/rates``, ``POST /v1/labels``, ``POST /v1/labels/{tn}/void``,
``GET /v1/tracking/{tn}``, ``POST /v1/tracking {"tracking_numbers": [...]}`` (≤ 100).
With a webhook URL and secret, due events are also pushed to it, signed
``X-Carrier-Signature: t=<unix>,v1=<hex hmac-sha256 of "t.body">``, retried until answered 2xx.
"""

from __future__ import annotations

import base64
import hmac
import itertools
import json
import logging
import math
import re
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

from django.utils.dateparse import parse_datetime

from oms.webhooks import sign

from .adapters import (
    Address,
    CarrierAdapter,
    CarrierUnavailable,
    JsonHttp,
    Label,
    LabelRequest,
    Parcel,
    Rate,
    TrackingEventData,
    TrackingResult,
)

log = logging.getLogger(__name__)

HOUR = 3600
SERVICES = ("ground", "express")
FORMATS = ("pdf", "zpl")
NORMAL, DELAYED, UNDELIVERABLE = 0, 1, 2
TRACKING_RE = re.compile(r"^SBX(\d)(\d{13})(\d{3})(\d)$")
MAX_BATCH = 100


@dataclass(frozen=True)
class Step:
    at: int  # carrier seconds after the label was created
    status: str
    description: str
    where: str  # "origin" | "destination" | ""


_START = [
    Step(0, "label_created", "Shipping label created, awaiting item", "origin"),
    Step(2 * HOUR, "in_transit", "Picked up", "origin"),
    Step(8 * HOUR, "in_transit", "Departed origin facility", "origin"),
]
TIMELINES: dict[int, list[Step]] = {
    NORMAL: [
        *_START,
        Step(20 * HOUR, "in_transit", "Arrived at destination facility", "destination"),
        Step(24 * HOUR, "out_for_delivery", "Out for delivery", "destination"),
        Step(27 * HOUR, "delivered", "Delivered, left at front door", "destination"),
    ],
    DELAYED: [
        *_START,
        Step(12 * HOUR, "exception", "Weather delay: service disruption in the network", ""),
        Step(36 * HOUR, "in_transit", "Arrived at destination facility", "destination"),
        Step(40 * HOUR, "out_for_delivery", "Out for delivery", "destination"),
        Step(43 * HOUR, "delivered", "Delivered, handed to resident", "destination"),
    ],
    UNDELIVERABLE: [
        *_START,
        Step(20 * HOUR, "in_transit", "Arrived at destination facility", "destination"),
        Step(24 * HOUR, "out_for_delivery", "Out for delivery", "destination"),
        Step(27 * HOUR, "exception", "Delivery attempted: address not found", "destination"),
        Step(48 * HOUR, "exception", "Returned to sender", "origin"),
    ],
}


def scenario_for(postal_code: str) -> int:
    code = postal_code.strip()
    return {"00000": UNDELIVERABLE, "99999": DELAYED}.get(code, NORMAL)


def timeline(scenario: int, service: str) -> list[Step]:
    steps = TIMELINES[scenario]
    if service == "express":
        return [Step(s.at // 2, s.status, s.description, s.where) for s in steps]
    return steps


def _check_digit(digits: str) -> str:
    return str(sum(int(d) for d in digits) % 10)


def make_tracking_number(scenario: int, created_ms: int, sequence: int) -> str:
    digits = f"{scenario}{created_ms:013d}{sequence % 1000:03d}"
    return f"SBX{digits}{_check_digit(digits)}"


def parse_tracking_number(tracking_number: str) -> tuple[int, int] | None:
    """(scenario, created_ms), or None when it is not one of ours."""
    m = TRACKING_RE.match(tracking_number)
    if not m or _check_digit("".join(m.groups()[:3])) != m.group(4) or int(m.group(1)) not in TIMELINES:
        return None
    return int(m.group(1)), int(m.group(2))


def rate_for(service: str, weight_grams: int, from_postal: str, to_postal: str) -> tuple[Decimal, int]:
    """(price in USD, transit days): base + per started kg + a zone from the ZIP's first digits."""
    kg = max(1, math.ceil(weight_grams / 1000))
    a, b = from_postal[:1], to_postal[:1]
    zone = abs(int(a) - int(b)) if a.isdigit() and b.isdigit() else 4
    if service == "express":
        return Decimal("15.50") + Decimal("1.60") * kg + Decimal("0.85") * zone, 1 + zone // 5
    return Decimal("6.95") + Decimal("0.90") * kg + Decimal("0.45") * zone, 2 + zone // 2


# --- Label documents ---------------------------------------------------------------------------


def _pdf_escape(text: str) -> str:
    return (
        text.encode("latin-1", "replace")
        .decode("latin-1")
        .replace("\\", "\\\\")
        .replace("(", "\\(")
        .replace(")", "\\)")
    )


def pdf_label(lines: list[str]) -> bytes:
    """A one-page 4×6 in PDF with the label's lines of text."""
    text = " ".join(f"({_pdf_escape(line)}) Tj T*" for line in lines)
    stream = f"BT /F1 11 Tf 15 TL 20 400 Td {text} ET 12 12 264 408 re S".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 288 432] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def zpl_label(lines: list[str], tracking_number: str) -> bytes:
    fields = "".join(f"^FO30,{30 + 40 * i}^FD{line.replace('^', ' ')}^FS" for i, line in enumerate(lines))
    return f"^XA^CF0,30{fields}^FO30,{60 + 40 * len(lines)}^BCN,120,Y,N,N^FD{tracking_number}^FS^XZ".encode()


# --- The carrier's state and rules (no HTTP) -----------------------------------------------------


def _place(address: dict) -> str:
    return ", ".join(p for p in (address.get("city", ""), address.get("region", "")) if p)


@dataclass
class _LabelRecord:
    tracking_number: str
    service: str
    origin: str
    destination: str
    voided: bool = False
    pushed: set[str] = field(default_factory=set)
    finished: bool = False


class SandboxError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class SandboxCarrier:
    """The sandbox's state: labels bought here, the clock, and the failure switch."""

    def __init__(self, *, speed: float = 1.0, clock=time.time):
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self.clock = clock
        self.skew = 0.0  # real seconds added by /v1/sandbox/advance
        self.labels: dict[str, _LabelRecord] = {}
        self.fail_count, self.fail_status = 0, 503
        self._sequence = itertools.count(1)
        self._lock = threading.Lock()

    def now(self) -> float:
        return self.clock() + self.skew

    def advance(self, carrier_seconds: float) -> None:
        with self._lock:
            self.skew += carrier_seconds / self.speed

    def fail_next(self, count: int, status: int) -> None:
        with self._lock:
            self.fail_count, self.fail_status = count, status

    def take_failure(self) -> int | None:
        with self._lock:
            if self.fail_count > 0:
                self.fail_count -= 1
                return self.fail_status
        return None

    # -- rates and labels --

    @staticmethod
    def _validate_shipment(body: dict) -> tuple[dict, dict, int]:
        ship_from, ship_to = body.get("ship_from") or {}, body.get("ship_to") or {}
        for name, address in (("ship_from", ship_from), ("ship_to", ship_to)):
            if not isinstance(address, dict):
                raise SandboxError(422, "invalid_address", f"{name} must be an object")
            missing = [k for k in ("city", "postal_code", "country") if not str(address.get(k, "")).strip()]
            if name == "ship_to" and not str(address.get("line1", "")).strip():
                missing.insert(0, "line1")
            if missing:
                raise SandboxError(422, "invalid_address", f"{name} needs {', '.join(missing)}")
        weight = (body.get("parcel") or {}).get("weight_grams")
        if not isinstance(weight, int) or not 1 <= weight <= 70_000:
            raise SandboxError(422, "invalid_parcel", "parcel.weight_grams must be an integer from 1 to 70000")
        return ship_from, ship_to, weight

    def rates(self, body: dict) -> list[dict]:
        ship_from, ship_to, weight = self._validate_shipment(body)
        answer = []
        for service in SERVICES:
            amount, days = rate_for(service, weight, str(ship_from["postal_code"]), str(ship_to["postal_code"]))
            answer.append({"service": service, "amount": str(amount), "currency": "USD", "transit_days": days})
        return answer

    def create_label(self, body: dict) -> dict:
        ship_from, ship_to, weight = self._validate_shipment(body)
        service = body.get("service") or "ground"
        if service not in SERVICES:
            raise SandboxError(422, "invalid_service", f"Unknown service {service!r}; offered: {', '.join(SERVICES)}")
        label_format = body.get("label_format") or "pdf"
        if label_format not in FORMATS:
            raise SandboxError(422, "invalid_format", f"label_format is one of {', '.join(FORMATS)}")
        created = self.now()
        with self._lock:
            sequence = next(self._sequence)
        tracking_number = make_tracking_number(scenario_for(str(ship_to["postal_code"])), int(created * 1000), sequence)
        amount, _ = rate_for(service, weight, str(ship_from["postal_code"]), str(ship_to["postal_code"]))
        lines = [
            f"SANDBOX PARCEL - {service.upper()}",
            "",
            f"FROM: {ship_from.get('name', '')}",
            f"{_place(ship_from)} {ship_from['postal_code']}",
            "",
            f"TO: {ship_to.get('name', '')}",
            ship_to["line1"],
            *([ship_to["line2"]] if ship_to.get("line2") else []),
            f"{_place(ship_to)} {ship_to['postal_code']} {ship_to['country']}",
            "",
            f"{weight} g   REF: {body.get('reference', '')}",
            "TRACKING:",
            tracking_number,
        ]
        lines = [line[:40] for line in lines]
        document = pdf_label(lines) if label_format == "pdf" else zpl_label(lines, tracking_number)
        with self._lock:
            self.labels[tracking_number] = _LabelRecord(
                tracking_number, service, _place(ship_from) or "Origin", _place(ship_to) or "Destination"
            )
        return {
            "tracking_number": tracking_number,
            "service": service,
            "label_format": label_format,
            "label_data": base64.b64encode(document).decode(),
            "rate": {"amount": str(amount), "currency": "USD"},
            "created_at": _iso(created),
        }

    # -- tracking --

    def _record(self, tracking_number: str) -> tuple[int, float, _LabelRecord]:
        parsed = parse_tracking_number(tracking_number)
        if parsed is None:
            raise SandboxError(404, "not_found", f"Unknown tracking number {tracking_number}")
        scenario, created_ms = parsed
        record = self.labels.get(tracking_number) or _LabelRecord(
            tracking_number, "ground", "Origin facility", "Destination facility"
        )
        if record.voided:
            raise SandboxError(410, "label_voided", f"Label {tracking_number} was voided")
        return scenario, created_ms / 1000, record

    def events(self, tracking_number: str) -> list[dict]:
        """Every event due by now, oldest first."""
        scenario, created, record = self._record(tracking_number)
        elapsed = (self.now() - created) * self.speed
        events = []
        for index, step in enumerate(timeline(scenario, record.service)):
            if step.at > elapsed:
                break
            where = {"origin": record.origin, "destination": record.destination}.get(step.where, "")
            events.append(
                {
                    "id": f"{tracking_number}-{index}",
                    "tracking_number": tracking_number,
                    "status": step.status,
                    "description": step.description,
                    "location": where,
                    "occurred_at": _iso(created + step.at / self.speed),
                }
            )
        return events

    def track(self, tracking_number: str) -> dict:
        events = self.events(tracking_number)
        return {"tracking_number": tracking_number, "status": events[-1]["status"], "events": events}

    def void(self, tracking_number: str) -> None:
        events = self.events(tracking_number)
        if events[-1]["status"] != "label_created":
            raise SandboxError(409, "label_in_use", f"Label {tracking_number} has moved; it can no longer be voided")
        with self._lock:
            record = self.labels.setdefault(
                tracking_number, _LabelRecord(tracking_number, "ground", "Origin facility", "Destination facility")
            )
            record.voided = True

    def unpushed(self) -> list[dict]:
        """Events due but not yet pushed to the webhook, for labels bought here."""
        pending = []
        for record in list(self.labels.values()):
            if record.voided or record.finished:
                continue
            for event in self.events(record.tracking_number):
                if event["id"] not in record.pushed:
                    pending.append(event)
        return pending

    def mark_pushed(self, events: list[dict]) -> None:
        with self._lock:
            for event in events:
                record = self.labels[event["tracking_number"]]
                record.pushed.add(event["id"])
                scenario, _ = parse_tracking_number(record.tracking_number)
                record.finished = len(record.pushed) == len(timeline(scenario, record.service))


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- HTTP ------------------------------------------------------------------------------------------


def _handler(carrier: SandboxCarrier, api_keys: tuple[str, ...]):
    class Handler(BaseHTTPRequestHandler):
        server_version = "SandboxCarrier/1"
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            log.debug("sandbox carrier: " + fmt, *args)

        def _send(self, status: int, body: dict) -> None:
            raw = json.dumps(body, separators=(",", ":")).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _error(self, status: int, code: str, message: str) -> None:
            self._send(status, {"error": {"code": code, "message": message}})

        def _authorised(self) -> bool:
            scheme, _, key = self.headers.get("Authorization", "").partition(" ")
            return scheme == "Bearer" and any(hmac.compare_digest(key.strip(), k) for k in api_keys)

        def _body(self) -> dict:
            length = int(self.headers.get("Content-Length") or 0)
            if length > 1_000_000:
                raise SandboxError(413, "too_large", "Request body too large")
            raw = self.rfile.read(length) if length else b"{}"
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                raise SandboxError(400, "malformed", "Body is not JSON") from None
            if not isinstance(body, dict):
                raise SandboxError(400, "malformed", "Body must be a JSON object")
            return body

        def do_GET(self):
            self._dispatch("GET")

        def do_POST(self):
            self._dispatch("POST")

        def _dispatch(self, method: str) -> None:
            path = self.path.split("?", 1)[0].rstrip("/")
            try:
                if method == "GET" and path == "/v1/health":
                    self._send(200, {"ok": True, "speed": carrier.speed, "labels": len(carrier.labels)})
                    return
                if method == "POST":
                    body = self._body()  # read it even when refusing, so the connection stays usable
                if not self._authorised():
                    raise SandboxError(401, "unauthorized", "Missing or wrong API key (Authorization: Bearer <key>)")
                failure = carrier.take_failure()
                if failure:
                    raise SandboxError(failure, "sandbox_failure", "Failure injected by /v1/sandbox/fail")
                self._route(method, path, body if method == "POST" else {})
            except SandboxError as exc:
                self._error(exc.status, exc.code, exc.message)
            except Exception as exc:  # a bug: answer 500 rather than drop the connection
                log.exception("sandbox carrier failed on %s %s", method, path)
                self._error(500, "internal", f"{exc.__class__.__name__}")

        def _route(self, method: str, path: str, body: dict) -> None:
            parts = path.split("/")[1:]  # ["v1", ...]
            if method == "POST" and path == "/v1/rates":
                self._send(200, {"rates": carrier.rates(body)})
            elif method == "POST" and path == "/v1/labels":
                self._send(201, carrier.create_label(body))
            elif method == "POST" and len(parts) == 4 and parts[1] == "labels" and parts[3] == "void":
                carrier.void(parts[2])
                self._send(200, {"tracking_number": parts[2], "voided": True})
            elif method == "GET" and len(parts) == 3 and parts[1] == "tracking":
                self._send(200, carrier.track(parts[2]))
            elif method == "POST" and path == "/v1/tracking":
                numbers = body.get("tracking_numbers")
                if not isinstance(numbers, list) or not 1 <= len(numbers) <= MAX_BATCH:
                    raise SandboxError(422, "invalid_request", f"tracking_numbers: a list of 1 to {MAX_BATCH}")
                results = []
                for number in numbers:
                    try:
                        results.append(carrier.track(str(number)))
                    except SandboxError as exc:
                        results.append({"tracking_number": number, "error": {"code": exc.code, "message": exc.message}})
                self._send(200, {"results": results})
            elif method == "POST" and path == "/v1/sandbox/advance":
                seconds = body.get("seconds")
                if not isinstance(seconds, int | float) or seconds < 0:
                    raise SandboxError(422, "invalid_request", "seconds: a number ≥ 0")
                carrier.advance(seconds)
                self._send(200, {"advanced": seconds})
            elif method == "POST" and path == "/v1/sandbox/fail":
                count, status = body.get("count", 1), body.get("status", 503)
                if not isinstance(count, int) or not isinstance(status, int) or not 400 <= status <= 599:
                    raise SandboxError(422, "invalid_request", "count: integer; status: 400-599")
                carrier.fail_next(count, status)
                self._send(200, {"failing": count, "status": status})
            else:
                raise SandboxError(404, "not_found", f"No route {method} {path}")

    return Handler


class SandboxServer:
    """The sandbox on a loopback port, in threads; optionally pushing tracking webhooks."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_keys: tuple[str, ...] = ("sandbox-key",),
        speed: float = 1.0,
        webhook_url: str = "",
        webhook_secret: str = "",
        push_interval: float = 1.0,
    ):
        if not api_keys or not all(api_keys):
            raise ValueError("at least one non-empty API key is required")
        if webhook_url and not webhook_secret:
            raise ValueError("a webhook URL needs a webhook secret")
        self.carrier = SandboxCarrier(speed=speed)
        self.httpd = ThreadingHTTPServer((host, port), _handler(self.carrier, tuple(api_keys)))
        self.httpd.daemon_threads = True
        self.webhook_url, self.webhook_secret, self.push_interval = webhook_url, webhook_secret, push_interval
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> SandboxServer:
        self._threads.append(threading.Thread(target=self.httpd.serve_forever, name="sandbox-http", daemon=True))
        if self.webhook_url:
            self._threads.append(threading.Thread(target=self._push_loop, name="sandbox-push", daemon=True))
        for thread in self._threads:
            thread.start()
        return self

    def serve_forever(self) -> None:
        """Foreground mode (the management command): push in a thread, serve here."""
        if self.webhook_url:
            threading.Thread(target=self._push_loop, name="sandbox-push", daemon=True).start()
        try:
            self.httpd.serve_forever()
        finally:
            self._stop.set()
            self.httpd.server_close()

    def stop(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- webhook push --

    def push_once(self) -> int:
        """Send every due, unpushed event in one signed request; returns how many were accepted."""
        events = self.carrier.unpushed()
        if not events:
            return 0
        body = json.dumps({"events": events}, separators=(",", ":")).encode()
        request = urllib.request.Request(
            self.webhook_url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "SandboxCarrier/1",
                "X-Carrier-Signature": sign(self.webhook_secret, int(time.time()), body),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                ok = 200 <= response.status < 300
        except (urllib.error.URLError, OSError) as exc:
            log.warning("sandbox carrier: webhook push failed: %s", getattr(exc, "reason", exc))
            return 0
        if ok:
            self.carrier.mark_pushed(events)
            return len(events)
        return 0

    def _push_loop(self) -> None:
        while not self._stop.wait(self.push_interval):
            try:
                self.push_once()
            except Exception:  # keep pushing whatever happens to one round
                log.exception("sandbox carrier: webhook push round failed")


# --- The OMS side: the adapter ------------------------------------------------------------------


class SandboxAdapter(CarrierAdapter):
    """Speaks the sandbox carrier's HTTP API (also a template for a real JSON carrier API)."""

    def __init__(self, carrier):
        super().__init__(carrier)
        self.http = JsonHttp(
            carrier.base_url, {"Authorization": f"Bearer {carrier.api_key}"}, name=f"Carrier {carrier.code}"
        )

    def rate(self, *, ship_from: Address, ship_to: Address, parcel: Parcel) -> list[Rate]:
        answer = self.http.call(
            "POST",
            "/v1/rates",
            {
                "ship_from": ship_from.as_dict(),
                "ship_to": ship_to.as_dict(),
                "parcel": {"weight_grams": parcel.weight_grams},
            },
        )
        try:
            return [
                Rate(r["service"], Decimal(r["amount"]), r["currency"], int(r["transit_days"])) for r in answer["rates"]
            ]
        except (KeyError, TypeError, ValueError, ArithmeticError):
            raise CarrierUnavailable(f"Carrier {self.carrier.code} sent a malformed rate answer") from None

    def create_label(self, request: LabelRequest) -> Label:
        answer = self.http.call(
            "POST",
            "/v1/labels",
            {
                "service": request.service,
                "ship_from": request.ship_from.as_dict(),
                "ship_to": request.ship_to.as_dict(),
                "parcel": {"weight_grams": request.parcel.weight_grams},
                "reference": request.reference,
                "label_format": request.label_format,
            },
        )
        try:
            return Label(
                tracking_number=answer["tracking_number"],
                service=answer["service"],
                label_format=answer["label_format"],
                label_data=answer["label_data"],
                amount=Decimal(answer["rate"]["amount"]),
                currency=answer["rate"]["currency"],
            )
        except (KeyError, TypeError, ValueError, ArithmeticError):
            raise CarrierUnavailable(f"Carrier {self.carrier.code} sent a malformed label answer") from None

    def void_label(self, tracking_number: str) -> None:
        self.http.call("POST", f"/v1/labels/{quote(tracking_number, safe='')}/void")

    def track(self, tracking_numbers: list[str]) -> dict[str, TrackingResult]:
        results: dict[str, TrackingResult] = {}
        for start in range(0, len(tracking_numbers), MAX_BATCH):
            chunk = tracking_numbers[start : start + MAX_BATCH]
            answer = self.http.call("POST", "/v1/tracking", {"tracking_numbers": chunk})
            try:
                for row in answer["results"]:
                    number = row["tracking_number"]
                    if "error" in row:
                        error = row["error"]
                        results[number] = TrackingResult(number, error=f"{error.get('code')}: {error.get('message')}")
                    else:
                        results[number] = TrackingResult(
                            number, status=row["status"], events=tuple(parse_event(e) for e in row["events"])
                        )
            except (KeyError, TypeError, ValueError):
                raise CarrierUnavailable(f"Carrier {self.carrier.code} sent a malformed tracking answer") from None
        return results


def parse_event(row: dict) -> TrackingEventData:
    """A sandbox (or webhook) event as plain data; raises ValueError/KeyError when malformed."""
    occurred = parse_datetime(str(row["occurred_at"]))
    if occurred is None or occurred.tzinfo is None:
        raise ValueError(f"occurred_at is not an ISO 8601 time with a zone: {row['occurred_at']!r}")
    event_id = str(row["id"])
    if not event_id or len(event_id) > 100:
        raise ValueError("id must be 1 to 100 characters")
    return TrackingEventData(
        event_id=event_id,
        status=str(row["status"]),
        occurred_at=occurred,
        description=str(row.get("description", ""))[:300],
        location=str(row.get("location", ""))[:200],
    )
