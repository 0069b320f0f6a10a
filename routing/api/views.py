"""Routing simulation: the plan and explanation for an order, without writing anything."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from inventory.models import Item, Location
from oms.api.scoping import bound_channel_id, resolve_channel
from oms.errors import NotFound, ValidationFailed
from orders.api.serializers import AddressSerializer
from orders.models import Order
from routing import engine, selectors, services
from routing.models import ProfileVersion


class SimLineSerializer(serializers.Serializer):
    sku = serializers.CharField(max_length=64)
    quantity = serializers.IntegerField(min_value=1, max_value=10_000)


class SimulateSerializer(serializers.Serializer):
    order = serializers.CharField(max_length=20, required=False, help_text="An existing order number.")
    profile_version = serializers.IntegerField(required=False, min_value=1, help_text="Default: the active version.")
    channel = serializers.CharField(max_length=32, required=False)
    fulfillment_method = serializers.ChoiceField(choices=["ship", "pickup", "curbside"], default="ship")
    pickup_location = serializers.CharField(max_length=32, required=False, allow_blank=True, default="")
    shipping_address = AddressSerializer(required=False, allow_null=True, default=None)
    ship_complete = serializers.BooleanField(default=False)
    lines = SimLineSerializer(many=True, required=False, allow_empty=False, max_length=200)

    def validate(self, attrs):
        if "order" not in attrs and "lines" not in attrs:
            raise serializers.ValidationError({"order": "Give an order number, or lines to simulate."})
        return attrs


class Simulate(APIView):
    required_scopes = {"POST": "orders:read"}

    @extend_schema(request=SimulateSerializer, responses=OpenApiTypes.OBJECT)
    def post(self, request):
        ser = SimulateSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        d = ser.validated_data
        if "order" in d:
            order = Order.objects.select_related("channel", "pickup_location").filter(number=d["order"]).first()
            channel_id = bound_channel_id(request)
            if order is None or (channel_id and order.channel_id != channel_id):
                raise NotFound(f"No order {d['order']}.")
            channel = order.channel
            planned = services.plan_for(order, profile=self._profile(d, channel))
            if planned is None:
                return Response(
                    {"order": order.number, "plan": None, "explanation": {"summary": "Nothing left to route."}}
                )
            plan = planned[0]
        else:
            channel = resolve_channel(request, d.get("channel"))
            plan = services.simulate(channel=channel, order_in=self._order_in(d), profile=self._profile(d, channel))
        codes = dict(Location.objects.filter(pk__in=plan.fulfillments).values_list("pk", "code"))
        return Response(
            {
                "strategy": plan.strategy,
                "fulfillments": [
                    {"location": codes[loc], "lines": [{"line_id": k, "quantity": v} for k, v in lines.items()]}
                    for loc, lines in plan.fulfillments.items()
                ],
                "unsourced": [{"line_id": k, "quantity": v} for k, v in plan.unsourced.items()],
                "explanation": plan.explanation,
            }
        )

    def _profile(self, d, channel) -> engine.ProfileIn:
        if "profile_version" not in d:
            return selectors.active_profile(channel)
        version = ProfileVersion.objects.filter(pk=d["profile_version"]).prefetch_related("strategies").first()
        if version is None:
            raise ValidationFailed("Unknown profile version.", fields={"profile_version": "Not found."})
        return selectors.version_in(version)

    def _order_in(self, d) -> engine.OrderIn:
        items = {i.sku: i for i in Item.objects.filter(sku__in=[line["sku"] for line in d["lines"]])}
        missing = sorted({line["sku"] for line in d["lines"]} - items.keys())
        if missing:
            raise ValidationFailed(f"Unknown SKU(s): {', '.join(missing)}", fields={"lines.sku": "Unknown."})
        pickup_id = None
        if d["pickup_location"]:
            pickup = Location.objects.filter(code=d["pickup_location"]).first()
            if pickup is None:
                raise ValidationFailed("Unknown pickup location.", fields={"pickup_location": "Unknown."})
            pickup_id = pickup.pk
        address = d["shipping_address"] or {}
        return engine.OrderIn(
            lines=tuple(
                engine.LineIn(
                    line_id=index + 1,
                    item_id=items[line["sku"]].pk,
                    sku=line["sku"],
                    quantity=line["quantity"],
                    dropship_vendor_id=items[line["sku"]].dropship_vendor_id,
                )
                for index, line in enumerate(d["lines"])
            ),
            method=d["fulfillment_method"],
            latitude=float(address["latitude"]) if address.get("latitude") is not None else None,
            longitude=float(address["longitude"]) if address.get("longitude") is not None else None,
            country=(address.get("country") or "").upper(),
            region=address.get("region", ""),
            postal_code=address.get("postal_code", ""),
            pickup_location_id=pickup_id,
            ship_complete=d["ship_complete"],
        )


class ReplaySerializer(serializers.Serializer):
    profile_version = serializers.IntegerField(min_value=1)
    days = serializers.IntegerField(min_value=1, max_value=90, default=7)
    limit = serializers.IntegerField(min_value=1, max_value=5000, default=500)


class Replay(APIView):
    """Run a (draft) profile version over recent real orders beside the active version."""

    required_scopes = {"POST": "orders:read"}

    @extend_schema(request=ReplaySerializer, responses=OpenApiTypes.OBJECT)
    def post(self, request):
        ser = ReplaySerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        d = ser.validated_data
        version = ProfileVersion.objects.select_related("profile").filter(pk=d["profile_version"]).first()
        if version is None:
            raise ValidationFailed("Unknown profile version.", fields={"profile_version": "Not found."})
        channel_id = bound_channel_id(request)
        if channel_id and version.profile.channel_id != channel_id:
            raise NotFound("Unknown profile version.")
        return Response(services.replay(version=version, days=d["days"], limit=d["limit"]))
