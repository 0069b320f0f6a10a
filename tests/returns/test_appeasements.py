"""Appeasements: money or credit without a return, limited per role in the service itself."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import User

from oms.actor import Actor
from oms.errors import InvalidTransition, PermissionDenied, ValidationFailed
from oms.roles import CSR, SUPERVISOR, ensure_groups
from orders.models import OrderEvent, Payment
from returns.appeasements import appeasement_approve, appeasement_create, appeasement_decline, appeasement_limit
from returns.models import Appeasement, AppeasementLimit, Refund

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def people(db):
    groups = ensure_groups()

    def person(name, group=None, **extra):
        user = User.objects.create_user(name, f"{name}@example.com", name, is_staff=True, **extra)
        if group:
            user.groups.add(groups[group])
        return Actor.for_user(user)

    return {
        "csr": person("csr", CSR),
        "csr2": person("csr2", CSR),
        "supervisor": person("supervisor", SUPERVISOR),
        "supervisor2": person("supervisor2", SUPERVISOR),
        "admin": person("admin", is_superuser=True),
        "nobody": person("nobody"),
    }


def give(people, who, order, amount, kind="refund", **extra):
    return appeasement_create(
        order_number=order["number"],
        kind=kind,
        amount=Decimal(amount),
        reason="late_delivery",
        actor=people[who],
        **extra,
    )


def test_limits_by_role(people, shipped):
    assert appeasement_limit(people["csr"]) == Decimal("25.00")
    assert appeasement_limit(people["supervisor"]) == Decimal("250.00")
    assert appeasement_limit(people["admin"]) is None
    assert appeasement_limit(people["nobody"]) == Decimal(0)
    payment = Payment.objects.get(order__number=shipped["number"])

    credit = give(people, "csr", shipped, "20.00", kind="credit")
    assert credit.status == "issued" and credit.credit_reference.startswith("SC-")
    refund = give(people, "csr", shipped, "25.00")
    assert refund.status == "issued"
    payment.refresh_from_db()
    assert payment.amount_refunded == Decimal("25.00")  # sent through the sandbox gateway
    assert Refund.objects.get(appeasement=refund).status == "succeeded"

    before = (Appeasement.objects.count(), OrderEvent.objects.count(), Refund.objects.count())
    with pytest.raises(PermissionDenied, match="above your appeasement limit of 25.00"):
        give(people, "csr", shipped, "25.01")
    with pytest.raises(PermissionDenied):
        give(people, "supervisor", shipped, "250.01", kind="credit")
    with pytest.raises(PermissionDenied):
        give(people, "nobody", shipped, "1.00", kind="credit")
    assert (Appeasement.objects.count(), OrderEvent.objects.count(), Refund.objects.count()) == before

    assert give(people, "supervisor", shipped, "40.00").status == "issued"
    assert give(people, "admin", shipped, "17.00").status == "issued"  # 82 − 25 − 40 = 17 left
    payment.refresh_from_db()
    assert (payment.amount_refunded, payment.status) == (Decimal("82.00"), "refunded")
    # Nothing left to refund: a credit is still possible, a refund is not.
    with pytest.raises(ValidationFailed, match="At most 0"):
        give(people, "supervisor", shipped, "1.00")
    types = list(OrderEvent.objects.filter(order__number=shipped["number"]).values_list("type", flat=True))
    assert types.count("appeasement.issued") == 4


def test_above_the_limit_waits_for_a_supervisor(people, shipped):
    pending = give(people, "csr", shipped, "60.00", note="parcel 5 days late", request_approval=True)
    assert pending.status == "pending_approval"
    assert not Refund.objects.exists()
    with pytest.raises(PermissionDenied):
        appeasement_approve(appeasement_id=pending.pk, actor=people["csr2"])  # CSRs cannot approve
    approved = appeasement_approve(appeasement_id=pending.pk, actor=people["supervisor"], note="ok")
    assert approved.status == "issued" and approved.decided_by == "supervisor"
    assert Payment.objects.get(order__number=shipped["number"]).amount_refunded == Decimal("60.00")
    with pytest.raises(InvalidTransition):
        appeasement_approve(appeasement_id=pending.pk, actor=people["supervisor2"])

    own = give(people, "supervisor", shipped, "300.00", kind="credit", request_approval=True)
    with pytest.raises(PermissionDenied, match="your own"):
        appeasement_approve(appeasement_id=own.pk, actor=people["supervisor"])
    with pytest.raises(PermissionDenied, match="above your appeasement limit"):
        appeasement_approve(appeasement_id=own.pk, actor=people["supervisor2"])  # 300 > 250
    declined = appeasement_decline(appeasement_id=own.pk, actor=people["supervisor2"], note="too much")
    assert declined.status == "declined"
    big = give(people, "supervisor", shipped, "300.00", kind="credit", request_approval=True)
    assert appeasement_approve(appeasement_id=big.pk, actor=people["admin"]).status == "issued"

    AppeasementLimit.objects.filter(role="CSR").update(max_amount=Decimal("100.00"))  # merchants tune it
    assert give(people, "csr", shipped, "22.00").status == "issued"


def test_api_appeasements_follow_the_key_limit(api, make_key, shipped, settings, nothing_changes):
    body = {"order": shipped["number"], "kind": "refund", "amount": "10.00", "reason": "late_delivery"}
    with nothing_changes():
        r = api.post("/api/v1/appeasements/", body, format="json")
        assert r.status_code == 403 and r.json()["error"]["fields"] == {"amount": "At most 0 without approval."}
        for bad, field in [
            ({"amount": "-1"}, "amount"),
            ({"amount": "abc"}, "amount"),
            ({"kind": "cash"}, "kind"),
            ({"reason": "nope"}, "reason"),
            ({"order": None}, "order"),
        ]:
            r = api.post("/api/v1/appeasements/", {**body, **bad}, format="json")
            assert r.status_code == 400 and field in r.json()["error"]["fields"], (bad, r.content)
        r = api.post("/api/v1/appeasements/", {**body, "order": "NOPE-1"}, format="json")
        assert r.status_code == 404
        assert make_key("orders:read").post("/api/v1/appeasements/", body, format="json").status_code == 403
        other = make_key("returns:write,orders:read", channel=shipped_channel("market"))
        assert other.post("/api/v1/appeasements/", body, format="json").status_code == 404
    r = api.post("/api/v1/appeasements/", {**body, "request_approval": True}, format="json")
    assert r.status_code == 202 and r.json()["status"] == "pending_approval"
    settings.APPEASEMENT_API_KEY_LIMIT = "50"
    r = api.post("/api/v1/appeasements/", body, format="json", HTTP_IDEMPOTENCY_KEY="ap-1")
    assert r.status_code == 201 and r.json()["status"] == "issued"
    assert r.json()["refunds"][0]["status"] == "succeeded"
    replay = api.post("/api/v1/appeasements/", body, format="json", HTTP_IDEMPOTENCY_KEY="ap-1")
    assert replay.content == r.content and Appeasement.objects.filter(status="issued").count() == 1
    r = api.post("/api/v1/appeasements/", {**body, "amount": "80.00"}, format="json")  # 82 − 10 left = 72
    assert r.status_code == 403
    listed = api.get(f"/api/v1/appeasements/?order={shipped['number']}").json()
    assert [a["status"] for a in listed["results"]] == ["issued", "pending_approval"]


def shipped_channel(code):
    from inventory.models import Channel

    return Channel.objects.get(code=code)
