"""The merchants' and operations' back office for orders, customers and hold rules.

An order is never edited here. Its change page is read-only (view-only even for superusers: the
status is a protected FSM field that only services move), and the three state changes ops need
are admin actions that call the services, one order at a time, with the user as the actor:
cancel (`services.order_cancel`), place a hold (`services.order_hold`) and release holds
(`services.order_release`). Each action first shows a confirmation page asking for the reason.

Permissions: seeing orders needs `orders.view_order` (or `change_order`); running the actions
needs `orders.change_order`. The inlines (lines, payments, holds, timeline) follow the order's
own permissions, so a group that may see an order sees all of it.
"""

from __future__ import annotations

from collections.abc import Callable

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import Count, Prefetch, QuerySet
from django.forms.models import BaseInlineFormSet
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from oms.actor import Actor
from oms.admin import ReadOnlyAdminMixin
from oms.errors import DomainError

from . import services
from .carriers.admin import ShipmentAdmin
from .models import (
    Allocation,
    Customer,
    CustomerNotification,
    Fulfillment,
    HoldRule,
    HoldType,
    Order,
    OrderEvent,
    OrderHold,
    OrderLine,
    Payment,
    Shipment,
    StoreAssociate,
)

ACTION_FORM_TEMPLATE = "admin/orders/order/action_confirmation.html"
CUSTOMER_RECENT_ORDERS = 20
CONFIRMATION_LIST_LIMIT = 100  # orders listed on an action's confirmation page (all are acted on)


def _can_see_orders(request) -> bool:
    return request.user.has_perm("orders.view_order") or request.user.has_perm("orders.change_order")


class PhoneDigitsSearchMixin:
    """Let "+1 (212) 555-0147" find the customer whose phone digits are 12125550147."""

    phone_digits_lookup = "phone_digits"

    def get_search_results(self, request, queryset, search_term):
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        digits = Customer.digits(search_term)
        if len(digits) >= 4 and digits != search_term.strip():
            results |= queryset.filter(**{f"{self.phone_digits_lookup}__contains": digits})
        return results, may_have_duplicates


# --- Read-only inlines on the order ----------------------------------------------------------------


class ReadOnlyInline(ReadOnlyAdminMixin, admin.TabularInline):
    """Shown with the order, never changed through it."""

    template = "admin/orders/edit_inline/readonly_tabular.html"
    extra = 0
    can_delete = False
    show_change_link = False

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def has_view_permission(self, request, obj=None):
        return _can_see_orders(request)


class OrderLineInline(ReadOnlyInline):
    model = OrderLine
    verbose_name_plural = "lines"
    fields = [
        "sku",
        "quantity",
        "quantity_allocated",
        "quantity_shipped",
        "quantity_cancelled",
        "quantity_returned",
        "unit_price",
        "discount_amount",
        "tax_amount",
        "held_at",
    ]

    def get_queryset(self, request):
        allocations = Allocation.objects.select_related("location").order_by("location__code")
        return super().get_queryset(request).prefetch_related(Prefetch("allocations", queryset=allocations))

    @admin.display(description="stock held at")
    def held_at(self, line: OrderLine) -> str:
        return (
            ", ".join(
                f"{a.location.code} × {a.quantity}" + (" (provisional)" if a.provisional else "")
                for a in line.allocations.all()
            )
            or "—"
        )


class PaymentInline(ReadOnlyInline):
    model = Payment
    fields = [
        "method",
        "reference",
        "status",
        "amount_authorized",
        "amount_captured",
        "amount_voided",
        "amount_refunded",
        "created_at",
    ]


class ActiveHoldInline(ReadOnlyInline):
    model = OrderHold
    verbose_name = "active hold"
    verbose_name_plural = "active holds"
    fields = ["type", "reason", "rule", "placed_by", "created_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(released_at__isnull=True).select_related("rule")

    @admin.display(description="placed by")
    def placed_by(self, hold: OrderHold) -> str:
        return hold.actor_display


class OrderEventInline(ReadOnlyInline):
    model = OrderEvent
    verbose_name = "timeline entry"
    verbose_name_plural = "timeline"
    fields = ["created_at", "type", "message", "by"]
    ordering = ["id"]  # newest last

    @admin.display(description="by")
    def by(self, event: OrderEvent) -> str:
        return event.actor_display


# --- Action forms ----------------------------------------------------------------------------------


class CancelForm(forms.Form):
    reason = forms.CharField(
        max_length=300,
        widget=forms.TextInput(attrs={"size": 60}),
        help_text="Recorded on each order's timeline and sent to integrators.",
    )


class HoldForm(forms.Form):
    hold_type = forms.ChoiceField(choices=HoldType.choices, initial=HoldType.MANUAL)
    reason = forms.CharField(max_length=300, widget=forms.TextInput(attrs={"size": 60}))


class ReleaseForm(forms.Form):
    hold_types = forms.MultipleChoiceField(
        choices=HoldType.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Leave all unticked to release every active hold.",
    )
    note = forms.CharField(max_length=300, required=False, widget=forms.TextInput(attrs={"size": 60}))


# --- Orders ----------------------------------------------------------------------------------------


@admin.register(Order)
class OrderAdmin(ReadOnlyAdminMixin, PhoneDigitsSearchMixin, admin.ModelAdmin):
    # Orders arrive through capture and change only through services (the actions below).
    list_display = [
        "number",
        "channel",
        "external_id",
        "customer_email",
        "status",
        "grand_total",
        "currency",
        "created_at",
    ]
    list_select_related = ["channel", "customer"]
    list_filter = ["status", "channel", "fulfillment_method", "created_at"]
    search_fields = ["number", "external_id", "customer__email", "customer__name", "customer__phone_digits"]
    phone_digits_lookup = "customer__phone_digits"
    ordering = ["-created_at", "-id"]
    fieldsets = [
        (None, {"fields": ["number", "status", "channel", "external_id", "customer", "created_at", "updated_at"]}),
        (
            "Fulfilment",
            {
                "fields": [
                    "fulfillment_method",
                    "pickup_location",
                    "shipping_method",
                    "shipping_address",
                    "ship_complete",
                    "allow_backorder",
                    "promised_ship_date",
                    "promised_delivery_date",
                ]
            },
        ),
        (
            "Totals",
            {"fields": ["currency", "subtotal", "discount_total", "shipping_total", "tax_total", "grand_total"]},
        ),
        ("Routing", {"fields": ["routing_decision", "fulfillment_summary"]}),
        ("Shipments", {"fields": ["shipment_summary"]}),
    ]
    readonly_fields = [name for _, options in fieldsets for name in options["fields"]]
    inlines = [OrderLineInline, PaymentInline, ActiveHoldInline, OrderEventInline]
    actions = ["cancel_orders", "hold_orders", "release_orders"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("channel", "customer", "pickup_location")

    @admin.display(description="customer email", ordering="customer__email")
    def customer_email(self, order: Order) -> str:
        return order.customer.email

    @admin.display(description="routing decision")
    def routing_decision(self, order: Order):
        """The latest decision and why; `routing_decisions` is the routing app's reverse relation."""
        decision = order.routing_decisions.first()
        if decision is None:
            return "Not routed yet."
        rows = []
        for strategy in decision.explanation.get("strategies", []):
            excluded = [
                f"{c['location']}: {c.get('reason') or c.get('excluded_by')}"
                for c in strategy.get("candidates", [])
                if c.get("excluded_by")
            ]
            rows.append(
                format_html(
                    "<li><strong>{}</strong> — {}{}</li>",
                    strategy.get("name"),
                    strategy.get("outcome"),
                    f" (excluded: {'; '.join(excluded[:8])})" if excluded else "",
                )
            )
        return format_html(
            "<p>Attempt {} · {}</p><ul>{}</ul>",
            decision.attempt,
            decision.summary,
            format_html_join("", "{}", ((r,) for r in rows)),
        )

    @admin.display(description="fulfilments")
    def fulfillment_summary(self, order: Order):
        now = timezone.now()
        items = [
            f"#{f.pk} {f.location.code} {f.get_status_display()}"
            + (f" · due {f.due_at:%Y-%m-%d %H:%M} UTC" if f.due_at else "")
            + (" · LATE" if f.is_late(now) else "")
            + ": "
            + ", ".join(f"{fl.line.sku} × {fl.quantity}" for fl in f.lines.all())
            for f in order.fulfillments.select_related("location").prefetch_related("lines__line")
        ]
        return format_html_join("", "<div>{}</div>", ((i,) for i in items)) or "—"

    @admin.display(description="shipments")
    def shipment_summary(self, order: Order):
        rows = [
            (
                reverse("admin:orders_shipment_change", args=[sh.pk]),
                f"#{sh.pk}",
                f"F{sh.fulfillment_id} {sh.carrier} {sh.service} {sh.tracking_number}".strip(),
                sh.get_tracking_status_display(),
            )
            for sh in Shipment.objects.filter(fulfillment__order=order).order_by("pk")
        ]
        return format_html_join("", '<div><a href="{}">{}</a> {} — {}</div>', rows) or "—"

    @admin.display(description="shipping address")
    def shipping_address(self, order: Order) -> str:
        if order.is_pickup:
            return "—"
        parts = [
            order.ship_name,
            order.ship_line1,
            order.ship_line2,
            " ".join(p for p in (order.ship_postal_code, order.ship_city) if p),
            order.ship_region,
            order.ship_country,
        ]
        return ", ".join(p for p in parts if p)

    def has_act_permission(self, request) -> bool:
        """May run the cancel / hold / release actions."""
        return request.user.has_perm("orders.change_order")

    # --- Actions: confirm on an intermediate page, then call the service per order ---------------

    def _confirm_then(
        self,
        request,
        queryset: QuerySet[Order],
        *,
        form_class: type[forms.Form],
        title: str,
        intro: str,
        submit: str,
        apply: Callable[[str, dict], object],
        done: str,
        action: str,
    ):
        """Show the form (and the orders) until it is posted back valid with "confirm", then
        `apply(order_number, cleaned_data)` to each order in its own transaction."""
        form = form_class(request.POST if "confirm" in request.POST else None)
        if form.is_valid():
            succeeded, failed = [], []
            for number in queryset.order_by("pk").values_list("number", flat=True):
                try:
                    apply(number, form.cleaned_data)
                except DomainError as exc:
                    failed.append(f"{number}: {exc.message}")
                else:
                    succeeded.append(number)
            if succeeded:
                listed = ", ".join(succeeded[:10]) + (f" and {len(succeeded) - 10} more" if len(succeeded) > 10 else "")
                self.message_user(request, f"{done} {len(succeeded)} order(s): {listed}.", messages.SUCCESS)
            for failure in failed:
                self.message_user(request, failure, messages.ERROR)
            return None  # back to the changelist
        total = queryset.count()
        orders = list(queryset.select_related("channel", "customer").order_by("pk")[:CONFIRMATION_LIST_LIMIT])
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "intro": intro,
            "submit": submit,
            "form": form,
            "orders": orders,
            "total": total,
            "more": total - len(orders),
            "action": action,
            "selected": request.POST.getlist(ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "changelist_url": reverse("admin:orders_order_changelist"),
            "has_view_permission": self.has_view_permission(request),
        }
        return TemplateResponse(request, ACTION_FORM_TEMPLATE, context)

    @admin.action(description="Cancel selected orders", permissions=["act"])
    def cancel_orders(self, request, queryset):
        actor = Actor.for_user(request.user)
        return self._confirm_then(
            request,
            queryset,
            form_class=CancelForm,
            title="Cancel orders",
            intro="Everything not yet shipped is cancelled, its stock released and its payment voided or refunded.",
            submit="Cancel these orders",
            apply=lambda number, data: services.order_cancel(order_number=number, reason=data["reason"], actor=actor),
            done="Cancelled",
            action="cancel_orders",
        )

    @admin.action(description="Place a manual hold", permissions=["act"])
    def hold_orders(self, request, queryset):
        actor = Actor.for_user(request.user)
        return self._confirm_then(
            request,
            queryset,
            form_class=HoldForm,
            title="Place a hold",
            intro="Held orders are not routed or released to fulfilment until every hold is released.",
            submit="Hold these orders",
            apply=lambda number, data: services.order_hold(
                order_number=number, hold_type=data["hold_type"], reason=data["reason"], actor=actor
            ),
            done="Held",
            action="hold_orders",
        )

    @admin.action(description="Release holds", permissions=["act"])
    def release_orders(self, request, queryset):
        actor = Actor.for_user(request.user)
        return self._confirm_then(
            request,
            queryset,
            form_class=ReleaseForm,
            title="Release holds",
            intro="An order resumes once its last active hold is released.",
            submit="Release holds",
            apply=lambda number, data: services.order_release(
                order_number=number, note=data["note"], hold_types=data["hold_types"] or None, actor=actor
            ),
            done="Released holds on",
            action="release_orders",
        )


# --- Hold rules ------------------------------------------------------------------------------------


class HoldRuleForm(forms.ModelForm):
    class Meta:
        model = HoldRule
        fields = ["name", "channel", "condition", "amount", "countries", "hold_type", "active"]

    def clean_countries(self):
        codes = [c.strip().upper() for c in self.cleaned_data["countries"].split(",") if c.strip()]
        bad = [c for c in codes if len(c) != 2 or not c.isalpha()]
        if bad:
            raise forms.ValidationError(
                f"Use two-letter ISO country codes, separated by commas (not {', '.join(bad)})."
            )
        return ",".join(codes)

    NEEDS = {
        HoldRule.Condition.ORDER_TOTAL_ABOVE: ("amount", "Required for this condition."),
        HoldRule.Condition.NEW_CUSTOMER_ABOVE: ("amount", "Required for this condition."),
        HoldRule.Condition.COUNTRY_NOT_SERVED: ("countries", "List the countries served."),
    }

    def clean(self):
        data = super().clean()
        field, message = self.NEEDS.get(data.get("condition"), (None, ""))
        # A value its own cleaning rejected is absent from cleaned_data and already has its error.
        if field and field in data and data[field] in (None, ""):
            self.add_error(field, message)
        return data


@admin.register(HoldRule)
class HoldRuleAdmin(admin.ModelAdmin):
    """Checks that hold an order at capture; an empty channel applies to every channel."""

    form = HoldRuleForm
    list_display = ["name", "channel", "condition", "amount", "countries", "hold_type", "active"]
    list_select_related = ["channel"]
    list_filter = ["active", "channel", "condition", "hold_type"]
    search_fields = ["name"]


# --- Customers -------------------------------------------------------------------------------------


class RecentFirstFormSet(BaseInlineFormSet):
    limit = CUSTOMER_RECENT_ORDERS

    def get_queryset(self):
        if not hasattr(self, "_queryset"):
            self._queryset = self.queryset.order_by("-created_at", "-id")[: self.limit]
        return self._queryset


class CustomerOrderInline(ReadOnlyInline):
    model = Order
    formset = RecentFirstFormSet
    verbose_name_plural = f"latest orders (up to {CUSTOMER_RECENT_ORDERS})"
    fields = ["order_link", "channel", "status", "grand_total", "currency", "created_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("channel")

    @admin.display(description="order")
    def order_link(self, order: Order) -> str:
        return format_html('<a href="{}">{}</a>', reverse("admin:orders_order_change", args=[order.pk]), order.number)


@admin.register(Customer)
class CustomerAdmin(ReadOnlyAdminMixin, PhoneDigitsSearchMixin, admin.ModelAdmin):
    """Customers are created and filled in by order capture; read-only here."""

    list_display = ["email", "name", "phone", "order_count", "created_at"]
    search_fields = ["email", "name", "phone_digits"]
    fields = ["email", "name", "phone", "created_at", "all_orders"]
    readonly_fields = fields
    inlines = [CustomerOrderInline]
    show_full_result_count = False

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(order_count=Count("orders"))

    @admin.display(description="orders", ordering="order_count")
    def order_count(self, customer: Customer) -> int:
        return customer.order_count

    @admin.display(description="all orders")
    def all_orders(self, customer: Customer) -> str:
        url = reverse("admin:orders_order_changelist") + "?" + urlencode({"customer__id__exact": customer.pk})
        return format_html('<a href="{}">{} order(s)</a>', url, customer.order_count)


admin.site.register(Shipment, ShipmentAdmin)


# --- Fulfilments: SLA and lateness; store associates; customer emails -----------------------------


class LateFilter(admin.SimpleListFilter):
    title = "late"
    parameter_name = "late"

    def lookups(self, request, model_admin):
        return [("yes", "Late (flagged or overdue)"), ("no", "On time")]

    def queryset(self, request, queryset):
        late = Fulfillment.objects.late(timezone.now()).values("pk")
        if self.value() == "yes":
            return queryset.filter(pk__in=late)
        if self.value() == "no":
            return queryset.exclude(pk__in=late)
        return queryset


@admin.register(Fulfillment)
class FulfillmentAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Read-only: fulfilments move through the fulfilment API, the store app and the SLA tasks."""

    list_display = ["id", "order_link", "location", "status", "due_at", "late", "late_at", "created_at"]
    list_select_related = ["order", "location"]
    list_filter = [LateFilter, "status", "location__type", "location"]
    search_fields = ["order__number", "location__code"]
    ordering = ["-id"]
    show_full_result_count = False
    fields = [
        "order_link",
        "location",
        "status",
        "transfer_to",
        "routing_attempt",
        "rejection_reason",
        "due_at",
        "late",
        "late_at",
        "accept_escalated_at",
        "ready_at",
        "pickup_expires_at",
        "created_at",
        "updated_at",
    ]
    readonly_fields = fields

    @admin.display(description="order", ordering="order__number")
    def order_link(self, f: Fulfillment):
        return format_html('<a href="{}">{}</a>', reverse("admin:orders_order_change", args=[f.order_id]), f.order)

    @admin.display(description="late", boolean=True)
    def late(self, f: Fulfillment) -> bool:
        return f.is_late(timezone.now())


@admin.register(StoreAssociate)
class StoreAssociateAdmin(admin.ModelAdmin):
    """Who works which store's queue in the store app (/store/). Add the user to the "Store
    associate" group too: that grants the app; this row says which store."""

    list_display = ["user", "location", "created_at"]
    list_select_related = ["user", "location"]
    list_filter = ["location"]
    search_fields = ["user__username", "user__email", "location__code"]
    raw_id_fields = ["user"]


@admin.register(CustomerNotification)
class CustomerNotificationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "order", "kind", "to", "sent_at", "attempts", "last_error"]
    list_select_related = ["order"]
    list_filter = ["kind", ("sent_at", admin.EmptyFieldListFilter)]
    search_fields = ["order__number", "to"]
    readonly_fields = [f.name for f in CustomerNotification._meta.fields]
    show_full_result_count = False
