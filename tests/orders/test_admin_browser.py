"""Place a manual hold on an order from the admin changelist, in a real browser."""

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from orders.models import Order, OrderStatus
from tests.browser import chromium

# These tests look at capture and the order lifecycle alone; routing has its own tests.
pytestmark = pytest.mark.usefixtures("no_routing")


SCREENSHOT = "/tmp/admin_order_hold.png"  # the changelist after the hold
CONFIRM_SCREENSHOT = "/tmp/admin_order_hold_confirm.png"  # the intermediate page
DETAIL_SCREENSHOT = "/tmp/admin_order_hold_detail.png"  # the held order


@pytest.mark.browser
def test_manual_hold_from_the_changelist(live_server, transactional_db, capture):
    User.objects.create_superuser("ops", "ops@example.com", "s3cret-pass")
    number = capture()["number"]
    order = Order.objects.get(number=number)

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{live_server.url}/admin/")
        page.fill("#id_username", "ops")
        page.fill("#id_password", "s3cret-pass")
        page.click("input[type=submit]")
        expect(page.locator("#user-tools")).to_contain_text("ops")

        # The order, read-only: no status input, no save button.
        page.goto(f"{live_server.url}/admin/orders/order/{order.pk}/change/")
        expect(page.locator("h1")).to_have_text("View order")
        expect(page.locator(".field-status .readonly")).to_have_text("Received")
        expect(page.locator("select[name=status]")).to_have_count(0)
        expect(page.locator("input[name=_save]")).to_have_count(0)

        page.goto(f"{live_server.url}/admin/orders/order/")
        page.check(f"#result_list tr:has-text('{number}') input.action-select")
        page.select_option("select[name=action]", label="Place a manual hold")
        page.click("button[name=index]")

        expect(page.locator("h1")).to_have_text("Place a hold")
        expect(page.locator("#action-orders")).to_contain_text(number)
        expect(page.locator("select[name=hold_type]")).to_have_value("manual")
        page.fill("input[name=reason]", "Customer asked us to wait for a second parcel")
        page.screenshot(path=CONFIRM_SCREENSHOT, full_page=True)
        page.click("input[name=confirm]")

        expect(page.locator(".messagelist .success")).to_have_text(f"Held 1 order(s): {number}.")
        row = page.locator(f"#result_list tr:has-text('{number}')")
        expect(row.locator(".field-status")).to_have_text("On hold")
        page.screenshot(path=SCREENSHOT, full_page=True)

        page.click(f"#result_list a:text('{number}')")
        expect(page.locator(".field-status .readonly")).to_have_text("On hold")
        expect(page.locator("#holds-group")).to_contain_text("Customer asked us to wait for a second parcel")
        expect(page.locator("#events-group")).to_contain_text("User: ops")
        page.screenshot(path=DETAIL_SCREENSHOT, full_page=True)

    order.refresh_from_db()
    assert order.status == OrderStatus.ON_HOLD
    hold = order.holds.get()
    assert (hold.type, hold.actor_label, hold.released_at) == ("manual", "ops", None)
