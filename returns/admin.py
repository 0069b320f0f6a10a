"""The back office for returns.

Merchants configure reason codes, return policies per channel and appeasement limits per role.
Returns, refunds and appeasements are records: read-only here, changed only through admin
actions that call the services (with the user as the actor), one record at a time, after a
confirmation page asking for the reason:

- returns: authorise, reject, mark in transit, cancel, close (`returns.change_return`);
- refunds: retry a failed refund (`returns.retry_refund`);
- appeasements: approve or decline one waiting for approval (`returns.approve_appeasement`;
  the service also checks the approver's own limit).
"""

from __future__ import annotations

import base64
from collections.abc import Callable

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import Q, QuerySet
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from oms.actor import Actor
from oms.admin import ReadOnlyAdminMixin
from oms.errors import DomainError
from orders import admin as orders_admin
from orders.models import OrderEvent

from . import appeasements, refunds, services
from .models import (
    Appeasement,
    AppeasementLimit,
    AppeasementReason,
    Refund,
    Return,
    ReturnLine,
    ReturnPolicy,
    ReturnReason,
    ReturnReceipt,
)

ACTION_FORM_TEMPLATE = "admin/returns/action_confirmation.html"
CONFIRMATION_LIST_LIMIT = 100


# --- Configuration --------------------------------------------------------------------------------


@admin.register(ReturnReason)
class ReturnReasonAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "merchant_fault", "active", "position"]
    list_editable = ["active", "position"]
    list_filter = ["merchant_fault", "active"]
    search_fields = ["code", "name"]


@admin.register(AppeasementReason)
class AppeasementReasonAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "active"]
    list_editable = ["active"]
    search_fields = ["code", "name"]


@admin.register(ReturnPolicy)
class ReturnPolicyAdmin(admin.ModelAdmin):
    """One policy per channel; the one without a channel applies to every other channel."""

    list_display = [
        "__str__",
        "window_days",
        "auto_authorise",
        "refund_shipping",
        "restocking_fee_percent",
        "damaged_deduction_percent",
        "fee_free_exchanges",
    ]
    list_select_related = ["channel"]


@admin.register(AppeasementLimit)
class AppeasementLimitAdmin(admin.ModelAdmin):
    """Role = a group's name (CSR, Supervisor, …). A person's limit is the highest of their groups'."""

    list_display = ["role", "max_amount"]


# --- Read-only inlines ------------------------------------------------------------------------------


class ReadOnlyInline(orders_admin.ReadOnlyInline):
    def has_view_permission(self, request, obj=None):
        return request.user.has_perm("returns.view_return") or request.user.has_perm("returns.change_return")


class ReturnLineInline(ReadOnlyInline):
    model = ReturnLine
    fields = ["order_line", "sku", "quantity", "reason", "quantity_received", "quantity_not_returned", "outstanding"]
    verbose_name_plural = "lines"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("order_line", "reason")

    @admin.display(description="SKU")
    def sku(self, line: ReturnLine) -> str:
        return line.order_line.sku

    @admin.display(description="still expected")
    def outstanding(self, line: ReturnLine) -> int:
        return line.quantity_outstanding


class ReceiptInline(ReadOnlyInline):
    model = ReturnReceipt
    fields = ["created_at", "location", "units", "refund", "received_by"]
    verbose_name_plural = "receipts (inspection)"

    def get_queryset(self, request):
        return (
            super().get_queryset(request).select_related("location").prefetch_related("lines__return_line__order_line")
        )

    @admin.display(description="units")
    def units(self, receipt: ReturnReceipt):
        return format_html_join(
            "",
            "<div>{} × {}: {} → {} (value {}, kept {})</div>",
            (
                (
                    rl.return_line.order_line.sku,
                    rl.quantity,
                    rl.get_condition_display(),
                    rl.get_disposition_display(),
                    rl.value,
                    rl.deduction,
                )
                for rl in receipt.lines.all()
            ),
        )

    @admin.display(description="refund")
    def refund(self, receipt: ReturnReceipt) -> str:
        b = receipt.refund_breakdown
        extra = f", overridden by {b['override']['by']}: {b['override']['reason']}" if "override" in b else ""
        return f"{b.get('amount', '0')} (goods {b.get('goods')}, kept {b.get('deductions')}, shipping {b.get('shipping')}){extra}"

    @admin.display(description="by")
    def received_by(self, receipt: ReturnReceipt) -> str:
        return receipt.actor_display


class RefundInline(ReadOnlyInline):
    model = Refund
    fk_name = "rma"
    fields = [
        "created_at",
        "amount",
        "currency",
        "payment",
        "status",
        "gateway_reference",
        "failure_reason",
        "attempts",
    ]


# --- Actions: confirm with a reason, then call the service per record ------------------------------


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=300, widget=forms.TextInput(attrs={"size": 60}))


class InTransitForm(forms.Form):
    carrier = forms.CharField(max_length=50, required=False)
    tracking_number = forms.CharField(max_length=100, required=False)


class NoteForm(forms.Form):
    note = forms.CharField(max_length=300, required=False, widget=forms.TextInput(attrs={"size": 60}))


class DeclineForm(forms.Form):
    note = forms.CharField(max_length=300, widget=forms.TextInput(attrs={"size": 60}), help_text="Why it is declined.")


class ConfirmedActionsMixin:
    """An action shows a form and the selected records until it is posted back valid with
    "confirm", then calls `apply(pk, cleaned_data)` per record, each in its own transaction."""

    def _confirm_then(
        self,
        request,
        queryset: QuerySet,
        *,
        form_class: type[forms.Form],
        title: str,
        intro: str,
        submit: str,
        apply: Callable[[int, dict], object],
        done: str,
        action: str,
    ):
        form = form_class(request.POST if "confirm" in request.POST else None)
        if form.is_valid():
            succeeded, failed = [], []
            for obj in queryset.order_by("pk"):
                try:
                    apply(obj.pk, form.cleaned_data)
                except DomainError as exc:
                    failed.append(f"{obj}: {exc.message}")
                else:
                    succeeded.append(str(obj))
            if succeeded:
                listed = ", ".join(succeeded[:10]) + (f" and {len(succeeded) - 10} more" if len(succeeded) > 10 else "")
                self.message_user(request, f"{done} {len(succeeded)}: {listed}.", messages.SUCCESS)
            for failure in failed:
                self.message_user(request, failure, messages.ERROR)
            return None
        total = queryset.count()
        records = list(queryset.order_by("pk")[:CONFIRMATION_LIST_LIMIT])
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "intro": intro,
            "submit": submit,
            "form": form,
            "records": records,
            "total": total,
            "more": total - len(records),
            "action": action,
            "selected": request.POST.getlist(ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "changelist_url": reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist"),
            "has_view_permission": self.has_view_permission(request),
        }
        return TemplateResponse(request, ACTION_FORM_TEMPLATE, context)


class ReadOnlyModelAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    pass


@admin.register(Return)
class ReturnAdmin(ConfirmedActionsMixin, ReadOnlyModelAdmin):
    list_display = ["number", "order_link", "channel", "status", "method", "at", "refund_amount", "created_at"]
    list_select_related = ["order__channel", "location"]
    list_filter = [
        "status",
        "method",
        ("order__channel", admin.RelatedOnlyFieldListFilter),
        ("location", admin.RelatedOnlyFieldListFilter),
        "created_at",
    ]
    search_fields = ["number", "order__number", "order__external_id", "order__customer__email", "label_tracking_number"]
    ordering = ["-id"]
    fieldsets = [
        (
            None,
            {"fields": ["number", "order_link", "status", "method", "location", "note", "created_by", "created_at"]},
        ),
        ("Policy", {"fields": ["window_days", "window_overridden_by", "window_override_reason", "rejection_reason"]}),
        ("Money", {"fields": ["refund_amount", "exchange_link", "exchange_credit", "exchange_credit_applied"]}),
        (
            "Label",
            {
                "fields": [
                    "label_status",
                    "label_carrier",
                    "label_service",
                    "label_tracking_number",
                    "label_link",
                    "label_error",
                ]
            },
        ),
        ("Timeline", {"fields": ["timeline"]}),
    ]
    readonly_fields = [name for _, options in fieldsets for name in options["fields"]]
    inlines = [ReturnLineInline, ReceiptInline, RefundInline]
    actions = ["authorise_returns", "reject_returns", "mark_in_transit", "cancel_returns", "close_returns"]

    @admin.display(description="order", ordering="order__number")
    def order_link(self, rma: Return):
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:orders_order_change", args=[rma.order_id]), rma.order.number
        )

    @admin.display(description="channel", ordering="order__channel__code")
    def channel(self, rma: Return) -> str:
        return rma.order.channel.code

    @admin.display(description="location", ordering="location__code")
    def at(self, rma: Return) -> str:
        return rma.location.code if rma.location_id else "any store"

    @admin.display(description="exchange order")
    def exchange_link(self, rma: Return):
        if rma.exchange_order_id is None:
            return "—"
        extra = " (advance)" if rma.advance_exchange else ""
        return format_html(
            '<a href="{}">{}</a>{}',
            reverse("admin:orders_order_change", args=[rma.exchange_order_id]),
            rma.exchange_order.number,
            extra,
        )

    @admin.display(description="label")
    def label_link(self, rma: Return):
        if not rma.label_data:
            return "—"
        url = reverse("admin:returns_return_label", args=[rma.pk])
        return format_html('<a href="{}">{} ({})</a>', url, rma.label_tracking_number, rma.label_format.upper())

    def get_urls(self):
        view = self.admin_site.admin_view(self.label_view)
        return [path("<int:pk>/label/", view, name="returns_return_label"), *super().get_urls()]

    def label_view(self, request, pk: int):
        rma = get_object_or_404(Return, pk=pk)
        if not self.has_view_permission(request, rma) or not rma.label_data:
            raise Http404
        content_type = "application/pdf" if rma.label_format == "pdf" else "application/x-zpl"
        return HttpResponse(base64.b64decode(rma.label_data), content_type=content_type)

    @admin.display(description="created by")
    def created_by(self, rma: Return) -> str:
        return rma.actor_display

    @admin.display(description="timeline")
    def timeline(self, rma: Return):
        """The order's timeline entries about this return and its refunds."""
        entries = OrderEvent.objects.filter(
            Q(data__return__number=rma.number) | Q(data__refund__return=rma.number), order_id=rma.order_id
        ).order_by("id")
        rows = [(e.created_at.strftime("%Y-%m-%d %H:%M"), e.message, e.actor_display) for e in entries]
        return format_html_join("", "<div>{} · {} <em>({})</em></div>", rows) or "—"

    def has_act_permission(self, request) -> bool:
        return request.user.has_perm("returns.change_return")

    def _act(self, request, queryset, *, action, service, form_class, title, intro, submit, done):
        actor = Actor.for_user(request.user)
        return self._confirm_then(
            request,
            queryset,
            form_class=form_class,
            title=title,
            intro=intro,
            submit=submit,
            apply=lambda pk, data: service(return_id=pk, actor=actor, **data),
            done=done,
            action=action,
        )

    @admin.action(description="Authorise selected returns", permissions=["act"])
    def authorise_returns(self, request, queryset):
        return self._act(
            request,
            queryset,
            action="authorise_returns",
            service=services.return_authorise,
            form_class=forms.Form,
            title="Authorise returns",
            intro="The customer may send the goods back.",
            submit="Authorise",
            done="Authorised",
        )

    @admin.action(description="Reject selected returns", permissions=["act"])
    def reject_returns(self, request, queryset):
        return self._act(
            request,
            queryset,
            action="reject_returns",
            service=services.return_reject,
            form_class=ReasonForm,
            title="Reject returns",
            intro="Only requested returns can be rejected; an exchange order that has not shipped is cancelled.",
            submit="Reject",
            done="Rejected",
        )

    @admin.action(description="Mark in transit", permissions=["act"])
    def mark_in_transit(self, request, queryset):
        return self._act(
            request,
            queryset,
            action="mark_in_transit",
            service=services.return_mark_in_transit,
            form_class=InTransitForm,
            title="Mark returns in transit",
            intro="The parcel is on its way back.",
            submit="Mark in transit",
            done="In transit",
        )

    @admin.action(description="Cancel selected returns", permissions=["act"])
    def cancel_returns(self, request, queryset):
        return self._act(
            request,
            queryset,
            action="cancel_returns",
            service=services.return_cancel,
            form_class=ReasonForm,
            title="Cancel returns",
            intro="Nothing will come back: the units may be returned again; an unshipped exchange is cancelled.",
            submit="Cancel these returns",
            done="Cancelled",
        )

    @admin.action(description="Close selected returns", permissions=["act"])
    def close_returns(self, request, queryset):
        return self._act(
            request,
            queryset,
            action="close_returns",
            service=services.return_close,
            form_class=ReasonForm,
            title="Close returns",
            intro="Stop waiting: units still expected are released; a failed refund is given up on.",
            submit="Close these returns",
            done="Closed",
        )


@admin.register(Refund)
class RefundAdmin(ConfirmedActionsMixin, ReadOnlyModelAdmin):
    list_display = [
        "id",
        "order",
        "rma",
        "appeasement",
        "amount",
        "currency",
        "status",
        "gateway_reference",
        "created_at",
    ]
    list_select_related = ["order", "rma", "appeasement"]
    list_filter = ["status", "created_at"]
    search_fields = ["order__number", "rma__number", "gateway_reference", "=idempotency_key"]
    readonly_fields = [
        "order",
        "payment",
        "rma",
        "receipt",
        "appeasement",
        "amount",
        "currency",
        "status",
        "breakdown",
        "idempotency_key",
        "gateway_reference",
        "failure_reason",
        "attempts",
        "retry_of",
        "actor_label",
        "created_at",
        "completed_at",
    ]
    fields = readonly_fields
    actions = ["retry_refunds"]

    def has_retry_permission(self, request) -> bool:
        return request.user.has_perm("returns.retry_refund")

    @admin.action(description="Retry failed refunds", permissions=["retry"])
    def retry_refunds(self, request, queryset):
        actor = Actor.for_user(request.user)
        return self._confirm_then(
            request,
            queryset,
            form_class=forms.Form,
            title="Retry failed refunds",
            intro="Each failed refund is sent again as a new refund (a new idempotency key).",
            submit="Retry",
            apply=lambda pk, data: refunds.refund_retry(refund_id=pk, actor=actor),
            done="Retried",
            action="retry_refunds",
        )


@admin.register(Appeasement)
class AppeasementAdmin(ConfirmedActionsMixin, ReadOnlyModelAdmin):
    list_display = ["id", "order", "kind", "amount", "currency", "reason", "status", "actor_label", "created_at"]
    list_select_related = ["order", "reason"]
    list_filter = ["status", "kind", "reason", "created_at"]
    search_fields = ["order__number", "credit_reference"]
    readonly_fields = [
        "order",
        "kind",
        "amount",
        "currency",
        "reason",
        "note",
        "status",
        "credit_reference",
        "actor_label",
        "decided_by",
        "decided_at",
        "decision_note",
        "created_at",
    ]
    fields = readonly_fields
    actions = ["approve_appeasements", "decline_appeasements"]

    def has_approve_permission(self, request) -> bool:
        return request.user.has_perm("returns.approve_appeasement")

    @admin.action(description="Approve selected appeasements", permissions=["approve"])
    def approve_appeasements(self, request, queryset):
        actor = Actor.for_user(request.user)
        return self._confirm_then(
            request,
            queryset,
            form_class=NoteForm,
            title="Approve appeasements",
            intro="Within your own limit only; never your own request.",
            submit="Approve",
            apply=lambda pk, data: appeasements.appeasement_approve(appeasement_id=pk, actor=actor, note=data["note"]),
            done="Approved",
            action="approve_appeasements",
        )

    @admin.action(description="Decline selected appeasements", permissions=["approve"])
    def decline_appeasements(self, request, queryset):
        actor = Actor.for_user(request.user)
        return self._confirm_then(
            request,
            queryset,
            form_class=DeclineForm,
            title="Decline appeasements",
            intro="Nothing is given; the requester sees your note on the order's timeline.",
            submit="Decline",
            apply=lambda pk, data: appeasements.appeasement_decline(appeasement_id=pk, actor=actor, note=data["note"]),
            done="Declined",
            action="decline_appeasements",
        )
