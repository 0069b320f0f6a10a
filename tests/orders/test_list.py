from datetime import timedelta

import pytest
from django.utils import timezone

from orders.models import Order
from tests.factories import stock

# These tests look at capture and the order lifecycle alone; routing has its own tests.
pytestmark = pytest.mark.usefixtures("no_routing")


def numbers(response):
    return [o["number"] for o in response.json()["results"]]


def test_list_filters_search_and_cursor_pages(api, capture, stocked):
    stock(stocked["dc2"], stocked["item"], 100)
    a = capture()
    b = capture(
        external_id="W-2", customer={"email": "grace@example.com", "name": "Grace Hopper", "phone": "212-555-0199"}
    )
    c = capture(external_id="W-3", customer={"email": "alan@example.com", "name": "Alan Turing"})
    api.post(f"/api/v1/orders/{c['number']}/cancel/", {"reason": "x"}, format="json")
    assert numbers(api.get("/api/v1/orders/")) == [c["number"], b["number"], a["number"]]
    assert numbers(api.get("/api/v1/orders/?status=cancelled")) == [c["number"]]
    assert numbers(api.get("/api/v1/orders/?status=received,cancelled")) == [c["number"], b["number"], a["number"]]
    assert numbers(api.get("/api/v1/orders/?email=GRACE@example.com")) == [b["number"]]
    assert numbers(api.get("/api/v1/orders/?channel=market")) == []
    assert numbers(api.get(f"/api/v1/orders/?q={a['number'].lower()}")) == [a["number"]]
    assert numbers(api.get("/api/v1/orders/?q=W-2")) == [b["number"]]
    assert numbers(api.get("/api/v1/orders/?q=hopper")) == [b["number"]]
    assert numbers(api.get("/api/v1/orders/?q=(212) 555-0199")) == [b["number"]]
    assert numbers(api.get("/api/v1/orders/?q=ada.lovelace@example.com")) == [a["number"]]
    Order.objects.filter(number=a["number"]).update(created_at=timezone.now() - timedelta(days=3))
    since = (timezone.now() - timedelta(days=1)).isoformat()
    assert a["number"] not in numbers(api.get("/api/v1/orders/", {"created_after": since}))
    assert numbers(api.get("/api/v1/orders/", {"created_before": since})) == [a["number"]]
    page = api.get("/api/v1/orders/?page_size=2").json()
    assert len(page["results"]) == 2 and page["next"]
    rest = api.get(page["next"]).json()
    assert [o["number"] for o in rest["results"]] == [a["number"]]
    r = api.get("/api/v1/orders/?created_after=yesterday")
    assert r.status_code == 400 and r.json()["error"]["fields"] == {"created_after": "Invalid timestamp."}


def test_list_and_detail_query_counts(api, capture, stocked, django_assert_max_num_queries):
    stock(stocked["dc2"], stocked["item"], 100)
    stock(stocked["dc2"], stocked["other"], 100)
    for i in range(10):
        capture(external_id=f"W-{i}")
    with django_assert_max_num_queries(4):
        assert len(api.get("/api/v1/orders/").json()["results"]) == 10
    number = Order.objects.first().number
    with django_assert_max_num_queries(10):  # one per prefetched relation, returns included
        api.get(f"/api/v1/orders/{number}/")
