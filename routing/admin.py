"""Merchants configure routing here: profiles, versioned strategies, draft → compare → activate."""

from __future__ import annotations

from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from oms.errors import DomainError

from . import services
from .models import ProfileVersion, RoutingDecision, RoutingProfile, Strategy


class VersionInline(admin.TabularInline):
    model = ProfileVersion
    fields = ["number", "status", "note", "created_at", "activated_at", "open"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="")
    def open(self, obj):
        return format_html(
            '<a href="{}">edit / compare</a>', reverse("admin:routing_profileversion_change", args=[obj.pk])
        )


@admin.register(RoutingProfile)
class RoutingProfileAdmin(admin.ModelAdmin):
    list_display = ["name", "channel", "active_version"]
    inlines = [VersionInline]
    actions = ["new_draft"]

    @admin.display(description="Active version")
    def active_version(self, obj):
        version = obj.versions.filter(status=ProfileVersion.Status.ACTIVE).first()
        return f"v{version.number}" if version else "—"

    @admin.action(description="Create a draft version (copied from the active one)")
    def new_draft(self, request, queryset):
        for profile in queryset:
            draft = services.version_create_draft(profile=profile)
            self.message_user(request, f"{profile.name}: draft v{draft.number} created.")


class StrategyInline(admin.StackedInline):
    model = Strategy
    extra = 0
    fieldsets = [
        (None, {"fields": [("position", "name")]}),
        (
            "Filters",
            {
                "fields": [
                    ("require_capability", "respect_capacity", "dropship_items_to_vendor"),
                    ("location_types", "countries", "regions"),
                    ("max_distance_km", "min_remaining_available"),
                ]
            },
        ),
        (
            "Ranker weights",
            {
                "fields": [
                    ("weight_distance", "weight_cost", "weight_priority"),
                    ("weight_stock_depth", "weight_capacity_headroom", "weight_rejection_rate"),
                ]
            },
        ),
        (
            "Split policy",
            {
                "fields": [
                    ("ship_complete", "max_locations", "optimal"),
                    ("shipping_cost_per_km", "cost_per_shipment", "split_penalty"),
                ]
            },
        ),
    ]

    def _editable(self, obj) -> bool:
        return obj is None or obj.status == ProfileVersion.Status.DRAFT

    def has_add_permission(self, request, obj=None):
        return self._editable(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        return self._editable(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._editable(obj) and super().has_delete_permission(request, obj)


@admin.register(ProfileVersion)
class ProfileVersionAdmin(admin.ModelAdmin):
    list_display = ["__str__", "profile", "status", "created_at", "activated_at"]
    list_filter = ["status", "profile"]
    inlines = [StrategyInline]
    readonly_fields = ["profile", "number", "status", "created_at", "activated_at", "compare_link"]
    fields = ["profile", "number", "status", "note", "created_at", "activated_at", "compare_link"]
    actions = ["activate", "replay"]

    def has_add_permission(self, request):
        return False  # drafts come from the profile's "Create a draft version" action

    @admin.action(description="Replay over the last 7 days of orders, beside the active version")
    def replay(self, request, queryset):
        reports = [services.replay(version=version, days=7) for version in queryset[:5]]
        context = {
            **self.admin_site.each_context(request),
            "title": "Routing replay",
            "reports": reports,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/routing/replay.html", context)

    @admin.display(description="Compare")
    def compare_link(self, obj):
        return format_html(
            '<a href="{}">compare with the active version</a>', reverse("admin:routing_version_compare", args=[obj.pk])
        )

    @admin.action(description="Activate (retires the current active version)")
    def activate(self, request, queryset):
        for version in queryset:
            try:
                services.version_activate(version=version)
                self.message_user(request, f"{version.profile.name} v{version.number} is now active.")
            except DomainError as exc:
                self.message_user(request, f"v{version.number}: {exc.message}", level=messages.ERROR)

    def get_urls(self):
        return [
            path("<int:pk>/compare/", self.admin_site.admin_view(self.compare_view), name="routing_version_compare"),
            *super().get_urls(),
        ]

    def compare_view(self, request, pk: int):
        version = ProfileVersion.objects.select_related("profile").get(pk=pk)
        active = version.profile.versions.filter(status=ProfileVersion.Status.ACTIVE).exclude(pk=pk).first()
        context = {
            **self.admin_site.each_context(request),
            "title": f"Compare {version} with {active or 'nothing active'}",
            "version": version,
            "active": active,
            "rows": services.version_diff(old=active, new=version),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/routing/compare.html", context)


@admin.register(RoutingDecision)
class RoutingDecisionAdmin(admin.ModelAdmin):
    list_display = ["order", "attempt", "strategy", "summary", "created_at"]
    search_fields = ["order__number"]
    list_select_related = ["order"]
    readonly_fields = [
        "order",
        "version",
        "attempt",
        "strategy",
        "plan",
        "unsourced",
        "explanation",
        "summary",
        "created_at",
    ]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
