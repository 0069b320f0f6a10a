"""Carrier writes: buy, void and replace labels; record tracking; poll; the inbound webhook.

Carrier calls are HTTP, so they happen outside transactions: a label is bought first and the
shipment written after (through `fulfillment_ship`, which commits stock and captures payment);
if that write fails the label is voided again. Tracking has one write path,
`shipment_record_tracking`, used by the beat poll and the carrier webhook alike: duplicates
are ignored by the carrier's event id, each status change is one timeline entry and one
webhook event, and a delivered parcel delivers its fulfilment (which completes the order once
every fulfilment reached the customer).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import time
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from oms.actor import Actor
from oms.errors import Conflict, DomainError, InvalidTransition, NotFound, ValidationFailed
from orders import events
from orders.models import Fulfillment, FulfillmentStatus, OrderLine, Shipment
from orders.services import _lock_order_and_fulfillment, fulfillment_deliver, fulfillment_ship, fulfillment_ship_check

from .adapters import (
    Address,
    CarrierAdapter,
    CarrierError,
    CarrierRejected,
    LabelRequest,
    Parcel,
    Rate,
    TrackingEventData,
    adapter_for,
)
from .models import (
    CARRIER_STATUSES,
    TRACKED,
    Carrier,
    CarrierWebhookReceipt,
    EarlyTrackingEvent,
    TrackingEvent,
    TrackingStatus,
)
from .sandbox import parse_event

log = logging.getLogger(__name__)

LABEL_FORMATS = ("pdf", "zpl")
DEFAULT_UNIT_GRAMS = 500  # an item without a weight still makes a parcel the carrier will price
# Later in the parcel's life wins when two events share a timestamp.
STATUS_RANK = {
    TrackingStatus.LABEL_CREATED: 0,
    TrackingStatus.IN_TRANSIT: 1,
    TrackingStatus.EXCEPTION: 2,
    TrackingStatus.OUT_FOR_DELIVERY: 3,
    TrackingStatus.DELIVERED: 4,
}
POLL_LEASE = timedelta(minutes=5)


class SignatureRejected(DomainError):
    code = "authentication_failed"
    status = 401


# --- Carriers and addresses --------------------------------------------------------------------


def carrier_for_labels(code: str) -> Carrier:
    carrier = Carrier.objects.filter(code__iexact=code.strip(), active=True).first()
    if carrier is None:
        known = ", ".join(Carrier.objects.filter(active=True).values_list("code", flat=True)) or "none configured"
        raise ValidationFailed(
            f"Unknown carrier {code!r}: the OMS buys labels only from configured carriers ({known}). "
            "To report a shipment with your own label, send its tracking_number too.",
            fields={"carrier": f"Unknown carrier; configured: {known}."},
        )
    return carrier


def _service(carrier: Carrier, service: str) -> str:
    service = service or carrier.default_service
    if carrier.services and service not in carrier.services:
        raise ValidationFailed(
            f"{carrier.code} offers {', '.join(carrier.services)}, not {service!r}.",
            fields={"service": f"One of {', '.join(carrier.services)}."},
        )
    return service


def _label_format(label_format: str) -> str:
    if label_format not in LABEL_FORMATS:
        raise ValidationFailed(
            f"label_format is one of {', '.join(LABEL_FORMATS)}.", fields={"label_format": "pdf or zpl."}
        )
    return label_format


def _ship_to(fulfillment: Fulfillment) -> Address:
    """The customer, or the pickup store when the units are transferred there first."""
    if fulfillment.transfer_to_id:
        return Address.of_location(fulfillment.transfer_to)
    order = fulfillment.order
    return Address(
        name=order.ship_name,
        line1=order.ship_line1,
        line2=order.ship_line2,
        city=order.ship_city,
        region=order.ship_region,
        postal_code=order.ship_postal_code,
        country=order.ship_country,
    )


def _parcel(units: dict[int, int]) -> Parcel:
    lines = OrderLine.objects.filter(pk__in=units).select_related("item")
    grams = sum((line.item.weight_grams or DEFAULT_UNIT_GRAMS) * units[line.pk] for line in lines)
    return Parcel(weight_grams=max(1, grams))


def _void_quietly(adapter: CarrierAdapter, tracking_number: str) -> None:
    """Give back a label we bought but could not use; it is logged if the carrier refuses."""
    try:
        adapter.void_label(tracking_number)
    except CarrierError as exc:
        log.error("could not void unused label %s: %s", tracking_number, exc.message)


def carrier_check(carrier: Carrier) -> list[Rate]:
    """Credentials and connectivity, by asking for a rate (the admin's "check connection")."""
    return adapter_for(carrier).rate(
        ship_from=Address(
            name="OMS", line1="1 Main St", city="New York", region="NY", postal_code="10001", country="US"
        ),
        ship_to=Address(
            name="OMS", line1="1 Main St", city="Los Angeles", region="CA", postal_code="90001", country="US"
        ),
        parcel=Parcel(weight_grams=1000),
    )


# --- Labels ----------------------------------------------------------------------------------------


def shipment_buy_label(
    *,
    fulfillment_id: int,
    carrier_code: str,
    actor: Actor,
    service: str = "",
    lines: dict[int, int] | None = None,
    reference: str = "",
    label_format: str = "pdf",
) -> Shipment:
    """Buy a label from a configured carrier for all of a fulfilment (or some of its lines) and
    ship those units with it. A repeated `reference` returns the shipment it already made."""
    carrier = carrier_for_labels(carrier_code)
    service = _service(carrier, service)
    label_format = _label_format(label_format)
    if reference:
        existing = Shipment.objects.filter(fulfillment_id=fulfillment_id, reference=reference).first()
        if existing is not None:
            return existing
    units = fulfillment_ship_check(fulfillment_id=fulfillment_id, lines=lines)
    fulfillment = Fulfillment.objects.select_related("order", "location", "transfer_to").get(pk=fulfillment_id)
    adapter = adapter_for(carrier)
    label = adapter.create_label(
        LabelRequest(
            ship_from=Address.of_location(fulfillment.location),
            ship_to=_ship_to(fulfillment),
            parcel=_parcel(units),
            service=service,
            reference=reference or f"{fulfillment.order.number}-F{fulfillment.pk}",
            label_format=label_format,
        )
    )
    try:
        shipment = fulfillment_ship(
            fulfillment_id=fulfillment_id,
            actor=actor,
            carrier=carrier.code,
            tracking_number=label.tracking_number,
            service=label.service,
            reference=reference,
            lines=lines,
            label=label,
        )
    except Exception:
        _void_quietly(adapter, label.tracking_number)  # it changed underneath us: nothing shipped
        raise
    if shipment.tracking_number != label.tracking_number:
        _void_quietly(adapter, label.tracking_number)  # a concurrent retry with the same reference won
    return shipment


def _shipment_with_label(shipment_id: int, *, status: str, refusal: str) -> Shipment:
    """The shipment, if the OMS bought its label and it is in `status` (else `refusal`)."""
    shipment = Shipment.objects.select_related("carrier_account").filter(pk=shipment_id).first()
    if shipment is None:
        raise NotFound(f"No shipment {shipment_id}.")
    if not shipment.has_label or shipment.carrier_account is None:
        raise InvalidTransition(
            f"Shipment {shipment.pk}'s label was not bought through the OMS; ask the carrier that issued it."
        )
    if shipment.tracking_status != status:
        raise InvalidTransition(f"Shipment {shipment.pk} is {shipment.tracking_status}; {refusal}")
    return shipment


def shipment_void_label(*, shipment_id: int, actor: Actor) -> Shipment:
    """Cancel a label the OMS bought whose parcel has not moved (the carrier has the last word)."""
    shipment = _shipment_with_label(
        shipment_id, status=TrackingStatus.LABEL_CREATED, refusal="only a label that has not moved can be voided."
    )
    try:
        adapter_for(shipment.carrier_account).void_label(shipment.tracking_number)
    except CarrierRejected as exc:
        if exc.carrier_code == "label_in_use":
            raise InvalidTransition(
                f"{shipment.carrier} has already scanned {shipment.tracking_number}; it can no longer be voided."
            ) from None
        raise
    with transaction.atomic():
        order, fulfillment = _lock_order_and_fulfillment(shipment.fulfillment_id)
        shipment = Shipment.objects.select_for_update().get(pk=shipment_id)
        if shipment.tracking_status != TrackingStatus.LABEL_CREATED:  # scanned between our check and the void
            log.error(
                "label %s voided by the carrier while tracking says %s",
                shipment.tracking_number,
                shipment.tracking_status,
            )
            raise Conflict(
                f"{shipment.carrier} voided {shipment.tracking_number}, but tracking meanwhile says "
                f"{shipment.tracking_status}; check the parcel with the carrier."
            )
        shipment.void_label()
        shipment.next_tracking_check_at = None
        shipment.save(update_fields=["tracking_status", "next_tracking_check_at"])
        events.shipment_label(order, actor, fulfillment=fulfillment, shipment=shipment, what="voided")
    return shipment


def shipment_relabel(*, shipment_id: int, actor: Actor, service: str = "", label_format: str = "pdf") -> Shipment:
    """Buy a new label for a shipment whose label was voided (wrong service, damaged print…)."""
    shipment = _shipment_with_label(
        shipment_id, status=TrackingStatus.VOIDED, refusal="void its label before buying another."
    )
    carrier = shipment.carrier_account
    if not carrier.active:
        raise InvalidTransition(f"Carrier {carrier.code} is not active.")
    service = _service(carrier, service or shipment.service)
    label_format = _label_format(label_format)
    fulfillment = Fulfillment.objects.select_related("order", "location", "transfer_to").get(pk=shipment.fulfillment_id)
    units: dict[int, int] = defaultdict(int)
    for sl in shipment.lines.select_related("fulfillment_line"):
        units[sl.fulfillment_line.line_id] += sl.quantity
    adapter = adapter_for(carrier)
    label = adapter.create_label(
        LabelRequest(
            ship_from=Address.of_location(fulfillment.location),
            ship_to=_ship_to(fulfillment),
            parcel=_parcel(units),
            service=service,
            reference=shipment.reference or f"{fulfillment.order.number}-F{fulfillment.pk}",
            label_format=label_format,
        )
    )
    with transaction.atomic():
        order, fulfillment = _lock_order_and_fulfillment(shipment.fulfillment_id)
        shipment = Shipment.objects.select_for_update().get(pk=shipment_id)
        if shipment.tracking_status != TrackingStatus.VOIDED:  # replaced concurrently
            transaction.on_commit(lambda: _void_quietly(adapter, label.tracking_number))
            raise Conflict(f"Shipment {shipment.pk} already has a new label ({shipment.tracking_number}).")
        old = shipment.tracking_number
        shipment.relabel()
        shipment.tracking_number = label.tracking_number
        shipment.service = label.service
        shipment.label_format, shipment.label_data = label.label_format, label.label_data
        shipment.label_cost, shipment.label_currency = label.amount, label.currency
        shipment.next_tracking_check_at, shipment.tracking_failures, shipment.tracking_error = timezone.now(), 0, ""
        shipment.save()
        events.shipment_label(
            order, actor, fulfillment=fulfillment, shipment=shipment, what="replaced", old_tracking_number=old
        )
        transaction.on_commit(
            partial(apply_early_tracking, carrier_id=carrier.pk, tracking_numbers=[label.tracking_number])
        )
    return shipment


# --- Tracking ------------------------------------------------------------------------------------


@dataclass
class TrackingOutcome:
    recorded: int = 0
    duplicates: int = 0
    status: str = ""
    changed: bool = False
    ignored: bool = False  # voided or untracked: the events were not for a live label


def _latest(rows: Sequence[TrackingEvent]) -> TrackingEvent | None:
    delivered = [e for e in rows if e.status == TrackingStatus.DELIVERED]
    if delivered:  # a delivered parcel stays delivered, whatever scan arrives late
        return min(delivered, key=lambda e: (e.occurred_at, e.pk or 0))
    return max(rows, key=lambda e: (e.occurred_at, STATUS_RANK[e.status], e.pk or 0), default=None)


@transaction.atomic
def shipment_record_tracking(
    *, shipment_id: int, events_in: Sequence[TrackingEventData], actor: Actor, source: str
) -> TrackingOutcome:
    """Record what the carrier said about one shipment; new events only (by the carrier's id).

    The shipment takes the status of its latest event; a change writes the timeline and its
    webhook event, and delivery of every parcel of a shipped fulfilment delivers it."""
    fulfillment_id = Shipment.objects.filter(pk=shipment_id).values_list("fulfillment_id", flat=True).first()
    if fulfillment_id is None:
        raise NotFound(f"No shipment {shipment_id}.")
    order, fulfillment = _lock_order_and_fulfillment(fulfillment_id)
    shipment = Shipment.objects.select_for_update().get(pk=shipment_id)
    outcome = TrackingOutcome(status=shipment.tracking_status)
    if shipment.tracking_status in (TrackingStatus.VOIDED, TrackingStatus.UNTRACKED):
        outcome.ignored = True
        return outcome
    for event in events_in:
        if event.status not in CARRIER_STATUSES:
            raise ValidationFailed(f"Unknown tracking status {event.status!r}.", fields={"status": "Unknown."})
    known = set(TrackingEvent.objects.filter(shipment=shipment).values_list("carrier_event_id", flat=True))
    new = []
    for event in events_in:
        if event.event_id in known:
            outcome.duplicates += 1
            continue
        known.add(event.event_id)
        new.append(
            TrackingEvent(
                shipment=shipment,
                tracking_number=shipment.tracking_number,
                carrier_event_id=event.event_id,
                status=event.status,
                description=event.description,
                location=event.location,
                occurred_at=event.occurred_at,
                source=source,
            )
        )
    TrackingEvent.objects.bulk_create(new)
    outcome.recorded = len(new)
    if not new:
        return outcome
    latest = _latest(list(TrackingEvent.objects.filter(shipment=shipment, tracking_number=shipment.tracking_number)))
    if (
        latest is None
        or latest.status in (shipment.tracking_status, TrackingStatus.LABEL_CREATED)  # never back to the start
        or shipment.tracking_status == TrackingStatus.DELIVERED
    ):
        return outcome
    shipment.track(latest.status)
    fields = ["tracking_status"]
    if latest.status == TrackingStatus.DELIVERED:
        shipment.delivered_at, shipment.next_tracking_check_at = latest.occurred_at, None
        fields += ["delivered_at", "next_tracking_check_at"]
    shipment.save(update_fields=fields)
    outcome.status, outcome.changed = shipment.tracking_status, True
    events.shipment_tracking(
        order,
        actor,
        fulfillment=fulfillment,
        shipment=shipment,
        status=latest.status,
        description=latest.description,
        location=latest.location,
        occurred_at=latest.occurred_at,
    )
    if (
        latest.status == TrackingStatus.DELIVERED
        and fulfillment.status == FulfillmentStatus.SHIPPED
        and not fulfillment.shipments.exclude(tracking_status=TrackingStatus.DELIVERED).exists()
    ):
        fulfillment_deliver(fulfillment_id=fulfillment.pk, actor=actor)
    return outcome


# --- Polling ---------------------------------------------------------------------------------------


@dataclass
class PollSummary:
    polled: int = 0
    recorded: int = 0
    changed: int = 0
    failed: int = 0
    carrier_errors: list[str] = field(default_factory=list)


def tracking_backoff(failures: int) -> timedelta:
    """Exponential from the base, capped at six hours, with jitter so a recovering carrier is
    not hit by every shipment at once."""
    delay = min(settings.CARRIER_TRACKING_BACKOFF_SECONDS * 2 ** max(failures - 1, 0), 6 * 3600)
    return timedelta(seconds=delay * random.uniform(0.75, 1.0))


def _claim(batch: int, now, only: Sequence[int] | None) -> list[Shipment]:
    """Due shipments (or `only` these, due or not), leased so a second poller running at the
    same time skips them."""
    due = Shipment.objects.filter(tracking_status__in=TRACKED, carrier_account__active=True)
    if only is None:
        oldest = now - timedelta(days=settings.CARRIER_TRACKING_MAX_DAYS)
        due = due.filter(next_tracking_check_at__lte=now, created_at__gte=oldest)
    else:
        due = due.filter(id__in=only)
    with transaction.atomic():
        ids = list(
            due.select_for_update(skip_locked=True, of=("self",))
            .order_by("next_tracking_check_at", "id")
            .values_list("id", flat=True)[:batch]
        )
        Shipment.objects.filter(id__in=ids).update(next_tracking_check_at=now + POLL_LEASE)
    return list(Shipment.objects.filter(id__in=ids).select_related("carrier_account").order_by("id"))


def _polled(shipment: Shipment, status: str) -> None:
    now = timezone.now()
    final = status not in TRACKED
    Shipment.objects.filter(pk=shipment.pk).update(
        tracking_checked_at=now,
        tracking_failures=0,
        tracking_error="",
        next_tracking_check_at=None if final else now + timedelta(seconds=settings.CARRIER_TRACKING_INTERVAL_SECONDS),
    )


def _poll_failed(shipment: Shipment, error: str) -> None:
    failures = shipment.tracking_failures + 1
    Shipment.objects.filter(pk=shipment.pk).update(
        tracking_failures=F("tracking_failures") + 1,
        tracking_error=error[:300],
        next_tracking_check_at=timezone.now() + tracking_backoff(failures),
    )


def tracking_poll(*, batch: int = 200, only: Sequence[int] | None = None, actor: Actor | None = None) -> PollSummary:
    """Ask each carrier about its parcels in transit, in batches. One shipment's failure does
    not stop the others; a carrier that fails backs off all of its shipments. `only` polls
    those shipments now, whenever they are due (the admin's "poll tracking now")."""
    summary = PollSummary()
    actor = actor or Actor.for_task("orders.poll_tracking")
    by_carrier: dict[int, list[Shipment]] = defaultdict(list)
    for shipment in _claim(batch, timezone.now(), only):
        by_carrier[shipment.carrier_account_id].append(shipment)
    for shipments in by_carrier.values():
        carrier = shipments[0].carrier_account
        try:
            results = adapter_for(carrier).track([s.tracking_number for s in shipments])
        except Exception as exc:  # a carrier outage (or a bug in its adapter) backs off its batch
            message = exc.message if isinstance(exc, CarrierError) else f"{exc.__class__.__name__}: {exc}"
            if not isinstance(exc, CarrierError):
                log.exception("tracking poll: adapter %s failed", carrier.code)
            log.warning("tracking poll: %s unavailable: %s", carrier.code, message)
            summary.carrier_errors.append(f"{carrier.code}: {message}")
            for shipment in shipments:
                _poll_failed(shipment, message)
            summary.failed += len(shipments)
            continue
        for shipment in shipments:
            summary.polled += 1
            result = results.get(shipment.tracking_number)
            if result is None or result.error:
                _poll_failed(shipment, result.error if result else "The carrier did not answer for this number.")
                summary.failed += 1
                continue
            try:
                outcome = shipment_record_tracking(
                    shipment_id=shipment.pk, events_in=result.events, actor=actor, source=TrackingEvent.Source.POLL
                )
            except Exception as exc:
                if not isinstance(exc, DomainError):
                    log.exception("tracking poll: shipment %s failed", shipment.pk)
                _poll_failed(shipment, getattr(exc, "message", None) or f"{exc.__class__.__name__}: {exc}")
                summary.failed += 1
                continue
            _polled(shipment, outcome.status)
            summary.recorded += outcome.recorded
            summary.changed += int(outcome.changed)
    tolerance = settings.CARRIER_WEBHOOK_TOLERANCE_SECONDS
    CarrierWebhookReceipt.objects.filter(received_at__lt=timezone.now() - timedelta(seconds=2 * tolerance)).delete()
    # Early events no shipment ever claimed (a label voided before shipping, a stranger's number).
    EarlyTrackingEvent.objects.filter(received_at__lt=timezone.now() - timedelta(days=EARLY_EVENT_DAYS)).delete()
    return summary


# --- Inbound carrier webhook -----------------------------------------------------------------------


def _verify(secret: str, header: str, body: bytes) -> str:
    """Check `t=<unix>,v1=<hex hmac-sha256 of "t.body">`; returns the digest (the receipt key)."""
    try:
        parts = dict(part.split("=", 1) for part in header.split(","))
        timestamp, given = int(parts["t"]), parts["v1"]
    except (ValueError, KeyError):
        raise SignatureRejected(
            "X-Carrier-Signature is missing or malformed; expected t=<unix>,v1=<hex>.",
            fields={"X-Carrier-Signature": "Missing or malformed."},
        ) from None
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given):
        raise SignatureRejected(
            "X-Carrier-Signature does not match the body.", fields={"X-Carrier-Signature": "Does not match."}
        )
    age = int(time.time()) - timestamp
    tolerance = settings.CARRIER_WEBHOOK_TOLERANCE_SECONDS
    if abs(age) > tolerance:
        raise SignatureRejected(
            f"X-Carrier-Signature timestamp is {age} s from now; at most {tolerance} s is accepted.",
            fields={"X-Carrier-Signature": "Stale timestamp."},
        )
    return expected


def _parse_webhook(body: bytes) -> list[tuple[str, TrackingEventData]]:
    try:
        payload = json.loads(body)
    except ValueError:
        raise ValidationFailed("The body is not JSON.") from None
    rows = payload.get("events") if isinstance(payload, dict) else None
    if not isinstance(rows, list) or not 1 <= len(rows) <= 500:
        raise ValidationFailed("events: a list of 1 to 500 tracking events.", fields={"events": "1 to 500 events."})
    parsed = []
    for index, row in enumerate(rows):
        path = f"events[{index}]"
        if not isinstance(row, dict):
            raise ValidationFailed(f"{path}: an object.", fields={path: "An object."})
        number = str(row.get("tracking_number", "")).strip()
        if not number:
            raise ValidationFailed(
                f"{path}.tracking_number is required.", fields={f"{path}.tracking_number": "Required."}
            )
        if row.get("status") not in CARRIER_STATUSES:
            raise ValidationFailed(
                f"{path}.status must be one of {', '.join(CARRIER_STATUSES)}.",
                fields={f"{path}.status": "Unknown status."},
            )
        try:
            event = parse_event(row)
        except (KeyError, ValueError) as exc:
            raise ValidationFailed(f"{path}: {exc}", fields={path: str(exc)}) from None
        parsed.append((number, event))
    return parsed


def tracking_webhook_receive(*, carrier_code: str, body: bytes, signature: str) -> dict:
    """A carrier pushes tracking events: authenticate, refuse an exact replay, record them."""
    carrier = Carrier.objects.filter(code=carrier_code, active=True).first()
    if carrier is None or not carrier.webhook_secret:
        raise NotFound(f"No carrier {carrier_code} accepting tracking webhooks.")
    digest = _verify(carrier.webhook_secret, signature, body)
    if CarrierWebhookReceipt.objects.filter(carrier=carrier, signature=digest).exists():
        raise Conflict("This webhook delivery was already received (a replay); nothing was recorded.")
    parsed = _parse_webhook(body)
    by_number: dict[str, list[TrackingEventData]] = defaultdict(list)
    for number, event in parsed:
        by_number[number].append(event)
    shipments = list(
        Shipment.objects.filter(carrier_account=carrier, tracking_number__in=by_number).order_by(
            "fulfillment__order_id", "pk"
        )
    )
    actor = Actor.system(f"carrier {carrier.code} webhook")
    answer = {"received": len(parsed), "recorded": 0, "duplicates": 0, "ignored": 0, "unknown_tracking_numbers": []}
    for shipment in shipments:  # each in its own transaction, in order-id order (no lock cycles)
        outcome = shipment_record_tracking(
            shipment_id=shipment.pk,
            events_in=by_number[shipment.tracking_number],
            actor=actor,
            source=TrackingEvent.Source.WEBHOOK,
        )
        answer["recorded"] += outcome.recorded
        answer["duplicates"] += outcome.duplicates
        answer["ignored"] += len(by_number[shipment.tracking_number]) if outcome.ignored else 0
    unknown = set(by_number) - {s.tracking_number for s in shipments}
    answer["unknown_tracking_numbers"] = sorted(unknown)
    if unknown:  # perhaps a label bought a moment ago whose shipment is not committed yet: keep them
        EarlyTrackingEvent.objects.bulk_create(
            [
                EarlyTrackingEvent(
                    carrier=carrier,
                    tracking_number=number,
                    carrier_event_id=event.event_id,
                    event={
                        "id": event.event_id,
                        "status": event.status,
                        "occurred_at": event.occurred_at.isoformat(),
                        "description": event.description,
                        "location": event.location,
                    },
                )
                for number, event in parsed
                if number in unknown
            ],
            ignore_conflicts=True,
        )
        # The shipment may have been committed since it was looked up (it then found nothing here).
        answer["recorded"] += apply_early_tracking(carrier_id=carrier.pk, tracking_numbers=unknown)
    answer["waiting"] = (
        EarlyTrackingEvent.objects.filter(carrier=carrier, tracking_number__in=unknown).count() if unknown else 0
    )
    CarrierWebhookReceipt.objects.get_or_create(carrier=carrier, signature=digest, defaults={"events": len(parsed)})
    return answer


EARLY_EVENT_DAYS = 7


def apply_early_tracking(*, carrier_id: int, tracking_numbers: Collection[str]) -> int:
    """Record the early events waiting for these tracking numbers on their shipments, where the
    shipments now exist; returns how many were recorded. Called when a tracked shipment is
    written (after its commit) and after early events are kept: whichever commits second sees
    the other, and a repeat is ignored by the carrier's event id."""
    recorded = 0
    shipments = Shipment.objects.filter(carrier_account_id=carrier_id, tracking_number__in=list(tracking_numbers))
    for shipment in shipments.select_related("carrier_account"):
        with transaction.atomic():
            waiting = list(
                EarlyTrackingEvent.objects.select_for_update()
                .filter(carrier_id=carrier_id, tracking_number=shipment.tracking_number)
                .order_by("id")
            )
            if not waiting:
                continue
            outcome = shipment_record_tracking(
                shipment_id=shipment.pk,
                events_in=[parse_event(w.event) for w in waiting],
                actor=Actor.system(f"carrier {shipment.carrier_account.code} webhook"),
                source=TrackingEvent.Source.WEBHOOK,
            )
            EarlyTrackingEvent.objects.filter(pk__in=[w.pk for w in waiting]).delete()
            recorded += outcome.recorded
    return recorded
