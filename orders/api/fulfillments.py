"""Fulfilment API for locations, stores and partners: accept, reject, start picking, pack, ship
(with the sender's own tracking number, or a label the OMS buys from a configured carrier),
ready for pickup, picked up (checking the pickup code), deliver. Each action is one service
call; a location-bound key sees and acts on its own location's fulfilments only."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from oms.actor import Actor
from oms.api.scoping import bound_channel_id, bound_location_id
from oms.errors import NotFound
from oms.idempotency import idempotent
from orders import services
from orders.carriers import services as carrier_services
from orders.models import Fulfillment

from .shipments import ShipmentSerializer

SCOPES = {"GET": "orders:read", "POST": "fulfillments:write"}


class FulfillmentSerializer(serializers.ModelSerializer):
    order = serializers.CharField(source="order.number")
    location = serializers.CharField(source="location.code")
    lines = serializers.SerializerMethodField()
    late = serializers.SerializerMethodField()
    shipments = ShipmentSerializer(many=True, read_only=True)

    class Meta:
        model = Fulfillment
        fields = [
            "id",
            "order",
            "location",
            "status",
            "routing_attempt",
            "rejection_reason",
            "due_at",
            "late",
            "ready_at",
            "pickup_expires_at",
            "lines",
            "shipments",
            "created_at",
            "updated_at",
        ]

    def get_late(self, f) -> bool:
        """Flagged late by the SLA check, or past its due time and not yet picked."""
        return f.is_late(timezone.now())

    def get_lines(self, f) -> list[dict]:
        return [
            {
                "line_id": fl.line_id,
                "sku": fl.line.sku,
                "quantity": fl.quantity,
                "quantity_rejected": fl.quantity_rejected,
            }
            for fl in f.lines.all()
        ]


class RejectLineSerializer(serializers.Serializer):
    line_id = serializers.IntegerField(min_value=1)
    quantity = serializers.IntegerField(min_value=1, max_value=10_000)


class RejectSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=300)
    lines = RejectLineSerializer(many=True, required=False, allow_empty=False, max_length=500)


def fulfillment_queryset(request):
    qs = Fulfillment.objects.select_related("order", "location").prefetch_related(
        "lines__line", "shipments__lines__fulfillment_line"
    )
    location_id, channel_id = bound_location_id(request), bound_channel_id(request)
    if location_id:
        qs = qs.filter(location_id=location_id)
    if channel_id:
        qs = qs.filter(order__channel_id=channel_id)
    return qs


def get_fulfillment(request, pk: int) -> Fulfillment:
    fulfillment = fulfillment_queryset(request).filter(pk=pk).first()
    if fulfillment is None:
        raise NotFound(f"No fulfilment {pk}.")
    return fulfillment


class FulfillmentList(generics.ListAPIView):
    serializer_class = FulfillmentSerializer
    required_scopes = SCOPES

    def get_queryset(self):
        qs = fulfillment_queryset(self.request).order_by("-id")
        p = self.request.query_params
        if p.get("location"):
            qs = qs.filter(location__code=p["location"])
        if p.get("status"):
            qs = qs.filter(status__in=p["status"].split(","))
        if p.get("order"):
            qs = qs.filter(order__number=p["order"])
        return qs


class FulfillmentReject(APIView):
    required_scopes = SCOPES

    @extend_schema(request=RejectSerializer, responses=FulfillmentSerializer)
    @idempotent
    def post(self, request, pk: int):
        get_fulfillment(request, pk)
        ser = RejectSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        lines = None
        if "lines" in ser.validated_data:
            lines = {}
            for line in ser.validated_data["lines"]:
                lines[line["line_id"]] = lines.get(line["line_id"], 0) + line["quantity"]
        services.fulfillment_reject(
            fulfillment_id=pk, reason=ser.validated_data["reason"], lines=lines, actor=Actor.from_request(request)
        )
        return Response(FulfillmentSerializer(get_fulfillment(request, pk)).data)


class ShipLineSerializer(serializers.Serializer):
    line_id = serializers.IntegerField(min_value=1)
    quantity = serializers.IntegerField(min_value=1, max_value=10_000)


class ShipSerializer(serializers.Serializer):
    carrier = serializers.CharField(
        max_length=50,
        help_text="Any carrier name with your own tracking_number; a configured carrier's code "
        "(GET /api/v1/carriers/) is tracked by the OMS. Without tracking_number the OMS buys the label.",
    )
    tracking_number = serializers.CharField(
        max_length=100,
        required=False,
        allow_blank=True,
        default="",
        help_text="Your label's tracking number. Leave out to have the OMS buy a label from `carrier`.",
    )
    service = serializers.CharField(max_length=50, required=False, allow_blank=True, default="")
    reference = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    label_format = serializers.ChoiceField(
        choices=carrier_services.LABEL_FORMATS,
        required=False,
        default="pdf",
        help_text="When the OMS buys the label: pdf or zpl (GET /api/v1/shipments/{id}/label/).",
    )
    lines = ShipLineSerializer(many=True, required=False, allow_empty=False, max_length=500)


def _merge_lines(rows) -> dict[int, int] | None:
    if rows is None:
        return None
    merged: dict[int, int] = {}
    for row in rows:
        merged[row["line_id"]] = merged.get(row["line_id"], 0) + row["quantity"]
    return merged


class FulfillmentShip(APIView):
    required_scopes = SCOPES

    @extend_schema(
        request=ShipSerializer,
        responses=FulfillmentSerializer,
        description=(
            "Ship all of the fulfilment or some `lines`. With `tracking_number`: your own label; a `carrier` "
            "that is a configured carrier's code (GET /api/v1/carriers/) is then tracked by the OMS, any other "
            "is recorded as given. Without `tracking_number`: the OMS buys the label from the configured "
            "`carrier` (`service`, `label_format`) and returns it under `shipments[].label_url`. "
            "A repeated `reference` returns the same shipment."
        ),
    )
    @idempotent
    def post(self, request, pk: int):
        get_fulfillment(request, pk)
        ser = ShipSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        d = ser.validated_data
        common = {
            "fulfillment_id": pk,
            "actor": Actor.from_request(request),
            "service": d["service"],
            "reference": d["reference"],
            "lines": _merge_lines(d.get("lines")),
        }
        if d["tracking_number"].strip():
            services.fulfillment_ship(carrier=d["carrier"], tracking_number=d["tracking_number"].strip(), **common)
        else:  # no tracking number: buy the label from the configured carrier
            carrier_services.shipment_buy_label(carrier_code=d["carrier"], label_format=d["label_format"], **common)
        return Response(FulfillmentSerializer(get_fulfillment(request, pk)).data)


def _simple_action(service_name: str):
    """POST /fulfillments/{id}/<action>/ with no body: one service call, the fulfilment back."""

    class Action(APIView):
        required_scopes = SCOPES

        @extend_schema(request=None, responses=FulfillmentSerializer)
        @idempotent
        def post(self, request, pk: int):
            get_fulfillment(request, pk)
            getattr(services, service_name)(fulfillment_id=pk, actor=Actor.from_request(request))
            return Response(FulfillmentSerializer(get_fulfillment(request, pk)).data)

    Action.__name__ = "".join(part.title() for part in service_name.split("_"))
    return Action


class PickedUpSerializer(serializers.Serializer):
    pickup_code = serializers.CharField(
        max_length=20,
        required=False,
        help_text="The code the customer shows. Given: the OMS checks it (a wrong one is a 400 and "
        "changes nothing). Left out: the caller vouches that it checked the customer itself.",
    )


class FulfillmentPickedUp(APIView):
    required_scopes = SCOPES

    @extend_schema(request=PickedUpSerializer, responses=FulfillmentSerializer)
    @idempotent
    def post(self, request, pk: int):
        get_fulfillment(request, pk)
        ser = PickedUpSerializer(data=request.data or {})
        ser.is_valid(raise_exception=True)
        services.fulfillment_picked_up(
            fulfillment_id=pk, actor=Actor.from_request(request), pickup_code=ser.validated_data.get("pickup_code")
        )
        return Response(FulfillmentSerializer(get_fulfillment(request, pk)).data)


FulfillmentAccept = _simple_action("fulfillment_accept")
FulfillmentStartPicking = _simple_action("fulfillment_start_picking")
FulfillmentPack = _simple_action("fulfillment_pack")
FulfillmentReadyForPickup = _simple_action("fulfillment_ready_for_pickup")
FulfillmentDeliver = _simple_action("fulfillment_deliver")
