"""Fetching many IPs from the API within the rate budget and the search's wait allowance.

Every IP asked for gets an answer: found/not_seen/invalid from the API, ``error`` with a
short reason, or ``rate_limited`` once the budget cannot be had within ``max_wait``.
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List, Optional

from .client import Retired, Throttled
from .errors import DefenderIpStatsError
from .model import IpStats, failed, rate_limited

MAX_THROTTLED_RETRIES = 3
RETIRED_REASON = "per-IP endpoint retired"


class WaitAllowance:
    """Seconds this search may still spend waiting for budget (the ``maxwait`` option)."""

    def __init__(self, seconds: float):
        self.remaining = float(seconds)
        self.waited = 0.0
        self._lock = threading.Lock()

    def spend(self, seconds: float) -> None:
        with self._lock:
            self.remaining = max(0.0, self.remaining - seconds)
            self.waited += seconds


class Fetcher:
    def __init__(self, client, limiter, lookback_hours: int, allowance: WaitAllowance, workers: int = 4,
                 sleep: Callable[[float], None] = time.sleep, clock=time.monotonic,
                 should_stop: Optional[Callable[[], bool]] = None):
        self.client = client
        self.limiter = limiter
        self.lookback_hours = lookback_hours
        self.allowance = allowance
        self.workers = max(1, workers)
        self.sleep = sleep
        self.clock = clock
        self.should_stop = should_stop
        self.fatal: Optional[DefenderIpStatsError] = None
        self.retired: Optional[Retired] = None
        self.budget_returns_in = 0.0  # when budget ran out: seconds until it comes back
        self.rate_limited = 0
        self._acquire_lock = threading.Lock()
        self._fatal_lock = threading.Lock()

    def fetch_many(self, ips: List[str]) -> Dict[str, IpStats]:
        if len(ips) <= 1 or self.workers == 1:
            results = [self._fetch_one(ip) for ip in ips]
        else:
            with ThreadPoolExecutor(max_workers=min(self.workers, len(ips))) as pool:
                results = list(pool.map(self._fetch_one, ips))
        return {stats.ip: stats for stats in results}

    def _acquire(self) -> bool:
        """Budget for one call, waiting while the allowance lasts; False when it cannot be had."""
        with self._acquire_lock:  # one waiter at a time, so waits are counted once
            while True:
                wait = self.limiter.try_acquire()
                if wait <= 0:
                    return True
                if wait > self.allowance.remaining or self._stopping():
                    self.budget_returns_in = max(self.budget_returns_in, wait)
                    return False
                started = self.clock()
                self.sleep(min(wait, 1.0))  # in steps, so a cancelled search stops soon
                self.allowance.spend(self.clock() - started)

    def _stopping(self) -> bool:
        return self.should_stop is not None and self.should_stop()

    def _fetch_one(self, ip: str) -> IpStats:
        throttles = 0
        while True:
            if self.fatal is not None:
                return failed(ip, _short_reason(self.fatal))
            if self.retired is not None:
                return failed(ip, RETIRED_REASON)
            if not self._acquire():
                self.rate_limited += 1
                return rate_limited(ip, "API budget used up; it returns in about %d s"
                                    % max(1, round(self.budget_returns_in)))
            try:
                answer = self.client.ip_stats(ip, self.lookback_hours)
            except DefenderIpStatsError as error:
                with self._fatal_lock:
                    if self.fatal is None:
                        self.fatal = error
                return failed(ip, _short_reason(error))
            if isinstance(answer, Retired):
                self.retired = answer
                return failed(ip, RETIRED_REASON)
            if isinstance(answer, Throttled):
                throttles += 1
                self.limiter.pause_for(answer.retry_after)
                if throttles > MAX_THROTTLED_RETRIES:
                    self.rate_limited += 1
                    return rate_limited(ip, "Defender answered 429 repeatedly")
                continue
            return answer


def _short_reason(error: DefenderIpStatsError) -> str:
    text = str(error)
    if "(403)" in text:
        return "access denied (403): Ip.Read.All missing"
    if "Entra ID" in text or "sign-in" in text.lower() or "(401)" in text:
        return "authentication failed"
    return text[:80]
