"""Inventory API: thin views over inventory services and selectors."""

from __future__ import annotations

from django.http import HttpResponse
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from inventory import atp_cache, selectors, services
from inventory.models import Channel, IncomingSupply, Item, Location, Stock, StockMovement
from oms import auth
from oms.actor import Actor
from oms.api.scoping import bound_location_id, check_location, resolve_channel
from oms.errors import DomainError, NotFound, ValidationFailed

from . import serializers as s

READ_WRITE = {"GET": "inventory:read", "POST": "inventory:write"}


def _source(request) -> str:
    key = request.auth
    return f"api_key:{key.pk}" if key is not None else f"user:{request.user.pk}"


def _by_code(model, field: str, values: set[str], label: str, path: str):
    found = {getattr(o, field): o for o in model.objects.filter(**{f"{field}__in": values})}
    missing = sorted(values - found.keys())
    if missing:
        raise ValidationFailed(
            f"Unknown {label}(s): {', '.join(missing[:20])}", fields={path: f"Unknown: {', '.join(missing[:20])}"}
        )
    return found


# --- Network and catalogue --------------------------------------------------------------------


class LocationFilter(filters.FilterSet):
    capability = filters.CharFilter(method="filter_capability")

    class Meta:
        model = Location
        fields = ["type", "active", "country", "region", "city", "accepts_returns"]

    def filter_capability(self, qs, name, value):
        # JSON containment is not portable to SQLite; the network is small, so filter in Python.
        ids = [pk for pk, caps in qs.values_list("pk", "capabilities") if value in (caps or [])]
        return qs.filter(pk__in=ids)


class LocationList(generics.ListCreateAPIView):
    queryset = Location.objects.all()
    serializer_class = s.LocationSerializer
    filterset_class = LocationFilter
    required_scopes = READ_WRITE


class LocationDetail(generics.RetrieveAPIView):
    queryset = Location.objects.all()
    serializer_class = s.LocationSerializer
    lookup_field = "code"
    required_scopes = READ_WRITE


class ItemFilter(filters.FilterSet):
    q = filters.CharFilter(method="search")

    class Meta:
        model = Item
        fields = ["active"]

    def search(self, qs, name, value):
        from django.db.models import Q

        return qs.filter(Q(sku__icontains=value) | Q(name__icontains=value))


class ItemList(generics.ListCreateAPIView):
    queryset = Item.objects.all()
    serializer_class = s.ItemSerializer
    filterset_class = ItemFilter
    required_scopes = READ_WRITE


class ItemDetail(generics.RetrieveAPIView):
    queryset = Item.objects.all()
    serializer_class = s.ItemSerializer
    lookup_field = "sku"
    required_scopes = READ_WRITE


class ChannelList(generics.ListCreateAPIView):
    queryset = Channel.objects.prefetch_related("locations")
    serializer_class = s.ChannelSerializer
    filterset_fields = ["type", "active"]
    required_scopes = READ_WRITE

    def get_queryset(self):
        qs = super().get_queryset()
        key = self.request.auth
        return qs.filter(pk=key.channel_id) if key is not None and key.channel_id else qs


class ChannelDetail(generics.RetrieveAPIView):
    serializer_class = s.ChannelSerializer
    lookup_field = "code"
    required_scopes = READ_WRITE

    def get_queryset(self):
        return ChannelList.get_queryset(self)


# --- Availability --------------------------------------------------------------------------------


def _float_param(request, name: str, lo: float, hi: float) -> float | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ValidationFailed(f"'{name}' must be a number.", fields={name: "Must be a number."}) from None
    if not lo <= value <= hi:
        raise ValidationFailed(f"'{name}' must be between {lo} and {hi}.", fields={name: f"Between {lo} and {hi}."})
    return value


API_KEY_SCHEME = auth.ApiKeyAuthentication.keyword
_json = JSONRenderer()


def _fast_availability(request) -> HttpResponse | None:
    """The storefront read — `?skus=…[&channel=…]` with a valid API key — answered from the ATP
    cache without DRF's request machinery. Anything else (detail, near me, pickup here, a bad
    key, scope or parameter) returns None and goes through AvailabilityView, which gives the
    exact answer or the error envelope. The answer is byte for byte what that view renders."""
    params = request.GET
    if request.method != "GET" or not atp_cache.enabled() or any(k not in ("skus", "channel") for k in params):
        return None
    accept = request.META.get("HTTP_ACCEPT", "")
    if accept and "json" not in accept and "*/*" not in accept:
        return None
    scheme, _, raw = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    key = auth.usable_key(raw.strip()) if scheme == API_KEY_SCHEME else None
    if key is None or not key.has_scope("inventory:read"):
        return None
    skus = list(dict.fromkeys(x.strip() for x in params.get("skus", "").split(",") if x.strip()))
    code = params.get("channel") or (key.channel.code if key.channel_id else "")
    if not skus or len(skus) > 100 or not code:
        return None
    channel = atp_cache.local_channel(code)
    if channel is None:
        channel = Channel.objects.filter(code=code).first()
        if channel is None:
            return None
        atp_cache.remember_channel(channel)
    if key.channel_id and key.channel_id != channel.pk:
        return None
    try:
        data = selectors.cached_channel_availability(channel=channel, skus=skus)
    except DomainError:
        return None
    auth.touch(key)
    request.api_key = key  # for the request log
    return HttpResponse(
        _json.render(data),
        content_type="application/json",
        headers={"Allow": "GET, HEAD, OPTIONS"},
    )


class AvailabilityView(APIView):
    required_scopes = {"GET": "inventory:read"}

    @classmethod
    def as_view(cls, **initkwargs):
        full = super().as_view(**initkwargs)

        def view(request, *args, **kwargs):
            return _fast_availability(request) or full(request, *args, **kwargs)

        view.cls, view.initkwargs, view.csrf_exempt = full.cls, full.initkwargs, True
        return view

    @extend_schema(
        parameters=[
            OpenApiParameter("skus", str, required=True, description="Comma-separated SKUs (≤ 100)."),
            OpenApiParameter("channel", str, description="Channel code (defaults to the key's channel)."),
            OpenApiParameter("detail", str, enum=["locations"]),
            OpenApiParameter("latitude", float),
            OpenApiParameter("longitude", float),
            OpenApiParameter("radius_km", float, description="With latitude/longitude; default 50."),
            OpenApiParameter("location", str, description="Only this location (pickup here)."),
        ],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request):
        params = request.query_params
        skus = [x.strip() for x in params.get("skus", "").split(",") if x.strip()]
        if not skus:
            raise ValidationFailed("'skus' is required.", fields={"skus": "Give one or more SKUs, comma-separated."})
        if len(skus) > 100:
            raise ValidationFailed("At most 100 SKUs per request.", fields={"skus": "At most 100."})
        skus = list(dict.fromkeys(skus))
        channel = resolve_channel(request, params.get("channel"))
        lat = _float_param(request, "latitude", -90, 90)
        lng = _float_param(request, "longitude", -180, 180)
        radius = _float_param(request, "radius_km", 0, 20_000)
        near = None
        if (lat is None) != (lng is None):
            raise ValidationFailed(
                "Give both latitude and longitude.",
                fields={"latitude" if lat is None else "longitude": "Required with the other."},
            )
        if lat is not None:
            near = selectors.Near(lat, lng, radius if radius is not None else 50.0)
        location = None
        if params.get("location"):
            location = Location.objects.filter(code=params["location"]).first()
            if location is None:
                raise ValidationFailed("Unknown location.", fields={"location": "Unknown location."})
            if not channel.locations.filter(pk=location.pk).exists():
                raise ValidationFailed(
                    f"Location {location.code} does not serve channel {channel.code}.",
                    fields={"location": "Not a location of this channel."},
                )
        detail = params.get("detail") == "locations" or near is not None or location is not None
        if not detail:  # what storefronts ask: from the ATP cache (exact when ATP_CACHE_SECONDS = 0)
            return Response(selectors.cached_channel_availability(channel=channel, skus=skus))
        return Response(
            selectors.channel_availability(channel=channel, skus=skus, detail=detail, near=near, location=location)
        )


class AvailabilityBreakdownView(APIView):
    required_scopes = {"GET": "inventory:read"}

    @extend_schema(
        parameters=[OpenApiParameter("sku", str, required=True), OpenApiParameter("channel", str)],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request):
        sku = request.query_params.get("sku", "").strip()
        if not sku:
            raise ValidationFailed("'sku' is required.", fields={"sku": "This field is required."})
        channel = resolve_channel(request, request.query_params.get("channel"))
        return Response(selectors.availability_breakdown(channel=channel, sku=sku))


# --- Stock writes --------------------------------------------------------------------------------


class AdjustmentsView(APIView):
    required_scopes = {"POST": "inventory:write"}

    @extend_schema(request=s.AdjustmentBatchSerializer, responses=OpenApiTypes.OBJECT)
    def post(self, request):
        ser = s.AdjustmentBatchSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        rows = ser.validated_data["adjustments"]
        locations = _by_code(Location, "code", {r["location"] for r in rows}, "location", "adjustments.location")
        items = _by_code(Item, "sku", {r["sku"] for r in rows}, "SKU", "adjustments.sku")
        for index, row in enumerate(rows):
            check_location(request, locations[row["location"]], field=f"adjustments[{index}].location")
        adjustments = [
            services.Adjustment(
                location=locations[r["location"]],
                item=items[r["sku"]],
                reason="count" if "on_hand" in r and r["reason"] == "adjustment" else r["reason"],
                reference=r["reference"],
                delta=r.get("delta"),
                on_hand=r.get("on_hand"),
            )
            for r in rows
        ]
        result = services.stock_adjust(
            adjustments=adjustments, actor=Actor.from_request(request), source=_source(request)
        )
        loc_code = {loc.pk: loc.code for loc in locations.values()}
        sku_of = {item.pk: item.sku for item in items.values()}
        return Response(
            {
                "applied": len(result.applied),
                "duplicates": len(result.duplicates),
                "unchanged": len(result.unchanged),
                "movements": [
                    {
                        "id": m.pk,
                        "location": loc_code[m.location_id],
                        "sku": sku_of[m.item_id],
                        "delta_on_hand": m.delta_on_hand,
                        "on_hand": m.on_hand_after,
                        "reserved": m.reserved_after,
                        "reference": m.reference,
                    }
                    for m in result.applied
                ],
            },
            status=status.HTTP_200_OK,
        )


MAX_SNAPSHOT_ROWS = 100_000


def _parse_snapshot_rows(data) -> tuple[dict[str, tuple[int, int | None]], bool, str]:
    """Hand-rolled validation: a serializer per row is far too slow for 50,000 rows."""
    if not isinstance(data, dict):
        raise ValidationFailed("Body must be an object with 'rows'.", fields={"rows": "Required."})
    rows = data.get("rows")
    if not isinstance(rows, list) or not rows:
        raise ValidationFailed("'rows' must be a non-empty list.", fields={"rows": "A non-empty list is required."})
    if len(rows) > MAX_SNAPSHOT_ROWS:
        raise ValidationFailed(f"At most {MAX_SNAPSHOT_ROWS} rows.", fields={"rows": f"At most {MAX_SNAPSHOT_ROWS}."})
    full = data.get("full", True)
    if not isinstance(full, bool):
        raise ValidationFailed("'full' must be true or false.", fields={"full": "Must be a boolean."})
    reference = data.get("reference", "")
    if not isinstance(reference, str) or len(reference) > 150:
        raise ValidationFailed(
            "'reference' must be a string of at most 150 characters.", fields={"reference": "Invalid."}
        )
    counts: dict[str, tuple[int, int | None]] = {}
    errors: dict[str, str] = {}
    top = s.MAX_QUANTITY
    # Checks inlined (no helper call per row): this loop runs 50,000 times per request.
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            errors[f"rows[{i}]"] = "Must be an object."
        else:
            sku, on_hand, safety = row.get("sku"), row.get("on_hand"), row.get("safety_stock")
            if not isinstance(sku, str) or not sku or len(sku) > 64 or "\x00" in sku:
                errors[f"rows[{i}].sku"] = "A SKU string is required."
            elif type(on_hand) is not int or not 0 <= on_hand <= top:
                errors[f"rows[{i}].on_hand"] = f"A whole number from 0 to {top} is required."
            elif safety is not None and (type(safety) is not int or not 0 <= safety <= top):
                errors[f"rows[{i}].safety_stock"] = f"A whole number from 0 to {top}."
            elif sku in counts:
                errors[f"rows[{i}].sku"] = f"Duplicate SKU {sku}."
            else:
                counts[sku] = (on_hand, safety)
                continue
        if len(errors) >= 20:
            break
    if errors:
        raise ValidationFailed(f"{next(iter(errors))}: {next(iter(errors.values()))}", fields=errors)
    return counts, full, reference


class SnapshotView(APIView):
    required_scopes = {"PUT": "inventory:write"}

    @extend_schema(
        request={
            "application/json": {
                "type": "object",
                "properties": {
                    "rows": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "sku": {"type": "string"},
                                "on_hand": {"type": "integer"},
                                "safety_stock": {"type": "integer"},
                            },
                        },
                    },
                    "full": {"type": "boolean", "description": "SKUs not listed are counted as zero (default true)."},
                    "reference": {"type": "string"},
                },
            }
        },
        responses=OpenApiTypes.OBJECT,
    )
    def put(self, request, code: str):
        location = Location.objects.filter(code=code).first()
        if location is None:
            raise NotFound(f"Unknown location '{code}'.")
        check_location(request, location)
        # The body (50,000 rows: 2 MB of JSON) is parsed and checked inside the service, while
        # PostgreSQL locks the location's rows; a bad body still changes nothing.
        result = services.stock_snapshot(
            location=location,
            actor=Actor.from_request(request),
            read=lambda: services.SnapshotCount(*_parse_snapshot_rows(request.data)),
        )
        return Response(
            {
                "location": location.code,
                "rows": result.rows,
                "changed": result.changed,
                "created": result.created,
                "zeroed": result.zeroed,
            }
        )


class StockList(generics.ListAPIView):
    serializer_class = s.StockSerializer
    required_scopes = {"GET": "inventory:read"}

    def get_queryset(self):
        qs = Stock.objects.select_related("location", "item").order_by("location__code", "item__sku")
        params = self.request.query_params
        if params.get("location"):
            qs = qs.filter(location__code=params["location"])
        if params.get("sku"):
            qs = qs.filter(item__sku=params["sku"])
        loc = bound_location_id(self.request)
        return qs.filter(location_id=loc) if loc else qs


class MovementList(generics.ListAPIView):
    serializer_class = s.MovementSerializer
    required_scopes = {"GET": "inventory:read"}

    def get_queryset(self):
        qs = StockMovement.objects.select_related("location", "item").order_by("-id")
        params = self.request.query_params
        if params.get("location"):
            qs = qs.filter(location__code=params["location"])
        if params.get("sku"):
            qs = qs.filter(item__sku=params["sku"])
        if params.get("reference"):
            qs = qs.filter(reference=params["reference"])
        loc = bound_location_id(self.request)
        return qs.filter(location_id=loc) if loc else qs


class SupplyView(generics.ListAPIView):
    serializer_class = s.SupplySerializer
    required_scopes = READ_WRITE
    filterset_fields = ["status", "reference"]

    def get_queryset(self):
        qs = IncomingSupply.objects.select_related("location", "item")
        params = self.request.query_params
        if params.get("location"):
            qs = qs.filter(location__code=params["location"])
        if params.get("sku"):
            qs = qs.filter(item__sku=params["sku"])
        loc = bound_location_id(self.request)
        return qs.filter(location_id=loc) if loc else qs

    @extend_schema(request=s.SupplyBatchSerializer, responses=s.SupplySerializer(many=True))
    def post(self, request):
        ser = s.SupplyBatchSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        rows = ser.validated_data["supply"]
        locations = _by_code(Location, "code", {r["location"] for r in rows}, "location", "supply.location")
        items = _by_code(Item, "sku", {r["sku"] for r in rows}, "SKU", "supply.sku")
        for index, row in enumerate(rows):
            check_location(request, locations[row["location"]], field=f"supply[{index}].location")
        supply = services.supply_upsert(
            lines=[
                services.SupplyLine(
                    location=locations[r["location"]],
                    item=items[r["sku"]],
                    quantity=r["quantity"],
                    expected_date=r["expected_date"],
                    reference=r["reference"],
                )
                for r in rows
            ]
        )
        return Response(s.SupplySerializer(supply, many=True).data, status=status.HTTP_201_CREATED)


class SupplyReceiveView(APIView):
    required_scopes = {"POST": "inventory:write"}

    @extend_schema(request=s.ReceiveInSerializer, responses=s.SupplySerializer)
    def post(self, request, pk: int):
        supply = IncomingSupply.objects.select_related("location").filter(pk=pk).first()
        if supply is None:
            raise NotFound("No such incoming supply.")
        check_location(request, supply.location)
        ser = s.ReceiveInSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        supply = services.supply_receive(
            supply_id=supply.pk, quantity=ser.validated_data["quantity"], actor=Actor.from_request(request)
        )
        return Response(s.SupplySerializer(supply).data)


# --- Cart reservations ---------------------------------------------------------------------------


class ReservationsView(APIView):
    required_scopes = {"POST": "inventory:write"}

    @extend_schema(request=s.ReservationInSerializer, responses=s.ReservationSerializer)
    def post(self, request):
        ser = s.ReservationInSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        data = ser.validated_data
        channel = resolve_channel(request, data.get("channel"))
        items = _by_code(Item, "sku", {line["sku"] for line in data["lines"]}, "SKU", "lines.sku")
        wanted: dict[int, int] = {}
        for line in data["lines"]:
            item = items[line["sku"]]
            if not item.active:
                raise ValidationFailed(f"SKU {item.sku} is not sold.", fields={"lines.sku": f"{item.sku} is inactive."})
            wanted[item.pk] = wanted.get(item.pk, 0) + line["quantity"]
        reservation, created = services.cart_reservation_put(
            channel=channel,
            key=data["key"],
            lines=wanted,
            ttl_seconds=data["ttl_seconds"],
            actor=Actor.from_request(request),
        )
        return Response(
            s.ReservationSerializer(reservation).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class ReservationDetailView(APIView):
    required_scopes = {"GET": "inventory:read", "DELETE": "inventory:write"}

    def _channel(self, request):
        return resolve_channel(request, request.query_params.get("channel"))

    @extend_schema(parameters=[OpenApiParameter("channel", str)], responses=s.ReservationSerializer)
    def get(self, request, key: str):
        channel = self._channel(request)
        reservation = channel.reservations.filter(key=key).first()
        if reservation is None:
            raise NotFound(f"No reservation '{key}' in channel {channel.code}.")
        return Response(s.ReservationSerializer(reservation).data)

    @extend_schema(parameters=[OpenApiParameter("channel", str)], responses=s.ReservationSerializer)
    def delete(self, request, key: str):
        reservation = services.cart_reservation_release(
            channel=self._channel(request), key=key, actor=Actor.from_request(request)
        )
        return Response(s.ReservationSerializer(reservation).data)
