"""Per-caller rate limiting: one token bucket per principal subject, checked by the shared gRPC interceptor.

A bucket holds up to ``burst`` tokens and refills at ``rate`` tokens per second; each call takes one. A
caller who runs dry is told how long until the next token, so the refusal says exactly when to retry.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, Field

from copilot.errors import ResourceExhausted


class RateLimitSettings(BaseModel):
    """Calls per principal (token subject) per second; ``requests_per_second`` 0 turns limiting off."""

    requests_per_second: float = Field(default=50.0, ge=0)
    # Calls a caller may make at once after being idle; a page load or a script's first burst fits.
    burst: int = Field(default=100, ge=1)
    # Buckets kept in memory; the least recently seen caller's bucket goes first (it was full anyway,
    # or nearly so, unless thousands of callers are active within a few seconds).
    max_callers: int = Field(default=100_000, ge=1)


class RateLimited(ResourceExhausted):
    """A caller spent their burst; ``retry_after_s`` is when their next call will be accepted."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBucketLimiter:
    """Thread-safe; memory is bounded by ``max_callers`` buckets."""

    def __init__(
        self,
        rate: float,
        burst: int,
        max_callers: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive; leave the limiter out to turn limiting off")
        self.rate = rate
        self.burst = burst
        self._max_callers = max_callers
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: RateLimitSettings) -> TokenBucketLimiter | None:
        if settings.requests_per_second == 0:
            return None
        return cls(settings.requests_per_second, settings.burst, settings.max_callers)

    def try_acquire(self, key: str) -> float:
        """Takes a token for ``key``; returns 0 when granted, else the seconds until one is available."""
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = _Bucket(float(self.burst), now)
                self._buckets[key] = bucket
                if len(self._buckets) > self._max_callers:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(key)
                bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)
                bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self.rate

    def check(self, key: str) -> None:
        """Raises ``RateLimited`` with a message that says when to retry."""
        wait_s = self.try_acquire(key)
        if wait_s > 0:
            # Rounded up so a client that sleeps exactly this long is not refused again.
            retry_after_s = math.ceil(wait_s * 1000) / 1000
            raise RateLimited(
                f"rate limit exceeded: at most {self.rate:g} requests per second (bursts of {self.burst}) "
                f"per caller; retry in {retry_after_s:.3f} s",
                retry_after_s,
            )

    def __len__(self) -> int:
        with self._lock:
            return len(self._buckets)
