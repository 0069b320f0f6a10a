"""The order document (GET /orders/{number}/ and the capture answer) as plain functions.

DRF's serializers walk ~100 field objects per order (a deep copy of them per instance, then
`get_attribute` and `to_representation` for each value): most of a millisecond per answer. These
functions build the same dicts straight from the instances and their prefetch caches, applying
DRF's own representation rules (see the `_decimal`, `_datetime` and `_choice` helpers). The
serializer classes in serializers.py stay the declaration (and the OpenAPI schema); their
`to_representation` calls these, and tests/orders/test_documents.py checks the output against
DRF's generic rendering of the same classes."""

from __future__ import annotations

import decimal
from decimal import Decimal

from django.utils import timezone

from orders.models import Order, OrderLine, Payment, Shipment


def _places(model, name: str) -> tuple[Decimal, decimal.Context]:
    """The quantum and context DRF's DecimalField uses for a model decimal field."""
    field = model._meta.get_field(name)
    context = decimal.getcontext().copy()
    context.prec = field.max_digits
    return Decimal(".1") ** field.decimal_places, context


def _shape(model, name: str) -> tuple[int, int]:
    field = model._meta.get_field(name)
    return field.max_digits, field.decimal_places


MONEY = _places(Order, "grand_total")
LABEL_COST = _places(Shipment, "label_cost")
for _model, _names in (
    (Order, ("subtotal", "discount_total", "shipping_total", "tax_total", "grand_total")),
    (OrderLine, ("unit_price", "discount_amount", "tax_amount")),
    (Payment, ("amount_authorized", "amount_captured", "amount_voided", "amount_refunded")),
):
    for _name in _names:  # every money field shown here has grand_total's digits and places
        assert _shape(_model, _name) == _shape(Order, "grand_total"), (_model, _name)


def _decimal(value, places=MONEY) -> str | None:
    """DRF DecimalField with COERCE_DECIMAL_TO_STRING: quantized to the model's places, '{:f}'."""
    if value is None:
        return None
    if type(value) is not Decimal:
        value = Decimal(str(value).strip())
    return f"{value.quantize(places[0], context=places[1]):f}"


def _datetime(value, tz) -> str | None:
    """DRF DateTimeField (ISO 8601): in the current time zone, '+00:00' written 'Z'."""
    if not value:
        return None
    if isinstance(value, str):
        return value
    value = value.astimezone(tz) if timezone.is_aware(value) else timezone.make_aware(value, tz)
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _date(value) -> str | None:
    return value.isoformat() if value else None


def _choices(model, name: str) -> dict:
    return {str(key): key for key, _label in model._meta.get_field(name).flatchoices}


ORDER_STATUS = _choices(Order, "status")
ORDER_METHOD = _choices(Order, "fulfillment_method")
PAYMENT_STATUS = _choices(Payment, "status")


def _choice(mapping: dict, value):
    """DRF ChoiceField: the declared choice for the value's string, else the value."""
    if value in ("", None):
        return value
    return mapping.get(str(value), value)


def order_summary(order, tz=None) -> dict:
    """OrderListSerializer's fields."""
    tz = tz or timezone.get_current_timezone()
    c = order.customer
    return {
        "number": order.number,
        "channel": order.channel.code,
        "external_id": order.external_id,
        "status": _choice(ORDER_STATUS, order.status),
        "customer": {"email": c.email, "name": c.name, "phone": c.phone},
        "currency": order.currency,
        "grand_total": _decimal(order.grand_total),
        "fulfillment_method": _choice(ORDER_METHOD, order.fulfillment_method),
        "created_at": _datetime(order.created_at, tz),
        "updated_at": _datetime(order.updated_at, tz),
    }


def address_of(order: Order) -> dict | None:
    address = order.ship_to()
    if address is None:
        return None
    return {
        **address,
        "latitude": None if order.ship_latitude is None else str(order.ship_latitude),
        "longitude": None if order.ship_longitude is None else str(order.ship_longitude),
    }


def order_document(order) -> dict:
    """OrderSerializer's fields: the summary, then the addresses, totals and related rows."""
    tz = timezone.get_current_timezone()
    doc = order_summary(order, tz)
    doc.update(
        {
            "pickup_location": order.pickup_location.code if order.pickup_location else None,
            "shipping_address": address_of(order),
            "shipping_method": order.shipping_method,
            "subtotal": _decimal(order.subtotal),
            "discount_total": _decimal(order.discount_total),
            "shipping_total": _decimal(order.shipping_total),
            "tax_total": _decimal(order.tax_total),
            "ship_complete": bool(order.ship_complete),
            "allow_backorder": bool(order.allow_backorder),
            "promised_ship_date": _date(order.promised_ship_date),
            "promised_delivery_date": _date(order.promised_delivery_date),
            "lines": [line_document(line) for line in order.lines.all()],
            "payments": [payment_document(p) for p in order.payments.all()],
            "holds": holds_brief(order),
            "fulfillments": fulfillments_brief(order, tz),
            "returns": returns_brief(order),
            "routing": routing_brief(order),
            "events": [event_document(e, tz) for e in order.events.all()],
        }
    )
    return doc


def line_document(line) -> dict:
    return {
        "id": line.pk,
        "sku": line.sku,
        "external_line_id": line.external_line_id,
        "quantity": line.quantity,
        "quantity_allocated": line.quantity_allocated,
        "quantity_backordered": line.quantity_backordered,
        "quantity_shipped": line.quantity_shipped,
        "quantity_cancelled": line.quantity_cancelled,
        "quantity_returned": line.quantity_returned,
        "unit_price": _decimal(line.unit_price),
        "discount_amount": _decimal(line.discount_amount),
        "tax_amount": _decimal(line.tax_amount),
        "allocations": allocations_brief(line),
    }


def allocations_brief(line) -> list[dict]:
    return [
        {"location": a.location.code, "quantity": a.quantity, "provisional": a.provisional}
        for a in line.allocations.all()
    ]


def payment_document(p) -> dict:
    return {
        "id": p.pk,
        "method": p.method,
        "reference": p.reference,
        "status": _choice(PAYMENT_STATUS, p.status),
        "amount_authorized": _decimal(p.amount_authorized),
        "amount_captured": _decimal(p.amount_captured),
        "amount_voided": _decimal(p.amount_voided),
        "amount_refunded": _decimal(p.amount_refunded),
    }


def event_document(e, tz=None) -> dict:
    return {
        "id": e.pk,
        "type": e.type,
        "message": e.message,
        "data": e.data,
        "actor": e.actor_display,
        "created_at": _datetime(e.created_at, tz or timezone.get_current_timezone()),
    }


# In the briefs below the datetimes stay datetimes: the JSON renderer writes them.


def holds_brief(order) -> list[dict]:
    return [
        {"id": h.pk, "type": h.type, "reason": h.reason, "placed_by": h.actor_label, "created_at": h.created_at}
        for h in order.holds.all()
        if h.released_at is None
    ]


def returns_brief(order) -> list[dict]:
    """The order's returns in brief (`returns` is the returns app's reverse relation;
    GET /api/v1/returns/{id}/ has the rest)."""
    return [
        {
            "id": r.pk,
            "number": r.number,
            "status": r.status,
            "method": r.method,
            "refund_amount": str(r.refund_amount),
            "created_at": r.created_at,
        }
        for r in order.returns.all()
    ]


def fulfillments_brief(order, tz=None) -> list[dict]:
    tz = tz or timezone.get_current_timezone()
    return [fulfillment_brief(f, tz) for f in order.fulfillments.all()]


def fulfillment_brief(f, tz) -> dict:
    return {
        "id": f.pk,
        "location": f.location.code,
        "status": f.status,
        "routing_attempt": f.routing_attempt,
        "transfer_to": f.transfer_to.code if f.transfer_to else None,
        "rejection_reason": f.rejection_reason,
        "due_at": f.due_at,
        "late_at": f.late_at,
        "pickup_expires_at": f.pickup_expires_at,
        "lines": [
            {
                "line_id": fl.line_id,
                "quantity": fl.quantity,
                "quantity_rejected": fl.quantity_rejected,
                "quantity_shipped": fl.quantity_shipped,
            }
            for fl in f.lines.all()
        ],
        "shipments": [shipment_brief(s, tz) for s in f.shipments.all()],
    }


SHIPMENT_CARRIER = _choices(Shipment, "carrier")
SHIPMENT_TRACKING = _choices(Shipment, "tracking_status")
SHIPMENT_LABEL_FORMAT = _choices(Shipment, "label_format")


def shipment_brief(s, tz) -> dict:
    """ShipmentSerializer's fields (ShipmentDetailSerializer keeps DRF's generic path)."""
    return {
        "id": s.pk,
        "carrier": _choice(SHIPMENT_CARRIER, s.carrier),
        "service": s.service,
        "tracking_number": s.tracking_number,
        "tracking_status": _choice(SHIPMENT_TRACKING, s.tracking_status),
        "reference": s.reference,
        "label_format": _choice(SHIPMENT_LABEL_FORMAT, s.label_format),
        "label_url": f"/api/v1/shipments/{s.pk}/label/" if s.has_label else None,
        "label_cost": _decimal(s.label_cost, LABEL_COST),
        "label_currency": s.label_currency,
        "delivered_at": _datetime(s.delivered_at, tz),
        "lines": [{"line_id": sl.fulfillment_line.line_id, "quantity": sl.quantity} for sl in s.lines.all()],
        "created_at": _datetime(s.created_at, tz),
    }


def routing_brief(order) -> dict | None:
    """The latest routing decision and why (`routing_decisions` is routing's reverse relation)."""
    decisions = list(order.routing_decisions.all())
    if not decisions:
        return None
    d = decisions[0]
    return {
        "attempt": d.attempt,
        "profile_version": d.version_id,
        "strategy": d.strategy,
        "summary": d.summary,
        "unsourced": d.unsourced,
        "explanation": d.explanation,
        "decided_at": d.created_at,
        "attempts": len(decisions),
    }
