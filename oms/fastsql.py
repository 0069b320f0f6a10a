"""Multi-row INSERTs without the ORM's per-statement compiling, for the hot write paths
(order capture, the stock ledger, timeline and outbox rows).

`insert_objects(objs)` writes unsaved model instances of one model with one
`INSERT … VALUES (…), (…) RETURNING id` and sets their primary keys, as `bulk_create` does.
Here compiling that statement through the ORM costs several times what the database takes to
run it, so the SQL is built once per (model, row count) and each value is converted only when
its field needs it on this database (plain ints, strings and booleans go as they are). Model
`save()` hooks and signals do not run, as with `bulk_create`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.models.base import ModelState
from django.db.models.signals import post_init, pre_init

# Fields whose database value is the Python value itself (given values of the right type).
_PLAIN = (
    models.AutoField,
    models.BigAutoField,
    models.IntegerField,
    models.BooleanField,
    models.CharField,
    models.TextField,
)

Converter = Callable[[Any, Any], Any]  # (value, connection) → the value the driver gets
_PLANS: dict[tuple, tuple[list[models.Field], list[Converter | None], str]] = {}


def _db():
    # The connection itself: every attribute read through django.db.connection (a proxy) looks
    # the thread's connection up again, a noticeable part of a capture's CPU.
    return connections[DEFAULT_DB_ALIAS]


def _plan(model: type[models.Model], rows: int, suffix: str = "", conn=None) -> tuple[list[models.Field], list, str]:
    conn = conn or _db()
    key = (model, rows, conn.vendor, suffix)
    plan = _PLANS.get(key)
    if plan is None:
        fields = [f for f in model._meta.concrete_fields if not f.primary_key]
        converters: list[Converter | None] = []
        for f in fields:
            plain = isinstance(f, _PLAIN) and not isinstance(f, models.JSONField)
            if isinstance(f, models.ForeignKey):
                plain = isinstance(f.target_field, _PLAIN)
            converters.append(None if plain else _converter(f, conn.vendor))
        quote = conn.ops.quote_name
        columns = ", ".join(quote(f.column) for f in fields)
        row = "(" + ", ".join(["%s"] * len(fields)) + ")"
        pk = quote(model._meta.pk.column)
        sql = f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES {', '.join([row] * rows)}{suffix} RETURNING {pk}"
        if len(_PLANS) > 2000:
            _PLANS.clear()
        plan = _PLANS[key] = (fields, converters, sql)
    return plan


_UNSET = object()
_READS: dict[type[models.Model], list[str | None]] = {}


def _reads(model: type[models.Model], fields: list[models.Field]) -> list[str | None]:
    """Per field, the instance attribute that holds its value where `pre_save` would only read
    it (most fields), None where `pre_save` computes it (auto_now_add and the like)."""
    reads = _READS.get(model)
    if reads is None:
        reads = _READS[model] = [f.attname if type(f).pre_save is models.Field.pre_save else None for f in fields]
    return reads


def _field_value(obj: models.Model, f: models.Field, attname: str | None) -> Any:
    """`f.pre_save(obj, True)`, read straight from the instance where that is all it does."""
    if attname:
        value = obj.__dict__.get(attname, _UNSET)
        if value is not _UNSET:
            return value
    return f.pre_save(obj, True)


def _saved_pk(obj: models.Model, field: models.Field) -> Any:
    """The id of a related object assigned before it was saved (a line's allocations)."""
    related = field.get_cached_value(obj)
    if related is None:
        return None
    if related.pk is None:
        raise ValueError(f"insert_objects: {field.name} of {obj!r} is not saved yet.")
    setattr(obj, field.name, related)  # sets the id and keeps the cached object
    return related.pk


def _converter(field: models.Field, vendor: str) -> Converter:
    """field.get_db_prep_save, with a shortcut for the values capture writes most (what Django
    would hand the driver unchanged: finite Decimals everywhere, aware UTC datetimes on
    PostgreSQL)."""
    prep = field.get_db_prep_save
    if isinstance(field, models.DecimalField):
        return lambda value, conn: value if type(value) is Decimal and value.is_finite() else prep(value, conn)
    if isinstance(field, models.DateTimeField) and vendor == "postgresql":
        return lambda value, conn: value if type(value) is datetime and value.tzinfo is UTC else prep(value, conn)
    return prep


# model → ({name or attname: (attname, the related row's key if a relation)}, {attname: fixed
# default}, [(attname, default())])
_SHAPES: dict[
    type[models.Model], tuple[dict[str, tuple[str, str | None]], dict[str, Any], list[tuple[str, Callable]]]
] = {}


def new(model: type[models.Model], /, **values: Any) -> models.Model:
    """`model(**values)` for a row about to be inserted, without `Model.__init__`'s per-field
    work (a tenth of an order capture's Python went into constructing its twenty rows). Same
    instance: every field set, defaults filled in, related objects cached, unsaved. Falls back
    to the constructor when something listens to the model's pre_init or post_init."""
    if pre_init.has_listeners(model) or post_init.has_listeners(model):
        return model(**values)
    shape = _SHAPES.get(model)
    if shape is None:
        names: dict[str, tuple[str, str | None]] = {}
        fixed: dict[str, Any] = {}
        made: list[tuple[str, Callable]] = []
        for f in model._meta.concrete_fields:
            names[f.name] = (f.attname, f.target_field.attname if f.is_relation else None)
            names[f.attname] = (f.attname, None)
            if f.has_default() and callable(f.default):
                made.append((f.attname, f.get_default))  # a fresh value each time (dict, now, …)
            else:
                fixed[f.attname] = f.get_default()
        shape = _SHAPES[model] = (names, fixed, made)
    names, fixed, made = shape
    obj = model.__new__(model)
    state = ModelState()
    d = obj.__dict__
    d.update(fixed)
    d["_state"] = state
    for name, value in values.items():
        try:
            attname, key = names[name]
        except KeyError:
            raise TypeError(f"{model.__name__}() got an unexpected keyword argument '{name}'") from None
        if key is not None:  # a related object: what its descriptor would set (no routers here)
            state.fields_cache[name] = value
            if value is None:
                d[attname] = None
            else:
                d[attname] = getattr(value, key)
                state.db = state.db or value._state.db or DEFAULT_DB_ALIAS
        else:
            d[attname] = value
    for attname, default in made:
        if attname not in d:
            d[attname] = default()
    return obj


def insert_objects(objs: Sequence[models.Model]) -> None:
    """INSERT unsaved instances of one concrete model (no multi-table inheritance) in one
    statement; sets each instance's pk, marks it saved. Fields' `pre_save` runs (auto_now_add)."""
    if not objs:
        return
    model = type(objs[0])
    per_statement = max(1, MAX_PARAMS // len(model._meta.concrete_fields))
    for start in range(0, len(objs), per_statement):
        _insert(model, objs[start : start + per_statement])


MAX_PARAMS = 30_000  # per statement: SQLite allows 32,766 bound values, PostgreSQL 65,535


def insert_unless_conflict(obj: models.Model) -> bool:
    """INSERT one instance unless it breaks a unique constraint (`ON CONFLICT DO NOTHING`, no
    savepoint needed); False if it did, and then nothing was written."""
    return _insert(type(obj), [obj], " ON CONFLICT DO NOTHING") == 1


def _insert(model: type[models.Model], objs: Sequence[models.Model], suffix: str = "") -> int:
    conn = _db()
    fields, converters, sql = _plan(model, len(objs), suffix, conn)
    reads = _reads(model, fields)
    params: list[Any] = []
    append = params.append
    for obj in objs:
        for f, attname, convert in zip(fields, reads, converters, strict=True):
            value = _field_value(obj, f, attname)
            if value is None and f.is_relation and f.is_cached(obj):
                value = _saved_pk(obj, f)
            append(value if convert is None else convert(value, conn))
    ids = fetch(sql, params, conn)
    for obj, (pk,) in zip(objs, ids, strict=False):  # strict unless a conflict skipped the row
        obj.pk = pk
        obj._state.adding = False
        obj._state.db = conn.alias
    return len(ids)


# --- Statements on a kept psycopg cursor (PostgreSQL) -------------------------------------------

_DOLLARS: dict[str, str] = {}  # "… %s …" → "… $1 …"
_PLACEHOLDER = re.compile(r"%[%s(]")


def dollars(sql: str) -> str:
    """`sql` with PostgreSQL's `$n` placeholders for its `%s` ones and `%` for `%%` (cached)."""
    converted = _DOLLARS.get(sql)
    if converted is None:
        numbers = iter(range(1, sql.count("%") + 1))

        def replace(mark: re.Match) -> str:
            if mark.group() == "%(":
                raise ValueError("fastsql takes positional %s placeholders only")
            return "%" if mark.group() == "%%" else f"${next(numbers)}"

        converted = _PLACEHOLDER.sub(replace, sql)
        if len(_DOLLARS) > 2000:
            _DOLLARS.clear()
        _DOLLARS[sql] = converted
    return converted


def fetch(sql: str, params: Sequence[Any], conn=None, *, rows: bool = True) -> list[tuple]:
    """Run one statement (`%s` placeholders) and return its rows (`rows=False`: none).

    On PostgreSQL it goes through a psycopg cursor kept per connection and statement, with the
    statement already in PostgreSQL's `$n` form: a new Django cursor per statement would build
    a new psycopg cursor, adapter map, parsed query and set of dumpers each time. Django's
    query log (tests, debug), its error wrapping and its broken-transaction check still
    apply."""
    conn = conn or _db()
    if conn.vendor != "postgresql":
        with conn.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if rows else []
    return run_raw(dollars(sql), params, conn, rows=rows)


def run_raw(sql: str, params: Sequence[Any], conn, *, rows: bool = True, prepare: bool | None = None) -> list[tuple]:
    """PostgreSQL: run a `$n` statement on the connection's psycopg cursor for it (`prepare`:
    psycopg's, None for the connection's threshold)."""
    if conn.queries_logged:
        conn.queries_log.append({"sql": sql, "time": "0.000"})
    conn.ensure_connection()
    conn.validate_no_broken_transaction()
    raw = conn.connection
    # Kept on Django's connection wrapper (one per thread), for its current psycopg connection
    # only: psycopg keeps a cursor's dumpers while the same statement runs on it again, and a
    # reconnect drops the old cursors with the old connection.
    kept = getattr(conn, "_fastsql_cursors", None)
    if kept is None or kept[0] is not raw:
        kept = conn._fastsql_cursors = (raw, {})
    cursors = kept[1]
    cursor = cursors.get(sql)
    if cursor is None or cursor.closed:
        if len(cursors) > 200:  # statements vary in shape (row counts): keep the common ones
            cursors.clear()
        cursor = cursors[sql] = psycopg.RawCursor(raw)
    with conn.wrap_database_errors:
        cursor.execute(sql, params, prepare=prepare)
        return cursor.fetchall() if rows else []


def insert_groups(groups: Sequence[Sequence[models.Model]]) -> None:
    """INSERT several lists of unsaved instances (one model per list), a list's rows may point
    at rows of an earlier list (an allocation at its line). On PostgreSQL it is one statement
    (one data-modifying CTE per list), elsewhere one statement per list.

    An id from a multi-row INSERT follows VALUES order (one nextval per row, in order), so the
    k-th row of a list is the k-th smallest id its CTE returns; later lists refer to it so."""
    groups = [g for g in groups if g]
    if not groups:
        return
    conn = _db()
    params_total = sum(len(g) * len(type(g[0])._meta.concrete_fields) for g in groups)
    if conn.vendor != "postgresql" or len(groups) == 1 or params_total > MAX_PARAMS:
        for group in groups:
            insert_objects(group)
        return
    where = {id(obj): (i, k) for i, group in enumerate(groups) for k, obj in enumerate(group)}
    params, linked, shape = [], [], []
    for i, group in enumerate(groups):
        model = type(group[0])
        fields, converters, _ = _plan(model, len(group), "", conn)
        reads = _reads(model, fields)
        shape.append((model, len(group)))
        for r, obj in enumerate(group):
            for c, (f, attname, convert) in enumerate(zip(fields, reads, converters, strict=True)):
                value = _field_value(obj, f, attname)
                if value is None and f.is_relation and f.is_cached(obj):
                    related = f.get_cached_value(obj)
                    if related is not None and related.pk is None:
                        j, k = where[id(related)]  # KeyError: not saved and not in this call
                        linked.append((obj, f, related))
                        shape.append((i, r, c, j, k))
                        continue
                    value = _saved_pk(obj, f)
                params.append(value if convert is None else convert(value, conn))
    key = tuple(shape)
    sql = _GROUP_SQL.get(key)
    if sql is None:
        sql = _GROUP_SQL[key] = _group_sql(groups, shape, conn)
    # Written with PostgreSQL's $n placeholders: the statement is too long for psycopg's cache
    # of parsed queries, and parsing it again on every capture costs more than running it.
    returned = run_raw(sql, params, conn)
    ids: list[list[int]] = [[] for _ in groups]
    for i, pk in returned:
        ids[i].append(pk)
    for group, group_ids in zip(groups, ids, strict=True):
        for obj, pk in zip(group, sorted(group_ids), strict=True):
            obj.pk = pk
            obj._state.adding = False
            obj._state.db = conn.alias
    for obj, f, related in linked:  # FKs written as subqueries: the ids they found
        setattr(obj, f.name, related)


_GROUP_SQL: dict[tuple, str] = {}


def _group_sql(groups: Sequence[Sequence[models.Model]], shape: list[tuple], conn) -> str:
    """The statement for one shape of insert_groups: `shape` lists each group's (model, rows)
    and, where a foreign key points into an earlier group, (group, row, column, that group,
    its row)."""
    if len(_GROUP_SQL) > 500:
        _GROUP_SQL.clear()
    refs = {x[:3]: x[3:] for x in shape if len(x) == 5}
    quote = conn.ops.quote_name
    ctes, number = [], 0
    for i, group in enumerate(groups):
        model = type(group[0])
        fields, _, _ = _plan(model, len(group), "", conn)
        rows = []
        for r in range(len(group)):
            marks = []
            for c in range(len(fields)):
                if (i, r, c) in refs:
                    j, k = refs[(i, r, c)]
                    marks.append(f"(SELECT id FROM t{j} ORDER BY id OFFSET {k} LIMIT 1)")
                    continue
                number += 1
                marks.append(f"${number}")
            rows.append("(" + ", ".join(marks) + ")")
        columns = ", ".join(quote(f.column) for f in fields)
        pk = quote(model._meta.pk.column)
        ctes.append(
            f"t{i} AS (INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES {', '.join(rows)} RETURNING {pk} AS id)"
        )
    union = " UNION ALL ".join(f"SELECT {i}, id FROM t{i}" for i in range(len(groups)))
    return f"WITH {', '.join(ctes)} {union}"
