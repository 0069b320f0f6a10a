"""The carrier adapter interface and the registry of adapter kinds.

An adapter turns four questions into one carrier's API calls: what would it cost (`rate`),
buy a label (`create_label`), cancel an unused label (`void_label`), and where are these
parcels (`track`, batched). Services speak only the plain data below, so a real carrier is
one more class registered under a new kind; its `Carrier` rows are then configured in the
admin. Adapters do network I/O: call them outside database transactions.

Errors are domain errors, so the API answers them in the envelope:
`CarrierUnavailable` (timeouts, connection errors, 5xx: worth retrying later, 503) and
`CarrierRejected` (the carrier refused the request: bad credentials, an address it cannot
serve, an unknown tracking number; 422).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from importlib import import_module
from typing import TYPE_CHECKING, Any

from django.conf import settings

from oms.errors import DomainError

if TYPE_CHECKING:
    from .models import Carrier


# --- Errors ------------------------------------------------------------------------------------


class CarrierError(DomainError):
    code = "carrier_error"
    status = 502


class CarrierUnavailable(CarrierError):
    """Timeout, connection refused, 5xx: the carrier may answer later."""

    code = "carrier_unavailable"
    status = 503


class CarrierRejected(CarrierError):
    """The carrier answered and refused (4xx). `carrier_code` is its own error code, if any."""

    code = "carrier_rejected"
    status = 422

    def __init__(self, message: str, *, carrier_code: str = "", http_status: int | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.carrier_code = carrier_code
        self.http_status = http_status


# --- What adapters speak -------------------------------------------------------------------------


@dataclass(frozen=True)
class Address:
    name: str
    line1: str
    city: str
    postal_code: str
    country: str
    line2: str = ""
    region: str = ""

    @classmethod
    def of_location(cls, location) -> Address:
        """A store, warehouse or vendor (inventory.Location) as a label address."""
        return cls(
            name=location.name,
            line1=location.address_line1,
            city=location.city,
            region=location.region,
            postal_code=location.postal_code,
            country=location.country,
        )

    def as_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "line1": self.line1,
            "line2": self.line2,
            "city": self.city,
            "region": self.region,
            "postal_code": self.postal_code,
            "country": self.country,
        }


@dataclass(frozen=True)
class Parcel:
    weight_grams: int


@dataclass(frozen=True)
class LabelRequest:
    ship_from: Address
    ship_to: Address
    parcel: Parcel
    service: str
    reference: str = ""
    label_format: str = "pdf"


@dataclass(frozen=True)
class Rate:
    service: str
    amount: Decimal
    currency: str
    transit_days: int


@dataclass(frozen=True)
class Label:
    tracking_number: str
    service: str
    label_format: str
    label_data: str  # base64
    amount: Decimal | None = None
    currency: str = ""


@dataclass(frozen=True)
class TrackingEventData:
    event_id: str
    status: str  # one of models.CARRIER_STATUSES
    occurred_at: datetime
    description: str = ""
    location: str = ""


@dataclass(frozen=True)
class TrackingResult:
    tracking_number: str
    status: str = ""
    events: tuple[TrackingEventData, ...] = ()
    error: str = ""  # set when the carrier could not answer for this number alone


class CarrierAdapter(ABC):
    def __init__(self, carrier: Carrier):
        self.carrier = carrier

    @abstractmethod
    def rate(self, *, ship_from: Address, ship_to: Address, parcel: Parcel) -> list[Rate]: ...

    @abstractmethod
    def create_label(self, request: LabelRequest) -> Label: ...

    @abstractmethod
    def void_label(self, tracking_number: str) -> None: ...

    @abstractmethod
    def track(self, tracking_numbers: list[str]) -> dict[str, TrackingResult]:
        """One answer per number asked; a number the carrier does not know has `error` set."""


# --- JSON over HTTP, for adapters of carriers with a JSON API -------------------------------------


@dataclass
class JsonHttp:
    """A tiny JSON client: timeouts, and every failure turned into a carrier error."""

    base_url: str
    headers: dict[str, str] = field(default_factory=dict)
    name: str = "carrier"

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        request = urllib.request.Request(
            self.base_url.rstrip("/") + path,
            data=data,
            method=method,
            headers={"Accept": "application/json", "Content-Type": "application/json", **self.headers},
        )
        try:
            with urllib.request.urlopen(request, timeout=settings.CARRIER_TIMEOUT_SECONDS) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise self._http_error(exc) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CarrierUnavailable(f"{self.name} did not answer {method} {path}: {reason}") from None
        try:
            return json.loads(raw)
        except ValueError:
            raise CarrierUnavailable(f"{self.name} answered {method} {path} with something that is not JSON") from None

    def _http_error(self, exc: urllib.error.HTTPError) -> CarrierError:
        try:
            error = json.loads(exc.read()).get("error", {})
        except (ValueError, AttributeError):
            error = {}
        message = error.get("message") or exc.reason
        if exc.code >= 500 or exc.code == 429:
            return CarrierUnavailable(f"{self.name} answered HTTP {exc.code}: {message}")
        if exc.code in (401, 403):
            message = f"{self.name} refused our credentials (HTTP {exc.code}): {message}"
        else:
            message = f"{self.name} refused the request (HTTP {exc.code}): {message}"
        return CarrierRejected(message, carrier_code=error.get("code", ""), http_status=exc.code)


# --- Registry ------------------------------------------------------------------------------------

# kind → (adapter class path, label in the admin). A real carrier adds a line here.
ADAPTERS: dict[str, tuple[str, str]] = {
    "sandbox": ("orders.carriers.sandbox.SandboxAdapter", "Sandbox carrier (built in, HTTP)"),
}


def adapter_choices() -> list[tuple[str, str]]:
    return [(kind, label) for kind, (_, label) in ADAPTERS.items()]


def adapter_class(kind: str) -> type[CarrierAdapter]:
    path, _ = ADAPTERS[kind]
    module, _, name = path.rpartition(".")
    return getattr(import_module(module), name)


def adapter_for(carrier: Carrier) -> CarrierAdapter:
    return adapter_class(carrier.adapter)(carrier)
