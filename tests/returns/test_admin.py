"""The returns admin: configuration by merchants, read-only returns/refunds/appeasements, and
the actions that call the services with the user as the actor."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from oms.actor import Actor
from oms.roles import CSR, MERCHANT, SUPERVISOR, ensure_groups
from returns.appeasements import appeasement_create
from returns.models import Appeasement, Return, ReturnPolicy, ReturnReason
from tests.returns.conftest import line_of

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def staff(client):
    groups = ensure_groups()

    def login(name, group=None, superuser=False):
        if superuser:
            user = User.objects.create_superuser(name, f"{name}@example.com", "pw")
        else:
            user = User.objects.create_user(name, f"{name}@example.com", "pw", is_staff=True)
            user.groups.add(groups[group])
        client.force_login(user)
        return user

    return login


def run_action(client, model: str, action: str, pks, confirm: dict | None = None):
    data = {"action": action, "_selected_action": list(pks), "index": 0, "select_across": 0}
    if confirm is not None:
        data.update(confirm, confirm="yes")
    return client.post(reverse(f"admin:returns_{model}_changelist"), data, follow=True)


def messages_of(response):
    return [(m.level_tag, m.message) for m in response.context["messages"]]


@pytest.fixture
def rma(api, shipped):
    a = line_of(shipped, "A")["id"]
    r = api.post(
        "/api/v1/returns/",
        {
            "order": shipped["number"],
            "method": "mail",
            "lines": [{"line_id": a, "quantity": 1, "reason": "wrong_size"}],
        },
        format="json",
    )
    return Return.objects.get(pk=r.json()["id"])


def test_merchants_configure_policies_and_reasons(client, staff, returns_network):
    staff("merchant", MERCHANT)
    r = client.post(
        reverse("admin:returns_returnpolicy_add"),
        {
            "channel": returns_network["web"].pk,
            "window_days": 14,
            "auto_authorise": "on",
            "refund_shipping": "always",
            "restocking_fee_percent": "15",
            "damaged_deduction_percent": "0",
            "fee_free_exchanges": "on",
        },
    )
    assert r.status_code == 302, r.content
    policy = ReturnPolicy.objects.get(channel=returns_network["web"])
    assert (policy.window_days, policy.restocking_fee_percent) == (14, Decimal("15"))
    r = client.post(
        reverse("admin:returns_returnreason_add"),
        {"code": "gift", "name": "Unwanted gift", "active": "on", "position": 5},
    )
    assert r.status_code == 302 and ReturnReason.objects.filter(code="gift", merchant_fault=False).exists()
    bad = client.post(
        reverse("admin:returns_returnpolicy_add"),
        {
            "window_days": 14,
            "refund_shipping": "never",
            "restocking_fee_percent": "150",
            "damaged_deduction_percent": "0",
        },
    )
    assert bad.status_code == 200 and "restocking_fee_percent" in bad.context["adminform"].form.errors


def test_csrs_read_returns_and_cancel_through_the_service(client, staff, rma):
    staff("csr", CSR)
    assert client.get(reverse("admin:returns_return_changelist")).status_code == 200
    page = client.get(reverse("admin:returns_return_change", args=[rma.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert rma.number in html and "Wrong size or fit" in html and 'name="_save"' not in html
    assert client.get(reverse("admin:returns_returnpolicy_add")).status_code == 403  # merchants only

    confirm = run_action(client, "return", "cancel_returns", [rma.pk])
    assert confirm.status_code == 200 and b"Cancel returns" in confirm.content
    assert Return.objects.get(pk=rma.pk).status == "authorised"  # nothing until confirmed
    done = run_action(client, "return", "cancel_returns", [rma.pk], {"reason": "customer kept it"})
    assert messages_of(done) == [("success", f"Cancelled 1: {rma.number}.")]
    rma.refresh_from_db()
    assert rma.status == "cancelled"
    event = rma.order.events.get(type="return.cancelled")
    assert (event.actor_type, event.actor_label) == ("user", "csr")
    again = run_action(client, "return", "cancel_returns", [rma.pk], {"reason": "again"})
    assert messages_of(again)[0][0] == "error"
    # CSRs cannot retry refunds or approve appeasements: the actions are not offered.
    page = client.get(reverse("admin:returns_refund_changelist"))
    assert b"retry_refunds" not in page.content
    page = client.get(reverse("admin:returns_appeasement_changelist"))
    assert b"approve_appeasements" not in page.content


def test_supervisors_approve_appeasements_in_the_admin(client, staff, shipped):
    csr = User.objects.create_user("csr1", "c@example.com", "pw", is_staff=True)
    csr.groups.add(ensure_groups()[CSR])
    waiting = appeasement_create(
        order_number=shipped["number"],
        kind="credit",
        amount=Decimal("100.00"),
        reason="late_delivery",
        actor=Actor.for_user(csr),
        request_approval=True,
    )
    staff("sup", SUPERVISOR)
    done = run_action(client, "appeasement", "approve_appeasements", [waiting.pk], {"note": "fine"})
    assert messages_of(done)[0][0] == "success"
    waiting.refresh_from_db()
    assert (waiting.status, waiting.decided_by) == ("issued", "sup") and waiting.credit_reference
    page = client.get(reverse("admin:returns_appeasement_change", args=[waiting.pk]))
    assert page.status_code == 200 and b"SC-" in page.content
    assert Appeasement.objects.count() == 1


def test_return_change_page_shows_receipts_refunds_and_timeline(client, staff, api, rma):
    a = rma.lines.get().order_line_id
    api.post(
        f"/api/v1/returns/{rma.pk}/receive/",
        {"location": "DC1", "lines": [{"line_id": a, "quantity": 1, "condition": "sellable"}]},
        format="json",
    )
    staff("root", superuser=True)
    html = client.get(reverse("admin:returns_return_change", args=[rma.pk])).content.decode()
    assert "Sellable → Restock at the receiving location" in html
    assert "re_sbx_" in html  # the refund's gateway reference
    assert "Return " + rma.number + " received at DC1" in html
    refund = rma.refunds.get()
    assert client.get(reverse("admin:returns_refund_change", args=[refund.pk])).status_code == 200
