"""The main CSR journeys in a real browser (Playwright driving Chromium) against a live server.

Screenshots go to /tmp/console_*.png."""

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from orders.models import Order, OrderEvent, OrderStatus
from tests.browser import chromium

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture
def console(browser, live_server, users):
    """A page logged in to the console as the given user."""

    def open_as(username: str):
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        page.goto(f"{live_server.url}/console/")
        expect(page.locator("h1")).to_have_text("Log in to the console")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", username)
        page.click("button[type=submit]")
        expect(page.locator(".who .user")).to_have_text(username)
        return page

    return open_as


def test_find_by_phone_read_why_it_was_routed_cancel_one_line(console, live_server, capture):
    number = capture()["number"]
    page = console("csr")
    # The customer reads their phone number out with their own punctuation.
    page.fill("input[name=q]", "(212) 555 0147")
    page.click("#search-form button.primary")
    expect(page.locator(".results-head h2")).to_have_text("1 order")
    expect(page.locator(".results-head")).to_contain_text("matched by phone")
    page.screenshot(path="/tmp/console_search_phone.png", full_page=True)
    page.click(f"a.order-link:text('{number}')")

    expect(page.locator("h1")).to_contain_text(number)
    expect(page.locator("#routing-summary")).to_contain_text("Shipped from DC1")
    expect(page.locator("#routing table.why tr.chosen")).to_contain_text("DC1")
    expect(page.locator("#lines tbody tr")).to_have_count(2)
    page.screenshot(path="/tmp/console_order.png", full_page=True)

    # Cancel one unit of line B in the panel: the form, the confirmation, then done.
    page.click("text=Cancel…")
    dialog = page.locator("dialog#panel")
    expect(dialog).to_be_visible()
    line_b = Order.objects.get(number=number).lines.get(sku="B")
    dialog.locator(f"input[name=qty_{line_b.pk}]").fill("1")
    dialog.locator("input[name=reason]").fill("Customer no longer wants it")
    dialog.locator("#submit").click()
    expect(dialog.locator("#confirm-summary")).to_contain_text("Cancel 1 × B")
    page.screenshot(path="/tmp/console_cancel_confirm.png")
    dialog.locator("#confirm").click()
    expect(page.locator(".messages")).to_contain_text("Lines cancelled.")
    expect(page.locator(f"#line-{line_b.pk} td").nth(7)).to_have_text("1")  # the cancelled column
    expect(page.locator("#timeline")).to_contain_text("Cancelled B × 1: Customer no longer wants it")
    expect(page.locator("#timeline li.user").first).to_contain_text("User: csr")
    page.screenshot(path="/tmp/console_cancelled_line.png", full_page=True)
    line_b.refresh_from_db()
    assert line_b.quantity_cancelled == 1


def test_place_and_release_a_hold(console, capture):
    number = capture()["number"]
    page = console("csr")
    page.fill("input[name=q]", number)
    page.click("#search-form button.primary")  # an exact number opens the order
    expect(page.locator("h1")).to_contain_text(number)

    page.click("text=Hold…")
    dialog = page.locator("dialog#panel")
    dialog.locator("select[name=hold_type]").select_option("customer_service")
    dialog.locator("input[name=reason]").fill("Customer wants to add a gift message")
    dialog.locator("#submit").click()
    expect(dialog.locator("#confirm-summary")).to_contain_text("Place a customer service hold")
    dialog.locator("#confirm").click()
    expect(page.locator("#order-status")).to_have_text("On hold")
    expect(page.locator("#holds")).to_contain_text("Customer wants to add a gift message")
    page.screenshot(path="/tmp/console_held.png", full_page=True)

    # Work it from the queue of held orders: release it there, and come back to the queue.
    page.click("nav.main >> text=Queues")
    page.click("#q-holds")
    row = page.locator(f"#queue tr:has-text('{number}')")
    expect(row).to_contain_text("Customer wants to add a gift message")
    page.screenshot(path="/tmp/console_holds_queue.png")
    row.locator("text=Release…").click()
    page.fill("input[name=note]", "Gift message added")
    page.click("#submit")
    expect(page.locator("#confirm-summary")).to_contain_text("No hold is left")
    page.click("#confirm")
    expect(page.locator(".messages")).to_contain_text("Hold released.")
    expect(page.locator("h1")).to_have_text("On hold")  # back in the queue
    expect(page.locator("#queue")).not_to_contain_text(number)
    page.goto(page.url.split("/console/")[0] + f"/console/orders/{number}/")
    expect(page.locator("#order-status")).not_to_have_text("On hold")
    expect(page.locator("#holds")).to_have_count(0)
    order = Order.objects.get(number=number)
    assert order.status != OrderStatus.ON_HOLD
    assert list(
        OrderEvent.objects.filter(order=order, actor_label="csr").values_list("type", flat=True).order_by("id")
    ) == ["order.held", "order.released"]


def test_a_service_refusal_is_shown_in_the_panel(console, capture):
    number = capture()["number"]
    page = console("csr")
    page.goto(page.url.split("/console/")[0] + f"/console/orders/{number}/")
    page.click("text=Cancel…")
    dialog = page.locator("dialog#panel")
    dialog.locator("input[name=reason]").fill("Duplicate order")
    dialog.locator("#submit").click()
    expect(dialog.locator("#confirm")).to_be_visible()  # the review was rendered before the change
    Order.objects.filter(number=number).update(status=OrderStatus.SHIPPED)  # shipped meanwhile
    dialog.locator("#confirm").click()
    expect(dialog.locator("#action-error")).to_contain_text("nothing is left to cancel")
    page.screenshot(path="/tmp/console_refused.png")


def test_a_csr_cannot_reach_merchant_screens(console, live_server, db):
    page = console("csr")
    expect(page.locator("nav.main")).not_to_contain_text("Admin")
    for path in ("/admin/inventory/location/add/", "/admin/oms/apikey/", "/admin/routing/routingprofile/"):
        response = page.goto(f"{live_server.url}{path}")
        assert response.status == 403, path
    page.screenshot(path="/tmp/console_csr_admin_403.png")
    # Someone without a role reaches no console page either.
    User.objects.filter(username="nobody").update(is_staff=False)
    other = console("nobody")
    expect(other.locator("h1")).to_have_text("Not allowed")
    other.screenshot(path="/tmp/console_nobody_403.png")


def test_reroute_with_the_simulation_and_the_other_pages(console, live_server, capture, network):
    from tests.factories import stock

    stock(network["dc2"], network["item"], 10)
    stock(network["dc2"], network["other"], 10)
    number = capture()["number"]
    order = Order.objects.get(number=number)
    fulfillment = order.fulfillments.get()
    page = console("csr")
    page.goto(f"{live_server.url}/console/orders/{number}/")
    page.click("text=Re-route…")
    dialog = page.locator("dialog#panel")
    expect(dialog.locator("#simulation")).to_contain_text("Simulation: without DC1")
    expect(dialog.locator("#simulation .summary")).to_contain_text("DC2")
    page.screenshot(path="/tmp/console_reroute_simulation.png")
    dialog.locator("input[name=reason]").fill("DC1 is closed today")
    dialog.locator("#submit").click()
    dialog.locator("#confirm").click()
    expect(page.locator(".messages")).to_contain_text(f"Fulfilment {fulfillment.pk} taken from DC1")
    expect(page.locator("#fulfillments")).to_contain_text("DC2")
    expect(page.locator("#timeline")).to_contain_text("Re-routed A × 3, B × 1 away from DC1: DC1 is closed today")
    page.screenshot(path="/tmp/console_rerouted.png", full_page=True)

    page.click("nav.main >> text=Queues")
    expect(page.locator("h1")).to_have_text("Work queues")
    page.screenshot(path="/tmp/console_queues.png")
    page.click("nav.main >> text=Inventory")
    page.fill("input[name=sku]", "A")
    page.select_option("select[name=channel]", "web")
    page.fill("input[name=near]", "40.75, -73.99")
    page.click("button:text('Look up')")
    expect(page.locator("#by-location")).to_contain_text("DC2")
    expect(page.locator("#near")).to_contain_text("STORE1")
    page.screenshot(path="/tmp/console_inventory.png", full_page=True)
    page.goto(f"{live_server.url}/console/customers/{order.customer_id}/")
    expect(page.locator("#customer-orders")).to_contain_text(number)
    page.screenshot(path="/tmp/console_customer.png")


@pytest.fixture
def return_defaults(db):
    """Reason codes and appeasement limits come from a data migration, which a transactional
    test's flush removes: put them back."""
    from returns.defaults import ensure_defaults

    ensure_defaults()


def ship_it(number: str) -> None:
    from oms.actor import Actor
    from orders import services

    actor = Actor.system("test")
    fulfillment = Order.objects.get(number=number).fulfillments.get()
    services.fulfillment_accept(fulfillment_id=fulfillment.pk, actor=actor)
    services.fulfillment_ship(fulfillment_id=fulfillment.pk, actor=actor, carrier="UPS", tracking_number="1Z999")


def test_create_a_return(console, live_server, capture, return_defaults):
    from returns.models import Return

    number = capture()["number"]
    ship_it(number)
    line_a = Order.objects.get(number=number).lines.get(sku="A")
    page = console("csr")
    page.goto(f"{live_server.url}/console/orders/{number}/")
    page.click("text=Create return…")
    dialog = page.locator("dialog#panel")
    dialog.locator(f"input[name=qty_{line_a.pk}]").fill("2")
    dialog.locator(f"select[name=reason_{line_a.pk}]").select_option("defective")
    dialog.locator("select[name=method]").select_option("mail")
    dialog.locator("#submit").click()
    expect(dialog.locator("#confirm-summary")).to_contain_text("Take back 2 × A")
    page.screenshot(path="/tmp/console_return_confirm.png")
    dialog.locator("#confirm").click()
    expect(page.locator(".messages")).to_contain_text("Return RMA-")
    rma = Return.objects.get()
    expect(page.locator(".messages")).to_contain_text(f"Return {rma.number} created")
    expect(page.locator("#returns")).to_contain_text("A × 2 — Defective or faulty")
    expect(page.locator("#timeline li.user").first).to_contain_text("User: csr")
    page.screenshot(path="/tmp/console_return_created.png", full_page=True)
    assert (rma.lines.get().quantity, rma.actor_label) == (2, "csr")


def test_appeasement_over_the_csr_limit_refused_then_given_by_a_supervisor(
    console, live_server, capture, return_defaults
):
    from returns.models import Appeasement

    number = capture()["number"]
    ship_it(number)

    def appease(page):
        page.goto(f"{live_server.url}/console/orders/{number}/")
        page.click("text=Appease…")
        dialog = page.locator("dialog#panel")
        dialog.locator("select[name=kind]").select_option("refund")
        dialog.locator("input[name=amount]").fill("40.00")
        dialog.locator("select[name=reason]").select_option("late_delivery")
        dialog.locator("input[name=note]").fill("Arrived a week late")
        dialog.locator("#submit").click()
        return dialog

    csr = console("csr")
    dialog = appease(csr)
    expect(dialog.locator("#confirm-summary")).to_contain_text("above your limit of 25.00 USD: it will be refused")
    dialog.locator("#confirm").click()
    expect(dialog.locator("#action-error")).to_contain_text("above your appeasement limit of 25.00")
    csr.screenshot(path="/tmp/console_appeasement_refused.png")
    assert not Appeasement.objects.exists()

    supervisor = console("supervisor")
    dialog = appease(supervisor)
    dialog.locator("#confirm").click()
    expect(supervisor.locator(".messages")).to_contain_text("Appeasement of 40.00 USD issued.")
    expect(supervisor.locator("#appeasements")).to_contain_text("Late delivery")
    expect(supervisor.locator("#appeasements")).to_contain_text("Issued")
    supervisor.screenshot(path="/tmp/console_appeasement_supervisor.png", full_page=True)
    appeasement = Appeasement.objects.get()
    assert (appeasement.status, appeasement.actor_label) == ("issued", "supervisor")


def test_receive_a_return_one_sellable_one_damaged(console, live_server, capture, network, return_defaults):
    from inventory.models import Location, Stock
    from oms.actor import Actor
    from returns.models import Refund, ReturnReceipt
    from returns.services import ReturnInput, ReturnLineInput, return_create

    Location.objects.filter(code="DC1").update(accepts_returns=True)
    number = capture()["number"]
    ship_it(number)
    line_a = Order.objects.get(number=number).lines.get(sku="A")
    rma = return_create(
        data=ReturnInput(order_number=number, lines=[ReturnLineInput(line_a.pk, 2, "changed_mind")], location="DC1"),
        actor=Actor.system("test"),
    )
    rl = rma.lines.get()
    on_hand = Stock.objects.get(location__code="DC1", item__sku="A").on_hand

    page = console("csr")
    page.goto(f"{live_server.url}/console/orders/{number}/")
    page.locator(f"#return-{rma.number}").get_by_text("Receive…").click()
    dialog = page.locator("dialog#panel")
    expect(dialog.locator("select[name=location]")).to_have_value("DC1")
    dialog.locator(f"input[name=qty_{rl.pk}_sellable]").fill("1")
    dialog.locator(f"input[name=qty_{rl.pk}_damaged]").fill("1")
    expect(dialog.locator(f"select[name=disp_{rl.pk}_sellable]")).to_have_value("restock")
    expect(dialog.locator(f"select[name=disp_{rl.pk}_damaged]")).to_have_value("write_off")
    page.screenshot(path="/tmp/console_receive_form.png")
    dialog.locator("#submit").click()
    expect(dialog.locator("#confirm-summary")).to_contain_text("restock at DC1 (on hand +1)")
    expect(dialog.locator("#confirm-summary")).to_contain_text("damaged → write off")
    page.screenshot(path="/tmp/console_receive_confirm.png")
    dialog.locator("#confirm").click()
    expect(page.locator(".messages")).to_contain_text(f"Return {rma.number} received at DC1; refund ")

    rma.refresh_from_db()  # the service's result: what the page must show
    refund = f"{rma.refund_amount:,.2f} USD"
    expect(page.locator(".messages")).to_contain_text(f"Return {rma.number} received at DC1; refund {refund}.")
    receipt = page.locator(f"#return-{rma.number} .receipt")
    expect(receipt).to_contain_text("restocked at DC1")
    expect(receipt).to_contain_text("write off")
    expect(receipt).to_contain_text(f"Refund for this receipt: {refund}")
    expect(page.locator("#refunds")).to_contain_text(f"return {rma.number}")
    expect(page.locator("#timeline li.user").first).to_contain_text("User: csr")
    expect(page.locator(f"#return-{rma.number}")).not_to_contain_text("Receive…")
    page.locator("#returns").screenshot(path="/tmp/console_received.png")
    page.screenshot(path="/tmp/console_received_page.png", full_page=True)
    assert rma.refund_amount > 0
    assert sum(r.amount for r in Refund.objects.filter(rma=rma)) == rma.refund_amount
    assert ReturnReceipt.objects.get().actor_label == "csr"
    assert Stock.objects.get(location__code="DC1", item__sku="A").on_hand == on_hand + 1
