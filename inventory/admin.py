"""The merchants' back office for the network, the catalogue and stock.

Stock counters and the ledger are never edited here: counts arrive through the CSV import
(which calls `services.stock_snapshot`) and supply is received through `services.supply_receive`.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import F
from django.http import HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from oms.actor import Actor
from oms.admin import ReadOnlyAdminMixin
from oms.errors import DomainError

from . import csv_import, services
from .models import (
    Capability,
    Channel,
    IncomingSupply,
    Item,
    Location,
    Reservation,
    ReservationLine,
    Stock,
    StockMovement,
)

MAX_UPLOAD_BYTES = 50 * 1024 * 1024


class CsvUploadForm(forms.Form):
    file = forms.FileField(label="CSV file", help_text="UTF-8, comma-separated, header row first.")

    def clean_file(self):
        file = self.cleaned_data["file"]
        if file.size > MAX_UPLOAD_BYTES:
            raise forms.ValidationError(f"The file is larger than {MAX_UPLOAD_BYTES // 2**20} MB.")
        return file


class CsvImportMixin:
    """Adds an "Import CSV" button, an upload form and a sample download to a changelist.

    The parsing and writing live in `inventory.csv_import`; the view only moves the file there
    and reports the result.
    """

    change_list_template = "admin/inventory/change_list_csv_import.html"
    csv_importer = None  # a staticmethod wrapping a function from inventory.csv_import
    csv_sample = ""  # key into csv_import.SAMPLES
    csv_columns = ""  # shown on the form
    csv_help = ""
    csv_title = ""

    def _csv_url_name(self, suffix: str) -> str:
        return f"{self.opts.app_label}_{self.opts.model_name}_{suffix}"

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("import-csv/", view(self.import_csv_view), name=self._csv_url_name("import_csv")),
            path(
                "import-csv/sample.csv",
                view(self.sample_csv_view),
                name=self._csv_url_name("import_csv_sample"),
            ),
            *super().get_urls(),
        ]

    def has_csv_import_permission(self, request) -> bool:
        # The model's own add + change permissions (not the admin's has_add_permission, which
        # Stock switches off because rows are only created by services).
        perms = [f"{self.opts.app_label}.{get_permission_codename(action, self.opts)}" for action in ("add", "change")]
        return request.user.has_perms(perms)

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_import_csv": self.has_csv_import_permission(request),
        }
        return super().changelist_view(request, extra_context)

    def import_csv_view(self, request):
        if not self.has_csv_import_permission(request):
            raise PermissionDenied
        form = CsvUploadForm(request.POST or None, request.FILES or None)
        errors: list[str] = []
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            result = self.csv_importer(upload, Actor.for_user(request.user))
            if result.ok:
                messages.success(request, f"Imported {upload.name}: {result.summary()}.")
                return redirect(f"admin:{self._csv_url_name('changelist')}")
            errors = result.errors
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": self.csv_title or f"Import {self.opts.verbose_name_plural} from CSV",
            "form": form,
            "errors": errors,
            "columns": self.csv_columns,
            "help": self.csv_help,
            "sample_url": reverse(f"admin:{self._csv_url_name('import_csv_sample')}"),
            "changelist_url": reverse(f"admin:{self._csv_url_name('changelist')}"),
            "has_view_permission": self.has_view_permission(request),
        }
        return TemplateResponse(request, "admin/inventory/csv_import.html", context)

    def sample_csv_view(self, request):
        if not self.has_csv_import_permission(request):
            raise PermissionDenied
        response = HttpResponse(csv_import.SAMPLES[self.csv_sample], content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="{self.opts.model_name}-sample.csv"'
        return response


# --- Network and catalogue -----------------------------------------------------------------------


class LocationForm(forms.ModelForm):
    capabilities = forms.MultipleChoiceField(
        choices=Capability.choices, widget=forms.CheckboxSelectMultiple, required=False
    )

    class Meta:
        model = Location
        fields = [
            "code", "name", "type", "active", "address_line1", "city", "region", "postal_code",
            "country", "latitude", "longitude", "capabilities", "priority", "daily_capacity",
            "fulfillment_cost", "timezone", "opening_time", "cutoff_time", "processing_hours", "accepts_returns",
        ]  # fmt: skip

    def clean_capabilities(self):
        chosen = set(self.cleaned_data["capabilities"])
        return [c for c in Capability.values if c in chosen]  # stable order in the JSON


@admin.register(Location)
class LocationAdmin(CsvImportMixin, admin.ModelAdmin):
    form = LocationForm
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}  # partner URLs are HTTPS
    list_display = [
        "code",
        "name",
        "type",
        "city",
        "country",
        "active",
        "priority",
        "daily_capacity",
    ]
    list_filter = ["type", "active", "country"]
    search_fields = ["code", "name", "city"]
    fieldsets = [
        (None, {"fields": ["code", "name", "type", "active"]}),
        (
            "Address",
            {
                "fields": [
                    "address_line1",
                    "city",
                    "region",
                    "postal_code",
                    "country",
                    "latitude",
                    "longitude",
                ]
            },
        ),
        (
            "Fulfilment",
            {
                "fields": [
                    "capabilities",
                    "priority",
                    "daily_capacity",
                    "fulfillment_cost",
                    "timezone",
                    "opening_time",
                    "cutoff_time",
                    "processing_hours",
                    "accepts_returns",
                ]
            },
        ),
        ("Connector", {"fields": ["connector", "partner_url", "partner_secret"]}),
    ]
    csv_importer = staticmethod(csv_import.import_locations_csv)
    csv_sample = "location"
    csv_columns = ", ".join(csv_import.LOCATION_COLUMNS)
    csv_help = (
        "Required: code, name, type, country. Rows are matched by code: existing locations "
        "are updated, new ones created. capabilities are separated by semicolons "
        "(ship;pickup). A column left out of the file leaves that field unchanged; an empty "
        "cell sets its default."
    )


@admin.register(Item)
class ItemAdmin(CsvImportMixin, admin.ModelAdmin):
    list_display = ["sku", "name", "active", "weight_grams"]
    list_filter = ["active"]
    search_fields = ["sku", "name"]
    csv_importer = staticmethod(csv_import.import_items_csv)
    csv_sample = "item"
    csv_columns = ", ".join(csv_import.ITEM_COLUMNS)
    csv_help = (
        "Required: sku, name. Rows are matched by SKU: existing items are updated, new ones "
        "created. A column left out of the file leaves that field unchanged."
    )


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "type", "safety_buffer", "safety_buffer_percent", "active"]
    list_filter = ["type", "active"]
    search_fields = ["code", "name"]
    filter_horizontal = ["locations"]


# --- Stock ---------------------------------------------------------------------------------------


class StockForm(forms.ModelForm):
    safety_stock = forms.IntegerField(min_value=0, max_value=csv_import.MAX_QUANTITY)

    class Meta:
        model = Stock
        fields = ["safety_stock"]


@admin.register(Stock)
class StockAdmin(CsvImportMixin, admin.ModelAdmin):
    form = StockForm
    list_display = [
        "item",
        "location",
        "on_hand",
        "reserved",
        "safety_stock",
        "available",
        "updated_at",
    ]
    list_select_related = ["item", "location"]
    list_filter = ["location__type", "location"]
    search_fields = ["item__sku", "location__code"]
    ordering = ["location__code", "item__sku"]
    fields = ["location", "item", "on_hand", "reserved", "safety_stock", "available", "updated_at"]
    readonly_fields = ["location", "item", "on_hand", "reserved", "available", "updated_at"]
    csv_importer = staticmethod(csv_import.import_stock_csv)
    csv_sample = "stock"
    csv_columns = "location, sku, on_hand, safety_stock (optional)"
    csv_title = "Import stock counts from CSV"
    csv_help = (
        "Sets the counted on hand per location and SKU (and safety stock, where given). SKUs not "
        "in the file keep their stock. Every change is written to the stock ledger."
    )

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(available_sort=F("on_hand") - F("reserved") - F("safety_stock"))

    @admin.display(description="available", ordering="available_sort")
    def available(self, obj: Stock) -> int:
        return obj.available

    def has_add_permission(self, request):
        return False  # rows appear through imports, adjustments and receipts (services)

    def has_delete_permission(self, request, obj=None):
        return False  # the ledger would no longer add up

    def save_model(self, request, obj, form, change):
        services.stock_set_safety_stock(
            stock_id=obj.pk, safety_stock=obj.safety_stock, actor=Actor.for_user(request.user)
        )


@admin.register(StockMovement)
class StockMovementAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The ledger is append-only: readable here, written only by inventory services."""

    list_display = [
        "created_at",
        "reason",
        "location",
        "item",
        "delta_on_hand",
        "delta_reserved",
        "on_hand_after",
        "reserved_after",
        "reference",
        "actor_display",
    ]
    list_select_related = ["location", "item"]
    list_filter = ["reason", "location"]
    search_fields = ["item__sku", "reference"]
    show_full_result_count = False  # a second COUNT(*) over the whole ledger is too costly

    @admin.display(description="actor")
    def actor_display(self, obj: StockMovement) -> str:
        return obj.actor_display


# --- Supply and reservations ---------------------------------------------------------------------


class IncomingSupplyForm(forms.ModelForm):
    class Meta:
        model = IncomingSupply
        fields = ["reference", "location", "item", "quantity", "expected_date"]

    def clean_quantity(self):
        quantity = self.cleaned_data["quantity"]
        if quantity < self.instance.quantity_received:
            raise forms.ValidationError(f"{self.instance.quantity_received} have already been received.")
        return quantity


@admin.register(IncomingSupply)
class IncomingSupplyAdmin(admin.ModelAdmin):
    form = IncomingSupplyForm
    list_display = [
        "reference",
        "item",
        "location",
        "quantity",
        "quantity_received",
        "expected_date",
        "status",
    ]
    list_select_related = ["item", "location"]
    list_filter = ["status"]
    search_fields = ["reference", "item__sku", "location__code"]
    date_hierarchy = "expected_date"
    actions = ["receive_remaining"]

    def get_readonly_fields(self, request, obj=None):
        # The key (reference, location, item) is fixed once created; receipts move only by action.
        fixed = ["quantity_received", "status", "created_at", "updated_at"]
        return fixed if obj is None else ["reference", "location", "item", *fixed]

    def save_model(self, request, obj, form, change):
        try:
            supply = services.supply_upsert(
                lines=[
                    services.SupplyLine(
                        location=obj.location,
                        item=obj.item,
                        quantity=obj.quantity,
                        expected_date=obj.expected_date,
                        reference=obj.reference,
                    )
                ]
            )[0]
        except DomainError as exc:
            # Received meanwhile (the form checked before): surface it rather than a 500.
            self.message_user(request, exc.message, messages.ERROR)
            supply = IncomingSupply.objects.get(reference=obj.reference, location=obj.location, item=obj.item)
        for f in IncomingSupply._meta.concrete_fields:
            setattr(obj, f.attname, getattr(supply, f.attname))
        obj._state.adding = False

    def has_delete_permission(self, request, obj=None):
        return False  # cancel instead, so a receipt never loses its source

    @admin.action(description="Receive remaining quantity", permissions=["change"])
    def receive_remaining(self, request, queryset):
        actor = Actor.for_user(request.user)
        received, failed = 0, []
        for supply in queryset.filter(status=IncomingSupply.Status.OPEN).order_by("pk"):
            try:
                services.supply_receive(supply_id=supply.pk, quantity=supply.quantity_open, actor=actor)
                received += 1
            except DomainError as exc:
                failed.append(f"{supply.reference}: {exc.message}")
        if received:
            self.message_user(request, f"Received {received} supply line(s) into stock.", messages.SUCCESS)
        for failure in failed:
            self.message_user(request, failure, messages.ERROR)
        if not received and not failed:
            self.message_user(request, "Nothing open to receive in the selection.", messages.WARNING)


class ReservationLineInline(admin.TabularInline):
    model = ReservationLine
    fields = ["location", "item", "quantity"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("location", "item")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Reservation)
class ReservationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Cart reservations hold stock; they change only through the reservation services."""

    list_display = ["key", "channel", "status", "expires_at", "created_at"]
    list_select_related = ["channel"]
    list_filter = ["status", "channel"]
    search_fields = ["key"]
    inlines = [ReservationLineInline]
