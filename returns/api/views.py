"""Returns API: one view per operation; validation in serializers, work in services.

Scopes: reads need `orders:read`, writes `returns:write`. A channel-bound key sees and acts on
its channel's orders only; a location-bound key (a store, a returns centre) sees returns
expected or received at its location (or at any store) and receives only there."""

from __future__ import annotations

import base64

from django.db.models import Prefetch, Q
from django.http import HttpResponse
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from inventory.models import Location
from oms.actor import Actor
from oms.api.scoping import bound_channel_id, bound_location_id, check_location
from oms.errors import NotFound, ValidationFailed
from oms.idempotency import idempotent
from orders.models import Order
from returns import appeasements, services
from returns.exchanges import ExchangeLineInput
from returns.models import Appeasement, Refund, Return, ReturnReason
from returns.selectors import return_detail_queryset

from . import serializers as s

READ, WRITE = "orders:read", "returns:write"


def return_queryset(request, *, detail: bool = True):
    qs = return_detail_queryset() if detail else Return.objects.select_related("order__channel", "location")
    channel_id, location_id = bound_channel_id(request), bound_location_id(request)
    if channel_id:
        qs = qs.filter(order__channel_id=channel_id)
    if location_id:
        qs = qs.filter(
            Q(location_id=location_id) | Q(location__isnull=True) | Q(receipts__location_id=location_id)
        ).distinct()
    return qs


def get_return(request, ref: str):
    """By id or RMA number, if the caller may see it."""
    qs = return_queryset(request)
    rma = qs.filter(pk=int(ref)).first() if ref.isdigit() else qs.filter(number=ref.upper()).first()
    if rma is None:
        raise NotFound(f"No return {ref}.")
    return rma


def return_response(request, pk: int, code=status.HTTP_200_OK) -> Response:
    return Response(s.ReturnSerializer(get_return(request, str(pk))).data, status=code)


def visible_order(request, number: str) -> Order:
    """The order a write acts on, if the key may touch it (404 otherwise: no existence leak)."""
    qs = Order.objects.filter(number=number)
    channel_id = bound_channel_id(request)
    if channel_id:
        qs = qs.filter(channel_id=channel_id)
    order = qs.first()
    if order is None:
        raise NotFound(f"No order {number}.", fields={"order": "Unknown order."})
    return order


class ReturnListCreate(generics.ListAPIView):
    """List returns (filters below) or create one: `lines` of shipped units of the order, with a
    reason code each; `method` mail (a return label is requested) or store; optional
    `exchange_lines` create a linked exchange order. Quantities are limited to what shipped
    less what is returned or on open returns."""

    serializer_class = s.ReturnListSerializer
    required_scopes = {"GET": READ, "POST": WRITE}

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, description="One or more, comma-separated."),
            OpenApiParameter("order", str, description="Order number."),
            OpenApiParameter("channel", str),
            OpenApiParameter("method", str, enum=["mail", "store"]),
            OpenApiParameter("location", str, description="Expected or received at this location."),
            OpenApiParameter("created_after", str, description="ISO 8601"),
            OpenApiParameter("created_before", str, description="ISO 8601"),
        ]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        qs = return_queryset(self.request, detail=False).order_by("-id")
        p = self.request.query_params
        if p.get("status"):
            qs = qs.filter(status__in=[x.strip() for x in p["status"].split(",") if x.strip()])
        if p.get("order"):
            qs = qs.filter(order__number=p["order"].upper())
        if p.get("channel"):
            qs = qs.filter(order__channel__code=p["channel"])
        if p.get("method"):
            qs = qs.filter(method=p["method"])
        if p.get("location"):
            qs = qs.filter(Q(location__code=p["location"]) | Q(receipts__location__code=p["location"])).distinct()
        for name, lookup in (("created_after", "created_at__gte"), ("created_before", "created_at__lt")):
            if p.get(name):
                when = parse_datetime(p[name])
                if when is None:
                    raise ValidationFailed(
                        f"'{name}' must be an ISO 8601 timestamp.", fields={name: "Invalid timestamp."}
                    )
                qs = qs.filter(**{lookup: when})
        return qs

    @extend_schema(request=s.ReturnCreateSerializer, responses={201: s.ReturnSerializer})
    @idempotent
    def post(self, request):
        ser = s.ReturnCreateSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        d = ser.validated_data
        order = visible_order(request, d["order"].upper())
        payment = d["exchange_payment"]
        data = services.ReturnInput(
            order_number=order.number,
            lines=[services.ReturnLineInput(**line) for line in d["lines"]],
            method=d["method"],
            location=d["location"],
            note=d["note"],
            exchange_lines=[ExchangeLineInput(**line) for line in d["exchange_lines"]],
            exchange_payment=services.PaymentInput(**payment) if payment else None,
            advance_exchange=d["advance_exchange"],
            window_override_reason=d["window_override_reason"],
        )
        rma = services.return_create(data=data, actor=Actor.from_request(request))
        return return_response(request, rma.pk, status.HTTP_201_CREATED)


class ReturnDetail(APIView):
    """A return by id or RMA number: lines, receipts with the refund breakdown, refunds,
    exchange and label."""

    required_scopes = {"GET": READ}

    @extend_schema(responses=s.ReturnSerializer)
    def get(self, request, ref: str):
        return Response(s.ReturnSerializer(get_return(request, ref)).data)


class _ReturnAction(APIView):
    """POST /returns/{id}/<action>/: subclasses give `input_serializer` and `act()`."""

    required_scopes = {"POST": WRITE}
    input_serializer: type | None = None

    @idempotent
    def post(self, request, ref: str):
        rma = get_return(request, ref)  # scope check before anything else
        data = {}
        if self.input_serializer is not None:
            ser = self.input_serializer(data=request.data)
            ser.is_valid(raise_exception=True)
            data = ser.validated_data
        self.act(request, rma, data)
        return return_response(request, rma.pk)

    def act(self, request, rma, data) -> None:
        raise NotImplementedError


class ReturnReceive(_ReturnAction):
    """Goods arrived at a location that takes returns, inspected per unit: `sellable` goods are
    restocked there by default (ledger, backorders re-routed), `damaged` written off; `wrong_item`
    and `missing` are recorded. The refund for what came back is computed under the channel's
    policy, recorded against the payments and sent to the gateway; a held exchange ships."""

    input_serializer = s.ReceiveSerializer

    @extend_schema(request=s.ReceiveSerializer, responses=s.ReturnSerializer)
    def post(self, request, ref: str):
        return super().post(request, ref)

    def act(self, request, rma, data):
        location = Location.objects.filter(code=data["location"]).first()
        if location is not None:
            check_location(request, location)
        services.return_receive(
            return_id=rma.pk,
            location=data["location"],
            lines=[services.ReceiveLineInput(**line) for line in data["lines"]],
            refund_amount=data["refund_amount"],
            override_reason=data["override_reason"],
            actor=Actor.from_request(request),
        )


class ReturnCancel(_ReturnAction):
    """Nothing came back and nothing will (requested, authorised or in transit); an exchange
    order that has not shipped is cancelled and its stock released."""

    input_serializer = s.ReasonSerializer

    @extend_schema(request=s.ReasonSerializer, responses=s.ReturnSerializer)
    def post(self, request, ref: str):
        return super().post(request, ref)

    def act(self, request, rma, data):
        services.return_cancel(return_id=rma.pk, reason=data["reason"], actor=Actor.from_request(request))


class ReturnReject(_ReturnAction):
    """Refuse a requested return (e.g. outside policy), with a reason."""

    input_serializer = s.ReasonSerializer

    @extend_schema(request=s.ReasonSerializer, responses=s.ReturnSerializer)
    def post(self, request, ref: str):
        return super().post(request, ref)

    def act(self, request, rma, data):
        services.return_reject(return_id=rma.pk, reason=data["reason"], actor=Actor.from_request(request))


class ReturnClose(_ReturnAction):
    """Stop waiting for a partly received return (what is still expected is released), or give
    up on a failed refund."""

    input_serializer = s.ReasonSerializer

    @extend_schema(request=s.ReasonSerializer, responses=s.ReturnSerializer)
    def post(self, request, ref: str):
        return super().post(request, ref)

    def act(self, request, rma, data):
        services.return_close(return_id=rma.pk, reason=data["reason"], actor=Actor.from_request(request))


class ReturnAuthorise(_ReturnAction):
    """Authorise a requested return (channels whose policy does not authorise automatically)."""

    @extend_schema(request=None, responses=s.ReturnSerializer)
    def post(self, request, ref: str):
        return super().post(request, ref)

    def act(self, request, rma, data):
        services.return_authorise(return_id=rma.pk, actor=Actor.from_request(request))


class ReturnInTransit(_ReturnAction):
    """The parcel is on its way back (a carrier scan or the customer's drop-off)."""

    input_serializer = s.InTransitSerializer

    @extend_schema(request=s.InTransitSerializer, responses=s.ReturnSerializer)
    def post(self, request, ref: str):
        return super().post(request, ref)

    def act(self, request, rma, data):
        services.return_mark_in_transit(
            return_id=rma.pk,
            carrier=data["carrier"],
            tracking_number=data["tracking_number"],
            actor=Actor.from_request(request),
        )


LABEL_CONTENT_TYPES = {"pdf": "application/pdf", "zpl": "application/x-zpl"}


class ReturnLabel(APIView):
    required_scopes = {"GET": READ}

    @extend_schema(
        responses={(200, "application/pdf"): OpenApiTypes.BINARY, (200, "application/x-zpl"): OpenApiTypes.BINARY}
    )
    def get(self, request, ref: str):
        """The return label to send the customer (PDF or ZPL), once the carrier issued it."""
        rma = get_return(request, ref)
        if not rma.label_data:
            raise NotFound(f"Return {rma.number} has no label ({rma.get_label_status_display().lower()}).")
        response = HttpResponse(
            base64.b64decode(rma.label_data),
            content_type=LABEL_CONTENT_TYPES.get(rma.label_format, "application/octet-stream"),
        )
        response["Content-Disposition"] = f'inline; filename="return-{rma.number}.{rma.label_format}"'
        return response


class ReturnReasonList(generics.ListAPIView):
    """The active return reason codes."""

    serializer_class = s.ReasonOutSerializer
    required_scopes = {"GET": READ}
    pagination_class = None
    queryset = ReturnReason.objects.filter(active=True)


# --- Appeasements ---------------------------------------------------------------------------------


def appeasement_queryset(request):
    qs = Appeasement.objects.select_related("order", "reason").prefetch_related(
        Prefetch("refunds", Refund.objects.select_related("payment"))
    )
    channel_id = bound_channel_id(request)
    return qs.filter(order__channel_id=channel_id) if channel_id else qs


class AppeasementListCreate(generics.ListAPIView):
    """Appeasements: a goodwill refund or store credit on an order, without a return."""

    serializer_class = s.AppeasementSerializer
    required_scopes = {"GET": READ, "POST": WRITE}

    @extend_schema(
        parameters=[OpenApiParameter("order", str), OpenApiParameter("status", str, description="Comma-separated.")]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        qs = appeasement_queryset(self.request).order_by("-id")
        p = self.request.query_params
        if p.get("order"):
            qs = qs.filter(order__number=p["order"].upper())
        if p.get("status"):
            qs = qs.filter(status__in=[x.strip() for x in p["status"].split(",") if x.strip()])
        return qs

    @extend_schema(
        request=s.AppeasementCreateSerializer,
        responses={201: s.AppeasementSerializer, 202: s.AppeasementSerializer},
        description="Issued at once within the caller's limit (201); waiting for approval when "
        "request_approval is set and the amount is above it (202); otherwise 403.",
    )
    @idempotent
    def post(self, request):
        ser = s.AppeasementCreateSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        d = ser.validated_data
        order = visible_order(request, d["order"].upper())
        appeasement = appeasements.appeasement_create(
            order_number=order.number,
            kind=d["kind"],
            amount=d["amount"],
            reason=d["reason"],
            note=d["note"],
            request_approval=d["request_approval"],
            actor=Actor.from_request(request),
        )
        fresh = appeasement_queryset(request).get(pk=appeasement.pk)
        code = status.HTTP_201_CREATED if fresh.status == "issued" else status.HTTP_202_ACCEPTED
        return Response(s.AppeasementSerializer(fresh).data, status=code)
