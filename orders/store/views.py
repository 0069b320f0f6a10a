"""The store app: server-rendered pages for store associates (ship-from-store and pickup).

An associate logs in, picks one of their stores, works its queue by due time, and moves each
fulfilment along: accept, print the pick list, start picking, pack, reject (all or some
units), mark ready for pickup or ship it, and hand it over after checking the customer's
pickup code. Every action is a POST (CSRF-protected) that calls one service with the user as
the actor; success redirects with a message, a refused action re-renders the page with the
error and a 4xx status, having changed nothing.

Access: the `orders.work_store_queue` permission (the "Store associate" group) and membership
of the store (`StoreAssociate`); anyone else gets 403. Times are shown in the store's zone.
"""

from __future__ import annotations

from functools import wraps
from zoneinfo import ZoneInfo

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse_lazy
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from inventory.models import Location, LocationType
from oms.actor import Actor
from oms.errors import DomainError
from orders import services
from orders.carriers.models import Carrier
from orders.models import FulfillmentStatus

from . import selectors
from .forms import CARRIERS, HandOverForm, RejectForm, ShipForm

LOGIN_URL = reverse_lazy("store:login")


class StoreLogin(auth_views.LoginView):
    template_name = "store/login.html"
    redirect_authenticated_user = True
    next_page = reverse_lazy("store:home")


class StoreLogout(auth_views.LogoutView):
    next_page = reverse_lazy("store:login")


def _error(request, status: int, title: str, message: str) -> TemplateResponse:
    return TemplateResponse(request, "store/error.html", {"title": title, "message": message}, status=status)


def store_view(view):
    """Logged in, allowed to work store queues, and a member of the store in the URL (403
    otherwise). The view gets the Location; times render in the store's time zone."""

    @wraps(view)
    @login_required(login_url=LOGIN_URL)
    def wrapper(request, code: str, *args, **kwargs):
        location = Location.objects.filter(code=code, type=LocationType.STORE).first()
        if location is None:
            return _error(request, 404, "No such store", f"There is no store {code}.")
        if not selectors.works_at(request.user, location):
            return _error(
                request, 403, "Not your store", f"You are not an associate of {location.name}. Ask your manager."
            )
        timezone.activate(ZoneInfo(location.timezone))
        try:
            response = view(request, location, *args, **kwargs)
            if isinstance(response, TemplateResponse):
                response.render()  # while the store's zone is active
            return response
        finally:
            timezone.deactivate()

    return wrapper


@require_GET
@login_required(login_url=LOGIN_URL)
def home(request):
    stores = list(selectors.stores_for(request.user))
    if len(stores) == 1:
        return redirect("store:queue", code=stores[0].code)
    if not stores and not request.user.has_perm(selectors.WORK_PERMISSION):
        return _error(request, 403, "No store access", "Your account is not set up for the store app.")
    return TemplateResponse(request, "store/home.html", {"stores": stores})


@require_GET
@store_view
def queue(request, location: Location):
    now = timezone.now()
    sections = selectors.store_queue(location, now)
    return TemplateResponse(
        request,
        "store/queue.html",
        {
            "location": location,
            "now": now,
            "sections": sections,
            "late_count": sum(row.late for row in sections["to_do"]),
            "other_stores": selectors.stores_for(request.user).exclude(pk=location.pk).exists(),
        },
    )


def _fulfillment_or_404(request, location: Location, pk: int):
    fulfillment = selectors.store_fulfillment(location, pk)
    if fulfillment is None:
        return None, _error(request, 404, "Not found", f"Fulfilment {pk} is not in {location.name}'s queue.")
    return fulfillment, None


def _detail(request, location: Location, fulfillment, *, status: int = 200, **forms) -> TemplateResponse:
    now = timezone.now()
    order = fulfillment.order
    s = fulfillment.status
    context = {
        "location": location,
        "f": fulfillment,
        "order": order,
        "row": selectors.queue_rows([fulfillment], now)[0],
        "timeline": selectors.fulfillment_timeline(fulfillment),
        "open_work": s in selectors.TO_DO,
        # configured carriers first: typing one of their codes links the parcel for tracking
        "carriers": list(
            dict.fromkeys([*Carrier.objects.filter(active=True).values_list("code", flat=True), *CARRIERS])
        ),
        "is_pickup_here": order.is_pickup and order.pickup_location_id == location.pk,
        "can_accept": s in (FulfillmentStatus.CREATED, FulfillmentStatus.SENT),
        "can_start_picking": s == FulfillmentStatus.ACCEPTED,
        "can_pack": s in (FulfillmentStatus.ACCEPTED, FulfillmentStatus.PICKING),
        "can_reject": s in (FulfillmentStatus.CREATED, FulfillmentStatus.SENT, FulfillmentStatus.ACCEPTED),
        "can_finish": s == FulfillmentStatus.PACKED,
        "can_hand_over": s == FulfillmentStatus.READY_FOR_PICKUP,
        "can_print": s in (FulfillmentStatus.ACCEPTED, FulfillmentStatus.PICKING, FulfillmentStatus.PACKED),
        "reject_form": forms.get("reject_form") or RejectForm(fulfillment=fulfillment),
        "ship_form": forms.get("ship_form") or ShipForm(),
        "hand_over_form": forms.get("hand_over_form") or HandOverForm(),
    }
    return TemplateResponse(request, "store/fulfillment.html", context, status=status)


@require_GET
@store_view
def fulfillment_detail(request, location: Location, pk: int):
    fulfillment, missing = _fulfillment_or_404(request, location, pk)
    return missing or _detail(request, location, fulfillment)


@require_GET
@store_view
def pick_list(request, location: Location, pk: int):
    fulfillment, missing = _fulfillment_or_404(request, location, pk)
    if missing:
        return missing
    lines = selectors.pick_list(fulfillment)
    return TemplateResponse(
        request,
        "store/pick_list.html",
        {
            "location": location,
            "f": fulfillment,
            "order": fulfillment.order,
            "lines": lines,
            "total_units": sum(line.quantity for line in lines),
            "printed_at": timezone.now(),
        },
    )


# --- Actions ---------------------------------------------------------------------------------

DONE = {
    "accept": "Accepted. Print the pick list and start picking.",
    "start-picking": "Picking started.",
    "pack": "Picked and packed.",
    "ready": "Ready for pickup. The customer has been sent their pickup code.",
    "ship": "Shipped. The customer has been sent the tracking number.",
    "hand-over": "Handed over to the customer. Order collected.",
    "reject": "Rejected. Routing sends the rejected units to another location.",
}


@require_POST
@store_view
def fulfillment_action(request, location: Location, pk: int, action: str):
    fulfillment, missing = _fulfillment_or_404(request, location, pk)
    if missing:
        return missing
    actor = Actor.for_user(request.user)
    forms = {}
    try:
        if action == "accept":
            services.fulfillment_accept(fulfillment_id=pk, actor=actor)
        elif action == "start-picking":
            services.fulfillment_start_picking(fulfillment_id=pk, actor=actor)
        elif action == "pack":
            services.fulfillment_pack(fulfillment_id=pk, actor=actor)
        elif action == "ready":
            services.fulfillment_ready_for_pickup(fulfillment_id=pk, actor=actor)
        elif action == "reject":
            form = forms["reject_form"] = RejectForm(request.POST, fulfillment=fulfillment)
            if not form.is_valid():
                return _invalid(request, location, fulfillment, forms)
            d = form.cleaned_data
            services.fulfillment_reject(fulfillment_id=pk, reason=d["full_reason"], lines=d["lines"], actor=actor)
        elif action == "ship":
            form = forms["ship_form"] = ShipForm(request.POST)
            if not form.is_valid():
                return _invalid(request, location, fulfillment, forms)
            d = form.cleaned_data
            services.fulfillment_ship(
                fulfillment_id=pk,
                actor=actor,
                carrier=d["carrier"],
                tracking_number=d["tracking_number"],
                reference=f"store:{d['tracking_number']}"[:100],  # a double submit ships once
            )
        elif action == "hand-over":
            form = forms["hand_over_form"] = HandOverForm(request.POST)
            if not form.is_valid():
                return _invalid(request, location, fulfillment, forms)
            services.fulfillment_picked_up(fulfillment_id=pk, actor=actor, pickup_code=form.cleaned_data["pickup_code"])
        else:
            return _error(request, 404, "Not found", f"Unknown action {action}.")
    except DomainError as exc:
        messages.error(request, exc.message)
        if "hand_over_form" in forms:
            forms["hand_over_form"] = HandOverForm()  # never echo a code back
        return _detail(request, location, _reload(location, pk), status=exc.status, **forms)
    messages.success(request, DONE[action])
    if action in ("hand-over", "reject", "ship"):
        return redirect("store:queue", code=location.code)
    return redirect("store:fulfillment", code=location.code, pk=pk)


def _invalid(request, location, fulfillment, forms) -> TemplateResponse:
    """Say what is wrong at the top too: the form may be further down, or not shown at all."""
    (form,) = forms.values()
    problems = [
        f"{form.fields[name].label or name.replace('_', ' ').capitalize()}: {error}" if name != "__all__" else error
        for name, errors in form.errors.items()
        for error in errors
    ]
    messages.error(request, " ".join(problems))
    return _detail(request, location, fulfillment, status=400, **forms)


def _reload(location: Location, pk: int):
    return selectors.store_fulfillment(location, pk)
