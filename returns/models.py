"""Returns (reverse logistics): return authorisations (RMAs) linked to an order and its lines,
receipts with per-unit condition and disposition, refunds against the order's payments,
exchanges as linked orders, and appeasements (money or credit without a return).

Configuration the merchant manages in the admin: reason codes, the return policy per channel
(window, shipping refunds, restocking fee, damage deduction) and appeasement limits per role.
"""

from __future__ import annotations

import secrets
import uuid
from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django_fsm import FSMField, FSMModelMixin, transition

from oms.actor import ActorFields
from orders.models import NUMBER_ALPHABET

PERCENT = {"max_digits": 5, "decimal_places": 2, "validators": [MinValueValidator(0), MaxValueValidator(100)]}
MONEY = {"max_digits": 12, "decimal_places": 2}


def new_number(prefix: str) -> str:
    return f"{prefix}-" + "".join(secrets.choice(NUMBER_ALPHABET) for _ in range(7))


# --- Configuration --------------------------------------------------------------------------------


class ReturnReason(models.Model):
    """Why the customer sends something back. Merchant-fault reasons (defective, wrong item
    sent, damaged in transit) waive restocking fees and damage deductions."""

    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=100)
    merchant_fault = models.BooleanField(
        default=False, help_text="Our mistake: no restocking fee or damage deduction; shipping may be refunded."
    )
    active = models.BooleanField(default=True)
    position = models.PositiveIntegerField(default=100, help_text="Order in pick lists.")

    class Meta:
        ordering = ["position", "code"]

    def __str__(self) -> str:
        return self.name


class AppeasementReason(models.Model):
    """Why customer service gives money or credit without a return (late delivery, …)."""

    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=100)
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.name


class ShippingRefund(models.TextChoices):
    NEVER = "never", "Never"
    MERCHANT_FAULT = "merchant_fault", "When the reason is our fault"
    ALWAYS = "always", "Always (once per order)"


class ReturnPolicy(models.Model):
    """A channel's return rules (the policy with no channel is the default for the others).

    Kept in the returns app, keyed to the channel, so inventory's Channel stays untouched."""

    channel = models.OneToOneField(
        "inventory.Channel",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="return_policy",
        help_text="Empty: the default policy for channels without their own.",
    )
    window_days = models.PositiveIntegerField(default=30, help_text="Days after shipment a return may be requested.")
    auto_authorise = models.BooleanField(
        default=True, help_text="Authorise returns within the window at once; otherwise they wait for a CSR."
    )
    refund_shipping = models.CharField(
        max_length=16, choices=ShippingRefund.choices, default=ShippingRefund.MERCHANT_FAULT
    )
    restocking_fee_percent = models.DecimalField(
        **PERCENT, default=Decimal(0), help_text="Kept from sellable units returned for a customer reason."
    )
    damaged_deduction_percent = models.DecimalField(
        **PERCENT, default=Decimal(0), help_text="Kept from units the customer sends back damaged."
    )
    fee_free_exchanges = models.BooleanField(default=True, help_text="No restocking fee on a return with an exchange.")
    return_carrier = models.ForeignKey(
        "orders.Carrier",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Who prints mail-return labels. Empty: the only active carrier, if there is exactly one.",
    )
    return_service = models.CharField(
        max_length=50, blank=True, help_text="The carrier's service for return labels; empty: its default."
    )

    class Meta:
        verbose_name_plural = "return policies"
        constraints = [
            models.UniqueConstraint(
                fields=["channel"], condition=Q(channel__isnull=True), name="one_default_return_policy"
            ),
        ]

    def __str__(self) -> str:
        return f"Return policy: {self.channel.code if self.channel_id else 'default'}"


class AppeasementLimit(models.Model):
    """The most one appeasement may be worth when given by a member of a role (group).
    Above it, the appeasement waits for someone whose limit covers it."""

    role = models.CharField(max_length=150, unique=True, help_text="Group name, e.g. CSR or Supervisor.")
    max_amount = models.DecimalField(**MONEY, validators=[MinValueValidator(0)])

    class Meta:
        ordering = ["max_amount"]

    def __str__(self) -> str:
        return f"{self.role}: up to {self.max_amount}"


# --- Returns --------------------------------------------------------------------------------------


class ReturnStatus(models.TextChoices):
    REQUESTED = "requested", "Requested"
    AUTHORISED = "authorised", "Authorised"
    IN_TRANSIT = "in_transit", "In transit"
    RECEIVED = "received", "Received (partly)"
    INSPECTED = "inspected", "Inspected"
    REFUNDED = "refunded", "Refunded"
    CLOSED = "closed", "Closed"
    REJECTED = "rejected", "Rejected"
    CANCELLED = "cancelled", "Cancelled"


# Returns whose outstanding units still count as "being returned".
OPEN_RETURN_STATES = [
    ReturnStatus.REQUESTED,
    ReturnStatus.AUTHORISED,
    ReturnStatus.IN_TRANSIT,
    ReturnStatus.RECEIVED,
]
RECEIVABLE = [ReturnStatus.AUTHORISED, ReturnStatus.IN_TRANSIT, ReturnStatus.RECEIVED]


class Return(FSMModelMixin, ActorFields):
    """A return authorisation (RMA) for some shipped units of one order."""

    class Method(models.TextChoices):
        MAIL = "mail", "Mail"
        STORE = "store", "In store"

    class LabelStatus(models.TextChoices):
        NONE = "none", "Not needed"
        PENDING = "pending", "Requested"
        ISSUED = "issued", "Issued"
        FAILED = "failed", "Failed"
        UNAVAILABLE = "unavailable", "No carrier for return labels"
        VOIDED = "voided", "Voided"

    number = models.CharField(max_length=20, unique=True, editable=False)
    order = models.ForeignKey("orders.Order", on_delete=models.PROTECT, related_name="returns")
    status = FSMField(default=ReturnStatus.REQUESTED, choices=ReturnStatus.choices, protected=True)
    method = models.CharField(max_length=8, choices=Method.choices)
    location = models.ForeignKey(
        "inventory.Location",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Where the goods are expected (the label's destination, or the store chosen).",
    )
    note = models.CharField(max_length=500, blank=True)
    # The window at request time, and who let it through when it had closed.
    window_days = models.PositiveIntegerField(default=0)
    window_overridden_by = models.CharField(max_length=200, blank=True)
    window_override_reason = models.CharField(max_length=300, blank=True)
    rejection_reason = models.CharField(max_length=300, blank=True)
    # Money: refunds requested and not failed (kept by the services for cheap lists).
    refund_amount = models.DecimalField(**MONEY, default=Decimal(0))
    # Exchange: the linked order, the credit the returned goods give it, whether it ships first.
    exchange_order = models.OneToOneField(
        "orders.Order", null=True, blank=True, on_delete=models.PROTECT, related_name="exchange_for"
    )
    exchange_credit = models.DecimalField(**MONEY, default=Decimal(0))
    exchange_credit_applied = models.DecimalField(**MONEY, default=Decimal(0))
    advance_exchange = models.BooleanField(default=False)
    # Return label (mail returns), from the carrier adapter.
    label_status = models.CharField(max_length=12, choices=LabelStatus.choices, default=LabelStatus.NONE)
    label_carrier = models.CharField(max_length=50, blank=True)
    label_service = models.CharField(max_length=50, blank=True)
    label_tracking_number = models.CharField(max_length=100, blank=True, db_index=True)
    label_format = models.CharField(max_length=8, blank=True)
    label_data = models.TextField(blank=True, help_text="The label document, base64.")
    label_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["status", "created_at"])]
        permissions = [
            ("override_return_window", "Can authorise a return after its window closed"),
            ("override_refund", "Can override a computed refund"),
        ]

    def __str__(self) -> str:
        return self.number

    # Transitions change state in memory; services lock, save, write the timeline and outbox.

    @transition(field=status, source=ReturnStatus.REQUESTED, target=ReturnStatus.AUTHORISED)
    def authorise(self) -> None:
        """The goods may come back."""

    @transition(field=status, source=ReturnStatus.REQUESTED, target=ReturnStatus.REJECTED)
    def reject(self) -> None:
        """Refused (outside policy, not ours, …)."""

    @transition(
        field=status,
        source=[ReturnStatus.REQUESTED, ReturnStatus.AUTHORISED, ReturnStatus.IN_TRANSIT],
        target=ReturnStatus.CANCELLED,
    )
    def cancel(self) -> None:
        """Nothing came back and nothing will."""

    @transition(field=status, source=ReturnStatus.AUTHORISED, target=ReturnStatus.IN_TRANSIT)
    def ship(self) -> None:
        """The parcel is on its way back (carrier scan)."""

    @transition(field=status, source=RECEIVABLE, target=ReturnStatus.RECEIVED)
    def receive(self) -> None:
        """Some or all units arrived at a location."""

    @transition(field=status, source=ReturnStatus.RECEIVED, target=ReturnStatus.INSPECTED)
    def inspect(self) -> None:
        """Every authorised unit has been received and inspected (or declared missing)."""

    @transition(field=status, source=ReturnStatus.INSPECTED, target=ReturnStatus.REFUNDED)
    def refunded(self) -> None:
        """Every refund for it went through."""

    @transition(field=status, source=[ReturnStatus.RECEIVED, ReturnStatus.INSPECTED], target=ReturnStatus.CLOSED)
    def close(self) -> None:
        """Finished without (further) money: nothing refundable, or what is missing never came."""


class ReturnLine(models.Model):
    """Units of one order line on a return and what became of them."""

    rma = models.ForeignKey(Return, on_delete=models.CASCADE, related_name="lines")
    order_line = models.ForeignKey("orders.OrderLine", on_delete=models.PROTECT, related_name="return_lines")
    quantity = models.PositiveIntegerField(help_text="Units authorised to come back.")
    reason = models.ForeignKey(ReturnReason, on_delete=models.PROTECT, related_name="+")
    note = models.CharField(max_length=300, blank=True)
    # The item came back (sellable or damaged): these count in the order line's quantity_returned.
    quantity_received = models.PositiveIntegerField(default=0)
    # Accounted for without the item coming back (missing from the parcel, a different item).
    quantity_not_returned = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gte=1), name="return_line_quantity_gte_1"),
            models.CheckConstraint(
                condition=Q(quantity__gte=F("quantity_received") + F("quantity_not_returned")),
                name="return_line_accounted_lte_quantity",
            ),
            models.UniqueConstraint(fields=["rma", "order_line"], name="return_line_order_line_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.rma_id}: line {self.order_line_id} × {self.quantity}"

    @property
    def quantity_outstanding(self) -> int:
        """Authorised units not yet accounted for."""
        return self.quantity - self.quantity_received - self.quantity_not_returned


class Condition(models.TextChoices):
    SELLABLE = "sellable", "Sellable"
    DAMAGED = "damaged", "Damaged"
    WRONG_ITEM = "wrong_item", "Wrong item"
    MISSING = "missing", "Missing"


class Disposition(models.TextChoices):
    RESTOCK = "restock", "Restock at the receiving location"
    WRITE_OFF = "write_off", "Write off"
    RETURN_TO_VENDOR = "return_to_vendor", "Return to vendor"
    NONE = "none", "Nothing to dispose of"


class ReturnReceipt(ActorFields):
    """One arrival of (some of) a return's goods at a location, inspected unit by unit."""

    rma = models.ForeignKey(Return, on_delete=models.CASCADE, related_name="receipts")
    location = models.ForeignKey("inventory.Location", on_delete=models.PROTECT, related_name="+")
    # The order's shipping charge, refunded once per order when the policy says so.
    shipping_refund = models.DecimalField(**MONEY, default=Decimal(0))
    refund_breakdown = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"receipt {self.pk} of {self.rma_id} at {self.location_id}"


class ReturnReceiptLine(models.Model):
    receipt = models.ForeignKey(ReturnReceipt, on_delete=models.CASCADE, related_name="lines")
    return_line = models.ForeignKey(ReturnLine, on_delete=models.CASCADE, related_name="receipt_lines")
    quantity = models.PositiveIntegerField()
    condition = models.CharField(max_length=12, choices=Condition.choices)
    disposition = models.CharField(max_length=16, choices=Disposition.choices)
    # What the customer paid for these units, and what policy keeps back from it.
    value = models.DecimalField(**MONEY, default=Decimal(0))
    deduction = models.DecimalField(**MONEY, default=Decimal(0))

    class Meta:
        ordering = ["id"]
        constraints = [models.CheckConstraint(condition=Q(quantity__gte=1), name="receipt_line_quantity_gte_1")]

    def __str__(self) -> str:
        return f"{self.quantity} × line {self.return_line_id}: {self.condition} → {self.disposition}"


# --- Money ----------------------------------------------------------------------------------------


class RefundStatus(models.TextChoices):
    PENDING = "pending", "Pending (sent to the gateway)"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class Refund(FSMModelMixin, ActorFields):
    """Money back to one payment, for a return receipt or an appeasement. Recorded here first,
    sent to the payment gateway by a task (through the outbox) with its idempotency key; the
    payment's refunded amount moves only when the gateway says it went through."""

    order = models.ForeignKey("orders.Order", on_delete=models.PROTECT, related_name="refunds")
    payment = models.ForeignKey("orders.Payment", on_delete=models.PROTECT, related_name="refunds")
    rma = models.ForeignKey(Return, null=True, blank=True, on_delete=models.PROTECT, related_name="refunds")
    receipt = models.ForeignKey(ReturnReceipt, null=True, blank=True, on_delete=models.PROTECT, related_name="refunds")
    appeasement = models.ForeignKey(
        "Appeasement", null=True, blank=True, on_delete=models.PROTECT, related_name="refunds"
    )
    amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3)
    breakdown = models.JSONField(default=dict, blank=True)
    status = FSMField(default=RefundStatus.PENDING, choices=RefundStatus.choices, protected=True)
    idempotency_key = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    gateway_reference = models.CharField(max_length=200, blank=True)
    failure_reason = models.CharField(max_length=300, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    retry_of = models.OneToOneField("self", null=True, blank=True, on_delete=models.PROTECT, related_name="retried_by")
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["payment", "status"])]
        permissions = [("retry_refund", "Can retry a failed refund")]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_gt_0"),
            models.CheckConstraint(
                condition=Q(rma__isnull=False) | Q(appeasement__isnull=False), name="refund_for_return_or_appeasement"
            ),
        ]

    def __str__(self) -> str:
        return f"refund {self.pk}: {self.amount} {self.currency} ({self.status})"

    @transition(field=status, source=RefundStatus.PENDING, target=RefundStatus.SUCCEEDED)
    def succeed(self) -> None:
        """The gateway refunded it."""

    @transition(field=status, source=RefundStatus.PENDING, target=RefundStatus.FAILED)
    def fail(self) -> None:
        """Declined, or the gateway could not be reached after every retry."""


class AppeasementStatus(models.TextChoices):
    PENDING_APPROVAL = "pending_approval", "Waiting for approval"
    ISSUED = "issued", "Issued"
    DECLINED = "declined", "Declined"


class Appeasement(FSMModelMixin, ActorFields):
    """A goodwill refund or store credit without a return. The actor fields say who asked."""

    class Kind(models.TextChoices):
        REFUND = "refund", "Refund to the payment"
        CREDIT = "credit", "Store credit"

    order = models.ForeignKey("orders.Order", on_delete=models.PROTECT, related_name="appeasements")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3)
    reason = models.ForeignKey(AppeasementReason, on_delete=models.PROTECT, related_name="+")
    note = models.CharField(max_length=500, blank=True)
    status = FSMField(default=AppeasementStatus.PENDING_APPROVAL, choices=AppeasementStatus.choices, protected=True)
    decided_by = models.CharField(max_length=200, blank=True, help_text="Who approved or declined it.")
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.CharField(max_length=300, blank=True)
    credit_reference = models.CharField(max_length=20, blank=True, help_text="Store credit code (credits only).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="appeasement_amount_gt_0")]
        permissions = [("approve_appeasement", "Can approve appeasements above the requester's limit")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.amount} {self.currency} on {self.order_id} ({self.status})"

    @transition(field=status, source=AppeasementStatus.PENDING_APPROVAL, target=AppeasementStatus.ISSUED)
    def issue(self) -> None:
        """Approved (or within the requester's limit): the money or credit goes out."""

    @transition(field=status, source=AppeasementStatus.PENDING_APPROVAL, target=AppeasementStatus.DECLINED)
    def decline(self) -> None:
        """Not approved."""
