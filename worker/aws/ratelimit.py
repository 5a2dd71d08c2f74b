"""A token bucket shared by every handler, so SES sends stay under the account's max send rate."""

from __future__ import annotations

import anyio


class TokenBucket:
    """`rate_per_s` tokens a second, at most `burst` saved up; rate 0 means unlimited."""

    def __init__(self, rate_per_s: float, burst: float | None = None) -> None:
        self.rate = rate_per_s
        self.capacity = burst if burst is not None else max(1.0, rate_per_s)
        # Start with one token, not a full bucket: a full start lets the first second send twice
        # the rate, which SES would throttle.
        self.tokens = min(1.0, self.capacity)
        self.updated: float | None = None
        self.lock = anyio.Lock()

    def set_rate(self, rate_per_s: float) -> None:
        """A new rate (0: unlimited), e.g. the account's max send rate read at start-up."""
        self.rate = rate_per_s
        self.capacity = max(1.0, rate_per_s)
        self.tokens = min(self.tokens, self.capacity)

    async def acquire(self, tokens: float = 1.0) -> None:
        if self.rate <= 0:
            return
        async with self.lock:  # waiters queue here, so they are served in order
            now = anyio.current_time()
            if self.updated is not None:
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            if self.tokens < tokens:
                await anyio.sleep((tokens - self.tokens) / self.rate)
                # A busy event loop wakes us late: the tokens of the extra time are kept, so the
                # next sender goes sooner and the rate over time stays the configured one.
                now = anyio.current_time()
                self.tokens = max(tokens, min(self.capacity, self.tokens + (now - self.updated) * self.rate))
                self.updated = now
            self.tokens -= tokens
