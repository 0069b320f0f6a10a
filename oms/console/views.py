"""The customer-service console: server-rendered pages beside the admin.

Views are thin: selectors load, forms validate, the existing services decide and write (each
one writing the order's timeline with the logged-in user as the actor). Every action is two
steps: the form, then a confirmation page that says what will happen; a service's refusal is
shown in place with its message. With htmx (vendored in `oms/static/console/`) the action opens
in a panel on the order page; without JavaScript the same URLs work as plain pages.

The console sits on top of every app, as the admin and the API do: it reads and calls orders,
inventory, routing and returns; nothing imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from inventory.models import Channel, Location
from oms.actor import Actor
from oms.errors import DomainError
from orders import services
from orders.models import Customer, HoldType, OrderStatus
from returns import appeasements as appeasement_services
from returns import services as return_services
from returns.exchanges import ExchangeLineInput
from returns.models import RECEIVABLE, Appeasement, AppeasementStatus, Condition, Disposition
from returns.selectors import returnable
from routing.services import simulate_reroute

from . import forms, selectors
from .permissions import (
    ACT_ON_ORDERS,
    APPEASE,
    APPROVE_APPEASEMENT,
    CREATE_RETURN,
    RECEIVE_RETURN,
    VIEW_CUSTOMERS,
    VIEW_ORDERS,
    VIEW_STOCK,
    console_view,
)

QUEUES = {
    "holds": "On hold",
    "sourcing": "Unsourceable",
    "dead-letters": "Dead-lettered messages",
    "rejected": "Rejected fulfilments",
    "late": "Late fulfilments",
    "backorders": "Backorders",
    "pickups": "Uncollected pickups",
    "appeasements": "Appeasements to approve",
}


class LoginView(auth_views.LoginView):
    template_name = "console/login.html"
    redirect_authenticated_user = True

    def get_default_redirect_url(self):
        return reverse("console:search")


class LogoutView(auth_views.LogoutView):
    next_page = "console:login"


def _is_htmx(request) -> bool:
    return request.headers.get("HX-Request") == "true"


def _next_url(request, default: str) -> str:
    """Back to where the CSR came from (a queue), if it is one of ours."""
    target = request.POST.get("next") or request.GET.get("next")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return default


# --- Search ----------------------------------------------------------------------------------


@console_view(VIEW_ORDERS)
def search(request):
    form = forms.SearchForm(request.GET or None)
    result = None
    if form.is_bound and form.is_valid():
        params = form.params()
        if params.has_criteria:
            result = selectors.order_search(params)
            if result.total == 1 and params.q and len(result.orders) == 1 and params.page == 1:
                order = result.orders[0]
                if order.number == selectors.normalise_number(params.q):
                    return redirect("console:order", number=order.number)  # an exact order number
    query = request.GET.copy()
    query.pop("page", None)
    # The dropdowns are drawn in the template: a widget renders each <option> through a
    # template of its own, which costs more than the search on a large network.
    choices = {
        "channels": list(Channel.objects.order_by("code").values_list("code", "name")),
        "locations": list(Location.objects.order_by("code").values_list("code", "name")),
        "statuses": OrderStatus.choices,
        "sorts": list(selectors.SORT_LABELS.items()),
    }
    return render(
        request,
        "console/search.html",
        {"form": form, "result": result, "query": query.urlencode(), "section": "search", **choices},
    )


# --- The order page --------------------------------------------------------------------------


@console_view(VIEW_ORDERS)
def order_detail(request, number: str):
    page = selectors.order_page(number)
    if page is None:
        raise Http404(f"No order {number}")
    return render(
        request,
        "console/order.html",
        {
            "page": page,
            "order": page.order,
            "can_act": request.user.has_perm(ACT_ON_ORDERS),
            "can_return": request.user.has_perm(CREATE_RETURN),
            "can_receive": request.user.has_perm(RECEIVE_RETURN),
            "receivable": RECEIVABLE,
            "can_appease": request.user.has_perm(APPEASE),
            "can_approve": request.user.has_perm(APPROVE_APPEASEMENT),
            "note_form": forms.NoteForm(),
            "section": "search",
        },
    )


# --- Actions ---------------------------------------------------------------------------------


def _order_or_404(number: str):
    order = selectors.order_for_action(number)
    if order is None:
        raise Http404(f"No order {number}")
    return order


def _action(
    request,
    order,
    *,
    form: forms.forms.Form,
    title: str,
    intro: str,
    submit: str,
    apply: Callable[[Actor], str],
    summary: Callable[[], list[str]] | None = None,
    extra: dict | None = None,
    confirm: bool = True,
):
    """GET: the form. POST: validate, then (with `confirm`) a confirmation page listing what
    will happen; POST with "confirm": run `apply(actor)`, which calls a service and returns the
    success message. A DomainError is shown on the form, nothing changed."""
    error = None
    confirming = False
    status = 200
    if request.method == "POST" and form.is_valid():
        if confirm and "confirm" not in request.POST:
            confirming = True
        else:
            try:
                done = apply(Actor.for_user(request.user))
            except DomainError as exc:
                error, status = exc.message, exc.status
            else:
                messages.success(request, done)
                target = _next_url(request, reverse("console:order", args=[order.number]))
                if _is_htmx(request):
                    response = HttpResponse(status=204)
                    response["HX-Redirect"] = target
                    return response
                return redirect(target)
    elif request.method == "POST":
        status = 400
    context = {
        "order": order,
        "form": form,
        "title": title,
        "intro": intro,
        "submit": submit,
        "confirming": confirming,
        "summary": summary() if confirming and summary else [],
        "error": error,
        "next": request.POST.get("next") or request.GET.get("next", ""),
        "action_url": request.path,
        "section": "search",
        **(extra or {}),
    }
    template = "console/_action.html" if _is_htmx(request) else "console/action.html"
    return render(request, template, context, status=status)


def _money(amount: Decimal, order) -> str:
    return f"{amount:,.2f} {order.currency}"


@console_view(VIEW_ORDERS, ACT_ON_ORDERS)
def cancel(request, number: str):
    order = _order_or_404(number)
    lines = list(order.lines.all())
    form = forms.CancelForm(request.POST or None, lines=lines)

    def summary() -> list[str]:
        if form.whole_order:
            units = sum(line.quantity_open for line in form.lines)
            value = sum((line.value_of(line.quantity_open) for line in form.lines), Decimal(0))
            if not any(line.quantity_shipped for line in lines):
                value += order.shipping_total
            return [
                f"Cancel the whole order: {units} open unit(s) on {len(form.lines)} line(s).",
                "Stock held for them is released; fulfilments that are left empty are cancelled.",
                f"{_money(value, order)} goes back to the customer (voided if only authorised, else refunded).",
            ]
        by_id = {line.pk: line for line in lines}
        out = [f"Cancel {q} × {by_id[pk].sku} (line {pk})" for pk, q in form.partial.items()]
        value = sum((by_id[pk].value_of(q) for pk, q in form.partial.items()), Decimal(0))
        out.append(f"{_money(value, order)} goes back to the customer; the rest of the order carries on.")
        return out

    def apply(actor: Actor) -> str:
        lines_in = None if form.whole_order else [services.CancelLine(pk, q) for pk, q in form.partial.items()]
        services.order_cancel(
            order_number=order.number, reason=form.cleaned_data["reason"], actor=actor, lines=lines_in
        )
        return "Order cancelled." if form.whole_order else "Lines cancelled."

    return _action(
        request,
        order,
        form=form,
        title="Cancel",
        intro="Leave every quantity empty to cancel the whole order, or enter how many units of each line to cancel.",
        submit="Review cancellation",
        apply=apply,
        summary=summary,
        extra={"action": "cancel"},
    )


@console_view(VIEW_ORDERS, ACT_ON_ORDERS)
def hold(request, number: str):
    order = _order_or_404(number)
    form = forms.HoldForm(request.POST or None)

    def summary() -> list[str]:
        label = dict(HoldType.choices)[form.cleaned_data["hold_type"]]
        return [
            f"Place a {label.lower()} hold: {form.cleaned_data['reason']}",
            "The order is not routed or released to fulfilment until every hold is released.",
        ]

    def apply(actor: Actor) -> str:
        services.order_hold(
            order_number=order.number,
            hold_type=form.cleaned_data["hold_type"],
            reason=form.cleaned_data["reason"],
            actor=actor,
        )
        return "Hold placed."

    return _action(
        request,
        order,
        form=form,
        title="Place a hold",
        intro="Stop routing and fulfilment until the hold is released.",
        submit="Review hold",
        apply=apply,
        summary=summary,
        extra={"action": "hold"},
    )


@console_view(VIEW_ORDERS, ACT_ON_ORDERS)
def release(request, number: str):
    order = _order_or_404(number)
    active = list(order.holds.filter(released_at__isnull=True).order_by("id"))
    form = forms.ReleaseForm(request.POST or None, active_types=sorted({h.type for h in active}))

    def summary() -> list[str]:
        chosen = form.cleaned_data["hold_types"]
        releasing = [h for h in active if not chosen or h.type in chosen]
        out = [f"Release {h.get_type_display().lower()} hold: {h.reason}" for h in releasing]
        if len(releasing) == len(active):
            out.append("No hold is left: the order resumes (it is routed again if anything is left to route).")
        else:
            out.append(f"{len(active) - len(releasing)} other hold(s) stay: the order stays on hold.")
        return out

    def apply(actor: Actor) -> str:
        services.order_release(
            order_number=order.number,
            note=form.cleaned_data["note"],
            hold_types=form.cleaned_data["hold_types"] or None,
            actor=actor,
        )
        return "Hold released."

    return _action(
        request,
        order,
        form=form,
        title="Release holds",
        intro="Release some or all active holds.",
        submit="Review release",
        apply=apply,
        summary=summary,
        extra={"action": "release", "active_holds": active},
    )


@console_view(VIEW_ORDERS, ACT_ON_ORDERS)
def change_address(request, number: str):
    order = _order_or_404(number)
    form = forms.AddressForm(request.POST or None, initial=forms.AddressForm.initial_for(order))

    def summary() -> list[str]:
        a = form.address()
        before = ", ".join(
            p
            for p in (order.ship_line1, order.ship_line2, order.ship_postal_code, order.ship_city, order.ship_country)
            if p
        )
        after = ", ".join(p for p in (a.line1, a.line2, a.postal_code, a.city, a.country.upper()) if p)
        return [f"From: {before or '—'}", f"To: {after}", "Fulfilments not yet shipped go to the new address."]

    def apply(actor: Actor) -> str:
        services.order_change_address(order_number=order.number, address=form.address(), actor=actor)
        return "Shipping address changed."

    return _action(
        request,
        order,
        form=form,
        title="Change the shipping address",
        intro="Possible until something has shipped.",
        submit="Review address",
        apply=apply,
        summary=summary,
        extra={"action": "address"},
    )


@console_view(VIEW_ORDERS, ACT_ON_ORDERS)
def add_note(request, number: str):
    order = _order_or_404(number)
    form = forms.NoteForm(request.POST or None)

    def apply(actor: Actor) -> str:
        services.order_add_note(order_number=order.number, text=form.cleaned_data["text"], actor=actor)
        return "Note added."

    return _action(
        request,
        order,
        form=form,
        title="Add a note",
        intro="Notes go on the order's timeline with your name.",
        submit="Add note",
        apply=apply,
        confirm=False,
        extra={"action": "note"},
    )


@console_view(VIEW_ORDERS, ACT_ON_ORDERS)
def route_again(request, number: str):
    order = _order_or_404(number)
    form = forms.forms.Form(request.POST or None)

    def apply(actor: Actor) -> str:
        services.order_route_again(order_number=order.number, actor=actor)
        return "Routing asked to try again."

    return _action(
        request,
        order,
        form=form,
        title="Route again",
        intro="Routing tries again now for every open unit not yet in a fulfilment (stock may have arrived).",
        submit="Route again",
        apply=apply,
        summary=lambda: ["Units that can be sourced now get a fulfilment; the rest stay backordered."],
        extra={"action": "route-again"},
    )


def _fulfillment_or_404(number: str, fulfillment_id: int):
    fulfillment = selectors.fulfillment_for_action(number, fulfillment_id)
    if fulfillment is None:
        raise Http404(f"No fulfilment {fulfillment_id} on order {number}")
    return fulfillment


@console_view(VIEW_ORDERS, ACT_ON_ORDERS)
def reroute(request, number: str, fulfillment_id: int):
    fulfillment = _fulfillment_or_404(number, fulfillment_id)
    order = fulfillment.order
    form = forms.RerouteForm(request.POST or None)
    plan = simulate_reroute(fulfillment=fulfillment)
    skus = {str(fl.line_id): fl.line.sku for fl in fulfillment.lines.all()}

    def summary() -> list[str]:
        out = [f"Take {fulfillment.location.code}'s open units away: its held stock is released."]
        out.append(f"Routing then runs again without {fulfillment.location.code}: {plan.explanation.get('summary')}.")
        if order.status == OrderStatus.ON_HOLD:
            out.append("The order is on hold: routing waits until it is released.")
        return out

    def apply(actor: Actor) -> str:
        services.fulfillment_reroute(fulfillment_id=fulfillment.pk, reason=form.cleaned_data["reason"], actor=actor)
        return f"Fulfilment {fulfillment.pk} taken from {fulfillment.location.code}; routing runs again."

    return _action(
        request,
        order,
        form=form,
        title=f"Re-route fulfilment {fulfillment.pk} ({fulfillment.location.code})",
        intro="The simulation above shows where routing would send these units now, without this location.",
        submit="Review re-route",
        apply=apply,
        summary=summary,
        extra={
            "action": "reroute",
            "fulfillment": fulfillment,
            "plan": plan,
            "plan_view": selectors.explanation_view(plan.explanation, skus),
            "names": {},
        },
    )


@console_view(VIEW_ORDERS, ACT_ON_ORDERS)
def resend(request, number: str, fulfillment_id: int):
    fulfillment = _fulfillment_or_404(number, fulfillment_id)
    order = fulfillment.order
    form = forms.forms.Form(request.POST or None)
    message = selectors.partner_message(fulfillment.pk)

    def apply(actor: Actor) -> str:
        services.fulfillment_resend(fulfillment_id=fulfillment.pk, actor=actor)
        return f"Fulfilment {fulfillment.pk} is being sent to {fulfillment.location.code} again."

    return _action(
        request,
        order,
        form=form,
        title=f"Resend fulfilment {fulfillment.pk} to {fulfillment.location.code}",
        intro="The partner has not acknowledged this fulfilment request.",
        submit="Review resend",
        apply=apply,
        summary=lambda: [
            f"Send the request to {fulfillment.location.code} now, then retry with backoff until it answers 2xx.",
            "The partner de-duplicates on the request's Idempotency-Key, so a second copy is harmless.",
        ],
        extra={"action": "resend", "fulfillment": fulfillment, "message": message},
    )


# --- Returns, exchanges, appeasements ------------------------------------------------------


@console_view(VIEW_ORDERS, CREATE_RETURN)
def create_return(request, number: str):
    order = _order_or_404(number)
    lines = list(order.lines.all())
    form = forms.ReturnForm(request.POST or None, lines=lines, returnable=returnable(lines))

    def exchange() -> list[ExchangeLineInput]:
        d = form.cleaned_data
        return (
            [ExchangeLineInput(sku=d["exchange_sku"].strip(), quantity=d["exchange_quantity"])]
            if d["exchange_sku"]
            else []
        )

    def summary() -> list[str]:
        d = form.cleaned_data
        out = [f"Take back {q} × {line.sku} (line {line.pk}): {reason}" for line, q, reason in form.wanted]
        where = d["location"].code if d["location"] else "a warehouse that takes returns"
        out.append(f"By {d['method']}, back to {where}.")
        for x in exchange():
            out.append(
                f"Exchange: a new linked order for {x.quantity} × {x.sku}"
                + (
                    ", shipped before the return arrives."
                    if d["advance_exchange"]
                    else ", shipped once it is received."
                )
            )
        out.append("The refund is computed when the goods are received and inspected.")
        return out

    def apply(actor: Actor) -> str:
        d = form.cleaned_data
        rma = return_services.return_create(
            data=return_services.ReturnInput(
                order_number=order.number,
                lines=[
                    return_services.ReturnLineInput(line_id=line.pk, quantity=q, reason=r) for line, q, r in form.wanted
                ],
                method=d["method"],
                location=d["location"].code if d["location"] else "",
                note=d["note"],
                exchange_lines=exchange(),
                advance_exchange=d["advance_exchange"],
                window_override_reason=d["window_override_reason"],
            ),
            actor=actor,
        )
        made = f"Return {rma.number} created ({rma.get_status_display().lower()})"
        return made + (f"; exchange order {rma.exchange_order.number}." if rma.exchange_order_id else ".")

    return _action(
        request,
        order,
        form=form,
        title="Create a return or exchange",
        intro="Enter how many shipped units of each line come back and why.",
        submit="Review return",
        apply=apply,
        summary=summary,
        extra={"action": "return"},
    )


@console_view(VIEW_ORDERS, RECEIVE_RETURN)
def receive_return(request, number: str, return_number: str):
    """Goods of a return arrived and were inspected: the service restocks, writes off, records
    and computes the refund under the channel's policy (there is no preview of it to show)."""
    rma = selectors.return_for_receiving(number, return_number)
    if rma is None:
        raise Http404(f"No return {return_number} on order {number}")
    order = rma.order
    form = forms.ReceiveForm(request.POST or None, rma=rma)

    def summary() -> list[str]:
        at = form.cleaned_data["location"].code
        out = [f"Receive at {at}:"]
        for rl, quantity, condition, disposition in form.rows:
            what = f"{quantity} × {rl.order_line.sku} (line {rl.order_line_id}) {Condition(condition).label.lower()}"
            if disposition == Disposition.RESTOCK:
                what += f" → restock at {at} (on hand +{quantity})"
            elif disposition != Disposition.NONE:
                what += f" → {Disposition(disposition).label.lower()}"
            out.append(what)
        counted = {rl.pk: 0 for rl in form.lines}
        for rl, quantity, _, _ in form.rows:
            counted[rl.pk] += quantity
        left = sum(rl.quantity_outstanding - counted[rl.pk] for rl in form.lines)
        out.append(
            f"{left} unit(s) still expected afterwards."
            if left
            else "Every unit is then accounted for: the return is inspected."
        )
        out.append(
            f"The refund for what came back is computed under the {order.channel.code} channel's return policy "
            "and sent to the customer's payment."
        )
        return out

    def apply(actor: Actor) -> str:
        before = rma.refund_amount
        done = return_services.return_receive(
            return_id=rma.pk,
            location=form.cleaned_data["location"].code,
            lines=form.receipt_lines(),
            actor=actor,
        )
        refund = done.refund_amount - before
        return f"Return {done.number} received at {form.cleaned_data['location'].code}; refund {_money(refund, order)}."

    return _action(
        request,
        order,
        form=form,
        title=f"Receive return {rma.number}",
        intro="Count what arrived of each line by condition; sellable goods are restocked by default, "
        "damaged ones written off.",
        submit="Review receipt",
        apply=apply,
        summary=summary,
        extra={"action": "receive", "rma": rma},
    )


@console_view(VIEW_ORDERS, APPEASE)
def appease(request, number: str):
    order = _order_or_404(number)
    form = forms.AppeasementForm(request.POST or None)

    def summary() -> list[str]:
        d = form.cleaned_data
        what = "refund to the customer's payment" if d["kind"] == Appeasement.Kind.REFUND else "store credit"
        out = [f"Give {_money(d['amount'], order)} as a {what}: {d['reason'].name}."]
        limit = appeasement_services.appeasement_limit(Actor.for_user(request.user))
        if limit is not None and d["amount"] > limit:
            out.append(
                f"That is above your limit of {_money(limit, order)}: "
                + ("it will wait for a supervisor's approval." if d["request_approval"] else "it will be refused.")
            )
        return out

    def apply(actor: Actor) -> str:
        d = form.cleaned_data
        appeasement = appeasement_services.appeasement_create(
            order_number=order.number,
            kind=d["kind"],
            amount=d["amount"],
            reason=d["reason"].code,
            note=d["note"],
            request_approval=d["request_approval"],
            actor=actor,
        )
        if appeasement.status == AppeasementStatus.PENDING_APPROVAL:
            return f"Appeasement of {_money(appeasement.amount, order)} is waiting for a supervisor's approval."
        return f"Appeasement of {_money(appeasement.amount, order)} issued."

    return _action(
        request,
        order,
        form=form,
        title="Issue an appeasement",
        intro="A goodwill refund or store credit without a return, up to your role's limit.",
        submit="Review appeasement",
        apply=apply,
        summary=summary,
        extra={"action": "appease"},
    )


@console_view(VIEW_ORDERS, APPROVE_APPEASEMENT)
def decide_appeasement(request, number: str, appeasement_id: int, decision: str):
    order = _order_or_404(number)
    appeasement = order.appeasements.select_related("reason").filter(pk=appeasement_id).first()
    if appeasement is None or decision not in ("approve", "decline"):
        raise Http404(f"No appeasement {appeasement_id} on order {number}")
    form = forms.DecisionForm(request.POST or None)
    verb = "Approve" if decision == "approve" else "Decline"

    def apply(actor: Actor) -> str:
        if decision == "approve":
            appeasement_services.appeasement_approve(
                appeasement_id=appeasement.pk, actor=actor, note=form.cleaned_data["note"]
            )
            return f"Appeasement of {_money(appeasement.amount, order)} approved and issued."
        appeasement_services.appeasement_decline(
            appeasement_id=appeasement.pk, actor=actor, note=form.cleaned_data["note"]
        )
        return "Appeasement declined."

    return _action(
        request,
        order,
        form=form,
        title=f"{verb} the appeasement of {_money(appeasement.amount, order)}",
        intro=f"Asked by {appeasement.actor_label}: {appeasement.reason.name}. {appeasement.note}".strip(),
        submit=f"Review {verb.lower()}",
        apply=apply,
        summary=lambda: [
            f"{verb} {appeasement.get_kind_display().lower()} of {_money(appeasement.amount, order)}"
            + (" (issued at once)." if decision == "approve" else " (a reason is required).")
        ],
        extra={"action": f"appeasement-{decision}"},
    )


# --- Queues ----------------------------------------------------------------------------------


@console_view(VIEW_ORDERS)
def queues(request):
    return render(request, "console/queues.html", {"counts": selectors.queue_counts(), "section": "queues"})


@console_view(VIEW_ORDERS)
def queue(request, name: str):
    if name not in QUEUES:
        raise Http404(name)
    page_number = _page_number(request)
    if name == "holds":
        page = selectors.held_orders(page_number)
    elif name == "sourcing":
        page = selectors.held_orders(page_number, hold_type=HoldType.SOURCING)
    elif name == "dead-letters":
        page = selectors.dead_letters(page_number)
    elif name == "rejected":
        page = selectors.rejected_fulfillments(page_number)
    elif name == "backorders":
        page = selectors.backorders(page_number)
    elif name == "appeasements":
        page = selectors.pending_appeasements(page_number)
    elif name == "late":
        page = selectors.late_fulfillments(page_number)
    else:
        page = selectors.uncollected_pickups(page_number)
    return render(
        request,
        "console/queue.html",
        {
            "name": name,
            "title": QUEUES[name],
            "queues": QUEUES,
            "page": page,
            "can_act": request.user.has_perm(ACT_ON_ORDERS),
            "can_approve": request.user.has_perm(APPROVE_APPEASEMENT),
            "section": "queues",
        },
    )


def _page_number(request) -> int:
    try:
        return max(1, int(request.GET.get("page", 1)))
    except ValueError:
        return 1


# --- Inventory lookup ------------------------------------------------------------------------


@console_view(VIEW_STOCK)
def inventory(request):
    form = forms.InventoryForm(request.GET or None)
    lookup = near = place = None
    problem = ""
    if form.is_bound and form.is_valid():
        d = form.cleaned_data
        lookup = selectors.sku_lookup(d["sku"])
        if lookup is None:
            problem = f"No SKU {d['sku']}."
        elif d.get("near"):
            place = selectors.resolve_place(d["near"])
            if place is None:
                problem = f"Could not place “{d['near']}”: give latitude, longitude or a postal code or city we know."
            elif d.get("channel") is None:
                problem = "Choose the channel the customer buys through."
            else:
                near = selectors.stores_near(
                    channel=d["channel"], sku=lookup.item.sku, place=place, radius_km=float(d.get("radius_km") or 50)
                )
    return render(
        request,
        "console/inventory.html",
        {"form": form, "lookup": lookup, "near": near, "place": place, "problem": problem, "section": "inventory"},
    )


# --- Customer --------------------------------------------------------------------------------


@console_view(VIEW_ORDERS, VIEW_CUSTOMERS)
def customer(request, pk: int):
    person = get_object_or_404(Customer, pk=pk)
    return render(
        request,
        "console/customer.html",
        {
            "customer": person,
            "summary": selectors.customer_summary(person),
            "page": selectors.customer_orders(person, _page_number(request)),
            "returns": selectors.customer_returns(person),
            "section": "search",
        },
    )
