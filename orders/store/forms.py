from __future__ import annotations

from django import forms

from orders.models import Fulfillment

REJECT_REASONS = [
    ("Out of stock", "Out of stock"),
    ("Damaged", "Damaged"),
    ("Cannot find it", "Cannot find it"),
    ("Store too busy", "Store too busy"),
    ("Other", "Other"),
]
CARRIERS = ["UPS", "FedEx", "USPS", "DHL"]


class RejectForm(forms.Form):
    """A reason, and how many units of each line to reject (all of them by default)."""

    reason = forms.ChoiceField(choices=REJECT_REASONS)
    note = forms.CharField(max_length=200, required=False)

    def __init__(self, *args, fulfillment: Fulfillment, **kwargs):
        super().__init__(*args, **kwargs)
        self.open_lines = [fl for fl in fulfillment.lines.all() if fl.quantity_open]
        for fl in self.open_lines:
            self.fields[f"line_{fl.line_id}"] = forms.IntegerField(
                min_value=0,
                max_value=fl.quantity_open,
                initial=fl.quantity_open,
                label=f"{fl.line.sku} · {fl.line.item.name}",
            )

    def line_fields(self):
        return [(fl, self[f"line_{fl.line_id}"]) for fl in self.open_lines]

    def clean(self):
        data = super().clean()
        wanted = {fl.line_id: data.get(f"line_{fl.line_id}") or 0 for fl in self.open_lines}
        if not any(wanted.values()):
            raise forms.ValidationError("Choose at least one unit to reject.")
        everything = all(wanted[fl.line_id] == fl.quantity_open for fl in self.open_lines)
        data["lines"] = None if everything else {k: v for k, v in wanted.items() if v}
        reason = data.get("reason", "")
        data["full_reason"] = f"{reason}: {data['note']}" if data.get("note") else reason
        return data


class ShipForm(forms.Form):
    carrier = forms.CharField(max_length=50)
    tracking_number = forms.CharField(max_length=100)

    def clean_tracking_number(self):
        return self.cleaned_data["tracking_number"].strip().replace(" ", "")


class HandOverForm(forms.Form):
    pickup_code = forms.CharField(
        max_length=20,
        error_messages={"required": "Enter the pickup code the customer shows you."},
    )
