"""What a failure means, decided in one place for HTTP handlers and agents alike.

- transient: what the work depends on failed (Kafka, Postgres, a provider); wait and retry.
- bad record: the input itself cannot be processed; answer 4xx, or dead-letter the record.
- bug: anything else; an agent stops loudly instead of dead-lettering good records.
"""

from __future__ import annotations

from enum import Enum

import asyncpg
import pydantic
from aiokafka.errors import (
    CorruptRecordException,
    InvalidMessageError,
    InvalidTimestampError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)

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
    # A server shutting down, a cancelled statement (57P01, 57014...), a standby not yet promoted
    # (25006): what a Postgres restart or failover looks like from a client.
    asyncpg.OperatorInterventionError,
    asyncpg.ReadOnlySQLTransactionError,
    # A concurrent writer committed the same row first; the retry sees it.
    asyncpg.UniqueViolationError,
    # A partition missing for a row (see _database_state).
    asyncpg.CheckViolationError,
)


class InvalidRecord(ValueError):
    """The record itself cannot be processed; it goes to the dead-letter topic with this reason."""


# A record that fails to decode or validate, or that Postgres refuses for its values.
BAD_RECORD_ERRORS: tuple[type[Exception], ...] = (
    InvalidRecord,
    pydantic.ValidationError,
    UnicodeDecodeError,
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    # A value past what Postgres can index (an id of several kilobytes: 54000).
    asyncpg.ProgramLimitExceededError,
    # Kafka refusing what a record would produce: waiting cannot make it smaller or valid.
    MessageSizeTooLargeError,
    RecordTooLargeError,
    RecordListTooLargeError,
    CorruptRecordException,
    InvalidMessageError,
    InvalidTimestampError,
)


def _database_state(error: BaseException) -> bool:
    """An integrity error that says nothing about the record: a concurrent writer took the same key
    first (the retry sees its row), or a row met a partitioned table whose partitions changed under
    the transaction ("no partition ... found for row": a check violation that names no
    constraint, where a row failing a CHECK names the one it failed)."""
    if isinstance(error, asyncpg.UniqueViolationError):
        return True
    return isinstance(error, asyncpg.CheckViolationError) and not getattr(error, "constraint_name", None)


class Failure(Enum):
    TRANSIENT = "transient"
    BAD_RECORD = "bad_record"
    BUG = "bug"


def classify(error: BaseException) -> Failure:
    """Which of the three kinds of failure `error` is."""
    # Bad records first: Kafka's refusals of a record are KafkaErrors too.
    if isinstance(error, BAD_RECORD_ERRORS) and not _database_state(error):
        return Failure.BAD_RECORD
    if isinstance(error, TRANSIENT_ERRORS):
        return Failure.TRANSIENT
    return Failure.BUG
