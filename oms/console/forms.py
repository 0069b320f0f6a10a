"""Console forms: the search box and filters, and one form per order action. They validate
input only; the services decide what is allowed and say why not."""

from __future__ import annotations

from decimal import Decimal

from django import forms

from inventory.models import Channel, Location
from orders.models import HoldType, OrderStatus
from orders.services import AddressInput
from returns.models import Appeasement, AppeasementReason, Condition, Disposition, Return, ReturnReason
from returns.services import DISPOSITIONS, ReceiveLineInput

from .selectors import SORT_LABELS, SearchParams


class SearchForm(forms.Form):
    q = forms.CharField(
        required=False,
        max_length=200,
        label="Search",
        widget=forms.TextInput(
            attrs={
                "placeholder": "Order number, channel order id, email, name, phone or tracking number",
                "autofocus": True,
                "type": "search",
            }
        ),
    )
    channel = forms.ModelChoiceField(
        queryset=Channel.objects.order_by("code"), required=False, to_field_name="code", empty_label="Any channel"
    )
    status = forms.ChoiceField(choices=[("", "Any status"), *OrderStatus.choices], required=False)
    created_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    created_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
    location = forms.ModelChoiceField(
        queryset=Location.objects.order_by("code"),
        required=False,
        to_field_name="code",
        empty_label="Any location",
        label="Fulfilled from",
    )
    on_hold = forms.BooleanField(required=False, label="On hold")
    backordered = forms.BooleanField(required=False, label="Backordered")
    late = forms.BooleanField(required=False, label="Late")
    sort = forms.ChoiceField(choices=list(SORT_LABELS.items()), required=False)
    page = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    def clean(self):
        data = super().clean()
        start, end = data.get("created_from"), data.get("created_to")
        if start and end and start > end:
            self.add_error("created_to", "The end date is before the start date.")
        return data

    def params(self) -> SearchParams:
        d = self.cleaned_data
        return SearchParams(
            q=d.get("q") or "",
            channel=d.get("channel"),
            status=d.get("status") or "",
            created_from=d.get("created_from"),
            created_to=d.get("created_to"),
            location=d.get("location"),
            on_hold=bool(d.get("on_hold")),
            backordered=bool(d.get("backordered")),
            late=bool(d.get("late")),
            sort=d.get("sort") or "newest",
            page=d.get("page") or 1,
        )


class CancelForm(forms.Form):
    """Whole order (no quantities given) or some units of some lines (`qty_<line id>`)."""

    reason = forms.CharField(max_length=300, widget=forms.TextInput(attrs={"size": 50}))

    def __init__(self, *args, lines=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.lines = [line for line in lines if line.quantity_open]
        for line in self.lines:
            self.fields[f"qty_{line.pk}"] = forms.IntegerField(
                required=False,
                min_value=0,
                max_value=line.quantity_open,
                label=f"{line.sku}",
                widget=forms.NumberInput(attrs={"min": 0, "max": line.quantity_open, "class": "qty"}),
            )

    def line_fields(self):
        return [(line, self[f"qty_{line.pk}"]) for line in self.lines]

    def clean(self):
        data = super().clean()
        self.partial = {line.pk: data.get(f"qty_{line.pk}") or 0 for line in self.lines}
        self.partial = {pk: q for pk, q in self.partial.items() if q}
        return data

    @property
    def whole_order(self) -> bool:
        return not self.partial


class HoldForm(forms.Form):
    hold_type = forms.ChoiceField(
        choices=[(v, label) for v, label in HoldType.choices if v != HoldType.SOURCING],
        initial=HoldType.CUSTOMER_SERVICE,
    )
    reason = forms.CharField(max_length=300, widget=forms.TextInput(attrs={"size": 50}))


class ReleaseForm(forms.Form):
    hold_types = forms.MultipleChoiceField(
        choices=HoldType.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Leave all unticked to release every active hold.",
    )
    note = forms.CharField(max_length=300, required=False, widget=forms.TextInput(attrs={"size": 50}))

    def __init__(self, *args, active_types=(), **kwargs):
        super().__init__(*args, **kwargs)
        if active_types:
            self.fields["hold_types"].choices = [(v, label) for v, label in HoldType.choices if v in active_types]


class AddressForm(forms.Form):
    name = forms.CharField(max_length=200, required=False)
    line1 = forms.CharField(max_length=200, label="Address line 1")
    line2 = forms.CharField(max_length=200, required=False, label="Address line 2")
    city = forms.CharField(max_length=100)
    region = forms.CharField(max_length=100, required=False, label="State / region")
    postal_code = forms.CharField(max_length=20)
    country = forms.CharField(max_length=2, min_length=2, help_text="Two-letter ISO code, e.g. US.")
    latitude = forms.DecimalField(max_digits=9, decimal_places=6, required=False, min_value=-90, max_value=90)
    longitude = forms.DecimalField(max_digits=9, decimal_places=6, required=False, min_value=-180, max_value=180)

    @classmethod
    def initial_for(cls, order) -> dict:
        return {
            name: getattr(order, f"ship_{name}")
            for name in ("name", "line1", "line2", "city", "region", "postal_code", "country", "latitude", "longitude")
        }

    def clean_country(self):
        return self.cleaned_data["country"].upper()

    def clean(self):
        data = super().clean()
        if (data.get("latitude") is None) != (data.get("longitude") is None):
            self.add_error("longitude", "Give both latitude and longitude, or neither.")
        return data

    def address(self) -> AddressInput:
        d = self.cleaned_data
        return AddressInput(
            name=d["name"],
            line1=d["line1"],
            line2=d["line2"],
            city=d["city"],
            region=d["region"],
            postal_code=d["postal_code"],
            country=d["country"],
            latitude=d["latitude"],
            longitude=d["longitude"],
        )


class NoteForm(forms.Form):
    text = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 3}), label="Note")


class RerouteForm(forms.Form):
    reason = forms.CharField(
        max_length=300,
        widget=forms.TextInput(attrs={"size": 50}),
        help_text="Why the location should not do it (recorded on the timeline).",
    )


class InventoryForm(forms.Form):
    sku = forms.CharField(max_length=64, label="SKU", widget=forms.TextInput(attrs={"autofocus": True}))
    channel = forms.ModelChoiceField(
        queryset=Channel.objects.filter(active=True).order_by("code"),
        required=False,
        to_field_name="code",
        empty_label="Choose a channel",
        help_text="For stores near an address.",
    )
    near = forms.CharField(
        max_length=100,
        required=False,
        label="Near",
        widget=forms.TextInput(attrs={"placeholder": "lat, long or a postal code / city we know"}),
    )
    radius_km = forms.DecimalField(
        required=False, min_value=Decimal(1), max_value=Decimal(500), initial=50, label="Within (km)"
    )


class ReturnForm(forms.Form):
    """Units of each shipped line to take back (`qty_<line id>`, with `reason_<line id>`),
    how they come back, and optionally what the customer gets in exchange."""

    method = forms.ChoiceField(choices=Return.Method.choices, initial=Return.Method.MAIL)
    location = forms.ModelChoiceField(
        queryset=Location.objects.filter(accepts_returns=True, active=True).order_by("code"),
        required=False,
        to_field_name="code",
        empty_label="Any (mail: a warehouse that takes returns)",
        label="Comes back to",
    )
    note = forms.CharField(max_length=500, required=False, widget=forms.TextInput(attrs={"size": 50}))
    exchange_sku = forms.CharField(max_length=64, required=False, label="Exchange for SKU")
    exchange_quantity = forms.IntegerField(min_value=1, required=False, label="Exchange quantity")
    advance_exchange = forms.BooleanField(required=False, help_text="Ship the exchange before the return arrives.")
    window_override_reason = forms.CharField(
        max_length=300,
        required=False,
        label="Late return: why",
        help_text="Past the channel's return window a supervisor lets it through with a reason.",
    )

    def __init__(self, *args, lines=(), returnable=None, **kwargs):
        super().__init__(*args, **kwargs)
        returnable = returnable or {}
        reasons = [(r.code, r.name) for r in ReturnReason.objects.filter(active=True).order_by("position", "code")]
        self.lines = [(line, returnable.get(line.pk, 0)) for line in lines if returnable.get(line.pk, 0) > 0]
        for line, can in self.lines:
            self.fields[f"qty_{line.pk}"] = forms.IntegerField(
                required=False,
                min_value=0,
                max_value=can,
                label=line.sku,
                widget=forms.NumberInput(attrs={"min": 0, "max": can, "class": "qty"}),
            )
            self.fields[f"reason_{line.pk}"] = forms.ChoiceField(choices=reasons, required=False, label="Reason")

    def line_fields(self):
        return [(line, can, self[f"qty_{line.pk}"], self[f"reason_{line.pk}"]) for line, can in self.lines]

    def clean(self):
        data = super().clean()
        self.wanted = []
        for line, _ in self.lines:
            quantity = data.get(f"qty_{line.pk}") or 0
            if quantity:
                if not data.get(f"reason_{line.pk}"):
                    self.add_error(f"reason_{line.pk}", "Choose a reason.")
                self.wanted.append((line, quantity, data.get(f"reason_{line.pk}") or ""))
        if not self.wanted and not self.errors:
            raise forms.ValidationError("Enter how many units of at least one line come back.")
        if bool(data.get("exchange_sku")) != bool(data.get("exchange_quantity")):
            self.add_error("exchange_quantity", "Give both the SKU and the quantity, or neither.")
        return data


# Short enough to sit under each quantity in the panel.
SHORT_DISPOSITIONS = {
    Disposition.RESTOCK: "Restock",
    Disposition.WRITE_OFF: "Write off",
    Disposition.RETURN_TO_VENDOR: "Return to vendor",
}


class ReceiveForm(forms.Form):
    """What arrived of each return line still expected, counted by condition
    (`qty_<return line id>_<condition>`), with what to do with sellable and damaged goods
    (`disp_<return line id>_<condition>`, the condition's default first)."""

    location = forms.ModelChoiceField(
        queryset=Location.objects.filter(accepts_returns=True, active=True).order_by("code"),
        to_field_name="code",
        empty_label="Choose where it arrived",
        label="Received at",
        help_text="Only active locations that take returns.",
    )

    def __init__(self, *args, rma: Return, **kwargs):
        kwargs.setdefault("initial", {"location": rma.location.code if rma.location_id else None})
        super().__init__(*args, **kwargs)
        self.lines = [rl for rl in rma.lines.all() if rl.quantity_outstanding > 0]
        for rl in self.lines:
            for condition in Condition:
                self.fields[f"qty_{rl.pk}_{condition}"] = forms.IntegerField(
                    required=False,
                    min_value=0,
                    max_value=rl.quantity_outstanding,
                    label=f"{rl.order_line.sku} {condition.label.lower()}",
                    widget=forms.NumberInput(attrs={"min": 0, "max": rl.quantity_outstanding, "class": "qty"}),
                )
                allowed = DISPOSITIONS[condition]
                if allowed != [Disposition.NONE]:
                    self.fields[f"disp_{rl.pk}_{condition}"] = forms.ChoiceField(
                        choices=[(d, SHORT_DISPOSITIONS[d]) for d in allowed],
                        initial=allowed[0],
                        required=False,
                        label=f"{rl.order_line.sku} {condition.label.lower()}: disposition",
                    )

    def line_fields(self):
        """Per return line: (line, [(condition, quantity field, disposition field or None)])."""
        out = []
        for rl in self.lines:
            cells = []
            for condition in Condition:
                disposition = f"disp_{rl.pk}_{condition}"
                cells.append(
                    (
                        condition,
                        self[f"qty_{rl.pk}_{condition}"],
                        self[disposition] if disposition in self.fields else None,
                    )
                )
            out.append((rl, cells))
        return out

    def clean(self):
        data = super().clean()
        self.rows: list[tuple[object, int, str, str]] = []  # (return line, quantity, condition, disposition)
        for rl in self.lines:
            total = 0
            for condition in Condition:
                quantity = data.get(f"qty_{rl.pk}_{condition}") or 0
                if quantity:
                    disposition = data.get(f"disp_{rl.pk}_{condition}") or DISPOSITIONS[condition][0]
                    self.rows.append((rl, quantity, condition, disposition))
                    total += quantity
            if total > rl.quantity_outstanding:
                self.add_error(
                    f"qty_{rl.pk}_{Condition.SELLABLE}",
                    f"{total} units counted but only {rl.quantity_outstanding} still expected.",
                )
        if not self.rows and not self.errors:
            raise forms.ValidationError("Enter how many units of at least one line arrived (or are missing).")
        return data

    def receipt_lines(self) -> list[ReceiveLineInput]:
        return [
            ReceiveLineInput(line_id=rl.order_line_id, quantity=q, condition=c, disposition=d)
            for rl, q, c, d in self.rows
        ]


class AppeasementForm(forms.Form):
    kind = forms.ChoiceField(choices=Appeasement.Kind.choices, initial=Appeasement.Kind.REFUND)
    amount = forms.DecimalField(max_digits=12, decimal_places=2, min_value=Decimal("0.01"))
    reason = forms.ModelChoiceField(
        queryset=AppeasementReason.objects.filter(active=True).order_by("name"), to_field_name="code"
    )
    note = forms.CharField(max_length=500, required=False, widget=forms.TextInput(attrs={"size": 50}))
    request_approval = forms.BooleanField(
        required=False,
        label="Ask for approval",
        help_text="Above your limit: leave it waiting for a supervisor instead of being refused.",
    )


class DecisionForm(forms.Form):
    note = forms.CharField(max_length=300, required=False, widget=forms.TextInput(attrs={"size": 50}))
