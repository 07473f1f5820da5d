"""Each tenant's dead letters of the last hour, counted by following the dead-letter topic.

Search reads the topic itself rather than a table the agents would write beside it: the topic is
where dead letters are, so the count is what `chorus dlq list --since 1h --tenant T` shows, and
dead-lettering gains no write to Postgres (which may be what is failing at that moment).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from shared.dead_letters import entry_of, reader, start_reader
from shared.errors import Failure, classify
from shared.retry import Backoff

log = logging.getLogger(__name__)

WINDOW = timedelta(hours=1)
# Counts are kept per tenant and minute, so memory stays bounded whatever the rate of dead letters;
# a tenant past this many (a flood of made-up names) is not counted.
MAX_TENANTS = 10_000
_BACKOFF = Backoff(first=1.0, cap=30.0)


def _minute(moment: datetime) -> int:
    return int(moment.timestamp() // 60)


class RecentDeadLetters:
    """Dead letters per tenant (as the records name it: id or name) and minute, for the last hour."""

    def __init__(self) -> None:
        self._counts: dict[str, dict[int, int]] = {}
        # False until the topic's last hour has been read: until then a count would be too low.
        self.caught_up = False

    def add(self, tenant: str, failed_at: datetime) -> None:
        minute = _minute(failed_at)
        if minute <= _minute(datetime.now(UTC) - WINDOW):
            return
        if tenant not in self._counts and len(self._counts) >= MAX_TENANTS:
            self.forget_old()
            if len(self._counts) >= MAX_TENANTS:
                return
        minutes = self._counts.setdefault(tenant, {})
        minutes[minute] = minutes.get(minute, 0) + 1

    def count(self, tenant_names: Iterable[str]) -> int | None:
        """Dead letters of the last hour (to the minute) of the tenant going by `tenant_names`;
        None while the topic is still being read."""
        if not self.caught_up:
            return None
        oldest = _minute(datetime.now(UTC) - WINDOW)
        return sum(
            count
            for name in set(tenant_names)
            for minute, count in self._counts.get(name, {}).items()
            if minute > oldest
        )

    def reset(self) -> None:
        self._counts.clear()
        self.caught_up = False

    def forget_old(self) -> None:
        """Drop the minutes that left the window, and the tenants with none left."""
        oldest = _minute(datetime.now(UTC) - WINDOW)
        for tenant in list(self._counts):
            minutes = {minute: count for minute, count in self._counts[tenant].items() if minute > oldest}
            if minutes:
                self._counts[tenant] = minutes
            else:
                del self._counts[tenant]


async def follow_dead_letters(recent: RecentDeadLetters, bootstrap: str, topic: str) -> None:
    """Count the dead letters of `topic` into `recent` from an hour ago on, for ever; after a Kafka
    failure, start over from an hour before then."""
    failures = 0
    while True:
        consumer = reader(bootstrap)
        recent.reset()
        try:
            await consumer.start()
            partitions = await start_reader(consumer, bootstrap, topic, datetime.now(UTC) - WINDOW)
            ends = await consumer.end_offsets(partitions)
            tidied = _minute(datetime.now(UTC))
            while True:
                batches = await consumer.getmany(timeout_ms=1000, max_records=500)
                for records in batches.values():
                    for record in records:
                        entry = entry_of(record)
                        if entry.letter is not None and entry.tenant is not None:
                            recent.add(entry.tenant, entry.letter.failed_at)
                if not recent.caught_up:
                    positions = [await consumer.position(partition) for partition in partitions]
                    recent.caught_up = all(
                        place >= ends[partition] for place, partition in zip(positions, partitions, strict=True)
                    )
                failures = 0
                if _minute(datetime.now(UTC)) != tidied:
                    tidied = _minute(datetime.now(UTC))
                    recent.forget_old()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            # A topic not created yet is waited for like a broker that does not answer.
            if not isinstance(error, LookupError) and classify(error) is not Failure.TRANSIENT:
                recent.reset()
                log.error("stopped counting dead letters", extra={"error": repr(error)})
                raise
            failures += 1
            log.warning("reading the dead-letter topic failed; retrying", extra={"error": repr(error)})
            await asyncio.sleep(_BACKOFF.delay(failures))
        finally:
            await consumer.stop()
