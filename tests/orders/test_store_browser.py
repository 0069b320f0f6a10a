"""The store app in a real browser: an associate logs in, works a pickup order through the queue,
prints the pick list and hands it over after checking the customer's pickup code."""

import os
import re
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from django.core import mail
from django.utils import timezone
from playwright.sync_api import expect

from inventory.selectors import ledger_mismatches
from orders.models import Fulfillment, OrderEvent
from tests.browser import chromium
from tests.factories import stock
from tests.orders.store_helpers import associate, counters, pickup_order, ship_order, state

SHOTS = Path(os.environ.get("STORE_SCREENSHOTS", Path(tempfile.gettempdir()) / "store-screenshots"))


def shot(page, name: str) -> None:
    """The whole page. Playwright's full_page screenshot restores the phone viewport's scroll
    position asynchronously, which can move the page under the next click; growing the
    viewport ourselves and shrinking it back is synchronous."""
    size = page.viewport_size
    height = page.evaluate("document.documentElement.scrollHeight")
    page.set_viewport_size({"width": size["width"], "height": max(height, size["height"])})
    page.screenshot(path=SHOTS / name)
    page.set_viewport_size(size)


@pytest.mark.browser
def test_associate_works_a_pickup_from_queue_to_hand_over(live_server, transactional_db, api, order_body, stocked):
    SHOTS.mkdir(parents=True, exist_ok=True)
    store = stocked["store"]
    store.name, store.timezone, store.city, store.region = "Herald Square", "America/New_York", "New York", "NY"
    store.save()
    stock(store, stocked["item"], 5)
    associate("alice", store, password="s3cret-pass")
    f = pickup_order(api, order_body, quantity=2)
    number = f.order.number
    overdue = pickup_order(api, order_body, quantity=1, external_id="P-LATE")
    Fulfillment.objects.filter(pk=overdue.pk).update(due_at=timezone.now() - timedelta(minutes=25))

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)  # a phone
        page.goto(f"{live_server.url}/store/")
        expect(page.locator("h1")).to_have_text("Store associates")
        shot(page, "01-login.png")
        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", "s3cret-pass")
        page.click("button[type=submit]")

        # One store: straight to its queue, by due time: the overdue order first, in red.
        expect(page.locator("h1")).to_have_text("Herald Square")
        rows = page.locator("#queue-to-do a")
        expect(rows).to_have_count(2)
        expect(rows.nth(0)).to_contain_text(overdue.order.number)
        expect(rows.nth(0)).to_have_class(re.compile(r"\blate\b"))
        expect(rows.nth(0)).to_contain_text("LATE")
        expect(rows.nth(0)).to_contain_text(re.compile(r"late by 2[5-9] min"))
        expect(page.locator("h2", has_text="To do")).to_contain_text("1 late")
        row = rows.nth(1)
        expect(row).to_contain_text(number)
        expect(row).not_to_have_class(re.compile(r"\blate\b"))
        expect(row).to_contain_text("Ada Lovelace")
        expect(row).to_contain_text("2 units · Pickup")
        expect(row).to_contain_text("due in")
        shot(page, "02-queue.png")

        row.click()
        expect(page.locator("#status")).to_have_text("Created")
        page.click("#accept")
        expect(page.locator(".message.success")).to_have_text("Accepted. Print the pick list and start picking.")
        expect(page.locator("#status")).to_have_text("Accepted")
        shot(page, "03-accepted.png")

        with page.expect_popup() as popup:
            page.click("#pick-list")
        pick = popup.value
        expect(pick.locator("h1")).to_have_text(f"Pick list · Order {number}")
        expect(pick.locator("table.pick tbody tr")).to_have_count(1)
        expect(pick.locator("table.pick tbody tr")).to_contain_text("Item A")
        expect(pick.locator("table.meta")).to_contain_text("Ada Lovelace")
        pick.set_viewport_size({"width": 800, "height": 1000})
        shot(pick, "04-pick-list.png")
        pick.emulate_media(media="print")
        shot(pick, "05-pick-list-print.png")
        expect(pick.locator(".print-bar")).to_be_hidden()
        pick.close()

        page.click("#start-picking")
        expect(page.locator("#status")).to_have_text("Picking")
        page.click("#pack")
        expect(page.locator(".message.success")).to_have_text("Picked and packed.")
        page.click("#ready")
        expect(page.locator("#status")).to_have_text("Ready for pickup")
        expect(page.locator(".message.success")).to_contain_text("pickup code")
        shot(page, "06-ready.png")

        # The customer got the code by email; first they read it out wrong.
        (email,) = mail.outbox
        code = re.search(r"Your pickup code: (\w+)", email.body).group(1)
        assert code == Fulfillment.objects.get(pk=f.pk).pickup_code
        before = state(f)
        wrong = "ZZZZZZ" if code != "ZZZZZZ" else "YYYYYY"
        page.fill("#pickup-code", wrong)
        page.click("#hand-over")
        expect(page.locator(".message.error")).to_contain_text("The pickup code does not match this order.")
        expect(page.locator("#status")).to_have_text("Ready for pickup")
        expect(page.locator("#pickup-code")).to_have_value("")
        shot(page, "07-wrong-code.png")
        assert state(f) == before

        page.fill("#pickup-code", code.lower())
        page.click("#hand-over")
        expect(page.locator(".message.success")).to_have_text("Handed over to the customer. Order collected.")
        expect(page.locator("#queue-done")).to_contain_text(number)
        expect(page.locator("#queue-done")).to_contain_text("Picked up")
        shot(page, "08-handed-over.png")

        desktop = browser.new_page(viewport={"width": 1280, "height": 800})
        desktop.context.add_cookies(page.context.cookies())
        desktop.goto(f"{live_server.url}/store/STORE1/f/{f.pk}/")
        expect(desktop.locator(".timeline")).to_contain_text("Collected at STORE1 (pickup code checked)")
        shot(desktop, "09-detail-desktop.png")

    f.refresh_from_db()
    assert f.status == "picked_up" and f.order.status == "completed"
    assert counters("STORE1", "A") == (3, 1)  # 2 collected; the late order's unit still held
    by = set(
        OrderEvent.objects.filter(order=f.order, type__startswith="fulfillment.").values_list("actor_label", flat=True)
    )
    assert by == {"alice"}
    assert ledger_mismatches() == []


@pytest.mark.browser
def test_ship_from_store_with_a_partial_rejection(live_server, transactional_db, api, order_body, stocked):
    SHOTS.mkdir(parents=True, exist_ok=True)
    store = stocked["store"]
    store.name, store.timezone = "Herald Square", "America/New_York"
    store.save()
    stock(store, stocked["item"], 5)
    associate("alice", store, password="s3cret-pass")
    order = ship_order(api, order_body, lines=[{"sku": "A", "quantity": 3, "unit_price": "20.00"}], tax_total="6.00",
                       payment={"method": "card", "amount_authorized": "71.00"})  # fmt: skip
    f = Fulfillment.objects.get(order=order)
    assert f.location.code == "STORE1"

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)
        page.goto(f"{live_server.url}/store/login/")
        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", "s3cret-pass")
        page.click("button[type=submit]")
        page.locator("#queue-to-do a", has_text=order.number).click()
        expect(page.locator(".facts")).to_contain_text("12 Analytical Way")
        page.click("#accept")
        expect(page.locator("#status")).to_have_text("Accepted")
        page.click("summary")  # "Can't fulfil it? Reject…"
        page.select_option("select[name=reason]", "Damaged")
        page.fill("input[name=note]", "box crushed")
        page.fill(f"input[name=line_{f.lines.get().line_id}]", "1")
        shot(page, "10-reject-form.png")
        page.click("#reject")
        expect(page.locator(".message.success")).to_contain_text("Rejected.")
        page.locator("#queue-to-do a", has_text=order.number).click()
        expect(page.locator(".lines")).to_contain_text("1 rejected")
        page.click("#start-picking")
        expect(page.locator("#status")).to_have_text("Picking")
        page.click("#pack")
        expect(page.locator("#status")).to_have_text("Packed")
        expect(page.locator("#ship-form")).to_be_visible()
        expect(page.locator("#ready")).to_have_count(0)
        page.fill("input[name=carrier]", "UPS")
        page.fill("input[name=tracking_number]", "1Z 999 AA1 0123")
        shot(page, "11-ship-form.png")
        page.click("#ship")
        expect(page.locator(".message.success")).to_have_text(
            "Shipped. The customer has been sent the tracking number."
        )
        shot(page, "12-shipped.png")

    f.refresh_from_db()
    assert f.status == "shipped"
    (shipment,) = f.shipments.all()
    assert (shipment.carrier, shipment.tracking_number) == ("UPS", "1Z999AA10123")
    rerouted = Fulfillment.objects.exclude(pk=f.pk).get(order=order)
    assert rerouted.location.code == "DC1" and rerouted.lines.get().quantity == 1
    assert [m.subject for m in mail.outbox] == [f"Your order {order.number} has shipped"]
    assert ledger_mismatches() == []
