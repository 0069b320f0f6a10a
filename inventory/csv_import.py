"""Bulk CSV imports for locations, items and stock (used by the admin).

Each import is all or nothing: every row is parsed and validated first, and only a file with no
errors is written, in one transaction. Locations and items are upserted by code / SKU with bulk
statements; stock goes through `services.stock_snapshot`, so the ledger agrees with the counters.

Row numbers count the header as row 1, as a spreadsheet does.
"""

from __future__ import annotations

import csv
import functools
import io
import logging
import os
import zoneinfo
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction

from oms import local_cache
from oms.actor import Actor
from oms.errors import DomainError

from . import atp_cache, services
from .models import Capability, Item, Location, LocationType, Stock

log = logging.getLogger(__name__)

MAX_ROWS = 100_000
MAX_ERRORS = 50
MAX_QUANTITY = 10_000_000
BATCH = 1000
CHUNK = 5000  # keys per IN (...) lookup, under SQLite's parameter limit


@dataclass
class ImportResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        return f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged"


class _RowError(ValueError):
    """A cell that cannot be parsed; the message names the problem, not the row."""


# --- Cell parsers: each turns a stripped, non-empty cell into a value or raises _RowError --------


def _int(low: int = 0, high: int = MAX_QUANTITY) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise _RowError(f"'{raw}' is not a whole number") from None
        if not low <= value <= high:
            raise _RowError(f"{value} must be between {low} and {high}")
        return value

    return parse


def _bool(raw: str) -> bool:
    value = raw.lower()
    if value in {"1", "true", "t", "yes", "y"}:
        return True
    if value in {"0", "false", "f", "no", "n"}:
        return False
    raise _RowError(f"'{raw}' is not true/false")


def _decimal(places: int | None = None) -> Callable[[str], Decimal]:
    def parse(raw: str) -> Decimal:
        try:
            value = Decimal(raw)
        except InvalidOperation:
            raise _RowError(f"'{raw}' is not a number") from None
        if not value.is_finite():
            raise _RowError(f"'{raw}' is not a number")
        # GPS tools export more decimals than the column keeps; 6 places is ~10 cm.
        return round(value, places) if places is not None else value

    return parse


def _location_type(raw: str) -> str:
    value = raw.lower()
    if value not in LocationType.values:
        raise _RowError(f"'{raw}' is not one of {', '.join(LocationType.values)}")
    return value


def _capabilities(raw: str) -> list[str]:
    wanted = {c.strip().lower() for c in raw.split(";") if c.strip()}
    unknown = sorted(wanted - set(Capability.values))
    if unknown:
        raise _RowError(f"unknown {', '.join(unknown)}; use {', '.join(Capability.values)}")
    return [c for c in Capability.values if c in wanted]


def _timezone(raw: str) -> str:
    if raw not in _zones():
        raise _RowError(f"'{raw}' is not a time zone name such as Europe/Paris")
    return raw


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones() | {"UTC"})


# --- Reading -------------------------------------------------------------------------------------


def _read_rows(
    file, columns: dict[str, Any], required: set[str], errors: list[str]
) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Return (header, [(row number, {column: stripped cell})]); problems go to `errors`."""
    if hasattr(file, "seek"):
        file.seek(0)
    data = file.read()
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")  # Excel writes a byte-order mark
        except UnicodeDecodeError:
            errors.append("file is not UTF-8 text; save it as 'CSV UTF-8'")
            return [], []
    reader = csv.reader(io.StringIO(data, newline=""))
    header = [h.strip().lower() for h in next(reader, [])]
    if not any(header):
        errors.append("the file is empty; the first row must name the columns")
        return [], []
    for name in sorted(required - set(header)):
        errors.append(f"missing column '{name}'")
    named = [h for h in header if h]  # spreadsheets often add empty trailing columns
    for name in named:
        if name not in columns:
            # Strict, so a misspelt column ("on_hnad") is never silently ignored.
            errors.append(f"unknown column '{name}'; expected {', '.join(columns)}")
    if len(set(named)) != len(named):
        errors.append("a column appears twice in the header")
    if errors:
        return header, []
    rows = []
    for number, cells in enumerate(reader, start=2):
        if not any(c.strip() for c in cells):
            continue
        if len(cells) > len(header):
            _add(errors, f"row {number}: {len(cells)} values but {len(header)} columns")
            continue
        row = {h: c.strip() for h, c in zip(header, cells, strict=False)}
        if row.pop("", ""):
            _add(errors, f"row {number}: a value sits in a column with no name")
            continue
        rows.append((number, row))
        if len(rows) > MAX_ROWS:
            errors.append(f"more than {MAX_ROWS} rows; split the file")
            return header, []
    if not rows and not errors:
        errors.append("the file has a header but no rows")
    return header, rows


def _add(errors: list[str], message: str) -> None:
    if len(errors) < MAX_ERRORS:
        errors.append(message)
    elif len(errors) == MAX_ERRORS:
        errors.append("… more errors not shown; fix these first")


def _filename(file) -> str:
    return os.path.basename(getattr(file, "name", "") or "upload.csv")


# --- Locations and items: upsert by key ----------------------------------------------------------


def _upsert(
    file,
    *,
    model: type[models.Model],
    key: str,
    columns: dict[str, Callable[[str], Any] | None],
    required: set[str],
    actor: Actor,
) -> ImportResult:
    """Parse, validate against the model's own field rules, then write in bulk.

    A column left out of the file leaves that field unchanged on existing rows; an empty cell
    sets the field's default (or empty) value.
    """
    result = ImportResult()
    header, rows = _read_rows(file, columns, required, result.errors)
    if result.errors:
        return result
    updating = [c for c in header if c and c != key]
    keys = [row[key] for _, row in rows if row.get(key)]
    existing: dict[str, models.Model] = {}
    for start in range(0, len(keys), CHUNK):
        existing.update(model.objects.in_bulk(keys[start : start + CHUNK], field_name=key))
    seen: dict[str, int] = {}
    creates, updates = [], []
    for number, row in rows:
        code = row.get(key, "")
        if not code:
            _add(result.errors, f"row {number}: {key} is required")
            continue
        if code in seen:
            _add(result.errors, f"row {number}: duplicate {key} '{code}' (also on row {seen[code]})")
            continue
        seen[code] = number
        obj = existing.get(code) or model(**{key: code})
        before = {c: getattr(obj, c) for c in updating}
        problems = []
        for column in updating:
            raw = row.get(column, "")
            if not raw:
                if column in required:
                    problems.append(f"{column} is required")
                    continue
                setattr(obj, column, model._meta.get_field(column).get_default())
                continue
            parse = columns[column]
            try:
                setattr(obj, column, parse(raw) if parse else raw)
            except _RowError as exc:
                problems.append(f"{column} {exc}")
        if not problems:
            # The model's own rules (lengths, slugs, ranges, validators), without queries.
            try:
                obj.clean_fields()
            except ValidationError as exc:
                problems += [f"{f}: {' '.join(m)}" for f, m in exc.message_dict.items()]
        if problems:
            _add(result.errors, f"row {number}: {'; '.join(problems)}")
        elif obj.pk is None:
            creates.append(obj)
        elif any(getattr(obj, c) != before[c] for c in updating):
            updates.append(obj)
        else:
            result.unchanged += 1
    if result.errors:
        return result
    try:
        with transaction.atomic():
            model.objects.bulk_create(creates, batch_size=BATCH)
            if updates and updating:
                model.objects.bulk_update(updates, updating, batch_size=BATCH)
                # bulk_update sends no save signals: tell the caches that read these rows
                atp_cache.config_changed()
                local_cache.clear_all()
    except IntegrityError:
        # Another import created one of these keys since we read them: nothing was written.
        result.errors.append("a concurrent change touched the same rows; nothing was imported, try again")
        return result
    result.created, result.updated = len(creates), len(updates)
    log.info(
        "csv import %s %s by %s: %s",
        model._meta.model_name,
        _filename(file),
        actor.label,
        result.summary(),
    )
    return result


LOCATION_COLUMNS: dict[str, Callable[[str], Any] | None] = {
    "code": None,
    "name": None,
    "type": _location_type,
    "address_line1": None,
    "city": None,
    "region": None,
    "postal_code": None,
    "country": str.upper,
    "latitude": _decimal(6),
    "longitude": _decimal(6),
    "capabilities": _capabilities,
    "active": _bool,
    "priority": _int(0, 2_147_483_647),
    "daily_capacity": _int(0, 2_147_483_647),
    "fulfillment_cost": _decimal(),
    "timezone": _timezone,
    "cutoff_time": None,  # the model's TimeField parses "15:00"
    "accepts_returns": _bool,
    "opening_time": None,
    "processing_hours": _int(1, 24 * 14),
}
LOCATION_REQUIRED = {"code", "name", "type", "country"}

ITEM_COLUMNS: dict[str, Callable[[str], Any] | None] = {
    "sku": None,
    "name": None,
    "active": _bool,
    "weight_grams": _int(0, 2_147_483_647),
}
ITEM_REQUIRED = {"sku", "name"}

STOCK_COLUMNS: dict[str, Callable[[str], Any] | None] = {
    "location": None,
    "sku": None,
    "on_hand": _int(),
    "safety_stock": _int(),
}
STOCK_REQUIRED = {"location", "sku", "on_hand"}


def import_locations_csv(file, actor: Actor) -> ImportResult:
    return _upsert(
        file,
        model=Location,
        key="code",
        columns=LOCATION_COLUMNS,
        required=LOCATION_REQUIRED,
        actor=actor,
    )


def import_items_csv(file, actor: Actor) -> ImportResult:
    return _upsert(file, model=Item, key="sku", columns=ITEM_COLUMNS, required=ITEM_REQUIRED, actor=actor)


# --- Stock: absolute counts through the snapshot service -----------------------------------------


def import_stock_csv(file, actor: Actor) -> ImportResult:
    """Set on hand (and optionally safety stock) per location and SKU; SKUs not in the file
    keep their stock. One ledger row per changed count, referenced `csv:<filename>`."""
    result = ImportResult()
    _, rows = _read_rows(file, STOCK_COLUMNS, STOCK_REQUIRED, result.errors)
    if result.errors:
        return result
    codes = {row.get("location", "") for _, row in rows}
    skus = list({row.get("sku", "") for _, row in rows})
    locations = Location.objects.in_bulk(codes, field_name="code")
    items: dict[str, int] = {}
    for start in range(0, len(skus), CHUNK):  # stay under the database's parameter limit
        items.update(Item.objects.filter(sku__in=skus[start : start + CHUNK]).values_list("sku", "id"))
    # Counts below what orders hold are refused by the service; find them here to name the row.
    reserved = {
        (loc, sku): r
        for loc, sku, r in Stock.objects.filter(location__in=locations.values(), reserved__gt=0)
        .values_list("location__code", "item__sku", "reserved")
        .iterator(chunk_size=5000)
    }
    counts: dict[str, dict[str, tuple[int, int | None]]] = defaultdict(dict)
    seen: dict[tuple[str, str], int] = {}
    for number, row in rows:
        code, sku = row.get("location", ""), row.get("sku", "")
        problems = []
        if not code:
            problems.append("location is required")
        elif code not in locations:
            problems.append(f"unknown location '{code}'")
        if not sku:
            problems.append("sku is required")
        elif sku not in items:
            problems.append(f"unknown sku '{sku}'")
        values: dict[str, int | None] = {}
        for column in ("on_hand", "safety_stock"):
            raw = row.get(column, "")
            if not raw:
                if column == "on_hand":
                    problems.append("on_hand is required")
                values[column] = None
                continue
            try:
                values[column] = STOCK_COLUMNS[column](raw)
            except _RowError as exc:
                problems.append(f"{column} {exc}")
        held = reserved.get((code, sku), 0)
        if values.get("on_hand") is not None and values["on_hand"] < held:
            problems.append(f"on_hand {values['on_hand']} is below the {held} units reserved for orders")
        if (code, sku) in seen:
            problems.append(f"duplicate of row {seen[(code, sku)]}")
        if problems:
            _add(result.errors, f"row {number}: {'; '.join(problems)}")
            continue
        seen[(code, sku)] = number
        counts[code][sku] = (values["on_hand"], values["safety_stock"])
    if result.errors:
        return result
    reference = f"csv:{_filename(file)}"[:200]
    try:
        with transaction.atomic():
            # Locations in code order, so concurrent imports lock stock rows in the same order.
            for code in sorted(counts):
                done = services.stock_snapshot(
                    location=locations[code],
                    counts=counts[code],
                    actor=actor,
                    reference=reference,
                    full=False,
                )
                result.created += done.created
                result.updated += done.changed
                result.unchanged += done.rows - done.created - done.changed
    except DomainError as exc:
        # A reservation landed between our check and the write: all locations rolled back.
        return ImportResult(errors=[f"nothing was imported: {exc.message}"])
    log.info("csv import stock %s by %s: %s", reference, actor.label, result.summary())
    return result


# --- Samples offered for download on the import forms --------------------------------------------

SAMPLES = {
    "location": ",".join(LOCATION_COLUMNS)
    + "\n"
    + "DC-EAST,East distribution centre,warehouse,1 Dock Rd,Newark,NJ,07102,US,"
    "40.735700,-74.172400,ship,true,10,5000,4.50,America/New_York,16:00,true,07:00,8\n"
    "STORE-SOHO,SoHo store,store,120 Prince St,New York,NY,10012,US,"
    "40.725000,-73.999000,ship;pickup;curbside,true,50,200,6.00,America/New_York,14:00,true,10:00,2\n",
    "item": "sku,name,active,weight_grams\nTSHIRT-BLK-M,Black T-shirt M,true,180\nMUG-WHT,White mug,true,350\n",
    "stock": "location,sku,on_hand,safety_stock\nDC-EAST,TSHIRT-BLK-M,120,5\nSTORE-SOHO,TSHIRT-BLK-M,8,\n",
}
