"""Admin for integrator API keys and the outbox.

Keys are created through `services.api_key_create` so only the hash is stored; the raw key is
shown once, right after creation. A key is never edited: revoke it and create another.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.utils import timezone

from .models import SCOPES, ApiKey, OutboxMessage, OutboxStatus
from .outbox import _kick_relay
from .services import api_key_create, api_key_revoke


class ReadOnlyAdminMixin:
    """For records that only services write (ledgers, timelines, outbox, orders): the admin
    shows them and runs actions that call the services, but never adds, edits or deletes."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ApiKeyAddForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(choices=[(s, s) for s in SCOPES], widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = ApiKey
        fields = ["name", "scopes", "channel", "location"]


class RevokedFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("active", "Active"), ("revoked", "Revoked")]

    def queryset(self, request, queryset):
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "prefix",
        "scope_list",
        "channel",
        "location",
        "created_at",
        "last_used_at",
        "revoked",
    ]
    list_select_related = ["channel", "location"]
    list_filter = [RevokedFilter, "channel"]
    search_fields = ["name", "prefix"]
    actions = ["revoke_selected"]
    readonly_fields = ["prefix", "created_at", "last_used_at", "revoked_at"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["name", "scopes", "channel", "location"]
        return [
            "name",
            "prefix",
            "scopes",
            "channel",
            "location",
            "created_at",
            "last_used_at",
            "revoked_at",
        ]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = ApiKeyAddForm
        return super().get_form(request, obj, **kwargs)

    @admin.display(description="scopes")
    def scope_list(self, obj: ApiKey) -> str:
        return ", ".join(obj.scopes)

    @admin.display(description="revoked", boolean=True, ordering="revoked_at")
    def revoked(self, obj: ApiKey) -> bool:
        return obj.revoked_at is not None

    def save_model(self, request, obj, form, change):
        # Only reached on add (change is off). The service generates and hashes the secret.
        key, raw = api_key_create(
            name=obj.name,
            scopes=form.cleaned_data["scopes"],
            channel=obj.channel,
            location=obj.location,
        )
        for f in ApiKey._meta.concrete_fields:
            setattr(obj, f.attname, getattr(key, f.attname))
        obj._state.adding = False
        messages.success(
            request,
            f"API key for “{key.name}”: {raw} — Copy it now, it will not be shown again.",
        )

    def has_change_permission(self, request, obj=None):
        return False  # keys are immutable: revoke and create a new one

    def has_delete_permission(self, request, obj=None):
        return False  # revoked keys stay, so audit rows keep naming who acted

    def has_revoke_permission(self, request) -> bool:
        return request.user.has_perm("oms.change_apikey")

    @admin.action(description="Revoke selected keys", permissions=["revoke"])
    def revoke_selected(self, request, queryset):
        keys = list(queryset.filter(revoked_at__isnull=True))
        for key in keys:
            api_key_revoke(key=key)
        self.message_user(request, f"Revoked {len(keys)} key(s).", messages.SUCCESS)


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Read-only: messages are written by services and delivered by the relay."""

    list_display = [
        "id",
        "kind",
        "topic",
        "status",
        "attempts",
        "next_attempt_at",
        "created_at",
        "delivered_at",
    ]
    list_filter = ["status", "kind"]
    search_fields = ["topic"]
    actions = ["retry_now"]
    show_full_result_count = False

    def has_retry_permission(self, request) -> bool:
        return request.user.has_perm("oms.change_outboxmessage")

    @admin.action(description="Retry now", permissions=["retry"])
    def retry_now(self, request, queryset):
        # Delivered messages are left alone: at-least-once, not again-on-demand.
        with transaction.atomic():
            count = queryset.filter(status__in=[OutboxStatus.DEAD, OutboxStatus.PENDING]).update(
                status=OutboxStatus.PENDING, next_attempt_at=timezone.now()
            )
            if count:
                # Don't wait for the beat relay (there is none when tasks run in-process).
                transaction.on_commit(_kick_relay)
        self.message_user(request, f"{count} message(s) queued for delivery now.", messages.SUCCESS)
