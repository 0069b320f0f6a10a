"""Fulfilment SLAs: when a location must have a fulfilment picked and packed (or ready for pickup).

Pure functions over plain values, so the rules are easy to read and to test in a table.

The clock starts when the fulfilment is released to the location. Released between the
location's opening time and its cut-off (local time), it starts at once; released before
opening it starts at that day's opening; released after the cut-off it starts at the next
day's opening. The fulfilment is due `processing_hours` (elapsed hours) after the clock starts.
There is no holiday or weekend calendar: locations that close on some days set a longer
processing time.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


def _at(day: date, moment: time, zone: ZoneInfo) -> datetime:
    """`moment` on `day` in `zone`. With fold=0 (PEP 495) a wall time skipped by a DST jump
    (02:30 on spring-forward day) lands just after the gap and a repeated one (autumn) on its
    first occurrence: what a person at the location would mean."""
    return datetime.combine(day, moment, tzinfo=zone)


def clock_start(*, released_at: datetime, timezone: str, opening: time, cutoff: time) -> datetime:
    """When the location's SLA clock starts for work released at `released_at` (aware)."""
    zone = ZoneInfo(timezone)
    local = released_at.astimezone(zone)
    if local.time() < opening:
        return _at(local.date(), opening, zone)
    if local.time() > cutoff:
        return _at(local.date() + timedelta(days=1), opening, zone)
    return local


def due_at(*, released_at: datetime, timezone: str, opening: time, cutoff: time, processing_hours: int) -> datetime:
    """The due time (UTC) of work released at `released_at` to a location with these settings."""
    start = clock_start(released_at=released_at, timezone=timezone, opening=opening, cutoff=cutoff)
    # Elapsed hours: add in UTC, so a DST change in between neither adds nor removes an hour.
    return start.astimezone(UTC) + timedelta(hours=processing_hours)


def location_due_at(location, released_at: datetime) -> datetime:
    return due_at(
        released_at=released_at,
        timezone=location.timezone,
        opening=location.opening_time,
        cutoff=location.cutoff_time,
        processing_hours=location.processing_hours,
    )
