"""A fast path for validating a request body against an input serializer.

DRF's `Serializer(data=...).is_valid()` deep-copies every declared field per request (~90 for
an order) before it validates anything: over a millisecond per capture. `compile_fast(cls)`
reads the serializer's declared fields once and returns a plain function that gives exactly
the `validated_data` DRF would give when the body is certainly valid in its plain canonical
shape (strings as strings, numbers as JSON numbers or canonical decimal strings, ...), and
None for anything else, so the caller then runs the serializer for its exact error messages.
The serializer stays the one definition of the rules: limits, choices, defaults, extra
validators (email, regex) and `validate()` methods come from its fields."""

from __future__ import annotations

import datetime
import decimal
import re
from collections.abc import Callable
from decimal import Decimal

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import (
    MaxLengthValidator,
    MaxValueValidator,
    MinLengthValidator,
    MinValueValidator,
    ProhibitNullCharactersValidator,
)
from rest_framework import serializers
from rest_framework.fields import ProhibitSurrogateCharactersValidator, empty
from rest_framework.settings import ISO_8601, api_settings

FAIL = object()  # a check's answer for "not certainly valid"
_RULES = (DjangoValidationError, serializers.ValidationError)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class Unsupported(Exception):
    """A field the fast path does not know how to check: the serializer always runs."""


def _limits(field) -> tuple[dict, list]:
    """The field's validators split into the limits checked inline and the rest, run as-is."""
    limits = {"max_length": None, "min_length": None, "max_value": None, "min_value": None}
    rest = []
    for v in field.validators:
        kind = type(v)
        if kind in (ProhibitNullCharactersValidator, ProhibitSurrogateCharactersValidator):
            continue  # checked inline for every string
        name = {
            MaxLengthValidator: "max_length",
            MinLengthValidator: "min_length",
            MaxValueValidator: "max_value",
            MinValueValidator: "min_value",
        }.get(kind)
        if name is None or callable(v.limit_value):
            rest.append(v)
        elif limits[name] is None:
            limits[name] = v.limit_value
        else:
            tighter = max if name.startswith("min") else min
            limits[name] = tighter(limits[name], v.limit_value)
    return limits, rest


def _run(validators, value) -> bool:
    try:
        for v in validators:
            v(value)
    except _RULES:
        return False
    return True


def _string_ok(value: str) -> bool:
    """DRF's ProhibitNullCharacters and ProhibitSurrogateCharacters validators."""
    if "\x00" in value:
        return False
    if not value.isascii():
        try:
            value.encode("utf-8")  # only lone surrogates fail to encode
        except UnicodeEncodeError:
            return False
    return True


def _char(field) -> Callable:
    limits, rest = _limits(field)
    max_len, min_len = limits["max_length"], limits["min_length"] or 0
    trim, allow_blank = field.trim_whitespace, field.allow_blank
    if limits["max_value"] is not None or limits["min_value"] is not None:
        raise Unsupported(field)

    def check(value):
        if type(value) is not str:
            return FAIL
        text = value.strip() if trim else value
        if not text:  # DRF's blank: "" or, when trimming, only whitespace
            return "" if allow_blank else FAIL
        n = len(text)
        if (max_len is not None and n > max_len) or n < min_len or not _string_ok(text):
            return FAIL
        if rest and not _run(rest, text):
            return FAIL
        return text

    return check


def _integer(field) -> Callable:
    limits, rest = _limits(field)
    low, high = limits["min_value"], limits["max_value"]
    if low is None or high is None:
        raise Unsupported(field)  # unbounded: DRF's str() round trip may refuse huge ints

    def check(value):
        if type(value) is not int or value < low or value > high:
            return FAIL
        if rest and not _run(rest, value):
            return FAIL
        return value

    return check


def _decimal(field) -> Callable:
    limits, rest = _limits(field)
    low, high = limits["min_value"], limits["max_value"]
    digits, places = field.max_digits, field.decimal_places
    if digits is None or places is None or field.localize or places < 1:
        raise Unsupported(field)
    # At most max_digits - decimal_places whole digits (no leading zeros beyond one) and at
    # most decimal_places after the point: always within DRF's precision checks.
    shape = re.compile(rf"-?(?:0|[1-9]\d{{0,{digits - places - 1}}})(?:\.\d{{1,{places}}})?")
    quantum = Decimal(".1") ** places
    context = decimal.getcontext().copy()
    context.prec = digits
    rounding = field.rounding
    whole = 10 ** (digits - places)

    def check(value):
        kind = type(value)
        if kind is str:
            text = value
        elif (kind is int and -whole < value < whole) or kind is float:
            text = str(value)  # what DRF's smart_str gives
        else:
            return FAIL
        if len(text) > 40 or not shape.fullmatch(text):
            return FAIL
        number = Decimal(text).quantize(quantum, rounding=rounding, context=context)
        if (low is not None and number < low) or (high is not None and number > high):
            return FAIL
        if rest and not _run(rest, number):
            return FAIL
        return number

    return check


def _boolean(field) -> Callable:
    if field.validators:
        raise Unsupported(field)
    return lambda value: value if type(value) is bool else FAIL


def _choice(field) -> Callable:
    if field.validators:
        raise Unsupported(field)
    choices, allow_blank = field.choice_strings_to_values, field.allow_blank

    def check(value):
        if type(value) is not str:
            return FAIL
        if value == "" and allow_blank:
            return ""
        return choices.get(value, FAIL)

    return check


def _date(field) -> Callable:
    formats = getattr(field, "input_formats", api_settings.DATE_INPUT_FORMATS)
    if field.validators or [f.lower() for f in formats] != [ISO_8601]:
        raise Unsupported(field)

    def check(value):
        if type(value) is not str or not _DATE.fullmatch(value):
            return FAIL
        try:
            return datetime.date.fromisoformat(value)  # what django's parse_date tries first
        except ValueError:
            return FAIL

    return check


def _list(field: serializers.ListSerializer) -> Callable:
    if field.validators or type(field).validate is not serializers.ListSerializer.validate:
        raise Unsupported(field)
    child = _field(field.child)
    allow_empty, max_len, min_len = field.allow_empty, field.max_length, field.min_length or 0

    def check(value):
        if type(value) is not list:
            return FAIL
        n = len(value)
        if (not n and not allow_empty) or (max_len is not None and n > max_len) or n < min_len:
            return FAIL
        out = []
        for item in value:
            item = child(item)
            if item is FAIL:
                return FAIL
            out.append(item)
        return out

    return check


def _serializer(ser: serializers.Serializer) -> Callable:
    """The nested (or root) serializer: its writable fields, defaults, then `validate()`."""
    if ser.validators:
        raise Unsupported(ser)
    plan = []
    for field in ser._writable_fields:
        name = field.field_name
        has_default = field.default is not empty
        if field.source != name or hasattr(ser, f"validate_{name}") or (has_default and callable(field.default)):
            raise Unsupported(field)
        if has_default:
            missing = ("default", field.default)
        elif field.required:
            missing = ("fail", None)
        else:
            missing = ("skip", None)
        plan.append((name, _field(field), missing, field.allow_null))
    validate = ser.validate if type(ser).validate is not serializers.Serializer.validate else None

    def check(data):
        if type(data) is not dict:
            return FAIL
        out = {}
        for name, field_check, (when_missing, default), allow_null in plan:
            value = data.get(name, empty)
            if value is empty:
                if when_missing == "default":
                    out[name] = default
                elif when_missing == "fail":
                    return FAIL
            elif value is None:
                if not allow_null:
                    return FAIL
                out[name] = None
            else:
                value = field_check(value)
                if value is FAIL:
                    return FAIL
                out[name] = value
        if validate is not None:
            try:
                out = validate(out)
            except _RULES:
                return FAIL
        return out

    return check


_BUILDERS = [
    # Most specific first: EmailField and RegexField are CharFields with one more validator.
    (serializers.ChoiceField, _choice),
    (serializers.CharField, _char),
    (serializers.IntegerField, _integer),
    (serializers.DecimalField, _decimal),
    (serializers.BooleanField, _boolean),
    (serializers.DateField, _date),
    (serializers.ListSerializer, _list),
    (serializers.Serializer, _serializer),
]


def _field(field) -> Callable:
    if field.read_only:
        raise Unsupported(field)
    for cls, build in _BUILDERS:
        kind = type(field)
        if (
            isinstance(field, cls)
            and kind.to_internal_value is cls.to_internal_value
            and kind.run_validation is cls.run_validation
        ):
            return build(field)
    raise Unsupported(field)


def compile_fast(serializer_class: type[serializers.Serializer]) -> Callable[[object], dict | None]:
    """`fast(body)`: the serializer's validated_data when `body` is certainly valid, else None.
    If the serializer uses anything this module does not model, `fast` always answers None."""
    try:
        check = _serializer(serializer_class())
    except Unsupported:
        return lambda body: None

    def fast(body):
        data = check(body)
        return None if data is FAIL else data

    return fast
