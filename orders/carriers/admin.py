"""Admin for carriers (configured by merchants) and shipments with their tracking (read-only).

Credentials are write-only in the form: an empty field keeps the stored value. "Check
connection" asks the carrier for a rate with the stored credentials. Shipments change only
through services: "Poll tracking now" and "Void label" are actions, and the label document
can be opened from the shipment page.
"""

from __future__ import annotations

import base64

from django import forms
from django.contrib import admin, messages
from django.http import Http404, HttpResponse
from django.urls import path, reverse
from django.utils.html import format_html

from oms.actor import Actor
from oms.admin import ReadOnlyAdminMixin
from oms.errors import DomainError

from .models import Carrier, EarlyTrackingEvent, TrackingEvent
from .services import carrier_check, shipment_void_label, tracking_poll

SECRET_FIELDS = ("api_key", "webhook_secret")


class CarrierForm(forms.ModelForm):
    base_url = forms.URLField(max_length=300, assume_scheme="https", help_text="The carrier API's base URL.")
    services = forms.CharField(
        required=False,
        help_text="Service levels offered, comma-separated, e.g. ground, express. The first is the default.",
    )

    class Meta:
        model = Carrier
        fields = [
            "code",
            "name",
            "adapter",
            "base_url",
            "api_key",
            "account_number",
            "webhook_secret",
            "services",
            "active",
        ]
        widgets = {name: forms.PasswordInput(render_value=False) for name in SECRET_FIELDS}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.initial["services"] = ", ".join(self.instance.services or [])
        if self.instance.pk:
            for name in SECRET_FIELDS:
                self.fields[name].required = False
                stored = "set" if getattr(self.instance, name) else "not set"
                self.fields[name].help_text = f"Currently {stored}; leave empty to keep it."

    def clean_services(self) -> list[str]:
        return [s.strip() for s in self.cleaned_data["services"].split(",") if s.strip()]

    def clean(self):
        data = super().clean()
        if self.instance.pk:  # an empty secret field keeps the stored one
            for name in SECRET_FIELDS:
                if not data.get(name):
                    data[name] = getattr(self.instance, name)
        return data


@admin.register(Carrier)
class CarrierAdmin(admin.ModelAdmin):
    form = CarrierForm
    list_display = ["code", "name", "adapter", "base_url", "service_list", "webhooks", "active"]
    list_filter = ["active", "adapter"]
    search_fields = ["code", "name"]
    actions = ["check_connection"]

    @admin.display(description="services")
    def service_list(self, carrier: Carrier) -> str:
        return ", ".join(carrier.services) or "—"

    @admin.display(description="tracking webhook", boolean=True)
    def webhooks(self, carrier: Carrier) -> bool:
        return bool(carrier.webhook_secret)

    @admin.action(description="Check connection (ask for a rate)")
    def check_connection(self, request, queryset):
        for carrier in queryset.order_by("code"):
            try:
                rates = carrier_check(carrier)
            except DomainError as exc:
                self.message_user(request, f"{carrier.code}: {exc.message}", messages.ERROR)
                continue
            quotes = "; ".join(f"{r.service} {r.amount} {r.currency} ({r.transit_days} d)" for r in rates)
            self.message_user(request, f"{carrier.code}: connected. New York → Los Angeles, 1 kg: {quotes}.")


class TrackingEventInline(admin.TabularInline):
    model = TrackingEvent
    template = "admin/orders/edit_inline/readonly_tabular.html"
    fields = ["occurred_at", "status", "description", "location", "tracking_number", "carrier_event_id", "source"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "tracking events"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


def _can_act(request) -> bool:
    return request.user.has_perm("orders.change_order")


class ShipmentAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Registered from `orders.admin` (Shipment is an `orders.models` model)."""

    list_display = [
        "id",
        "order_link",
        "carrier",
        "service",
        "tracking_number",
        "tracking_status",
        "tracking_checked_at",
        "delivered_at",
        "created_at",
    ]
    list_select_related = ["fulfillment__order"]
    list_filter = ["tracking_status", "carrier_account", "created_at"]
    search_fields = ["tracking_number", "fulfillment__order__number", "reference"]
    fields = [
        "order_link",
        "fulfillment",
        "carrier",
        "carrier_account",
        "service",
        "tracking_number",
        "reference",
        "tracking_status",
        "tracking_checked_at",
        "next_tracking_check_at",
        "tracking_failures",
        "tracking_error",
        "delivered_at",
        "label_link",
        "label_cost",
        "label_currency",
        "created_at",
    ]
    readonly_fields = fields
    inlines = [TrackingEventInline]
    actions = ["poll_now", "void_labels"]
    ordering = ["-id"]

    @admin.display(description="order", ordering="fulfillment__order__number")
    def order_link(self, shipment) -> str:
        order = shipment.fulfillment.order
        return format_html('<a href="{}">{}</a>', reverse("admin:orders_order_change", args=[order.pk]), order.number)

    @admin.display(description="label")
    def label_link(self, shipment) -> str:
        if not shipment.has_label:
            return "— (not bought through the OMS)"
        url = reverse("admin:orders_shipment_label", args=[shipment.pk])
        return format_html('<a href="{}" target="_blank">Open {} label</a>', url, shipment.label_format.upper())

    def get_urls(self):
        view = self.admin_site.admin_view(self.label_view)
        return [path("<int:pk>/label/", view, name="orders_shipment_label"), *super().get_urls()]

    def label_view(self, request, pk: int):
        shipment = self.get_object(request, str(pk))
        if shipment is None or not self.has_view_permission(request, shipment) or not shipment.has_label:
            raise Http404
        content_type = "application/pdf" if shipment.label_format == "pdf" else "text/plain"
        return HttpResponse(base64.b64decode(shipment.label_data), content_type=content_type)

    def has_act_permission(self, request) -> bool:
        return _can_act(request)

    @admin.action(description="Poll tracking now", permissions=["act"])
    def poll_now(self, request, queryset):
        summary = tracking_poll(only=list(queryset.values_list("pk", flat=True)), actor=Actor.for_user(request.user))
        level = messages.WARNING if summary.failed else messages.SUCCESS
        errors = f" Errors: {'; '.join(summary.carrier_errors)}." if summary.carrier_errors else ""
        self.message_user(
            request,
            f"Polled {summary.polled}: {summary.recorded} new event(s), {summary.changed} status change(s), "
            f"{summary.failed} failed.{errors}",
            level,
        )

    @admin.action(description="Void label (parcel not yet moved)", permissions=["act"])
    def void_labels(self, request, queryset):
        actor = Actor.for_user(request.user)
        for shipment in queryset.order_by("pk"):
            try:
                shipment_void_label(shipment_id=shipment.pk, actor=actor)
            except DomainError as exc:
                self.message_user(request, f"Shipment {shipment.pk}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"Shipment {shipment.pk}: label {shipment.tracking_number} voided.")


@admin.register(EarlyTrackingEvent)
class EarlyTrackingEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Webhook events waiting for their shipment to be written (or for the week-old purge)."""

    list_display = ["received_at", "carrier", "tracking_number", "carrier_event_id"]
    list_filter = ["carrier"]
    search_fields = ["tracking_number"]
