from __future__ import annotations

from rest_framework import serializers

from returns.models import (
    Appeasement,
    Condition,
    Disposition,
    Refund,
    Return,
    ReturnLine,
    ReturnReason,
    ReturnReceipt,
)

MONEY = {"max_digits": 12, "decimal_places": 2}


# --- Input ----------------------------------------------------------------------------------------


class ReturnLineInSerializer(serializers.Serializer):
    line_id = serializers.IntegerField(min_value=1, help_text="The order line's id.")
    quantity = serializers.IntegerField(min_value=1, max_value=10_000)
    reason = serializers.CharField(max_length=40, help_text="A return reason code (GET /return-reasons/).")
    note = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")


class ExchangeLineInSerializer(serializers.Serializer):
    sku = serializers.CharField(max_length=64)
    quantity = serializers.IntegerField(min_value=1, max_value=10_000)
    unit_price = serializers.DecimalField(
        **MONEY,
        min_value=0,
        required=False,
        allow_null=True,
        default=None,
        help_text="What the customer pays per unit, tax included. Omit on every line for an even exchange.",
    )


class ExchangePaymentInSerializer(serializers.Serializer):
    method = serializers.CharField(max_length=40)
    reference = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    amount_authorized = serializers.DecimalField(**MONEY, min_value=0)


class ReturnCreateSerializer(serializers.Serializer):
    order = serializers.CharField(max_length=20, help_text="The order number.")
    lines = ReturnLineInSerializer(many=True, allow_empty=False, max_length=500)
    method = serializers.ChoiceField(choices=Return.Method.choices)
    location = serializers.CharField(
        max_length=32,
        required=False,
        allow_blank=True,
        default="",
        help_text="Where the goods will come back (a location that accepts returns). Mail: defaults to a warehouse.",
    )
    note = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    exchange_lines = ExchangeLineInSerializer(many=True, required=False, default=list, max_length=100)
    exchange_payment = ExchangePaymentInSerializer(
        required=False, allow_null=True, default=None, help_text="Authorised price difference of a dearer exchange."
    )
    advance_exchange = serializers.BooleanField(
        required=False, default=False, help_text="Ship the exchange now; the refund waits for the return."
    )
    window_override_reason = serializers.CharField(
        max_length=300,
        required=False,
        allow_blank=True,
        default="",
        help_text="After the return window: a supervisor's reason (people only, not API keys).",
    )


class ReceiveLineInSerializer(serializers.Serializer):
    line_id = serializers.IntegerField(min_value=1, help_text="The order line's id.")
    quantity = serializers.IntegerField(min_value=1, max_value=10_000)
    condition = serializers.ChoiceField(choices=Condition.choices)
    disposition = serializers.ChoiceField(
        choices=Disposition.choices,
        required=False,
        allow_blank=True,
        default="",
        help_text="Default: restock when sellable, write off when damaged.",
    )


class ReceiveSerializer(serializers.Serializer):
    location = serializers.CharField(max_length=32, help_text="The receiving location's code; it must take returns.")
    lines = ReceiveLineInSerializer(many=True, allow_empty=False, max_length=500)
    refund_amount = serializers.DecimalField(
        **MONEY, min_value=0, required=False, allow_null=True, default=None, help_text="Supervisor override."
    )
    override_reason = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=300)


class InTransitSerializer(serializers.Serializer):
    carrier = serializers.CharField(max_length=50, required=False, allow_blank=True, default="")
    tracking_number = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")


class AppeasementCreateSerializer(serializers.Serializer):
    order = serializers.CharField(max_length=20)
    kind = serializers.ChoiceField(choices=Appeasement.Kind.choices)
    amount = serializers.DecimalField(**MONEY, min_value=0)
    reason = serializers.CharField(max_length=40, help_text="An appeasement reason code.")
    note = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    request_approval = serializers.BooleanField(
        required=False, default=False, help_text="Above the caller's limit: wait for a supervisor instead of 403."
    )


# --- Output ---------------------------------------------------------------------------------------


class ReturnLineSerializer(serializers.ModelSerializer):
    line_id = serializers.IntegerField(source="order_line_id")
    sku = serializers.CharField(source="order_line.sku")
    reason = serializers.CharField(source="reason.code")
    quantity_outstanding = serializers.IntegerField()

    class Meta:
        model = ReturnLine
        fields = [
            "id",
            "line_id",
            "sku",
            "quantity",
            "reason",
            "note",
            "quantity_received",
            "quantity_not_returned",
            "quantity_outstanding",
        ]


class ReceiptSerializer(serializers.ModelSerializer):
    location = serializers.CharField(source="location.code")
    received_by = serializers.CharField(source="actor_display")
    lines = serializers.SerializerMethodField()

    class Meta:
        model = ReturnReceipt
        fields = ["id", "location", "received_by", "created_at", "shipping_refund", "lines", "refund_breakdown"]

    def get_lines(self, receipt) -> list[dict]:
        return [
            {
                "line_id": rl.return_line.order_line_id,
                "quantity": rl.quantity,
                "condition": rl.condition,
                "disposition": rl.disposition,
                "value": str(rl.value),
                "deduction": str(rl.deduction),
            }
            for rl in receipt.lines.all()
        ]


class RefundSerializer(serializers.ModelSerializer):
    payment = serializers.SerializerMethodField()

    class Meta:
        model = Refund
        fields = [
            "id",
            "amount",
            "currency",
            "status",
            "payment",
            "gateway_reference",
            "failure_reason",
            "attempts",
            "created_at",
            "completed_at",
        ]

    def get_payment(self, refund) -> dict:
        return {"id": refund.payment_id, "method": refund.payment.method, "reference": refund.payment.reference}


class ReturnListSerializer(serializers.ModelSerializer):
    order = serializers.CharField(source="order.number")
    channel = serializers.CharField(source="order.channel.code")
    location = serializers.SerializerMethodField()

    class Meta:
        model = Return
        fields = ["id", "number", "order", "channel", "status", "method", "location", "refund_amount", "created_at"]

    def get_location(self, rma) -> str | None:
        return rma.location.code if rma.location_id else None


class ReturnSerializer(ReturnListSerializer):
    lines = ReturnLineSerializer(many=True)
    receipts = ReceiptSerializer(many=True)
    refunds = RefundSerializer(many=True)
    exchange = serializers.SerializerMethodField()
    label = serializers.SerializerMethodField()
    window = serializers.SerializerMethodField()
    created_by = serializers.CharField(source="actor_display")

    class Meta(ReturnListSerializer.Meta):
        fields = [
            *ReturnListSerializer.Meta.fields,
            "note",
            "lines",
            "receipts",
            "refunds",
            "exchange",
            "label",
            "window",
            "rejection_reason",
            "created_by",
            "updated_at",
        ]

    def get_exchange(self, rma) -> dict | None:
        if rma.exchange_order_id is None:
            return None
        return {
            "order": rma.exchange_order.number,
            "status": rma.exchange_order.status,
            "charge": str(rma.exchange_order.grand_total),
            "credit": str(rma.exchange_credit),
            "credit_applied": str(rma.exchange_credit_applied),
            "advance": rma.advance_exchange,
        }

    def get_label(self, rma) -> dict:
        return {
            "status": rma.label_status,
            "carrier": rma.label_carrier,
            "service": rma.label_service,
            "tracking_number": rma.label_tracking_number,
            "url": f"/api/v1/returns/{rma.pk}/label/" if rma.label_data else None,
            "error": rma.label_error,
        }

    def get_window(self, rma) -> dict:
        return {
            "days": rma.window_days,
            "overridden_by": rma.window_overridden_by,
            "override_reason": rma.window_override_reason,
        }


class ReasonOutSerializer(serializers.ModelSerializer):
    class Meta:
        model = ReturnReason
        fields = ["code", "name", "merchant_fault"]


class AppeasementSerializer(serializers.ModelSerializer):
    order = serializers.CharField(source="order.number")
    reason = serializers.CharField(source="reason.code")
    requested_by = serializers.CharField(source="actor_display")
    refunds = RefundSerializer(many=True)

    class Meta:
        model = Appeasement
        fields = [
            "id",
            "order",
            "kind",
            "amount",
            "currency",
            "reason",
            "note",
            "status",
            "credit_reference",
            "requested_by",
            "decided_by",
            "decided_at",
            "decision_note",
            "refunds",
            "created_at",
        ]
