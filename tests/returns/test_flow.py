"""The whole return: ship → return two of three → receive one sellable, one damaged → restock
one, write one off → refund exactly what was paid for two units under the channel's policy."""

from decimal import Decimal

import pytest

from inventory.models import Stock, StockMovement
from inventory.selectors import ledger_mismatches
from oms.models import OutboxMessage
from orders.models import OrderEvent, OrderLine, Payment
from returns.models import Refund, Return, ReturnReceiptLine
from tests.returns.conftest import line_of

pytestmark = pytest.mark.django_db(transaction=True)  # routing and refunds run after commit


def on_hand(code: str, sku: str) -> tuple[int, int]:
    s = Stock.objects.get(location__code=code, item__sku=sku)
    return s.on_hand, s.reserved


def test_return_two_of_three_restock_one_write_off_one_refund_under_policy(api, shipped, web_policy):
    number = shipped["number"]
    a = line_of(shipped, "A")
    assert on_hand("DC1", "A") == (2, 0)  # 5 − 3 shipped

    r = api.post(
        "/api/v1/returns/",
        {"order": number, "method": "mail", "lines": [{"line_id": a["id"], "quantity": 2, "reason": "changed_mind"}]},
        format="json",
    )
    assert r.status_code == 201, r.content
    rma = r.json()
    assert rma["status"] == "authorised" and rma["order"] == number and rma["location"] == "DC1"
    assert rma["lines"] == [
        {
            "id": rma["lines"][0]["id"],
            "line_id": a["id"],
            "sku": "A",
            "quantity": 2,
            "reason": "changed_mind",
            "note": "",
            "quantity_received": 0,
            "quantity_not_returned": 0,
            "quantity_outstanding": 2,
        }
    ]
    # No carrier adapter on this branch: the return says so instead of inventing a label.
    assert rma["label"]["status"] == "unavailable"

    r = api.post(
        f"/api/v1/returns/{rma['id']}/receive/",
        {
            "location": "DC1",
            "lines": [
                {"line_id": a["id"], "quantity": 1, "condition": "sellable"},
                {"line_id": a["id"], "quantity": 1, "condition": "damaged"},
            ],
        },
        format="json",
    )
    assert r.status_code == 200, r.content
    got = r.json()
    # Line A: 3 × 20.00 + 6.00 tax = 66.00, so each unit was paid 22.00.
    # Sellable, customer's reason: 10% restocking fee (2.20); damaged by the customer: 50% (11.00).
    # Shipping is refunded only for our mistakes. 22.00 − 2.20 + 22.00 − 11.00 = 30.80.
    assert got["status"] == "refunded"
    assert got["refund_amount"] == "30.80"
    [receipt] = got["receipts"]
    assert [(x["condition"], x["disposition"], x["value"], x["deduction"]) for x in receipt["lines"]] == [
        ("sellable", "restock", "22.00", "2.20"),
        ("damaged", "write_off", "22.00", "11.00"),
    ]
    breakdown = receipt["refund_breakdown"]
    assert (breakdown["goods"], breakdown["deductions"], breakdown["shipping"], breakdown["amount"]) == (
        "44.00",
        "13.20",
        "0.00",
        "30.80",
    )
    [refund] = got["refunds"]
    assert refund["status"] == "succeeded" and refund["amount"] == "30.80"
    assert refund["gateway_reference"].startswith("re_sbx_")

    # Money: recorded against the payment through its state machine.
    payment = Payment.objects.get(order__number=number)
    assert (payment.amount_captured, payment.amount_refunded, payment.status) == (
        Decimal("82.00"),
        Decimal("30.80"),
        "partially_refunded",
    )
    # Stock: one unit back on hand at DC1 with a ledger row; the damaged one written off.
    assert on_hand("DC1", "A") == (3, 0)
    movement = StockMovement.objects.filter(reason="return").get()
    assert (movement.location.code, movement.item.sku, movement.delta_on_hand, movement.on_hand_after) == (
        "DC1",
        "A",
        1,
        3,
    )
    assert movement.reference == f"{got['number']}/{receipt['id']}"
    assert ledger_mismatches() == []
    # Counters: the order line shows two returned; the return line both received.
    assert OrderLine.objects.get(pk=a["id"]).quantity_returned == 2
    assert got["lines"][0]["quantity_received"] == 2 and got["lines"][0]["quantity_outstanding"] == 0
    assert sorted(ReturnReceiptLine.objects.values_list("condition", "disposition")) == [
        ("damaged", "write_off"),
        ("sellable", "restock"),
    ]

    order = api.get(f"/api/v1/orders/{number}/").json()
    assert line_of(order, "A")["quantity_returned"] == 2
    assert order["returns"] == [
        {
            "id": got["id"],
            "number": got["number"],
            "status": "refunded",
            "method": "mail",
            "refund_amount": "30.80",
            "created_at": order["returns"][0]["created_at"],
        }
    ]
    types = [e["type"] for e in order["events"]]
    for expected in ("return.created", "return.received", "refund.requested", "payment.refunded", "refund.issued"):
        assert expected in types, types
    assert types[-1] == "return.refunded"
    topics = set(OutboxMessage.objects.filter(kind="event").values_list("topic", flat=True))
    assert {"return.created", "return.received", "refund.issued"} <= topics
    issued = OutboxMessage.objects.get(topic="refund.issued")
    assert issued.payload["channel"] == "web" and issued.payload["refund"]["amount"] == "30.80"

    # The third unit can still come back; a fourth cannot.
    r = api.post(
        "/api/v1/returns/",
        {"order": number, "method": "store", "lines": [{"line_id": a["id"], "quantity": 2, "reason": "defective"}]},
        format="json",
    )
    assert r.status_code == 400 and r.json()["error"]["fields"] == {"lines[0].quantity": "At most 1."}


def test_merchant_fault_refunds_everything_paid_and_shipping_once(api, shipped, web_policy):
    """Our mistake: no fees, and the shipping charge comes back (once per order). The last
    unit of a line is worth exactly what is left of the line's total."""
    number = shipped["number"]
    a, b = line_of(shipped, "A"), line_of(shipped, "B")
    r = api.post(
        "/api/v1/returns/",
        {
            "order": number,
            "method": "store",
            "lines": [
                {"line_id": a["id"], "quantity": 3, "reason": "defective"},
                {"line_id": b["id"], "quantity": 1, "reason": "defective"},
            ],
        },
        format="json",
    )
    assert r.status_code == 201, r.content
    rma = r.json()
    assert rma["location"] is None and rma["label"]["status"] == "none"  # any store, no label
    r = api.post(
        f"/api/v1/returns/{rma['number']}/receive/",
        {
            "location": "STORE1",
            "lines": [
                {"line_id": a["id"], "quantity": 3, "condition": "damaged", "disposition": "return_to_vendor"},
                {"line_id": b["id"], "quantity": 1, "condition": "sellable"},
            ],
        },
        format="json",
    )
    assert r.status_code == 200, r.content
    got = r.json()
    # A: 66.00, B: 10.00 + 1.00 tax, shipping 5.00 → the whole 82.00 captured.
    assert got["refund_amount"] == "82.00" and got["status"] == "refunded"
    assert got["receipts"][0]["shipping_refund"] == "5.00"
    payment = Payment.objects.get(order__number=number)
    assert (payment.amount_refunded, payment.status) == (Decimal("82.00"), "refunded")
    assert on_hand("STORE1", "B") == (1, 0)  # restocked where it was received
    assert not StockMovement.objects.filter(reason="return", item__sku="A").exists()  # back to the vendor
    assert ledger_mismatches() == []


def test_partial_receipts_missing_units_and_close(api, shipped, web_policy):
    """Two receipts: the first leaves the return `received`; a unit declared missing is not
    refunded and may be returned again; a wrong item is recorded without stock or money."""
    number = shipped["number"]
    a = line_of(shipped, "A")
    rma = api.post(
        "/api/v1/returns/",
        {"order": number, "method": "mail", "lines": [{"line_id": a["id"], "quantity": 3, "reason": "wrong_size"}]},
        format="json",
    ).json()
    url = f"/api/v1/returns/{rma['id']}/receive/"
    first = api.post(
        url, {"location": "DC1", "lines": [{"line_id": a["id"], "quantity": 1, "condition": "sellable"}]}, format="json"
    ).json()
    assert first["status"] == "received" and first["refund_amount"] == "19.80"  # 22.00 less 10%
    assert first["lines"][0]["quantity_outstanding"] == 2
    second = api.post(
        url,
        {
            "location": "DC1",
            "lines": [
                {"line_id": a["id"], "quantity": 1, "condition": "wrong_item"},
                {"line_id": a["id"], "quantity": 1, "condition": "missing"},
            ],
        },
        format="json",
    ).json()
    assert second["status"] == "refunded" and second["refund_amount"] == "19.80"
    assert second["lines"][0]["quantity_not_returned"] == 2
    assert OrderLine.objects.get(pk=a["id"]).quantity_returned == 1
    assert on_hand("DC1", "A") == (3, 0)
    # The two units that did not come back can be returned again.
    again = api.post(
        "/api/v1/returns/",
        {"order": number, "method": "mail", "lines": [{"line_id": a["id"], "quantity": 2, "reason": "wrong_size"}]},
        format="json",
    )
    assert again.status_code == 201
    # A return with units still expected can be closed; they are released.
    third = again.json()
    api.post(
        f"/api/v1/returns/{third['id']}/receive/",
        {"location": "DC1", "lines": [{"line_id": a["id"], "quantity": 1, "condition": "sellable"}]},
        format="json",
    )
    closed = api.post(f"/api/v1/returns/{third['id']}/close/", {"reason": "customer kept one"}, format="json")
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    assert Return.objects.get(pk=third["id"]).refund_amount == Decimal("19.80")
    assert Refund.objects.filter(status="succeeded").count() == 2
    assert (
        api.post(
            "/api/v1/returns/",
            {"order": number, "method": "mail", "lines": [{"line_id": a["id"], "quantity": 1, "reason": "wrong_size"}]},
            format="json",
        ).status_code
        == 201
    )


def test_nothing_refundable_closes_the_return(api, shipped, web_policy):
    number = shipped["number"]
    b = line_of(shipped, "B")
    rma = api.post(
        "/api/v1/returns/",
        {"order": number, "method": "mail", "lines": [{"line_id": b["id"], "quantity": 1, "reason": "changed_mind"}]},
        format="json",
    ).json()
    r = api.post(
        f"/api/v1/returns/{rma['id']}/receive/",
        {"location": "DC1", "lines": [{"line_id": b["id"], "quantity": 1, "condition": "missing"}]},
        format="json",
    )
    assert r.json()["status"] == "closed" and r.json()["refunds"] == []
    assert OrderEvent.objects.filter(type="return.closed").exists()


def test_restock_releases_backorders_waiting_for_the_sku(api, shipped, order_body, web_policy):
    """On hand rises through the inventory services, so an order backordered for that SKU is
    routed to the returned unit."""
    from inventory.models import Stock as S

    S.objects.filter(item__sku="A").update(on_hand=0, reserved=0)  # nothing left anywhere
    StockMovement.objects.all().delete()  # (the test rewrote the counters by hand)
    waiting = api.post(
        "/api/v1/orders/",
        order_body(
            external_id="W-2",
            lines=[{"sku": "A", "quantity": 1, "unit_price": "20.00"}],
            payment=None,
            tax_total="0",
            shipping_total="0",
            allow_backorder=True,
        ),
        format="json",
    ).json()
    assert waiting["status"] == "backordered"
    a = line_of(shipped, "A")
    rma = api.post(
        "/api/v1/returns/",
        {
            "order": shipped["number"],
            "method": "mail",
            "lines": [{"line_id": a["id"], "quantity": 1, "reason": "changed_mind"}],
        },
        format="json",
    ).json()
    api.post(
        f"/api/v1/returns/{rma['id']}/receive/",
        {"location": "DC1", "lines": [{"line_id": a["id"], "quantity": 1, "condition": "sellable"}]},
        format="json",
    )
    assert api.get(f"/api/v1/orders/{waiting['number']}/").json()["status"] == "allocated"
    assert on_hand("DC1", "A") == (1, 1)


def test_list_filters_and_query_counts(api, shipped, web_policy, django_assert_max_num_queries):
    a, b = line_of(shipped, "A"), line_of(shipped, "B")
    made = []
    for line, quantity in ((a, 1), (a, 1), (b, 1)):
        made.append(
            api.post(
                "/api/v1/returns/",
                {
                    "order": shipped["number"],
                    "method": "store",
                    "lines": [{"line_id": line["id"], "quantity": quantity, "reason": "changed_mind"}],
                },
                format="json",
            ).json()
        )
    api.post(f"/api/v1/returns/{made[0]['id']}/cancel/", {"reason": "kept"}, format="json")
    with django_assert_max_num_queries(4):  # key, count, page (no per-row queries)
        listed = api.get("/api/v1/returns/").json()
    assert [r["number"] for r in listed["results"]] == [m["number"] for m in reversed(made)]
    statuses = api.get("/api/v1/returns/?status=authorised").json()["results"]
    assert [r["number"] for r in statuses] == [made[2]["number"], made[1]["number"]]
    assert api.get(f"/api/v1/returns/?order={shipped['number']}&method=mail").json()["count"] == 0
    with django_assert_max_num_queries(8):
        detail = api.get(f"/api/v1/returns/{made[1]['number']}/").json()
    assert detail["id"] == made[1]["id"] and detail["lines"][0]["sku"] == "A"
    reasons = api.get("/api/v1/return-reasons/").json()
    assert {"code": "defective", "name": "Defective or faulty", "merchant_fault": True} in reasons


def test_create_is_idempotent_and_returnable_counts_open_returns(api, shipped, web_policy):
    from returns.selectors import returnable

    a = line_of(shipped, "A")
    body = {"order": shipped["number"], "method": "mail", "lines": [{"line_id": a["id"], "quantity": 2, "reason": "x"}]}
    body["lines"][0]["reason"] = "changed_mind"
    first = api.post("/api/v1/returns/", body, format="json", HTTP_IDEMPOTENCY_KEY="rma-1")
    again = api.post("/api/v1/returns/", body, format="json", HTTP_IDEMPOTENCY_KEY="rma-1")
    assert first.status_code == again.status_code == 201 and first.content == again.content
    assert again["Idempotent-Replayed"] == "true" and Return.objects.count() == 1
    other = api.post("/api/v1/returns/", {**body, "method": "store"}, format="json", HTTP_IDEMPOTENCY_KEY="rma-1")
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_mismatch"
    line = OrderLine.objects.get(pk=a["id"])
    assert returnable([line]) == {line.pk: 1}  # 3 shipped, 2 on the open return
