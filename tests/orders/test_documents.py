"""orders/api/documents.py against DRF's generic rendering of the declared serializers, on
values the flows rarely produce (every flow in the suite is also checked, see conftest)."""

import datetime
from decimal import Decimal

import pytest
from django.utils import timezone

from orders.api import documents
from orders.api.serializers import OrderListSerializer
from orders.api.views import order_detail_queryset
from tests.orders.drf_reference import assert_same_document, reference_document

pytestmark = pytest.mark.usefixtures("no_routing")


class _Request:
    auth = None


def _order(number):
    return order_detail_queryset(_Request()).get(number=number)


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Asia/Kolkata"])
def test_unusual_values_and_time_zones(capture, zone):
    number = capture()["number"]
    order = _order(number)
    order.grand_total = Decimal("1.5")  # not yet quantized
    order.subtotal = 3  # not a Decimal
    order.discount_total = Decimal("-0.004")
    order.tax_total = Decimal("12345.675")  # rounds half even
    order.promised_ship_date = datetime.date(2030, 1, 2)
    order.updated_at = order.updated_at.replace(microsecond=0)
    line = order.lines.all()[0]
    line.tax_amount = None
    with timezone.override(zone):
        assert_same_document(documents.order_document(order), reference_document(order))
        assert_same_document(documents.order_summary(order), reference_document(order, OrderListSerializer))


def test_pickup_order_without_payment(capture):
    number = capture(
        external_id="P-9",
        fulfillment_method="pickup",
        pickup_location="STORE1",
        shipping_address=None,
        payment=None,
        lines=[{"sku": "A", "quantity": 1, "unit_price": "20.00"}],
    )["number"]
    order = _order(number)
    assert documents.order_document(order)["shipping_address"] is None
    assert_same_document(documents.order_document(order), reference_document(order))
