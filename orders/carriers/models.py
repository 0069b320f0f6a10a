"""Carrier accounts, tracking events and inbound webhook receipts (app label `orders`;
imported by `orders.models`). Shipment, which these hang off, is in `orders.models`."""

from __future__ import annotations

from django.db import models

from .adapters import adapter_choices


class TrackingStatus(models.TextChoices):
    UNTRACKED = "untracked", "Not tracked"  # a carrier the OMS has no account with
    LABEL_CREATED = "label_created", "Label created"
    IN_TRANSIT = "in_transit", "In transit"
    OUT_FOR_DELIVERY = "out_for_delivery", "Out for delivery"
    DELIVERED = "delivered", "Delivered"
    EXCEPTION = "exception", "Exception"
    VOIDED = "voided", "Label voided"


# Statuses a carrier reports in a tracking event.
CARRIER_STATUSES = [
    TrackingStatus.LABEL_CREATED,
    TrackingStatus.IN_TRANSIT,
    TrackingStatus.OUT_FOR_DELIVERY,
    TrackingStatus.DELIVERED,
    TrackingStatus.EXCEPTION,
]
# Shipments the OMS keeps polling: the parcel has not arrived yet (an exception may recover).
TRACKED = [
    TrackingStatus.LABEL_CREATED,
    TrackingStatus.IN_TRANSIT,
    TrackingStatus.OUT_FOR_DELIVERY,
    TrackingStatus.EXCEPTION,
]


class Carrier(models.Model):
    """A carrier account the OMS buys labels on and tracks parcels with."""

    code = models.SlugField(
        max_length=32, unique=True, help_text="What integrators send as `carrier` on the ship call, e.g. SANDBOX."
    )
    name = models.CharField(max_length=100)
    adapter = models.CharField(
        max_length=32, choices=adapter_choices, help_text="Which adapter speaks this carrier's API."
    )
    base_url = models.URLField(max_length=300, help_text="The carrier API's base URL.")
    api_key = models.CharField(max_length=300, help_text="Credential the adapter sends to the carrier.")
    account_number = models.CharField(max_length=50, blank=True)
    webhook_secret = models.CharField(
        max_length=200,
        blank=True,
        help_text="Verifies the carrier's tracking webhooks (X-Carrier-Signature). Empty: webhooks refused.",
    )
    services = models.JSONField(
        default=list,
        blank=True,
        help_text='Service levels offered, e.g. ["ground", "express"]; the first is the default.',
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"

    @property
    def default_service(self) -> str:
        return self.services[0] if self.services else ""


class TrackingEvent(models.Model):
    """One scan or status the carrier reported for a shipment's tracking number."""

    class Source(models.TextChoices):
        POLL = "poll", "Polled"
        WEBHOOK = "webhook", "Carrier webhook"

    shipment = models.ForeignKey("orders.Shipment", on_delete=models.CASCADE, related_name="tracking_events")
    tracking_number = models.CharField(max_length=100)
    carrier_event_id = models.CharField(max_length=100, help_text="The carrier's id; a repeat is ignored.")
    status = models.CharField(max_length=20, choices=TrackingStatus.choices)
    description = models.CharField(max_length=300, blank=True)
    location = models.CharField(max_length=200, blank=True)
    occurred_at = models.DateTimeField()
    source = models.CharField(max_length=8, choices=Source.choices)
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["occurred_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["shipment", "carrier_event_id"], name="tracking_event_carrier_id_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.occurred_at:%Y-%m-%d %H:%M} {self.status} {self.description}"


class CarrierWebhookReceipt(models.Model):
    """A tracking webhook we accepted, by signature, so an exact replay is refused. Kept only
    as long as its timestamp is within tolerance: older ones are refused as stale anyway."""

    carrier = models.ForeignKey(Carrier, on_delete=models.CASCADE, related_name="+")
    signature = models.CharField(max_length=64)
    events = models.PositiveIntegerField(default=0)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["carrier", "signature"], name="carrier_webhook_receipt_uniq")]

    def __str__(self) -> str:
        return f"{self.carrier_id} {self.signature[:12]}… ({self.events} events)"


class EarlyTrackingEvent(models.Model):
    """A webhook event for a tracking number no shipment has yet. The OMS buys a label before
    the ship transaction commits, and a carrier may push the label's first event in between:
    the event waits here and is recorded when the shipment is written. Purged after a week."""

    carrier = models.ForeignKey(Carrier, on_delete=models.CASCADE, related_name="+")
    tracking_number = models.CharField(max_length=100)
    carrier_event_id = models.CharField(max_length=100)
    event = models.JSONField(help_text="The event as the carrier sent it.")
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["carrier", "tracking_number", "carrier_event_id"], name="early_tracking_event_uniq"
            )
        ]

    def __str__(self) -> str:
        return f"{self.carrier_id} {self.tracking_number} {self.carrier_event_id}"
