"""Fetching many IPs from the API within the rate budget and the search's wait allowance.

Every IP asked for gets an answer: found/not_seen/invalid from the API, ``error`` with a
short reason, or ``rate_limited`` once the budget cannot be had within ``max_wait``.

Waiting for budget (and a 429's pause) and retries' backoffs go through the ``gate.BudgetGate``
that the hunting fetcher uses too. A retry is an API call: it waits its backoff, then takes budget
like the first attempt.
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List, Optional

from .contract import PerIpClient
from .errors import DefenderIpStatsError
from .gate import STOPPED_REASON, WAIT_STEP, BudgetGate, GatedFetcher, WaitAllowance
from .model import ERROR, IpStats, failed, pending, rate_limited
from .outcomes import Retired, Throttled

__all__ = ["Fetcher", "WaitAllowance", "STOPPED_REASON", "RETIRED_REASON", "WAIT_STEP"]

MAX_THROTTLED_RETRIES = 3
# After this many API failures in a row (each after its retries), the rest of the search's IPs are not
# sent: an API that is down must not cost every IP three attempts and their timeouts.
FAILURES_BEFORE_GIVING_UP = 5
RETIRED_REASON = "per-IP endpoint retired"


class Fetcher(GatedFetcher):
    """The per-IP endpoint's fetcher (an ``IpFetcher``): IPs side by side on ``workers`` threads.

    The privileged service bounds each request: no call starts past ``deadline`` (on ``clock``), and
    with ``may_wait`` False it never waits for budget (that is the search's to do). The IPs left are
    answered ``pending``, and ``retry_in`` says when budget returns; the search asks again.
    """

    def __init__(self, client: PerIpClient, limiter, lookback_hours: int, allowance: WaitAllowance, workers: int = 4,
                 sleep: Callable[[float], None] = time.sleep, clock=time.monotonic,
                 should_stop: Optional[Callable[[], bool]] = None, retry_allowance: Optional[WaitAllowance] = None,
                 deadline: Optional[float] = None, may_wait: bool = True):
        self.client = client
        self.limiter = limiter
        self.lookback_hours = lookback_hours
        self.allowance = allowance
        self.workers = max(1, workers)
        self.gate = BudgetGate(limiter, allowance, retry_allowance, sleep=sleep, clock=clock,
                               should_stop=should_stop, deadline=deadline, may_wait=may_wait)
        self.fatal: Optional[DefenderIpStatsError] = None
        self.retired: Optional[Retired] = None
        self.rate_limited = 0
        self.gave_up: Optional[str] = None  # why the remaining IPs are not sent (the API kept failing)
        self._failures_in_a_row = 0
        self._fatal_lock = threading.Lock()

    def fetch_many(self, ips: List[str]) -> Dict[str, IpStats]:
        if len(ips) <= 1 or self.workers == 1:
            results = [self._fetch_one(ip) for ip in ips]
        else:
            with ThreadPoolExecutor(max_workers=min(self.workers, len(ips))) as pool:
                results = list(pool.map(self._fetch_one, ips))
        return {stats.ip: stats for stats in results}

    def clear_retry(self, delay: float) -> bool:
        """The client's retry gate: may this thread's call be tried again after ``delay`` seconds?"""
        self.gate.completed()  # the failed attempt is over: it counts from now
        if self.fatal is not None or self.gate.stopping() or self.gate.past_deadline(delay):
            return False
        return self.gate.acquire(delay)

    def _note_outcome(self, answer) -> None:
        with self._fatal_lock:
            if isinstance(answer, IpStats) and answer.status == ERROR:
                self._failures_in_a_row += 1
                if self._failures_in_a_row >= FAILURES_BEFORE_GIVING_UP and self.gave_up is None:
                    self.gave_up = "not looked up: the Defender API failed %d times in a row" % self._failures_in_a_row
            else:
                self._failures_in_a_row = 0

    def _fetch_one(self, ip: str) -> IpStats:
        throttles = 0
        while True:
            if self.fatal is not None:
                return failed(ip, _short_reason(self.fatal))
            if self.retired is not None:
                return failed(ip, RETIRED_REASON)
            if self.gave_up is not None:
                return failed(ip, self.gave_up)
            if self.gate.past_deadline():
                return pending(ip)
            if not self.gate.acquire():
                if self.stopped:
                    return failed(ip, STOPPED_REASON)
                if self.out_of_time:
                    return pending(ip)
                self.rate_limited += 1
                return rate_limited(ip, self.budget_spent())
            try:
                answer = self.client.ip_stats(ip, self.lookback_hours, retry_gate=self.clear_retry)
            except DefenderIpStatsError as error:
                with self._fatal_lock:
                    if self.fatal is None:
                        self.fatal = error
                return failed(ip, _short_reason(error))
            finally:
                self.gate.completed()
            self._note_outcome(answer)
            if isinstance(answer, Retired):
                self.retired = answer
                return failed(ip, RETIRED_REASON)
            if isinstance(answer, Throttled):
                throttles += 1
                self.gate.pause_for(answer.retry_after)
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
