"""Shipments, labels and carriers: read a shipment and its tracking, download its label, void
or replace a label the OMS bought, list configured carriers, and the inbound carrier tracking
webhook (authenticated by the carrier's signature, not an API key)."""

from __future__ import annotations

import base64

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, permissions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from oms.actor import Actor
from oms.api.scoping import bound_channel_id, bound_location_id
from oms.errors import NotFound
from oms.idempotency import idempotent
from orders.carriers import services as carrier_services
from orders.models import CARRIER_STATUSES, Carrier, Shipment, TrackingEvent

SCOPES = {"GET": "orders:read", "POST": "fulfillments:write"}
LABEL_CONTENT_TYPES = {"pdf": "application/pdf", "zpl": "application/x-zpl"}


class ShipmentLineSerializer(serializers.Serializer):
    line_id = serializers.IntegerField(source="fulfillment_line.line_id")
    quantity = serializers.IntegerField()


class ShipmentSerializer(serializers.ModelSerializer):
    lines = ShipmentLineSerializer(many=True, read_only=True)
    label_url = serializers.SerializerMethodField()

    class Meta:
        model = Shipment
        fields = [
            "id",
            "carrier",
            "service",
            "tracking_number",
            "tracking_status",
            "reference",
            "label_format",
            "label_url",
            "label_cost",
            "label_currency",
            "delivered_at",
            "lines",
            "created_at",
        ]

    def get_label_url(self, shipment) -> str | None:
        return f"/api/v1/shipments/{shipment.pk}/label/" if shipment.has_label else None


class TrackingEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = TrackingEvent
        fields = ["carrier_event_id", "tracking_number", "status", "description", "location", "occurred_at", "source"]


class ShipmentDetailSerializer(ShipmentSerializer):
    fulfillment = serializers.IntegerField(source="fulfillment_id")
    order = serializers.CharField(source="fulfillment.order.number")
    tracking_events = TrackingEventSerializer(many=True, read_only=True)

    class Meta(ShipmentSerializer.Meta):
        fields = [
            *ShipmentSerializer.Meta.fields,
            "fulfillment",
            "order",
            "tracking_checked_at",
            "tracking_error",
            "tracking_events",
        ]


def get_shipment(request, pk: int) -> Shipment:
    """The shipment, if the caller's key may see its fulfilment (location- or channel-bound)."""
    qs = Shipment.objects.select_related("fulfillment__order").prefetch_related(
        "lines__fulfillment_line", "tracking_events"
    )
    location_id, channel_id = bound_location_id(request), bound_channel_id(request)
    if location_id:
        qs = qs.filter(fulfillment__location_id=location_id)
    if channel_id:
        qs = qs.filter(fulfillment__order__channel_id=channel_id)
    shipment = qs.filter(pk=pk).first()
    if shipment is None:
        raise NotFound(f"No shipment {pk}.")
    return shipment


class ShipmentDetail(APIView):
    required_scopes = SCOPES

    @extend_schema(responses=ShipmentDetailSerializer)
    def get(self, request, pk: int):
        return Response(ShipmentDetailSerializer(get_shipment(request, pk)).data)


class ShipmentLabel(APIView):
    required_scopes = SCOPES

    @extend_schema(
        responses={(200, "application/pdf"): OpenApiTypes.BINARY, (200, "application/x-zpl"): OpenApiTypes.BINARY}
    )
    def get(self, request, pk: int):
        """The label document the OMS bought (PDF or ZPL), ready to print."""
        shipment = get_shipment(request, pk)
        if not shipment.has_label:
            raise NotFound(f"Shipment {pk} has no label bought through the OMS.")
        response = HttpResponse(
            base64.b64decode(shipment.label_data),
            content_type=LABEL_CONTENT_TYPES.get(shipment.label_format, "application/octet-stream"),
        )
        response["Content-Disposition"] = f'inline; filename="label-{shipment.tracking_number}.{shipment.label_format}"'
        return response


class ShipmentVoidLabel(APIView):
    required_scopes = SCOPES

    @extend_schema(request=None, responses=ShipmentDetailSerializer)
    @idempotent
    def post(self, request, pk: int):
        """Void a label the OMS bought while its parcel has not moved; then `relabel/` or leave it."""
        get_shipment(request, pk)
        carrier_services.shipment_void_label(shipment_id=pk, actor=Actor.from_request(request))
        return Response(ShipmentDetailSerializer(get_shipment(request, pk)).data)


class RelabelSerializer(serializers.Serializer):
    service = serializers.CharField(max_length=50, required=False, allow_blank=True, default="")
    label_format = serializers.ChoiceField(choices=carrier_services.LABEL_FORMATS, required=False, default="pdf")


class ShipmentRelabel(APIView):
    required_scopes = SCOPES

    @extend_schema(request=RelabelSerializer, responses=ShipmentDetailSerializer)
    @idempotent
    def post(self, request, pk: int):
        """Buy a new label (new tracking number) for a shipment whose label was voided."""
        get_shipment(request, pk)
        ser = RelabelSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        carrier_services.shipment_relabel(shipment_id=pk, actor=Actor.from_request(request), **ser.validated_data)
        return Response(ShipmentDetailSerializer(get_shipment(request, pk)).data)


class CarrierSerializer(serializers.ModelSerializer):
    tracking_webhook_url = serializers.SerializerMethodField()

    class Meta:
        model = Carrier
        fields = ["code", "name", "services", "active", "tracking_webhook_url"]

    def get_tracking_webhook_url(self, carrier) -> str:
        return f"/api/v1/carriers/{carrier.code}/tracking/"


class CarrierList(generics.ListAPIView):
    """Carriers the OMS buys labels from and tracks: use `code` as `carrier` on the ship call."""

    serializer_class = CarrierSerializer
    required_scopes = "orders:read"
    queryset = Carrier.objects.filter(active=True).order_by("code")


class TrackingWebhookEventSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="The carrier's event id; a repeat is ignored.")
    tracking_number = serializers.CharField()
    status = serializers.ChoiceField(choices=CARRIER_STATUSES)
    description = serializers.CharField(required=False)
    location = serializers.CharField(required=False)
    occurred_at = serializers.DateTimeField()


class TrackingWebhookSerializer(serializers.Serializer):
    """Documentation of the body; it is verified and parsed from the raw bytes."""

    events = TrackingWebhookEventSerializer(many=True)


class CarrierTrackingWebhook(APIView):
    """Inbound tracking from a carrier. Signed like our own webhooks, with the carrier's
    webhook secret: `X-Carrier-Signature: t=<unix>,v1=<hex hmac-sha256 of "t.body">`, at most
    CARRIER_WEBHOOK_TOLERANCE_SECONDS old. Events already recorded are ignored (by `id`); an
    exact replay of a delivery is refused with 409."""

    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]

    @extend_schema(
        request=TrackingWebhookSerializer,
        parameters=[OpenApiParameter("X-Carrier-Signature", str, OpenApiParameter.HEADER, required=True)],
        responses={200: OpenApiResponse(description="Counts: received, recorded, duplicates, ignored, unknown")},
        auth=[],
    )
    def post(self, request, code: str):
        answer = carrier_services.tracking_webhook_receive(
            carrier_code=code, body=request.body, signature=request.headers.get("X-Carrier-Signature", "")
        )
        return Response(answer)
