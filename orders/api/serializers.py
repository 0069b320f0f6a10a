from __future__ import annotations

import copy

from rest_framework import serializers

from orders.models import HoldType, Order, OrderEvent, OrderLine, Payment

from . import documents
from .fast_input import compile_fast

MONEY = {"max_digits": 12, "decimal_places": 2}


class AddressSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    line1 = serializers.CharField(max_length=200)
    line2 = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    city = serializers.CharField(max_length=100)
    region = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    postal_code = serializers.CharField(max_length=20)
    country = serializers.RegexField(r"^[A-Za-z]{2}$", error_messages={"invalid": "Use a two-letter ISO country code."})
    latitude = serializers.DecimalField(
        max_digits=9, decimal_places=6, min_value=-90, max_value=90, required=False, allow_null=True, default=None
    )
    longitude = serializers.DecimalField(
        max_digits=9, decimal_places=6, min_value=-180, max_value=180, required=False, allow_null=True, default=None
    )

    def validate(self, attrs):
        if (attrs.get("latitude") is None) != (attrs.get("longitude") is None):
            raise serializers.ValidationError({"latitude": "Give both latitude and longitude, or neither."})
        return attrs


class CustomerInSerializer(serializers.Serializer):
    email = serializers.EmailField(max_length=254)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    phone = serializers.CharField(max_length=40, required=False, allow_blank=True, default="")


class LineInSerializer(serializers.Serializer):
    sku = serializers.CharField(max_length=64)
    quantity = serializers.IntegerField(min_value=1, max_value=10_000)
    unit_price = serializers.DecimalField(**MONEY, min_value=0)
    external_line_id = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    discount_amount = serializers.DecimalField(**MONEY, min_value=0, required=False, default=0)
    tax_amount = serializers.DecimalField(**MONEY, min_value=0, required=False, allow_null=True, default=None)


class PaymentInSerializer(serializers.Serializer):
    method = serializers.CharField(max_length=40)
    reference = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    amount_authorized = serializers.DecimalField(**MONEY, min_value=0)
    amount_captured = serializers.DecimalField(**MONEY, min_value=0, required=False, default=0)


class OrderCreateSerializer(serializers.Serializer):
    channel = serializers.CharField(max_length=32, required=False)
    external_id = serializers.CharField(max_length=100)
    customer = CustomerInSerializer()
    currency = serializers.CharField(max_length=3, min_length=3)
    fulfillment_method = serializers.ChoiceField(choices=Order.Method.choices, default=Order.Method.SHIP)
    pickup_location = serializers.CharField(max_length=32, required=False, allow_blank=True, default="")
    shipping_address = AddressSerializer(required=False, allow_null=True, default=None)
    shipping_method = serializers.CharField(max_length=50, required=False, allow_blank=True, default="")
    lines = LineInSerializer(many=True, allow_empty=False, max_length=500)
    shipping_total = serializers.DecimalField(**MONEY, min_value=0, required=False, default=0)
    tax_total = serializers.DecimalField(**MONEY, min_value=0, required=False, default=0)
    grand_total = serializers.DecimalField(**MONEY, min_value=0, required=False, allow_null=True, default=None)
    payment = PaymentInSerializer(required=False, allow_null=True, default=None)
    ship_complete = serializers.BooleanField(required=False, default=False)
    allow_backorder = serializers.BooleanField(required=False, default=False)
    reservation_key = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    promised_ship_date = serializers.DateField(required=False, allow_null=True, default=None)
    promised_delivery_date = serializers.DateField(required=False, allow_null=True, default=None)


# validated_data without DRF's per-request field copies, for bodies certainly valid (else None:
# run the serializer, for its exact errors). tests/orders/test_fast_input.py proves it equal.
order_create_fast = compile_fast(OrderCreateSerializer)


class CancelLineSerializer(serializers.Serializer):
    line_id = serializers.IntegerField(min_value=1)
    quantity = serializers.IntegerField(min_value=1, max_value=10_000)


class CancelSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=300)
    lines = CancelLineSerializer(many=True, required=False, allow_empty=False, max_length=500)


class HoldSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=HoldType.choices, default=HoldType.MANUAL)
    reason = serializers.CharField(max_length=300)


class ReleaseSerializer(serializers.Serializer):
    note = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")
    types = serializers.ListField(
        child=serializers.ChoiceField(choices=HoldType.choices), required=False, allow_empty=False
    )


class NoteSerializer(serializers.Serializer):
    text = serializers.CharField(max_length=500)


class AddressChangeSerializer(serializers.Serializer):
    shipping_address = AddressSerializer()


# --- Output -----------------------------------------------------------------------------------


class BuiltOnce:
    """A ModelSerializer builds its fields from the model for every instance (a third of the
    order answer's CPU). These output serializers have no per-request fields: build them once
    per class and give each instance copies, as DRF does for declared fields."""

    def get_fields(self):
        cls = type(self)
        built = cls.__dict__.get("_built_fields")
        if built is None:
            built = super().get_fields()
            cls._built_fields = built
        return copy.deepcopy(built)


class LineSerializer(BuiltOnce, serializers.ModelSerializer):
    quantity_backordered = serializers.IntegerField(read_only=True)
    allocations = serializers.SerializerMethodField()

    class Meta:
        model = OrderLine
        fields = [
            "id",
            "sku",
            "external_line_id",
            "quantity",
            "quantity_allocated",
            "quantity_backordered",
            "quantity_shipped",
            "quantity_cancelled",
            "quantity_returned",
            "unit_price",
            "discount_amount",
            "tax_amount",
            "allocations",
        ]

    def get_allocations(self, line) -> list[dict]:
        return documents.allocations_brief(line)

    def to_representation(self, line):
        # The declared fields are the schema; documents.py writes them without DRF's field walk.
        return documents.line_document(line)


class PaymentSerializer(BuiltOnce, serializers.ModelSerializer):
    class Meta:
        model = Payment
        fields = [
            "id",
            "method",
            "reference",
            "status",
            "amount_authorized",
            "amount_captured",
            "amount_voided",
            "amount_refunded",
        ]

    def to_representation(self, payment):
        return documents.payment_document(payment)


class EventSerializer(BuiltOnce, serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_display")

    class Meta:
        model = OrderEvent
        fields = ["id", "type", "message", "data", "actor", "created_at"]

    def to_representation(self, event):
        return documents.event_document(event)


class OrderListSerializer(BuiltOnce, serializers.ModelSerializer):
    channel = serializers.CharField(source="channel.code")
    customer = serializers.SerializerMethodField()

    class Meta:
        model = Order
        fields = [
            "number",
            "channel",
            "external_id",
            "status",
            "customer",
            "currency",
            "grand_total",
            "fulfillment_method",
            "created_at",
            "updated_at",
        ]

    def get_customer(self, order) -> dict:
        c = order.customer
        return {"email": c.email, "name": c.name, "phone": c.phone}

    def to_representation(self, order):
        return documents.order_summary(order)


class OrderSerializer(OrderListSerializer):
    pickup_location = serializers.SerializerMethodField()
    shipping_address = serializers.SerializerMethodField()
    lines = LineSerializer(many=True)
    payments = PaymentSerializer(many=True)
    holds = serializers.SerializerMethodField()
    fulfillments = serializers.SerializerMethodField()
    returns = serializers.SerializerMethodField()
    routing = serializers.SerializerMethodField()
    events = EventSerializer(many=True)

    class Meta(OrderListSerializer.Meta):
        fields = [
            *OrderListSerializer.Meta.fields,
            "pickup_location",
            "shipping_address",
            "shipping_method",
            "subtotal",
            "discount_total",
            "shipping_total",
            "tax_total",
            "ship_complete",
            "allow_backorder",
            "promised_ship_date",
            "promised_delivery_date",
            "lines",
            "payments",
            "holds",
            "fulfillments",
            "returns",
            "routing",
            "events",
        ]

    def get_pickup_location(self, order) -> str | None:
        return order.pickup_location.code if order.pickup_location else None

    def get_shipping_address(self, order) -> dict | None:
        return documents.address_of(order)

    def get_holds(self, order) -> list[dict]:
        return documents.holds_brief(order)

    def get_fulfillments(self, order) -> list[dict]:
        return documents.fulfillments_brief(order)

    def get_returns(self, order) -> list[dict]:
        """The order's returns in brief (`returns` is the returns app's reverse relation;
        GET /api/v1/returns/{id}/ has the rest)."""
        return documents.returns_brief(order)

    def get_routing(self, order) -> dict | None:
        """The latest routing decision and why (`routing_decisions` is routing's reverse relation)."""
        return documents.routing_brief(order)

    def to_representation(self, order):
        return documents.order_document(order)
