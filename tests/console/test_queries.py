"""Query counts on the console's hot pages: fixed, whatever the number of results, lines,
fulfilments, shipments or timeline entries (no N+1)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from inventory.models import Location
from oms.actor import Actor
from orders import services
from orders.models import Order
from routing.services import route_order
from tests.factories import ItemFactory, LocationFactory, stock

# session, user, permissions (2), roles badge; the form's channel and location lookups and
# dropdowns (4); term lookups: orders, tracking numbers, customers (3); the page's ids, its rows,
# their fulfilments; the count.
SEARCH_MAX_QUERIES = 16
# session, user, permissions (2), roles badge; the order and its lines, allocations, payments,
# holds, events, fulfilments, their lines, shipments, shipment lines, tracking events, decisions,
# returns, their lines, their receipts, receipt lines, refunds, appeasements; location names.
ORDER_PAGE_MAX_QUERIES = 24
ACTOR = Actor.system("test")


@pytest.fixture
def two_dcs(network):
    for sku in "CDEF":
        ItemFactory(sku=sku)
    for loc in ("dc1", "dc2"):
        for sku in "ABCDEF":
            stock(network[loc], ItemFactory(sku=sku), 500)
    return network


def capture(api, order_body, n_lines: int, **changes) -> Order:
    skus = "ABCDEF"[:n_lines]
    body = order_body(
        lines=[{"sku": sku, "quantity": 2, "unit_price": "10.00"} for sku in skus],
        payment={"method": "card", "reference": "pi", "amount_authorized": str(20 * n_lines + 5 + 7)},
        **changes,
    )
    r = api.post("/api/v1/orders/", body, format="json")
    assert r.status_code == 201, r.content
    return Order.objects.get(number=r.json()["number"])


def take_back(order: Order, units: int, received: int = 0) -> None:
    """A return of `units` of the order's first line that still has them to return, `received`
    of them received at DC1 (one sellable, the rest damaged)."""
    from returns.selectors import returnable
    from returns.services import ReceiveLineInput, ReturnInput, ReturnLineInput, return_create, return_receive

    lines = list(order.lines.order_by("id"))
    can = returnable(lines)
    line = next(line for line in lines if can.get(line.pk, 0) >= units)
    rma = return_create(
        data=ReturnInput(order_number=order.number, lines=[ReturnLineInput(line.pk, units, "changed_mind")]),
        actor=ACTOR,
    )
    if received:
        rows = [ReceiveLineInput(line.pk, 1, "sellable")]
        if received > 1:
            rows.append(ReceiveLineInput(line.pk, received - 1, "damaged"))
        return_receive(return_id=rma.pk, location="DC1", lines=rows, actor=ACTOR)


def count_queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        r = client.get(url)
    assert r.status_code == 200, r.content[:500]
    return len(ctx.captured_queries)


def test_search_page_queries_do_not_grow_with_the_results(
    csr, api, order_body, two_dcs, monkeypatch, django_assert_max_num_queries
):
    monkeypatch.setattr("oms.console.selectors.PAGE_SIZE", 5)
    for i in range(6):  # more than a page, so both runs count the results
        capture(api, order_body, 1, external_id=f"S-{i}")
    small = {
        "name": count_queries(csr, "/console/?q=lovelace"),
        "phone": count_queries(csr, "/console/?q=212-555-0147"),
        "filters": count_queries(csr, "/console/?channel=web&sort=oldest"),
    }
    for i in range(6, 30):
        capture(api, order_body, 1, external_id=f"S-{i}")
    for order in Order.objects.all()[:10]:
        route_order(order_number=order.number)  # fulfilments on the results too
    big = {
        "name": count_queries(csr, "/console/?q=lovelace"),
        "phone": count_queries(csr, "/console/?q=212-555-0147"),
        "filters": count_queries(csr, "/console/?channel=web&sort=oldest"),
    }
    assert big == small, (small, big)
    with django_assert_max_num_queries(SEARCH_MAX_QUERIES):
        r = csr.get("/console/?q=lovelace&channel=web&location=DC1")
    assert r.status_code == 200


def test_order_page_queries_do_not_grow_with_lines_fulfilments_and_events(
    csr, api, order_body, two_dcs, network, django_assert_max_num_queries
):
    Location.objects.filter(code="DC1").update(accepts_returns=True)  # returns are received there
    small = capture(api, order_body, 1, external_id="SMALL")
    route_order(order_number=small.number)
    shipped = small.fulfillments.get()
    services.fulfillment_accept(fulfillment_id=shipped.pk, actor=ACTOR)
    services.fulfillment_ship(fulfillment_id=shipped.pk, actor=ACTOR, tracking_number="T0")
    take_back(small, 1, received=1)
    small_count = count_queries(csr, f"/console/orders/{small.number}/")

    # Six lines split over three locations, two shipments, holds, notes, many events and three
    # returns, two of them received (one sellable and one damaged on the last).
    third = LocationFactory(code="DC3", latitude=41.0, longitude=-87.0)
    network["web"].locations.add(third)
    for sku in "EF":
        stock(third, ItemFactory(sku=sku), 500)
    from inventory.models import Stock

    Stock.objects.filter(location__code__in=["DC1", "DC2"], item__sku__in="EF").update(on_hand=0)
    Stock.objects.filter(location__code="DC1", item__sku__in="CD").update(on_hand=0)
    Stock.objects.filter(location__code="DC2", item__sku__in="AB").update(on_hand=0)
    big = capture(api, order_body, 6, external_id="BIG")
    route_order(order_number=big.number)
    fulfillments = list(big.fulfillments.order_by("id"))
    assert len(fulfillments) == 3
    first = fulfillments[0]
    services.fulfillment_accept(fulfillment_id=first.pk, actor=ACTOR)
    line_ids = [fl.line_id for fl in first.lines.all()]
    services.fulfillment_ship(fulfillment_id=first.pk, actor=ACTOR, tracking_number="T1", lines={line_ids[0]: 1})
    services.fulfillment_ship(
        fulfillment_id=first.pk, actor=ACTOR, tracking_number="T2", lines={line_ids[0]: 1, line_ids[1]: 2}
    )
    for i in range(5):
        services.order_add_note(order_number=big.number, text=f"note {i}", actor=ACTOR)
    take_back(big, 1, received=1)
    take_back(big, 1)
    take_back(big, 2, received=2)
    big_count = count_queries(csr, f"/console/orders/{big.number}/")
    assert big_count == small_count, (small_count, big_count)
    with django_assert_max_num_queries(ORDER_PAGE_MAX_QUERIES):
        r = csr.get(f"/console/orders/{big.number}/")
    assert r.content.decode().count("Shipment ") == 2


def test_queue_pages_queries_do_not_grow(csr, api, order_body, two_dcs):
    def hold_one(i):
        order = capture(api, order_body, 2, external_id=f"H-{i}")
        services.order_hold(order_number=order.number, hold_type="manual", reason="r", actor=ACTOR)

    hold_one(0)
    small = count_queries(csr, "/console/queues/holds/")
    for i in range(1, 8):
        hold_one(i)
    assert count_queries(csr, "/console/queues/holds/") == small
