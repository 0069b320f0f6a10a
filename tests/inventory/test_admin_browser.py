"""Import stock counts from a CSV in the admin, in a real browser."""

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from inventory.models import Stock
from inventory.selectors import ledger_mismatches
from tests.browser import chromium
from tests.factories import ItemFactory, LocationFactory

SCREENSHOT = "/tmp/admin_csv_import.png"


@pytest.mark.browser
def test_stock_csv_import_in_the_admin(live_server, transactional_db):
    User.objects.create_superuser("merchant", "m@example.com", "s3cret-pass")
    LocationFactory(code="DC1", name="East DC")
    LocationFactory(code="STORE1", name="SoHo", type="store")
    ItemFactory(sku="TEE-BLK-M", name="Black tee M")
    ItemFactory(sku="MUG-WHT", name="White mug")
    csv = b"location,sku,on_hand,safety_stock\nDC1,TEE-BLK-M,120,5\nDC1,MUG-WHT,40,\nSTORE1,TEE-BLK-M,8,1\n"

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{live_server.url}/admin/")
        page.fill("#id_username", "merchant")
        page.fill("#id_password", "s3cret-pass")
        page.click("input[type=submit]")
        expect(page.locator("#user-tools")).to_contain_text("merchant")

        page.goto(f"{live_server.url}/admin/inventory/stock/")
        page.click("text=Import CSV")
        expect(page.locator("h1")).to_have_text("Import stock counts from CSV")
        page.set_input_files("input[type=file]", {"name": "count.csv", "mimeType": "text/csv", "buffer": csv})
        page.click("input[name=_import]")

        expect(page.locator(".messagelist .success")).to_contain_text(
            "Imported count.csv: 3 created, 0 updated, 0 unchanged."
        )
        # Listed by location code, then SKU.
        expect(page.locator("#result_list .field-item")).to_have_text(
            ["MUG-WHT · White mug", "TEE-BLK-M · Black tee M", "TEE-BLK-M · Black tee M"]
        )
        expect(page.locator("#result_list .field-on_hand")).to_have_text(["40", "120", "8"])
        expect(page.locator("#result_list .field-available")).to_have_text(["40", "115", "7"])
        page.screenshot(path=SCREENSHOT, full_page=True)

    counts = dict(Stock.objects.values_list("location__code", "on_hand").filter(item__sku="TEE-BLK-M"))
    assert counts == {"DC1": 120, "STORE1": 8}
    assert ledger_mismatches() == []
