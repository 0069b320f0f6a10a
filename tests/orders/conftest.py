import copy

import pytest

from tests.factories import stock

BASE_ORDER = {
    "channel": "web",
    "external_id": "W-1001",
    "customer": {"email": "Ada.Lovelace@Example.com", "name": "Ada Lovelace", "phone": "+1 (212) 555-0147"},
    "currency": "USD",
    "fulfillment_method": "ship",
    "shipping_address": {
        "name": "Ada Lovelace",
        "line1": "12 Analytical Way",
        "city": "New York",
        "region": "NY",
        "postal_code": "10001",
        "country": "US",
        "latitude": "40.7506",
        "longitude": "-73.9972",
    },
    "shipping_method": "standard",
    "lines": [
        {"sku": "A", "quantity": 3, "unit_price": "20.00", "external_line_id": "1"},
        {"sku": "B", "quantity": 1, "unit_price": "10.00", "external_line_id": "2"},
    ],
    "shipping_total": "5.00",
    "tax_total": "7.00",
    "payment": {"method": "card", "reference": "pi_123", "amount_authorized": "82.00"},
}


@pytest.fixture
def order_body():
    def make(**changes):
        body = copy.deepcopy(BASE_ORDER)
        body.update(changes)
        return body

    return make


@pytest.fixture
def stocked(network):
    stock(network["dc1"], network["item"], 5)
    stock(network["dc1"], network["other"], 5)
    stock(network["store"], network["item"], 2)
    return network


@pytest.fixture
def capture(api, order_body, stocked):
    def do(**changes):
        r = api.post("/api/v1/orders/", order_body(**changes), format="json")
        assert r.status_code == 201, r.content
        return r.json()

    return do
