"""The orders admin: read-only orders, cancel / hold / release through services, hold rules,
customers, query counts."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from inventory.models import Stock, StockMovement
from oms.actor import Actor, ActorType
from orders import services
from orders.models import HoldRule, HoldType, Order, OrderEvent, OrderHold, OrderStatus, Payment
from tests.factories import stock

pytestmark = [pytest.mark.usefixtures("no_routing"), pytest.mark.django_db]

CHANGELIST = reverse("admin:orders_order_changelist")


def change_url(order: Order) -> str:
    return reverse("admin:orders_order_change", args=[order.pk])


def run_action(client, action: str, orders, *, confirm: dict | None = None, follow: bool = True):
    data = {"action": action, "_selected_action": [o.pk for o in orders], "index": 0, "select_across": 0}
    if confirm is not None:
        data.update(confirm, confirm="yes")
    return client.post(CHANGELIST, data, follow=follow)


def messages_of(response) -> list[tuple[str, str]]:
    return [(m.level_tag, m.message) for m in response.context["messages"]]


def reserved() -> dict[tuple[str, str], int]:
    return {(loc, sku): r for loc, sku, r in Stock.objects.values_list("location__code", "item__sku", "reserved")}


def state(order: Order):
    """Everything an order action can change, to prove a refused action changed nothing."""
    return (
        Order.objects.filter(pk=order.pk).values_list("status", flat=True).get(),
        sorted(OrderHold.objects.filter(order=order).values_list("type", "released_at")),
        OrderEvent.objects.filter(order=order).count(),
        sorted(Payment.objects.filter(order=order).values_list("status", "amount_voided")),
        reserved(),
        StockMovement.objects.count(),
    )


@pytest.fixture
def order(capture):
    return Order.objects.get(number=capture()["number"])


@pytest.fixture
def many_orders(capture, stocked):
    """20 orders from 20 customers (stock topped up so each is fully held)."""
    stock(stocked["dc1"], stocked["item"], 100)
    stock(stocked["dc1"], stocked["other"], 100)

    def make(n: int) -> list[Order]:
        start = Order.objects.count()
        numbers = [
            capture(
                external_id=f"W-{start + i}",
                customer={"email": f"c{start + i}@example.com", "name": f"Customer {start + i}"},
            )["number"]
            for i in range(n)
        ]
        return list(Order.objects.filter(number__in=numbers).order_by("pk"))

    return make


# --- Changelist and change page ------------------------------------------------------------------


def test_changelist_lists_orders_with_a_bounded_number_of_queries(
    admin_client, many_orders, django_assert_max_num_queries
):
    many_orders(1)
    admin_client.get(CHANGELIST)  # warm the per-process caches (content types)
    with CaptureQueriesContext(connection) as one:
        assert admin_client.get(CHANGELIST).status_code == 200
    orders = many_orders(19)

    with django_assert_max_num_queries(12), CaptureQueriesContext(connection) as twenty:
        response = admin_client.get(CHANGELIST)

    assert response.status_code == 200
    assert len(twenty) == len(one)  # no query per row
    assert response.context["cl"].result_count == 20
    html = response.content.decode()
    for o in orders:
        assert o.number in html
    assert "c19@example.com" in html
    assert "82.00" in html


def test_changelist_search_by_number_external_id_email_and_phone(admin_client, many_orders):
    first, second = many_orders(2)
    second.customer.phone, second.customer.phone_digits = "+44 20 7946 0321", "442079460321"
    second.customer.save()

    def found(q):
        response = admin_client.get(CHANGELIST, {"q": q})
        return sorted(o.number for o in response.context["cl"].result_list)

    assert found(first.number) == [first.number]
    assert found(second.external_id) == [second.number]
    assert found("c0@example") == [first.number]
    assert found("+44 (20) 7946-0321") == [second.number]
    assert found("79460321") == [second.number]


def test_changelist_filters_by_status(admin_client, many_orders):
    first, second = many_orders(2)
    services.order_hold(order_number=second.number, hold_type=HoldType.MANUAL, reason="x", actor=Actor.system())

    response = admin_client.get(CHANGELIST, {"status__exact": "on_hold"})

    assert [o.number for o in response.context["cl"].result_list] == [second.number]


def test_change_page_shows_lines_allocations_payments_holds_and_timeline(
    admin_client, order, django_assert_max_num_queries
):
    url = change_url(order)
    admin_client.get(url)  # warm the per-process caches (content types)
    with CaptureQueriesContext(connection) as before:
        assert admin_client.get(url).status_code == 200
    # More timeline entries, a hold and a note must not add queries.
    actor = Actor.system("ops-bot")
    services.order_hold(order_number=order.number, hold_type=HoldType.FRAUD_REVIEW, reason="velocity", actor=actor)
    for i in range(5):
        services.order_add_note(order_number=order.number, text=f"note {i}", actor=actor)

    with django_assert_max_num_queries(25), CaptureQueriesContext(connection) as after:
        response = admin_client.get(url)

    assert response.status_code == 200
    assert len(after) == len(before)
    html = response.content.decode()
    assert "View order" in html
    assert "DC1 × 3 (provisional)" in html  # line A's stock
    assert "DC1 × 1 (provisional)" in html  # line B's stock
    assert "pi_123" in html and "Authorised" in html  # the payment
    assert "velocity" in html  # the active hold
    assert "System: ops-bot" in html  # who placed it / wrote the notes
    assert "API key: test key" in html  # who captured the order
    assert "12 Analytical Way" in html
    # The timeline reads oldest first.
    assert html.index("Order captured from web") < html.index("Held for fraud review") < html.index("note 4")
    formsets = {f.formset.prefix: len(f.formset.forms) for f in response.context["inline_admin_formsets"]}
    assert formsets == {"lines": 2, "payments": 1, "holds": 1, "events": 8}


def test_released_holds_are_not_listed_as_active(admin_client, order):
    actor = Actor.system()
    services.order_hold(order_number=order.number, hold_type=HoldType.MANUAL, reason="first", actor=actor)
    services.order_release(order_number=order.number, actor=actor)

    response = admin_client.get(change_url(order))

    holds = next(f for f in response.context["inline_admin_formsets"] if f.formset.prefix == "holds")
    assert len(holds.formset.forms) == 0


def test_status_cannot_be_changed_by_posting_the_form(admin_client, order):
    before = state(order)
    response = admin_client.get(change_url(order))
    html = response.content.decode()
    assert 'name="status"' not in html
    assert 'name="_save"' not in html
    assert response.context["adminform"].form.fields == {}  # every field is read-only

    posted = admin_client.post(change_url(order), {"status": "cancelled", "grand_total": "0.00"})

    assert posted.status_code == 403
    assert state(order) == before


def test_orders_cannot_be_added_or_deleted_in_the_admin(admin_client, order):
    assert admin_client.get(reverse("admin:orders_order_add")).status_code == 403
    assert admin_client.post(reverse("admin:orders_order_delete", args=[order.pk]), {"post": "yes"}).status_code == 403
    response = admin_client.get(CHANGELIST)
    assert "delete_selected" not in response.content.decode()
    assert Order.objects.filter(pk=order.pk).exists()


# --- Cancel --------------------------------------------------------------------------------------


def test_cancel_asks_for_a_reason_first_and_changes_nothing_until_confirmed(admin_client, order):
    before = state(order)

    response = run_action(admin_client, "cancel_orders", [order])

    assert response.status_code == 200
    assert [t.name for t in response.templates][0] == "admin/orders/order/action_confirmation.html"
    html = response.content.decode()
    assert order.number in html and 'name="reason"' in html and "Cancel these orders" in html
    assert state(order) == before


def test_cancel_without_a_reason_shows_the_form_again(admin_client, order):
    before = state(order)

    response = run_action(admin_client, "cancel_orders", [order], confirm={"reason": "  "})

    assert response.status_code == 200
    assert response.context["form"].errors == {"reason": ["This field is required."]}
    assert state(order) == before


def test_cancel_releases_stock_voids_payment_and_records_the_admin(admin_client, admin_user, order):
    assert reserved()[("DC1", "A")] == 3 and reserved()[("DC1", "B")] == 1

    response = run_action(admin_client, "cancel_orders", [order], confirm={"reason": "customer called"})

    assert response.redirect_chain[-1][0] == CHANGELIST
    assert messages_of(response) == [("success", f"Cancelled 1 order(s): {order.number}.")]
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
    assert reserved() == {("DC1", "A"): 0, ("DC1", "B"): 0, ("STORE1", "A"): 0}
    assert sorted(order.lines.values_list("sku", "quantity_cancelled", "quantity_allocated")) == [
        ("A", 3, 0),
        ("B", 1, 0),
    ]
    payment = order.payments.get()
    assert (payment.status, payment.amount_voided) == ("voided", Decimal("82.00"))
    event = order.events.get(type="order.cancelled")
    assert event.message == "Order cancelled: customer called"
    assert (event.actor_type, event.actor_label, event.actor_user_id) == (ActorType.USER, "admin", admin_user.pk)
    assert set(
        StockMovement.objects.filter(reference=f"order:{order.number}", delta_reserved__lt=0).values_list(
            "actor_label", flat=True
        )
    ) == {"admin"}


def test_cancel_reports_each_failure_and_goes_on_with_the_rest(admin_client, many_orders):
    done, fine = many_orders(2)
    services.order_cancel(order_number=done.number, reason="earlier", actor=Actor.system())
    before = state(done)

    response = run_action(admin_client, "cancel_orders", [done, fine], confirm={"reason": "duplicate"})

    assert messages_of(response) == [
        ("success", f"Cancelled 1 order(s): {fine.number}."),
        ("error", f"{done.number}: Order {done.number} is cancelled; nothing is left to cancel."),
    ]
    assert Order.objects.get(pk=fine.pk).status == OrderStatus.CANCELLED
    assert state(done)[:4] == before[:4]


# --- Hold and release ----------------------------------------------------------------------------


def test_hold_then_release(admin_client, admin_user, order):
    page = run_action(admin_client, "hold_orders", [order])
    assert 'name="hold_type"' in page.content.decode()
    assert page.context["form"]["hold_type"].value() == "manual"

    held = run_action(
        admin_client, "hold_orders", [order], confirm={"hold_type": "manual", "reason": "customer asked to wait"}
    )

    assert messages_of(held) == [("success", f"Held 1 order(s): {order.number}.")]
    order.refresh_from_db()
    assert order.status == OrderStatus.ON_HOLD
    hold = order.holds.get()
    assert (hold.type, hold.reason, hold.actor_label, hold.released_at) == (
        "manual",
        "customer asked to wait",
        "admin",
        None,
    )
    event = order.events.get(type="order.held")
    assert (event.actor_label, event.actor_user_id) == ("admin", admin_user.pk)
    assert "On hold" in admin_client.get(CHANGELIST).content.decode()

    released = run_action(admin_client, "release_orders", [order], confirm={"note": "spoke to customer"})

    assert messages_of(released) == [("success", f"Released holds on 1 order(s): {order.number}.")]
    order.refresh_from_db()
    assert order.status == OrderStatus.RECEIVED
    hold.refresh_from_db()
    assert (hold.released_by, hold.release_note) == ("admin", "spoke to customer")
    assert hold.released_at is not None
    assert order.events.get(type="order.released").actor_label == "admin"


def test_release_of_some_hold_types_keeps_the_order_on_hold(admin_client, order):
    actor = Actor.system()
    services.order_hold(order_number=order.number, hold_type=HoldType.FRAUD_REVIEW, reason="a", actor=actor)
    services.order_hold(order_number=order.number, hold_type=HoldType.ADDRESS_CHECK, reason="b", actor=actor)

    run_action(admin_client, "release_orders", [order], confirm={"hold_types": ["fraud_review"], "note": "ok"})

    order.refresh_from_db()
    assert order.status == OrderStatus.ON_HOLD
    assert list(order.holds.filter(released_at__isnull=True).values_list("type", flat=True)) == ["address_check"]


def test_release_of_an_order_not_on_hold_is_an_error_and_changes_nothing(admin_client, order):
    before = state(order)

    response = run_action(admin_client, "release_orders", [order], confirm={"note": "why not"})

    assert messages_of(response) == [("error", f"{order.number}: Order {order.number} is received, not on hold.")]
    assert state(order) == before


def test_hold_of_a_cancelled_order_is_an_error_and_changes_nothing(admin_client, order):
    services.order_cancel(order_number=order.number, reason="x", actor=Actor.system())
    before = state(order)

    response = run_action(admin_client, "hold_orders", [order], confirm={"hold_type": "manual", "reason": "late"})

    assert messages_of(response) == [
        ("error", f"{order.number}: Order {order.number} is cancelled and cannot be held.")
    ]
    assert state(order) == before


def test_hold_needs_a_reason_and_a_known_type(admin_client, order):
    before = state(order)

    response = run_action(admin_client, "hold_orders", [order], confirm={"hold_type": "vibes", "reason": ""})

    assert set(response.context["form"].errors) == {"hold_type", "reason"}
    assert state(order) == before


# --- Permissions ---------------------------------------------------------------------------------


def staff_with(*codenames: str) -> User:
    user = User.objects.create_user("ops", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="orders", codename__in=codenames))
    return user


def test_view_permission_shows_the_whole_order_but_no_actions(client, order):
    client.force_login(staff_with("view_order"))

    listing = client.get(CHANGELIST)
    page = client.get(change_url(order))
    before = state(order)
    attempt = run_action(client, "cancel_orders", [order], confirm={"reason": "no"})

    assert listing.status_code == 200
    assert "cancel_orders" not in listing.content.decode()
    assert page.status_code == 200
    assert {f.formset.prefix for f in page.context["inline_admin_formsets"]} == {"lines", "payments", "holds", "events"}
    assert attempt.status_code == 200
    assert state(order) == before


def test_change_permission_runs_the_actions(client, order):
    client.force_login(staff_with("change_order"))

    response = run_action(client, "hold_orders", [order], confirm={"hold_type": "manual", "reason": "check"})

    assert messages_of(response) == [("success", f"Held 1 order(s): {order.number}.")]
    assert Order.objects.get(pk=order.pk).status == OrderStatus.ON_HOLD
    assert OrderHold.objects.get(order=order).actor_label == "ops"


# --- Hold rules ----------------------------------------------------------------------------------


def test_hold_rule_made_in_the_admin_holds_the_next_capture(admin_client, capture, stocked):
    response = admin_client.post(
        reverse("admin:orders_holdrule_add"),
        {
            "name": "Big web orders",
            "channel": stocked["web"].pk,
            "condition": "order_total_above",
            "amount": "50.00",
            "countries": "",
            "hold_type": "fraud_review",
            "active": "on",
        },
    )
    assert response.status_code == 302
    rule = HoldRule.objects.get()

    order = capture()

    assert order["status"] == "on_hold"
    assert OrderHold.objects.get(order__number=order["number"]).rule == rule
    listing = admin_client.get(reverse("admin:orders_holdrule_changelist")).content.decode()
    assert "Big web orders" in listing and "Order total above amount" in listing


@pytest.mark.parametrize(
    ("condition", "amount", "countries", "errors"),
    [
        ("order_total_above", "", "", {"amount": ["Required for this condition."]}),
        ("new_customer_above", "", "", {"amount": ["Required for this condition."]}),
        ("country_not_served", "", "", {"countries": ["List the countries served."]}),
        (
            "country_not_served",
            "",
            "us, Canada",
            {"countries": ["Use two-letter ISO country codes, separated by commas (not CANADA)."]},
        ),
    ],
)
def test_hold_rule_form_checks_what_its_condition_needs(admin_client, condition, amount, countries, errors):
    response = admin_client.post(
        reverse("admin:orders_holdrule_add"),
        {"name": "r", "condition": condition, "amount": amount, "countries": countries, "hold_type": "manual"},
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == errors
    assert not HoldRule.objects.exists()


def test_hold_rule_countries_are_normalised(admin_client):
    admin_client.post(
        reverse("admin:orders_holdrule_add"),
        {"name": "US+CA", "condition": "country_not_served", "countries": "us, ca ,", "hold_type": "address_check"},
    )

    assert HoldRule.objects.get().countries == "US,CA"


# --- Customers -----------------------------------------------------------------------------------


def test_customer_search_and_read_only_orders(admin_client, capture, many_orders, django_assert_max_num_queries):
    first = Order.objects.get(number=capture()["number"])  # Ada, with a phone
    second = Order.objects.get(number=capture(external_id="W-2002")["number"])
    many_orders(3)  # other customers
    ada = first.customer
    changelist = reverse("admin:orders_customer_changelist")

    found = admin_client.get(changelist, {"q": "(212) 555-0147"})
    assert [c.email for c in found.context["cl"].result_list] == ["ada.lovelace@example.com"]
    assert [c.email for c in admin_client.get(changelist, {"q": "lovelace"}).context["cl"].result_list] == [ada.email]

    with django_assert_max_num_queries(20):
        page = admin_client.get(reverse("admin:orders_customer_change", args=[ada.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "View customer" in html and 'name="_save"' not in html
    inline = page.context["inline_admin_formsets"][0].formset
    assert [o.number for o in inline.get_queryset()] == [second.number, first.number]  # newest first
    assert change_url(first) in html

    all_orders = admin_client.get(CHANGELIST, {"customer__id__exact": ada.pk})
    assert sorted(o.number for o in all_orders.context["cl"].result_list) == sorted([first.number, second.number])


def test_customer_inline_shows_only_the_latest_orders(admin_client, capture, many_orders, monkeypatch):
    from orders.admin import RecentFirstFormSet

    monkeypatch.setattr(RecentFirstFormSet, "limit", 2)
    numbers = [capture(external_id=f"W-{i}")["number"] for i in range(3)]
    customer = Order.objects.get(number=numbers[0]).customer

    page = admin_client.get(reverse("admin:orders_customer_change", args=[customer.pk]))

    inline = page.context["inline_admin_formsets"][0].formset
    assert [o.number for o in inline.get_queryset()] == [numbers[2], numbers[1]]


def test_hold_every_order_matching_a_filter_across_pages(admin_client, many_orders, monkeypatch):
    import orders.admin

    monkeypatch.setattr(orders.admin, "CONFIRMATION_LIST_LIMIT", 2)
    first, *rest = many_orders(3)
    url = f"{CHANGELIST}?status__exact=received"
    data = {"action": "hold_orders", "_selected_action": [first.pk], "index": 0, "select_across": 1}

    page = admin_client.post(url, data)
    assert page.context["total"] == 3 and page.context["more"] == 1
    assert "… and 1 more." in page.content.decode()
    held = admin_client.post(
        url, {**data, "confirm": "yes", "hold_type": "manual", "reason": "stock check"}, follow=True
    )

    assert messages_of(held) == [("success", f"Held 3 order(s): {', '.join(o.number for o in [first, *rest])}.")]
    assert set(Order.objects.values_list("status", flat=True)) == {"on_hold"}
