"""What a failure means, decided in one place for HTTP handlers and agents alike.

- transient: what the work depends on failed (Kafka, Postgres, a provider); wait and retry.
- bad record: the input itself cannot be processed; answer 4xx, or dead-letter the record.
- bug: anything else; an agent stops loudly instead of dead-lettering good records.
"""

from __future__ import annotations

from enum import Enum

import asyncpg
import pydantic
from aiokafka.errors import KafkaError

# Failures of what a record's work depends on, not of the record: wait and try the same record again.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    KafkaError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    # A connection Postgres dropped mid-operation, used before asyncpg saw it close ("cannot
    # switch to state 15; another operation (2) is in progress"), seen while Postgres restarts.
    asyncpg.InternalClientError,
)


class InvalidRecord(ValueError):
    """The record itself cannot be processed; it goes to the dead-letter topic with this reason."""


# A record that fails to decode or validate, or that Postgres refuses for its values.
BAD_RECORD_ERRORS: tuple[type[Exception], ...] = (
    InvalidRecord,
    pydantic.ValidationError,
    UnicodeDecodeError,
    asyncpg.DataError,
)


class Failure(Enum):
    TRANSIENT = "transient"
    BAD_RECORD = "bad_record"
    BUG = "bug"


def classify(error: BaseException) -> Failure:
    """Which of the three kinds of failure `error` is."""
    if isinstance(error, BAD_RECORD_ERRORS):
        return Failure.BAD_RECORD
    if isinstance(error, TRANSIENT_ERRORS):
        return Failure.TRANSIENT
    return Failure.BUG
