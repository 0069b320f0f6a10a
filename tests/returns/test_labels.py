"""Mail returns ask for a return label after commit; the carrier seam records what it answers."""

import pytest

from returns import labels
from returns.labels import IssuedLabel
from tests.returns.conftest import line_of

pytestmark = pytest.mark.django_db(transaction=True)


class FakeCarrier:
    def __init__(self, fail=False):
        self.fail = fail
        self.asked = []

    def create_return_label(self, *, rma):
        self.asked.append((rma.number, rma.location.code, rma.order.ship_postal_code))
        if self.fail:
            raise RuntimeError("address not serviceable")
        return IssuedLabel(carrier="SANDBOX", tracking_number=f"RT{rma.pk:06d}", url="https://labels.example/1.pdf")


def mail_return(api, shipped, method="mail"):
    a = line_of(shipped, "A")["id"]
    r = api.post(
        "/api/v1/returns/",
        {
            "order": shipped["number"],
            "method": method,
            "lines": [{"line_id": a, "quantity": 1, "reason": "wrong_size"}],
        },
        format="json",
    )
    assert r.status_code == 201, r.content
    return r.json()


def test_label_from_the_carrier_adapter(api, shipped, monkeypatch):
    carrier = FakeCarrier()
    monkeypatch.setattr(labels, "carrier_adapter", lambda: carrier)
    rma = mail_return(api, shipped)
    assert rma["label"] == {
        "status": "issued",
        "carrier": "SANDBOX",
        "tracking_number": f"RT{rma['id']:06d}",
        "url": "https://labels.example/1.pdf",
        "error": "",
    }
    assert carrier.asked == [(rma["number"], "DC1", "10001")]
    assert mail_return(api, shipped, method="store")["label"]["status"] == "none"  # store returns need none
    assert len(carrier.asked) == 1


def test_a_carrier_failure_is_recorded(api, shipped, monkeypatch):
    monkeypatch.setattr(labels, "carrier_adapter", lambda: FakeCarrier(fail=True))
    rma = mail_return(api, shipped)
    assert rma["label"]["status"] == "failed" and "address not serviceable" in rma["label"]["error"]
    events = api.get(f"/api/v1/orders/{shipped['number']}/").json()["events"]
    assert any(e["type"] == "return.label" and "address not serviceable" in e["message"] for e in events)
