"""A return in the admin, in a real browser: the read-only page with its receipt, refund and
timeline, and cancelling another return through the confirmation page."""

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from returns.models import Return
from tests.browser import chromium
from tests.returns.conftest import line_of

DETAIL_SCREENSHOT = "/tmp/admin_return_detail.png"
CONFIRM_SCREENSHOT = "/tmp/admin_return_cancel_confirm.png"
LIST_SCREENSHOT = "/tmp/admin_return_list.png"


@pytest.mark.browser
def test_return_page_and_cancel_action(live_server, transactional_db, api, shipped, web_policy):
    User.objects.create_superuser("ops", "ops@example.com", "s3cret-pass")
    a = line_of(shipped, "A")["id"]
    create = {"order": shipped["number"], "method": "mail"}
    received = api.post(
        "/api/v1/returns/",
        {**create, "lines": [{"line_id": a, "quantity": 2, "reason": "changed_mind"}]},
        format="json",
    ).json()
    api.post(
        f"/api/v1/returns/{received['id']}/receive/",
        {
            "location": "DC1",
            "lines": [
                {"line_id": a, "quantity": 1, "condition": "sellable"},
                {"line_id": a, "quantity": 1, "condition": "damaged"},
            ],
        },
        format="json",
    )
    b = line_of(shipped, "B")["id"]
    pending = api.post(
        "/api/v1/returns/", {**create, "lines": [{"line_id": b, "quantity": 1, "reason": "wrong_size"}]}, format="json"
    ).json()

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{live_server.url}/admin/")
        page.fill("#id_username", "ops")
        page.fill("#id_password", "s3cret-pass")
        page.click("input[type=submit]")

        page.goto(f"{live_server.url}/admin/returns/return/{received['id']}/change/")
        expect(page.locator("h1")).to_have_text("View return")
        expect(page.locator(".field-status .readonly")).to_have_text("Refunded")
        expect(page.locator(".field-refund_amount .readonly")).to_have_text("30.80")
        expect(page.locator("#receipts-group")).to_contain_text("Damaged → Write off")
        expect(page.locator("#refunds-group")).to_contain_text("Succeeded")
        expect(page.locator(".field-timeline")).to_contain_text("received at DC1")
        expect(page.locator("input[name=_save]")).to_have_count(0)
        page.screenshot(path=DETAIL_SCREENSHOT, full_page=True)

        page.goto(f"{live_server.url}/admin/returns/return/")
        page.check(f"#result_list tr:has-text('{pending['number']}') input.action-select")
        page.select_option("select[name=action]", label="Cancel selected returns")
        page.click("button[name=index]")
        expect(page.locator("h1")).to_have_text("Cancel returns")
        expect(page.locator("#action-records")).to_contain_text(pending["number"])
        page.fill("input[name=reason]", "Customer decided to keep it")
        page.screenshot(path=CONFIRM_SCREENSHOT, full_page=True)
        page.click("input[name=confirm]")
        expect(page.locator(".messagelist .success")).to_have_text(f"Cancelled 1: {pending['number']}.")
        row = page.locator(f"#result_list tr:has-text('{pending['number']}')")
        expect(row.locator(".field-status")).to_have_text("Cancelled")
        page.screenshot(path=LIST_SCREENSHOT, full_page=True)
    assert Return.objects.get(pk=pending["id"]).status == "cancelled"
