"""Filters and tags for the customer-service console templates."""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import quote

from django import template

from oms.console.permissions import is_merchant as _is_merchant
from oms.console.selectors import COUNT_CAP
from oms.roles import CSR, MERCHANT, SUPERVISOR

register = template.Library()

STATUS_TONES = {
    "on_hold": "warn",
    "backordered": "warn",
    "partially_allocated": "warn",
    "cancelled": "muted",
    "rejected": "bad",
    "expired": "bad",
    "dead": "bad",
    "completed": "good",
    "delivered": "good",
    "picked_up": "good",
    "shipped": "good",
    "partially_shipped": "info",
    "ready_for_pickup": "info",
    "in_transit": "info",
    "out_for_delivery": "info",
    "label_created": "plain",
    "exception": "bad",
    "voided": "muted",
    "untracked": "muted",
    "pending_approval": "warn",
    "issued": "good",
    "declined": "bad",
    "refunded": "good",
    "failed": "bad",
    "succeeded": "good",
    "pending": "warn",
    "requested": "info",
    "authorised": "info",
    "received": "info",
    "inspected": "info",
    "closed": "muted",
}


@register.filter
def tone(status: str) -> str:
    """A colour family for a status badge."""
    return STATUS_TONES.get(status, "plain")


@register.filter
def money(amount, currency: str = "") -> str:
    if amount in (None, ""):
        return "—"
    value = Decimal(str(amount))
    return f"{value:,.2f} {currency}".strip()


@register.filter
def get(mapping, key):
    if mapping is None:
        return None
    return mapping.get(key) if hasattr(mapping, "get") else None


@register.filter
def humanize_key(value: str) -> str:
    return str(value).replace("_", " ")


@register.simple_tag
def role_of(user) -> str:
    if user.is_superuser:
        return "Admin"
    names = {g.name for g in user.groups.all()}
    for role in (MERCHANT, SUPERVISOR, CSR):
        if role in names:
            return role
    return "No role"


@register.filter
def is_merchant(user) -> bool:
    return _is_merchant(user)


@register.filter
def score(value) -> str:
    if value is None:
        return "—"
    return f"{float(value):.2f}"


@register.filter
def capped(count: int) -> str:
    """A count from a capped COUNT query: "250+" past the cap."""
    return f"{COUNT_CAP:,}+" if count > COUNT_CAP else f"{count:,}"


# Public tracking pages of the big carriers, by the carrier name a shipment was sent with.
TRACKING_PAGES = {
    "UPS": "https://www.ups.com/track?tracknum={}",
    "FEDEX": "https://www.fedex.com/fedextrack/?trknbr={}",
    "USPS": "https://tools.usps.com/go/TrackConfirmAction?tLabels={}",
    "DHL": "https://www.dhl.com/global-en/home/tracking/tracking-express.html?tracking-id={}",
}


@register.filter
def tracking_url(shipment) -> str:
    """The carrier's public tracking page for a shipment, or "" for a carrier we do not know."""
    page = TRACKING_PAGES.get((shipment.carrier or "").strip().upper().replace(" ", ""))
    return page.format(quote(shipment.tracking_number)) if page and shipment.tracking_number else ""
