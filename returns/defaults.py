"""The starting configuration a merchant then edits in the admin: reason codes, the default
return policy and appeasement limits for the CSR and Supervisor roles. Loaded by a data
migration; `ensure_defaults()` puts back what is missing (idempotent, never overwrites)."""

from __future__ import annotations

from decimal import Decimal

RETURN_REASONS = [
    # code, name, merchant fault, position
    ("changed_mind", "Changed my mind", False, 10),
    ("wrong_size", "Wrong size or fit", False, 20),
    ("not_as_described", "Not as described", True, 30),
    ("defective", "Defective or faulty", True, 40),
    ("damaged_in_transit", "Arrived damaged", True, 50),
    ("wrong_item_sent", "We sent the wrong item", True, 60),
    ("late_delivery", "Arrived too late", True, 70),
]
APPEASEMENT_REASONS = [
    ("late_delivery", "Late delivery"),
    ("damaged_packaging", "Damaged packaging"),
    ("missing_item", "Item missing from the parcel"),
    ("service_recovery", "Service recovery (goodwill)"),
    ("price_adjustment", "Price adjustment"),
]
APPEASEMENT_LIMITS = [("CSR", Decimal("25.00")), ("Supervisor", Decimal("250.00"))]


def ensure_defaults(models=None) -> None:
    """`models`: the app registry to take the models from (a migration's `apps`), else ours."""
    if models is None:
        from django.apps import apps as models

    ReturnReason = models.get_model("returns", "ReturnReason")
    AppeasementReason = models.get_model("returns", "AppeasementReason")
    ReturnPolicy = models.get_model("returns", "ReturnPolicy")
    AppeasementLimit = models.get_model("returns", "AppeasementLimit")
    for code, name, fault, position in RETURN_REASONS:
        ReturnReason.objects.get_or_create(
            code=code, defaults={"name": name, "merchant_fault": fault, "position": position}
        )
    for code, name in APPEASEMENT_REASONS:
        AppeasementReason.objects.get_or_create(code=code, defaults={"name": name})
    if not ReturnPolicy.objects.filter(channel__isnull=True).exists():
        ReturnPolicy.objects.create(channel=None, window_days=30, refund_shipping="merchant_fault")
    for role, amount in APPEASEMENT_LIMITS:
        AppeasementLimit.objects.get_or_create(role=role, defaults={"max_amount": amount})
