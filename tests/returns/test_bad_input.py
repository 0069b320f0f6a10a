"""Bad input and wrong states on the returns API: a clear 4xx in the envelope, nothing changed."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.test import APIClient

from inventory.models import Channel, Location
from oms.actor import Actor
from oms.errors import PermissionDenied, ValidationFailed
from oms.roles import SUPERVISOR, ensure_groups
from orders.models import Fulfillment, Shipment
from returns import services
from returns.models import Return
from tests.returns.conftest import line_of

pytestmark = pytest.mark.django_db(transaction=True)


def assert_error(r, status, code, field=None):
    assert r.status_code == status, r.content
    err = r.json()["error"]
    assert err["code"] == code and err["message"], err
    if field is not None:
        assert field in err["fields"], err["fields"]


@pytest.fixture
def two_orders(api, ship_order, stocked):
    from tests.factories import stock

    stock(stocked["dc1"], stocked["item"], 10)
    stock(stocked["dc1"], stocked["other"], 10)
    first = ship_order()
    second = ship_order(external_id="W-2002")
    return first, second


def body(order, line_id, quantity=1, **extra):
    return {
        "order": order["number"],
        "method": "mail",
        "lines": [{"line_id": line_id, "quantity": quantity, "reason": "changed_mind"}],
        **extra,
    }


def test_create_bad_input(api, make_key, two_orders, nothing_changes):
    first, second = two_orders
    a = line_of(first, "A")["id"]
    other_order_line = line_of(second, "A")["id"]
    cases = [
        (body(first, a, 4), 400, "validation_error", "lines[0].quantity"),  # more than shipped
        (body(first, other_order_line), 400, "validation_error", "lines[0].line_id"),  # another order's line
        (body(first, 999999), 400, "validation_error", "lines[0].line_id"),
        (body(first, a, 0), 400, "validation_error", "lines[0].quantity"),
        (body(first, a, -1), 400, "validation_error", "lines[0].quantity"),
        (body(first, a, 1.5), 400, "validation_error", "lines[0].quantity"),
        (body(first, a, 10**9), 400, "validation_error", "lines[0].quantity"),
        (body(first, a, "two"), 400, "validation_error", "lines[0].quantity"),
        ({**body(first, a), "method": "drone"}, 400, "validation_error", "method"),
        ({**body(first, a), "lines": []}, 400, "validation_error", "lines"),
        ({k: v for k, v in body(first, a).items() if k != "lines"}, 400, "validation_error", "lines"),
        ({k: v for k, v in body(first, a).items() if k != "order"}, 400, "validation_error", "order"),
        ({**body(first, a), "order": "WE-NOPE"}, 404, "not_found", "order"),
        (
            {**body(first, a), "lines": [{"line_id": a, "quantity": 1, "reason": "bored"}]},
            400,
            "validation_error",
            "lines[0].reason",
        ),
        ({**body(first, a), "location": "DC2"}, 400, "validation_error", "location"),  # takes no returns
        ({**body(first, a), "location": "NOWHERE"}, 400, "validation_error", "location"),
        ({**body(first, a), "exchange_lines": "B"}, 400, "validation_error", "exchange_lines"),
    ]
    with nothing_changes():
        for payload, status, code, field in cases:
            assert_error(api.post("/api/v1/returns/", payload, format="json"), status, code, field)
        dup = {**body(first, a), "lines": [{"line_id": a, "quantity": 1, "reason": "changed_mind"}] * 2}
        assert_error(api.post("/api/v1/returns/", dup, format="json"), 400, "validation_error", "lines[1].line_id")
        r = api.post("/api/v1/returns/", b"{not json", content_type="application/json")
        assert_error(r, 400, "validation_error")
        assert_error(APIClient().post("/api/v1/returns/", body(first, a), format="json"), 401, "authentication_failed")
        assert_error(
            make_key("orders:read").post("/api/v1/returns/", body(first, a), format="json"), 403, "permission_denied"
        )
        market = make_key("returns:write,orders:read", channel=Channel.objects.get(code="market"))
        assert_error(market.post("/api/v1/returns/", body(first, a), format="json"), 404, "not_found", "order")
        assert_error(market.get("/api/v1/returns/?created_after=yesterday"), 400, "validation_error", "created_after")


def test_unshipped_lines_and_a_closed_window(api, order_body, returns_network, ship_order, nothing_changes):
    open_order = api.post("/api/v1/orders/", order_body(external_id="W-9"), format="json").json()
    shipped = ship_order()
    a = line_of(shipped, "A")["id"]
    long_ago = timezone.now() - timedelta(days=31)
    Fulfillment.objects.filter(order__number=shipped["number"]).update(updated_at=long_ago)
    Shipment.objects.filter(fulfillment__order__number=shipped["number"]).update(created_at=long_ago)
    with nothing_changes():
        r = api.post("/api/v1/returns/", body(open_order, line_of(open_order, "A")["id"]), format="json")
        assert_error(r, 400, "validation_error", "lines[0].quantity")  # nothing shipped yet
        assert r.json()["error"]["fields"]["lines[0].quantity"] == "At most 0."
        r = api.post("/api/v1/returns/", body(shipped, a), format="json")
        assert_error(r, 409, "return_window_closed", "window_override_reason")
        # An API key is not a supervisor.
        r = api.post("/api/v1/returns/", body(shipped, a, window_override_reason="loyal customer"), format="json")
        assert_error(r, 403, "permission_denied", "window_override_reason")
    boss = User.objects.create_user("boss", "b@example.com", "boss")
    boss.groups.add(ensure_groups()[SUPERVISOR])
    data = services.ReturnInput(
        order_number=shipped["number"],
        lines=[services.ReturnLineInput(line_id=a, quantity=1, reason="changed_mind")],
        window_override_reason="loyal customer",
    )
    clerk = User.objects.create_user("clerk", "c@example.com", "clerk")
    with pytest.raises(PermissionDenied):
        services.return_create(data=data, actor=Actor.for_user(clerk))
    rma = services.return_create(data=data, actor=Actor.for_user(boss))
    assert (rma.status, rma.window_overridden_by, rma.window_override_reason) == (
        "authorised",
        "boss",
        "loyal customer",
    )


def test_receive_bad_input(api, make_key, shipped, nothing_changes):
    a = line_of(shipped, "A")["id"]
    b = line_of(shipped, "B")["id"]
    rma = api.post("/api/v1/returns/", body(shipped, a, 2), format="json").json()
    url = f"/api/v1/returns/{rma['id']}/receive/"

    def receive(lines, location="DC1", client=api, **extra):
        return client.post(url, {"location": location, "lines": lines, **extra}, format="json")

    one = [{"line_id": a, "quantity": 1, "condition": "sellable"}]
    with nothing_changes():
        assert_error(receive(one, location="DC2"), 400, "validation_error", "location")  # takes no returns
        assert_error(receive(one, location="NOWHERE"), 400, "validation_error", "location")
        assert_error(api.post(url, {"lines": one}, format="json"), 400, "validation_error", "location")
        assert_error(receive([{**one[0], "line_id": b}]), 400, "validation_error", "lines[0].line_id")
        assert_error(receive([{**one[0], "quantity": 3}]), 400, "validation_error", "lines[0].quantity")
        assert_error(receive(one * 3), 400, "validation_error", "lines[2].quantity")  # 3 of 2 expected
        assert_error(receive([{**one[0], "condition": "meh"}]), 400, "validation_error", "lines[0].condition")
        assert_error(
            receive([{**one[0], "condition": "damaged", "disposition": "restock"}]),
            400,
            "validation_error",
            "lines[0].disposition",
        )
        assert_error(receive([]), 400, "validation_error", "lines")
        assert_error(receive(one, refund_amount="1.00", override_reason="x"), 403, "permission_denied", "refund_amount")
        assert_error(receive(one, client=make_key("orders:read")), 403, "permission_denied")
        store_key = make_key("returns:write,orders:read", location=Location.objects.get(code="STORE1"))
        assert_error(receive(one, client=store_key), 404, "not_found")  # expected at DC1, not its business
        dc_key = make_key("returns:write,orders:read", location=Location.objects.get(code="DC1"))
        assert_error(receive(one, "STORE1", client=dc_key), 403, "permission_denied", "location")  # not its place
        market = make_key("returns:write,orders:read", channel=Channel.objects.get(code="market"))
        assert_error(receive(one, client=market), 404, "not_found")
        assert_error(
            api.post("/api/v1/returns/999999/receive/", {"location": "DC1", "lines": one}, format="json"),
            404,
            "not_found",
        )
    api.post(f"/api/v1/returns/{rma['id']}/cancel/", {"reason": "not coming"}, format="json")
    with nothing_changes():
        assert_error(receive(one), 409, "invalid_transition")
        assert_error(
            api.post(f"/api/v1/returns/{rma['id']}/cancel/", {"reason": "again"}, format="json"),
            409,
            "invalid_transition",
        )
        assert_error(
            api.post(f"/api/v1/returns/{rma['id']}/cancel/", {}, format="json"), 400, "validation_error", "reason"
        )


def test_refunding_more_than_captured_is_refused(api, shipped, web_policy, nothing_changes):
    """A supervisor's override cannot refund more than the payments captured and kept."""
    a = line_of(shipped, "A")["id"]
    rma = api.post("/api/v1/returns/", body(shipped, a, 1), format="json").json()
    boss = User.objects.create_user("boss2", "b2@example.com", "boss")
    boss.groups.add(ensure_groups()[SUPERVISOR])
    lines = [services.ReceiveLineInput(line_id=a, quantity=1, condition="sellable")]
    with nothing_changes():
        with pytest.raises(ValidationFailed) as exc:
            services.return_receive(
                return_id=rma["id"],
                location="DC1",
                lines=lines,
                refund_amount=Decimal("82.01"),
                override_reason="goodwill",
                actor=Actor.for_user(boss),
            )
        assert exc.value.fields == {"refund_amount": "At most 82.00."}
        with pytest.raises(ValidationFailed, match="Say why"):
            services.return_receive(
                return_id=rma["id"], location="DC1", lines=lines, refund_amount=Decimal("5"), actor=Actor.for_user(boss)
            )
    done = services.return_receive(
        return_id=rma["id"],
        location="DC1",
        lines=lines,
        refund_amount=Decimal("82.00"),
        override_reason="full goodwill refund",
        actor=Actor.for_user(boss),
    )
    done.refresh_from_db()
    assert (done.status, done.refund_amount) == ("refunded", Decimal("82.00"))
    receipt = done.receipts.get()
    assert receipt.refund_breakdown["computed"] == "19.80"
    assert receipt.refund_breakdown["override"] == {"by": "boss2", "reason": "full goodwill refund"}
    # Nothing captured is left: an appeasement refund is refused too.
    with nothing_changes():
        r = api.post(
            "/api/v1/appeasements/",
            {
                "order": shipped["number"],
                "kind": "refund",
                "amount": "0.01",
                "reason": "late_delivery",
                "request_approval": True,
            },
            format="json",
        )
        assert_error(r, 400, "validation_error", "amount")
    assert Return.objects.get(pk=rma["id"]).refunds.get().status == "succeeded"
