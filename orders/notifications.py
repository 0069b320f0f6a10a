"""Customer emails: ready for pickup, shipped, delivered.

The change that causes one records a `CustomerNotification` and an outbox task in its own
transaction (`notify_customer`); a worker renders and sends it after commit
(`notification_send`), never the request. Each notification has a unique key, and sending
claims it with a conditional update, so a retried or duplicated task sends it once.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db.models import F, Q
from django.template.loader import render_to_string
from django.utils import timezone

from oms.outbox import outbox_enqueue_task

from .models import CustomerNotification, Order

log = logging.getLogger(__name__)
CLAIM = timedelta(minutes=5)  # a worker that dies mid-send lets another try after this

SUBJECTS = {
    CustomerNotification.Kind.READY_FOR_PICKUP: "Your order {number} is ready for pickup at {location}",
    CustomerNotification.Kind.SHIPPED: "Your order {number} has shipped",
    CustomerNotification.Kind.DELIVERED: "Your order {number} was delivered",
}


def notify_customer(order: Order, kind: str, *, fulfillment, shipment=None) -> CustomerNotification | None:
    """Record an email to the customer and start its sending through the outbox (call inside
    the transaction of the change). A second call for the same event does nothing."""
    key = f"{kind}:{fulfillment.pk}:{shipment.pk if shipment else ''}"
    notification, created = CustomerNotification.objects.get_or_create(
        key=key,
        defaults={
            "order": order,
            "fulfillment": fulfillment,
            "shipment": shipment,
            "kind": kind,
            "to": order.customer.email,
        },
    )
    if not created:
        return None
    outbox_enqueue_task("orders.send_customer_notification", notification_id=notification.pk)
    return notification


def _lines(notification: CustomerNotification) -> list[dict]:
    if notification.shipment_id:
        rows = notification.shipment.lines.select_related("fulfillment_line__line__item")
        return [
            {"sku": r.fulfillment_line.line.sku, "name": r.fulfillment_line.line.item.name, "quantity": r.quantity}
            for r in rows
        ]
    rows = notification.fulfillment.lines.select_related("line__item")
    return [
        {"sku": fl.line.sku, "name": fl.line.item.name, "quantity": fl.quantity - fl.quantity_rejected}
        for fl in rows
        if fl.quantity - fl.quantity_rejected > 0
    ]


def render(notification: CustomerNotification) -> tuple[str, str, str]:
    """(subject, text, html) for a notification, from the order as it is now."""
    order = notification.order
    fulfillment = notification.fulfillment
    location = fulfillment.location
    context = {
        "kind": notification.kind,
        "order": order,
        "customer": order.customer,
        "fulfillment": fulfillment,
        "location": location,
        "shipment": notification.shipment,
        "lines": _lines(notification),
        "pickup_code": fulfillment.pickup_code,
        "collect_by": fulfillment.pickup_expires_at,
        "sender": settings.OMS_EMAIL_SENDER_NAME,
    }
    subject = SUBJECTS[notification.kind].format(number=order.number, location=location.name)
    base = f"emails/{notification.kind}"
    with timezone.override(ZoneInfo(location.timezone)):  # times as the store tells them
        return subject, render_to_string(f"{base}.txt", context), render_to_string(f"{base}.html", context)


def notification_send(*, notification_id: int, now: datetime | None = None) -> bool:
    """Send one notification unless it was sent or another worker holds it. Returns whether
    this call sent it. A failure releases the claim and raises, so the task is retried."""
    now = now or timezone.now()
    claimed = (
        CustomerNotification.objects.filter(pk=notification_id, sent_at__isnull=True)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .update(claimed_until=now + CLAIM, attempts=F("attempts") + 1)
    )
    if not claimed:
        return False
    notification = CustomerNotification.objects.select_related(
        "order__customer", "fulfillment__location", "shipment"
    ).get(pk=notification_id)
    subject, text, html = render(notification)
    message = EmailMultiAlternatives(subject=subject, body=text, to=[notification.to])
    message.attach_alternative(html, "text/html")
    try:
        message.send()
    except Exception as exc:
        CustomerNotification.objects.filter(pk=notification_id).update(
            claimed_until=None, last_error=f"{exc.__class__.__name__}: {exc}"[:500]
        )
        raise
    CustomerNotification.objects.filter(pk=notification_id).update(
        sent_at=timezone.now(), subject=subject, body=text, claimed_until=None, last_error=""
    )
    log.info("customer notification %s (%s) sent", notification_id, notification.kind)
    return True
