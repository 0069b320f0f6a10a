from __future__ import annotations

from rest_framework import serializers

from inventory.models import Capability, Channel, IncomingSupply, Item, Location, Reservation, Stock, StockMovement

MAX_QUANTITY = 10_000_000


class LocationSerializer(serializers.ModelSerializer):
    capabilities = serializers.ListField(child=serializers.ChoiceField(choices=Capability.choices), required=False)
    latitude = serializers.DecimalField(
        max_digits=9, decimal_places=6, min_value=-90, max_value=90, required=False, allow_null=True
    )
    longitude = serializers.DecimalField(
        max_digits=9, decimal_places=6, min_value=-180, max_value=180, required=False, allow_null=True
    )

    class Meta:
        model = Location
        fields = [
            "code",
            "name",
            "type",
            "address_line1",
            "city",
            "region",
            "postal_code",
            "country",
            "latitude",
            "longitude",
            "capabilities",
            "active",
            "priority",
            "daily_capacity",
            "fulfillment_cost",
            "timezone",
            "cutoff_time",
            "opening_time",
            "processing_hours",
            "accepts_returns",
        ]

    def validate_country(self, value: str) -> str:
        if len(value) != 2 or not value.isalpha():
            raise serializers.ValidationError("Use a two-letter ISO country code.")
        return value.upper()

    def validate_timezone(self, value: str) -> str:
        import zoneinfo

        if value not in zoneinfo.available_timezones():
            raise serializers.ValidationError("Unknown time zone.")
        return value

    def validate(self, attrs):
        opening = attrs.get("opening_time", getattr(self.instance, "opening_time", None))
        cutoff = attrs.get("cutoff_time", getattr(self.instance, "cutoff_time", None))
        if opening and cutoff and opening >= cutoff:
            raise serializers.ValidationError({"cutoff_time": "The cut-off must be later than the opening time."})
        return attrs


class ItemSerializer(serializers.ModelSerializer):
    class Meta:
        model = Item
        fields = ["sku", "name", "active", "weight_grams", "length_mm", "width_mm", "height_mm", "attributes"]


class ChannelSerializer(serializers.ModelSerializer):
    locations = serializers.SlugRelatedField(
        many=True, slug_field="code", queryset=Location.objects.all(), required=False
    )

    class Meta:
        model = Channel
        fields = ["code", "name", "type", "locations", "safety_buffer", "safety_buffer_percent", "active"]


class StockSerializer(serializers.ModelSerializer):
    location = serializers.CharField(source="location.code")
    sku = serializers.CharField(source="item.sku")
    available = serializers.IntegerField(read_only=True)

    class Meta:
        model = Stock
        fields = ["location", "sku", "on_hand", "reserved", "safety_stock", "available", "updated_at"]


class MovementSerializer(serializers.ModelSerializer):
    location = serializers.CharField(source="location.code")
    sku = serializers.CharField(source="item.sku")
    actor = serializers.CharField(source="actor_display")

    class Meta:
        model = StockMovement
        fields = [
            "id",
            "location",
            "sku",
            "delta_on_hand",
            "delta_reserved",
            "on_hand_after",
            "reserved_after",
            "reason",
            "reference",
            "actor",
            "created_at",
        ]


class AdjustmentInSerializer(serializers.Serializer):
    location = serializers.CharField(max_length=32)
    sku = serializers.CharField(max_length=64)
    delta = serializers.IntegerField(required=False, min_value=-MAX_QUANTITY, max_value=MAX_QUANTITY)
    on_hand = serializers.IntegerField(required=False, min_value=0, max_value=MAX_QUANTITY)
    reason = serializers.ChoiceField(
        choices=["adjustment", "count", "receipt", "return", "damage", "shrink"], default="adjustment"
    )
    reference = serializers.CharField(max_length=150, required=False, allow_blank=True, default="")

    def validate(self, attrs):
        has_delta, has_count = "delta" in attrs, "on_hand" in attrs
        if has_delta == has_count:
            raise serializers.ValidationError({"delta": "Give exactly one of 'delta' or 'on_hand'."})
        if has_delta and attrs["delta"] == 0:
            raise serializers.ValidationError({"delta": "A delta of zero changes nothing."})
        return attrs


class AdjustmentBatchSerializer(serializers.Serializer):
    adjustments = AdjustmentInSerializer(many=True, allow_empty=False, max_length=1000)


class SupplyInSerializer(serializers.Serializer):
    location = serializers.CharField(max_length=32)
    sku = serializers.CharField(max_length=64)
    quantity = serializers.IntegerField(min_value=1, max_value=MAX_QUANTITY)
    expected_date = serializers.DateField()
    reference = serializers.CharField(max_length=100)


class SupplyBatchSerializer(serializers.Serializer):
    supply = SupplyInSerializer(many=True, allow_empty=False, max_length=1000)


class SupplySerializer(serializers.ModelSerializer):
    location = serializers.CharField(source="location.code")
    sku = serializers.CharField(source="item.sku")

    class Meta:
        model = IncomingSupply
        fields = ["id", "reference", "location", "sku", "quantity", "quantity_received", "expected_date", "status"]


class ReceiveInSerializer(serializers.Serializer):
    quantity = serializers.IntegerField(min_value=1, max_value=MAX_QUANTITY)


class ReservationLineInSerializer(serializers.Serializer):
    sku = serializers.CharField(max_length=64)
    quantity = serializers.IntegerField(min_value=1, max_value=10_000)


class ReservationInSerializer(serializers.Serializer):
    channel = serializers.CharField(max_length=32, required=False)
    key = serializers.CharField(max_length=100)
    lines = ReservationLineInSerializer(many=True, allow_empty=False, max_length=200)
    ttl_seconds = serializers.IntegerField(min_value=1, max_value=7 * 24 * 3600, default=900)


class ReservationSerializer(serializers.ModelSerializer):
    channel = serializers.CharField(source="channel.code")
    lines = serializers.SerializerMethodField()

    class Meta:
        model = Reservation
        fields = ["key", "channel", "status", "expires_at", "lines"]

    def get_lines(self, obj) -> list[dict]:
        return [
            {"sku": line.item.sku, "location": line.location.code, "quantity": line.quantity}
            for line in obj.lines.select_related("item", "location").order_by("item__sku", "location__code")
        ]
