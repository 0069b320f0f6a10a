"""The sandbox carrier: deterministic progression (pure rules and its state), and the HTTP
adapter against a running sandbox server (threads; the e2e test starts it as a subprocess)."""

import base64
import socket
import subprocess
import sys
import time
import urllib.request
from decimal import Decimal

import pytest

from orders.carriers.adapters import (
    Address,
    CarrierRejected,
    CarrierUnavailable,
    LabelRequest,
    Parcel,
    adapter_for,
)
from orders.carriers.sandbox import (
    HOUR,
    SandboxCarrier,
    SandboxError,
    SandboxServer,
    make_tracking_number,
    parse_tracking_number,
    rate_for,
    scenario_for,
    timeline,
)
from orders.models import Carrier

FROM = {"name": "DC", "line1": "1 Dock Rd", "city": "Edison", "region": "NJ", "postal_code": "08837", "country": "US"}
TO = {
    "name": "Ada",
    "line1": "12 Analytical Way",
    "city": "New York",
    "region": "NY",
    "postal_code": "10001",
    "country": "US",
}


class Clock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def label_body(**changes):
    return {"service": "ground", "ship_from": FROM, "ship_to": TO, "parcel": {"weight_grams": 1500}, **changes}


# --- Pure rules ------------------------------------------------------------------------------------


def test_tracking_numbers_carry_scenario_and_creation_time_with_a_check_digit():
    number = make_tracking_number(1, 1_800_000_000_123, 7)
    assert number == "SBX11800000000123007" + str(sum(map(int, "11800000000123007")) % 10)
    assert parse_tracking_number(number) == (1, 1_800_000_000_123)
    tampered = number[:-2] + str((int(number[-2]) + 1) % 10) + number[-1]
    assert parse_tracking_number(tampered) is None
    assert parse_tracking_number("1Z999AA10123456784") is None
    assert parse_tracking_number(make_tracking_number(7, 1, 1)) is None  # no such scenario


def test_scenario_comes_from_the_recipient_postal_code():
    assert scenario_for("00000") == 2 and scenario_for("99999") == 1
    assert scenario_for("10001") == 0 and scenario_for(" 00000 ") == 2


def test_timelines_end_delivered_except_undeliverable_and_express_is_twice_as_fast():
    normal = timeline(0, "ground")
    assert [(s.at // HOUR, s.status) for s in normal] == [
        (0, "label_created"),
        (2, "in_transit"),
        (8, "in_transit"),
        (20, "in_transit"),
        (24, "out_for_delivery"),
        (27, "delivered"),
    ]
    assert [s.status for s in timeline(1, "ground")][-3:] == ["in_transit", "out_for_delivery", "delivered"]
    assert "exception" in [s.status for s in timeline(1, "ground")]
    assert [s.status for s in timeline(2, "ground")][-2:] == ["exception", "exception"]
    assert [s.at for s in timeline(0, "express")] == [s.at // 2 for s in normal]


def test_rates_are_deterministic_by_weight_and_zone():
    assert rate_for("ground", 1500, "08837", "10001") == (Decimal("6.95") + Decimal("1.80") + Decimal("0.45"), 2)
    assert rate_for("express", 1000, "10001", "90001") == (Decimal("15.50") + Decimal("1.60") + Decimal("6.80"), 2)
    assert rate_for("ground", 1, "A1", "10001")[0] == Decimal("6.95") + Decimal("0.90") + Decimal("1.80")  # zone 4


# --- The carrier's state: progression by its clock ----------------------------------------------------


def test_progress_follows_carrier_time_scaled_by_speed_and_is_the_same_on_every_ask():
    clock = Clock()
    carrier = SandboxCarrier(speed=3600, clock=clock)  # one carrier hour per real second
    label = carrier.create_label(label_body())
    number = label["tracking_number"]
    assert parse_tracking_number(number)[0] == 0
    assert carrier.track(number)["status"] == "label_created"
    clock.now += 2.5  # 2.5 carrier hours
    first = carrier.track(number)
    assert [e["status"] for e in first["events"]] == ["label_created", "in_transit"]
    assert first["events"][1] == {
        "id": f"{number}-1",
        "tracking_number": number,
        "status": "in_transit",
        "description": "Picked up",
        "location": "Edison, NJ",
        "occurred_at": "2027-01-15T08:00:02.000Z",
    }
    assert carrier.track(number) == first  # deterministic: asking again changes nothing
    clock.now += 24.5
    done = carrier.track(number)
    assert done["status"] == "delivered" and len(done["events"]) == 6
    assert done["events"][-1]["location"] == "New York, NY"
    assert [e["id"] for e in done["events"]] == [f"{number}-{i}" for i in range(6)]


def test_advance_moves_carrier_time_for_every_label():
    carrier = SandboxCarrier(speed=1, clock=Clock())
    a = carrier.create_label(label_body())["tracking_number"]
    b = carrier.create_label(label_body(ship_to={**TO, "postal_code": "00000"}))["tracking_number"]
    carrier.advance(30 * HOUR)
    assert carrier.track(a)["status"] == "delivered"
    assert carrier.track(b)["status"] == "exception"
    assert carrier.track(b)["events"][-1]["description"] == "Delivery attempted: address not found"


def test_void_only_before_the_parcel_moves_then_tracking_says_voided():
    clock = Clock()
    carrier = SandboxCarrier(speed=1, clock=clock)
    fresh = carrier.create_label(label_body())["tracking_number"]
    moving = carrier.create_label(label_body())["tracking_number"]
    carrier.void(fresh)
    with pytest.raises(SandboxError) as gone:
        carrier.track(fresh)
    assert (gone.value.status, gone.value.code) == (410, "label_voided")
    clock.now += 3 * HOUR
    with pytest.raises(SandboxError) as in_use:
        carrier.void(moving)
    assert (in_use.value.status, in_use.value.code) == (409, "label_in_use")
    with pytest.raises(SandboxError) as unknown:
        carrier.track("SBX000")
    assert unknown.value.status == 404


def test_label_validation():
    carrier = SandboxCarrier(clock=Clock())
    for body, code in [
        (label_body(service="overnight"), "invalid_service"),
        (label_body(label_format="png"), "invalid_format"),
        (label_body(parcel={"weight_grams": 0}), "invalid_parcel"),
        (label_body(ship_to={**TO, "postal_code": ""}), "invalid_address"),
        (label_body(ship_to={**TO, "line1": " "}), "invalid_address"),
    ]:
        with pytest.raises(SandboxError) as exc:
            carrier.create_label(body)
        assert (exc.value.status, exc.value.code) == (422, code)
    assert carrier.labels == {}


# --- The adapter against a running sandbox server ----------------------------------------------------


@pytest.fixture
def sandbox():
    server = SandboxServer(port=0, api_keys=("oms-key", "partner-key"), speed=1).start()
    yield server
    server.stop()


def account(url: str, key: str = "oms-key") -> Carrier:
    return Carrier(code="SANDBOX", name="Sandbox", adapter="sandbox", base_url=url, api_key=key, services=["ground"])


def request(**changes) -> LabelRequest:
    values = {
        "ship_from": Address(**FROM),
        "ship_to": Address(**TO),
        "parcel": Parcel(1500),
        "service": "ground",
        "reference": "WE-1",
        **changes,
    }
    return LabelRequest(**values)


def test_adapter_rates_labels_tracks_and_voids_over_http(sandbox):
    adapter = adapter_for(account(sandbox.url))
    rates = adapter.rate(ship_from=Address(**FROM), ship_to=Address(**TO), parcel=Parcel(1500))
    assert [(r.service, r.amount, r.currency) for r in rates] == [
        ("ground", Decimal("9.20"), "USD"),
        ("express", Decimal("19.55"), "USD"),
    ]
    label = adapter.create_label(request())
    assert (label.service, label.label_format, label.amount, label.currency) == (
        "ground",
        "pdf",
        Decimal("9.20"),
        "USD",
    )
    document = base64.b64decode(label.label_data)
    assert document.startswith(b"%PDF-1.4") and document.rstrip().endswith(b"%%EOF")
    assert label.tracking_number.encode() in document
    zpl = adapter.create_label(request(label_format="zpl"))
    assert base64.b64decode(zpl.label_data).startswith(b"^XA")

    results = adapter.track([label.tracking_number, "SBX000000"])
    assert results[label.tracking_number].status == "label_created"
    assert [e.status for e in results[label.tracking_number].events] == ["label_created"]
    assert results["SBX000000"].error.startswith("not_found")

    adapter.void_label(zpl.tracking_number)
    assert adapter.track([zpl.tracking_number])[zpl.tracking_number].error.startswith("label_voided")
    sandbox.carrier.advance(3 * HOUR)
    with pytest.raises(CarrierRejected) as in_use:
        adapter.void_label(label.tracking_number)
    assert (in_use.value.http_status, in_use.value.carrier_code) == (409, "label_in_use")
    assert [e.status for e in adapter.track([label.tracking_number])[label.tracking_number].events] == [
        "label_created",
        "in_transit",
    ]


def test_adapter_batches_tracking_requests_of_more_than_a_hundred(sandbox):
    adapter = adapter_for(account(sandbox.url))
    numbers = [adapter.create_label(request()).tracking_number for _ in range(3)]
    asked = numbers * 40 + ["SBX1"]  # 121 numbers: two requests
    results = adapter.track(asked)
    assert set(results) == {*numbers, "SBX1"}
    assert all(results[n].status == "label_created" for n in numbers)


def test_adapter_errors_are_clear(sandbox, settings):
    with pytest.raises(CarrierRejected) as wrong_key:
        adapter_for(account(sandbox.url, key="nope")).track(["SBX1"])
    assert wrong_key.value.http_status == 401 and "refused our credentials" in wrong_key.value.message
    assert wrong_key.value.status == 422 and wrong_key.value.code == "carrier_rejected"

    adapter = adapter_for(account(sandbox.url))
    with pytest.raises(CarrierRejected) as bad_service:
        adapter.create_label(request(service="overnight"))
    assert bad_service.value.carrier_code == "invalid_service" and "overnight" in bad_service.value.message

    sandbox.carrier.fail_next(1, 503)
    with pytest.raises(CarrierUnavailable) as down:
        adapter.track(["SBX1"])
    assert "HTTP 503" in down.value.message and down.value.status == 503
    assert adapter.track(["SBX1"])["SBX1"].error  # the next call goes through

    with socket.socket() as s:  # nothing listens here
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(CarrierUnavailable) as refused:
        adapter_for(account(closed)).track(["SBX1"])
    assert "did not answer" in refused.value.message

    settings.CARRIER_TIMEOUT_SECONDS = 0.3
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(5)
        started = time.monotonic()
        with pytest.raises(CarrierUnavailable) as slow:
            adapter_for(account(f"http://127.0.0.1:{silent.getsockname()[1]}")).track(["SBX1"])
        assert time.monotonic() - started < 3
    assert "did not answer" in slow.value.message


def test_management_command_serves_the_sandbox_on_loopback(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "run_sandbox_carrier", "--port", str(port), "--api-key", "k1", "--speed", "3600"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert f"Sandbox carrier on http://127.0.0.1:{port} (speed ×3600, 1 key(s))" in line
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/health", timeout=5) as response:
            assert response.status == 200
        label = adapter_for(account(f"http://127.0.0.1:{port}", key="k1")).create_label(request())
        time.sleep(2.2)  # two carrier hours
        statuses = adapter_for(account(f"http://127.0.0.1:{port}", key="k1")).track([label.tracking_number])
        assert statuses[label.tracking_number].status == "in_transit"
    finally:
        proc.terminate()
        proc.wait(10)
