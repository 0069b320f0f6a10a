"""The order document as DRF's generic machinery renders the declared serializer classes: the
reference that orders/api/documents.py must match exactly (types included).

It walks the declared fields itself (the classes' own `to_representation` now calls
documents.py), so it is thread-safe and needs no patching; the only hand-written part is the
original `get_fulfillments` body, which rendered shipments with DRF's ShipmentSerializer."""

from __future__ import annotations

import datetime
import json
from decimal import Decimal

from django.db.models.manager import BaseManager
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer

from orders.api import serializers as s
from orders.api.shipments import ShipmentSerializer


def original_fulfillments(order) -> list[dict]:
    return [
        {
            "id": f.pk,
            "location": f.location.code,
            "status": f.status,
            "routing_attempt": f.routing_attempt,
            "transfer_to": f.transfer_to.code if f.transfer_to else None,
            "rejection_reason": f.rejection_reason,
            "due_at": f.due_at,
            "late_at": f.late_at,
            "pickup_expires_at": f.pickup_expires_at,
            "lines": [
                {
                    "line_id": fl.line_id,
                    "quantity": fl.quantity,
                    "quantity_rejected": fl.quantity_rejected,
                    "quantity_shipped": fl.quantity_shipped,
                }
                for fl in f.lines.all()
            ],
            "shipments": ShipmentSerializer(f.shipments.all(), many=True).data,
        }
        for f in order.fulfillments.all()
    ]


def drf_render(ser: serializers.Serializer, instance) -> dict:
    """serializers.Serializer.to_representation, recursing the same way into nested ones."""
    ret = {}
    for field in ser._readable_fields:
        try:
            attribute = field.get_attribute(instance)
        except serializers.SkipField:
            continue
        name = field.field_name
        if attribute is None:
            ret[name] = None
        elif isinstance(field, serializers.ListSerializer):
            items = attribute.all() if isinstance(attribute, BaseManager) else attribute
            ret[name] = [drf_render(field.child, item) for item in items]
        elif isinstance(field, serializers.Serializer):
            ret[name] = drf_render(field, attribute)
        elif name == "fulfillments" and isinstance(ser, s.OrderSerializer):
            ret[name] = original_fulfillments(instance)
        else:
            ret[name] = field.to_representation(attribute)
    return ret


def reference_document(order, cls=s.OrderSerializer) -> dict:
    return drf_render(cls(order), order)


def assert_identical(new, old, path="$"):
    """Equal values of the same types (a dict may stand for DRF's ReturnDict, a list for its
    ReturnList), and the same JSON bytes."""
    if isinstance(old, dict):
        assert isinstance(new, dict), path
        assert list(new) == list(old), (path, list(new), list(old))
        for key in old:
            assert_identical(new[key], old[key], f"{path}.{key}")
    elif isinstance(old, list):
        assert isinstance(new, list), path
        assert len(new) == len(old), path
        for i, (a, b) in enumerate(zip(new, old, strict=True)):
            assert_identical(a, b, f"{path}[{i}]")
    else:
        assert type(new) is type(old), (path, type(new), type(old), new, old)
        assert new == old, (path, new, old)
        if isinstance(old, (Decimal, datetime.datetime)):
            assert str(new) == str(old), (path, new, old)


def assert_same_document(new, old):
    assert_identical(new, old)
    assert JSONRenderer().render(new) == JSONRenderer().render(old)
    json.loads(JSONRenderer().render(new))
