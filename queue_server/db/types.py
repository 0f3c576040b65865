"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

# JSONB on PostgreSQL (indexable, compact), plain JSON text elsewhere.
JSONDocument = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp.

    PostgreSQL stores `timestamptz`. SQLite has no timezone type, so the value is
    stored as naive UTC text and read back with the UTC zone attached. Naive input is
    rejected, because the service never guesses a zone.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        offset = value.utcoffset() if value.tzinfo is not None else None
        if offset is None:
            raise ValueError(f"naive datetime {value.isoformat()} cannot be stored; pass UTC")
        # Bind a plain datetime even for a subclass such as pendulum's DateTime: asyncpg
        # subtracts its epoch from every timestamp it encodes, and pendulum's subtraction
        # builds an Interval, which made that encoding a large share of a transition's CPU.
        utc = (
            datetime(
                value.year, value.month, value.day,
                value.hour, value.minute, value.second, value.microsecond,
                tzinfo=UTC,
            )
            - offset
        )
        if dialect.name == "sqlite":
            return utc.replace(tzinfo=None)
        return utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
