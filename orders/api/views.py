"""Orders API: one view per operation; validation in serializers, work in services."""

from __future__ import annotations

from django.db.models import Prefetch, Q
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from oms.actor import Actor
from oms.api.scoping import bound_channel_id, resolve_channel
from oms.errors import NotFound, ValidationFailed
from oms.idempotency import idempotent
from orders import services
from orders.models import Allocation, Customer, Fulfillment, Order, OrderHold, OrderLine

from . import serializers as s

READ, WRITE = "orders:read", "orders:write"


def order_queryset(request):
    qs = Order.objects.select_related("channel", "customer", "pickup_location")
    channel_id = bound_channel_id(request)
    return qs.filter(channel_id=channel_id) if channel_id else qs


def order_detail_queryset(request):
    return order_queryset(request).prefetch_related(
        Prefetch(
            "lines",
            OrderLine.objects.prefetch_related(Prefetch("allocations", Allocation.objects.select_related("location"))),
        ),
        "payments",
        Prefetch("holds", OrderHold.objects.filter(released_at__isnull=True)),
        "events",
        Prefetch(
            "fulfillments",
            Fulfillment.objects.select_related("location", "transfer_to").prefetch_related(
                "lines", "shipments__lines__fulfillment_line"
            ),
        ),
        "routing_decisions",
        "returns",
    )


def get_order(request, number: str) -> Order:
    """The order, if the caller may see it (a channel-bound key sees only its channel)."""
    order = order_detail_queryset(request).filter(number=number).first()
    if order is None:
        raise NotFound(f"No order {number}.")
    return order


def order_response(request, number: str, code=status.HTTP_200_OK) -> Response:
    return Response(s.OrderSerializer(get_order(request, number)).data, status=code)


class OrderPagination(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size_query_param = "page_size"
    max_page_size = 200


def _address(data: dict) -> services.AddressInput:
    return services.AddressInput(**data)


class OrderListCreate(generics.ListAPIView):
    serializer_class = s.OrderListSerializer
    pagination_class = OrderPagination
    required_scopes = {"GET": READ, "POST": WRITE}

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, description="One or more, comma-separated."),
            OpenApiParameter("channel", str),
            OpenApiParameter("email", str),
            OpenApiParameter("created_after", str, description="ISO 8601"),
            OpenApiParameter("created_before", str, description="ISO 8601"),
            OpenApiParameter("q", str, description="Number, external id, email, name, phone"),
        ]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        qs = order_queryset(self.request)
        p = self.request.query_params
        if p.get("status"):
            qs = qs.filter(status__in=[x.strip() for x in p["status"].split(",") if x.strip()])
        if p.get("channel"):
            qs = qs.filter(channel__code=p["channel"])
        if p.get("email"):
            qs = qs.filter(customer__email=Customer.normalise_email(p["email"]))
        for name, lookup in (("created_after", "created_at__gte"), ("created_before", "created_at__lt")):
            if p.get(name):
                when = parse_datetime(p[name])
                if when is None:
                    raise ValidationFailed(
                        f"'{name}' must be an ISO 8601 timestamp.", fields={name: "Invalid timestamp."}
                    )
                qs = qs.filter(**{lookup: when})
        if p.get("q"):
            qs = qs.filter(search_q(p["q"]))
        return qs

    @extend_schema(request=s.OrderCreateSerializer, responses={201: s.OrderSerializer})
    @idempotent(atomic=True)  # the claim, the order and its stored answer commit together
    def post(self, request):
        d = s.order_create_fast(request.data)
        if d is None:  # not certainly valid: the serializer decides, with its exact errors
            ser = s.OrderCreateSerializer(data=request.data)
            ser.is_valid(raise_exception=True)
            d = ser.validated_data
        channel = resolve_channel(request, d.get("channel"))
        data = services.CaptureInput(
            channel=channel,
            external_id=d["external_id"],
            customer_email=d["customer"]["email"],
            customer_name=d["customer"]["name"],
            customer_phone=d["customer"]["phone"],
            currency=d["currency"],
            fulfillment_method=d["fulfillment_method"],
            pickup_location=d["pickup_location"],
            shipping_address=_address(d["shipping_address"]) if d["shipping_address"] else None,
            shipping_method=d["shipping_method"],
            lines=[services.LineInput(**line) for line in d["lines"]],
            shipping_total=d["shipping_total"],
            tax_total=d["tax_total"],
            grand_total=d["grand_total"],
            payment=services.PaymentInput(**d["payment"]) if d["payment"] else None,
            ship_complete=d["ship_complete"],
            allow_backorder=d["allow_backorder"],
            reservation_key=d["reservation_key"],
            promised_ship_date=d["promised_ship_date"],
            promised_delivery_date=d["promised_delivery_date"],
        )
        order = services.order_capture(data=data, actor=Actor.from_request(request))
        # The order carries what capture wrote: the same answer as GET /orders/{number}/, unread.
        return Response(s.OrderSerializer(order).data, status=status.HTTP_201_CREATED)


def search_q(term: str) -> Q:
    """One box: order number, channel order id, email, name or phone."""
    term = term.strip()
    q = Q(number=term.upper()) | Q(external_id=term) | Q(customer__email=Customer.normalise_email(term))
    digits = Customer.digits(term)
    if len(digits) >= 6:
        q |= Q(customer__phone_digits__endswith=digits[-10:])
    if len(term) >= 3 and not term.isdigit():
        q |= Q(customer__name__icontains=term)
    return q


class OrderDetail(APIView):
    required_scopes = {"GET": READ, "PATCH": WRITE}

    @extend_schema(responses=s.OrderSerializer)
    def get(self, request, number: str):
        return order_response(request, number)

    @extend_schema(request=s.AddressChangeSerializer, responses=s.OrderSerializer)
    def patch(self, request, number: str):
        get_order(request, number)
        ser = s.AddressChangeSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        services.order_change_address(
            order_number=number,
            address=_address(ser.validated_data["shipping_address"]),
            actor=Actor.from_request(request),
        )
        return order_response(request, number)


class _OrderAction(APIView):
    """POST /orders/{number}/<action>/: subclasses give `input_serializer` and `act()`."""

    required_scopes = {"POST": WRITE}
    input_serializer: type

    @idempotent
    def post(self, request, number: str):
        get_order(request, number)  # scope check before anything else
        ser = self.input_serializer(data=request.data)
        ser.is_valid(raise_exception=True)
        self.act(request, number, ser.validated_data)
        return order_response(request, number)


class OrderCancel(_OrderAction):
    input_serializer = s.CancelSerializer

    @extend_schema(request=s.CancelSerializer, responses=s.OrderSerializer)
    def post(self, request, number: str):
        return super().post(request, number)

    def act(self, request, number, data):
        lines = [services.CancelLine(**line) for line in data["lines"]] if "lines" in data else None
        services.order_cancel(
            order_number=number, reason=data["reason"], lines=lines, actor=Actor.from_request(request)
        )


class OrderHoldView(_OrderAction):
    input_serializer = s.HoldSerializer

    @extend_schema(request=s.HoldSerializer, responses=s.OrderSerializer)
    def post(self, request, number: str):
        return super().post(request, number)

    def act(self, request, number, data):
        services.order_hold(
            order_number=number, hold_type=data["type"], reason=data["reason"], actor=Actor.from_request(request)
        )


class OrderRelease(_OrderAction):
    input_serializer = s.ReleaseSerializer

    @extend_schema(request=s.ReleaseSerializer, responses=s.OrderSerializer)
    def post(self, request, number: str):
        return super().post(request, number)

    def act(self, request, number, data):
        services.order_release(
            order_number=number, note=data["note"], hold_types=data.get("types"), actor=Actor.from_request(request)
        )


class OrderNote(_OrderAction):
    input_serializer = s.NoteSerializer

    @extend_schema(request=s.NoteSerializer, responses=s.OrderSerializer)
    def post(self, request, number: str):
        return super().post(request, number)

    def act(self, request, number, data):
        services.order_add_note(order_number=number, text=data["text"], actor=Actor.from_request(request))
