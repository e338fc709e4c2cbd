"""The retry policy shared by the blocking and the asyncio client (docs/python-client.md).

A call is retried when no answer came back because the connection was refused, reset or
aborted, and when the answer is 502, 503 or 504 (a proxy during a rolling update, an
overloaded or draining yololossd). The wait before retry n (n = 0, 1, ...) is the answer's
Retry-After when it has one, else "full jitter" exponential backoff: a uniform draw in
[0, min(backoff_max, backoff_base * 2**n)], so that clients refused together spread out.
Everything happens inside the call's one deadline (its timeout): a wait that would end past
it is not started, and the last failure is raised instead. Replaying an inference is safe:
the loss is a pure function of the request, and a step logged with run/step is recorded
once however often it arrives.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass, field
from typing import FrozenSet, Optional, Union

__all__ = ["Retry", "RetryLike"]

# The jitter's source: the OS's, not the random module's state, which training scripts seed
# alike in every process (random.seed(0) on every DDP rank) and forked children inherit;
# either would make clients refused together come back together.
_jitter = random.SystemRandom()


@dataclass(frozen=True)
class Retry:
    """How a call is retried.

    max_attempts: attempts in all, the first included (None: as many as the deadline
      allows; 1: no retry). backoff_base, backoff_max: seconds of the backoff (0.1 doubling
      to 5 by default). statuses: the HTTP statuses retried. retry_connection_errors:
      retry refused/reset/aborted connections. The deadline is the call's timeout.
    """

    max_attempts: Optional[int] = None
    backoff_base: float = 0.1
    backoff_max: float = 5.0
    statuses: FrozenSet[int] = field(default_factory=lambda: frozenset({502, 503, 504}))
    retry_connection_errors: bool = True

    def __post_init__(self) -> None:
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("Retry.max_attempts must be at least 1 (or None)")
        if self.backoff_base < 0 or self.backoff_max < 0:
            raise ValueError("Retry backoff times must not be negative")
        object.__setattr__(self, "statuses", frozenset(int(s) for s in self.statuses))

    @classmethod
    def off(cls) -> "Retry":
        """No retries (stale keep-alive sockets are still reopened once)."""
        return cls(max_attempts=1)

    def backoff(self, n: int) -> float:
        """The full-jitter wait before retry n (0-based)."""
        cap = min(self.backoff_max, self.backoff_base * (2.0 ** min(n, 60)))
        return _jitter.uniform(0.0, cap)


RetryLike = Union[Retry, bool, None]


def as_retry(value: RetryLike) -> Retry:
    """Retry object from a user's `retry=` (True/None: the default, False: off)."""
    if value is None or value is True:
        return Retry()
    if value is False:
        return Retry.off()
    if isinstance(value, Retry):
        return value
    raise TypeError("retry must be a yololoss.Retry, True or False, not %r" % (value,))


def retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds asked for by a Retry-After value (delta seconds or an HTTP date); None when
    absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


class Attempts:
    """The retry bookkeeping of one call: its deadline and how many retries were made."""

    def __init__(self, policy: Retry, timeout: float) -> None:
        self.policy = policy
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.made = 1             # attempts made so far, the one in flight included
        self.stale_reopened = False

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def wait_after_status(self, status: int, retry_after_header: Optional[str]) -> Optional[float]:
        """Seconds to wait before retrying an answer with this status, or None: give up."""
        if status not in self.policy.statuses:
            return None
        asked = retry_after(retry_after_header)
        return self._wait(asked)

    def wait_after_connection_error(self) -> Optional[float]:
        """Seconds to wait before retrying a refused/reset connection, or None: give up."""
        if not self.policy.retry_connection_errors:
            return None
        return self._wait(None)

    def _wait(self, asked: Optional[float]) -> Optional[float]:
        p = self.policy
        if p.max_attempts is not None and self.made >= p.max_attempts:
            return None
        wait = asked if asked is not None else p.backoff(self.made - 1)
        if time.monotonic() + wait >= self.deadline:
            return None
        self.made += 1
        return wait
