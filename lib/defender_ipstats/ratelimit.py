"""Spending the API budget: sliding windows (100 a minute, 1,500 an hour) and 429 pauses.

This limiter lives in one process; every call must fit in every window. A 429's
Retry-After pauses it as a whole.
"""

import collections
import threading
import time
from typing import Iterable, Tuple


class SlidingWindowLimiter:
    def __init__(self, limits: Iterable[Tuple[int, float]], clock=time.monotonic):
        self.limits = sorted(((int(count), float(seconds)) for count, seconds in limits), key=lambda x: x[1])
        self.clock = clock
        self._calls = collections.deque()
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def try_acquire(self) -> float:
        """Take one call of budget and return 0, or return the seconds until one is free."""
        with self._lock:
            now = self.clock()
            if now < self._paused_until:
                return self._paused_until - now
            longest = self.limits[-1][1] if self.limits else 0
            calls = self._calls
            while calls and calls[0] <= now - longest:
                calls.popleft()
            wait = 0.0
            for count, seconds in self.limits:
                in_window = _count_since(calls, now - seconds)
                if in_window >= count:
                    # the call that frees a slot is the count-th most recent inside the window
                    oldest_needed = calls[len(calls) - count]
                    wait = max(wait, oldest_needed + seconds - now)
            if wait > 0:
                return wait
            calls.append(now)
            return 0.0

    def pause_until(self, when: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, when)

    def pause_for(self, seconds: float) -> None:
        self.pause_until(self.clock() + seconds)


def _count_since(calls, since: float) -> int:
    # calls is sorted; count from the right until a call is older than the window
    count = 0
    for stamp in reversed(calls):
        if stamp <= since:
            break
        count += 1
    return count
