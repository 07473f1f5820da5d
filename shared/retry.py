"""The one retry policy: exponential backoff with jitter, capped, honouring a server's Retry-After."""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime


@dataclass(frozen=True)
class Backoff:
    """Delays between attempts: `first`, doubling up to `cap`, each drawn from [half, whole] of that
    so that many clients failing together do not retry together."""

    first: float = 0.2
    cap: float = 10.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1 for the first failure).

        A Retry-After the server sent wins, within the cap: it knows when it can take more."""
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, self.cap)
        ceiling = min(self.first * 2.0 ** max(attempt - 1, 0), self.cap)
        return ceiling * (0.5 + random.random() / 2)


def retry_after_seconds(value: str | None) -> float | None:
    """The wait a Retry-After header asks for, in seconds (it may be a number or an HTTP date);
    None when it is absent or unreadable."""
    text = (value or "").strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            return max(parsedate_to_datetime(text).timestamp() - time.time(), 0.0)
        except (TypeError, ValueError):
            return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
