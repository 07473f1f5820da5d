"""The failure taxonomy: which errors are worth a retry, which are the record's fault, which are bugs."""

from __future__ import annotations

import asyncpg
import pydantic
import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RecordTooLargeError,
)

from shared.errors import Failure, InvalidRecord, classify
from shared.records import EventEnvelope


def validation_error() -> pydantic.ValidationError:
    try:
        EventEnvelope.model_validate({"source": "Not A Name", "event_type": "x", "external_id": "1"})
    except pydantic.ValidationError as error:
        return error
    raise AssertionError("the envelope was accepted")


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "refused"),
        TimeoutError(),
        KafkaConnectionError(),
        KafkaTimeoutError(),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.SerializationError("could not serialize access"),
        asyncpg.DeadlockDetectedError("deadlock detected"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction"),
        asyncpg.UniqueViolationError("duplicate key value"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_what_a_dependency_does_wrong_is_transient(error: BaseException) -> None:
    assert classify(error) is Failure.TRANSIENT


@pytest.mark.parametrize(
    "error",
    [
        InvalidRecord("'message' must be an object"),
        validation_error(),
        UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
        asyncpg.InvalidTextRepresentationError("invalid input syntax for type uuid"),
        asyncpg.NotNullViolationError("null value in column"),
        asyncpg.ForeignKeyViolationError("violates foreign key constraint"),
        asyncpg.ProgramLimitExceededError("index row size 2720 exceeds btree version 4 maximum 2704"),
        MessageSizeTooLargeError(),
        RecordTooLargeError(),
    ],
    ids=lambda error: type(error).__name__,
)
def test_what_the_record_itself_gets_wrong_is_a_bad_record(error: BaseException) -> None:
    assert classify(error) is Failure.BAD_RECORD


@pytest.mark.parametrize(
    "error",
    [KeyError("vector"), AttributeError("'NoneType' object has no attribute 'id'"), TypeError("unhashable"),
     AssertionError(), ZeroDivisionError(), asyncpg.UndefinedColumnError('column "sise" does not exist')],
    ids=lambda error: type(error).__name__,
)  # fmt: skip
def test_anything_else_is_a_bug(error: BaseException) -> None:
    assert classify(error) is Failure.BUG


def test_kafka_refusing_a_record_is_the_records_fault_though_it_is_a_kafka_error() -> None:
    # MessageSizeTooLargeError is a KafkaError too: retrying it would never end.
    assert isinstance(MessageSizeTooLargeError(), KafkaError)
    assert classify(MessageSizeTooLargeError()) is Failure.BAD_RECORD


def test_a_unique_violation_is_retried_though_it_is_an_integrity_error() -> None:
    assert isinstance(asyncpg.UniqueViolationError("x"), asyncpg.IntegrityConstraintViolationError)
    assert classify(asyncpg.UniqueViolationError("x")) is Failure.TRANSIENT


async def test_a_row_without_a_partition_is_retried_and_a_failed_check_is_the_records_fault(
    pool: asyncpg.Pool,
) -> None:
    # The partitions of document_embeddings change at every seal; a transaction that meets one it
    # has not seen is refused for the database's state, not for its rows.
    async with pool.acquire() as db, db.transaction():
        await db.execute(
            "CREATE TEMP TABLE segments (segment int) PARTITION BY LIST (segment); "
            "CREATE TEMP TABLE segments_1 PARTITION OF segments FOR VALUES IN (1); "
            "CREATE TEMP TABLE checked (amount int CONSTRAINT amount_positive CHECK (amount > 0))"
        )
        with pytest.raises(asyncpg.CheckViolationError) as no_partition:
            async with db.transaction():
                await db.execute("INSERT INTO segments VALUES (2)")
        with pytest.raises(asyncpg.CheckViolationError) as failed_check:
            async with db.transaction():
                await db.execute("INSERT INTO checked VALUES (-1)")
    assert classify(no_partition.value) is Failure.TRANSIENT
    assert classify(failed_check.value) is Failure.BAD_RECORD
    assert failed_check.value.constraint_name == "amount_positive"
