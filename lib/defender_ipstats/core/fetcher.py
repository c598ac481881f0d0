"""Fetching many IPs from the API within the rate budget and the search's wait allowance.

Every IP asked for gets an answer: found/not_seen/invalid from the API, ``error`` with a
short reason, or ``rate_limited`` once the budget cannot be had within ``max_wait``.

Waiting for budget (and a 429's pause) is done one waiter at a time; retries' backoffs run side by
side. Both sleep in steps of at most a second that ask ``should_stop`` (a cancelled or finalised
search) and are spent from the search's ``WaitAllowance`` (its ``maxwait``). A retry is an API call:
it waits its backoff, then takes budget like the first attempt.
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List, Optional

from .errors import DefenderIpStatsError
from .model import ERROR, IpStats, failed, pending, rate_limited
from .outcomes import Retired, Throttled

MAX_THROTTLED_RETRIES = 3
WAIT_STEP = 1.0  # seconds; a cancelled search is noticed within one step (plus the job poll interval)
# After this many API failures in a row (each after its retries), the rest of the search's IPs are not
# sent: an API that is down must not cost every IP three attempts and their timeouts.
FAILURES_BEFORE_GIVING_UP = 5
STOPPED_REASON = "not looked up: the search was cancelled or finalised"
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
                 should_stop: Optional[Callable[[], bool]] = None, retry_allowance: Optional[WaitAllowance] = None,
                 deadline: Optional[float] = None, may_wait: bool = True):
        self.client = client
        self.limiter = limiter
        self.lookback_hours = lookback_hours
        self.allowance = allowance
        # What a retry's backoff may spend: the search's maxwait, also for a fetcher that never waits for budget.
        self.retry_allowance = retry_allowance if retry_allowance is not None else allowance
        self.workers = max(1, workers)
        self.sleep = sleep
        self.clock = clock
        self.should_stop = should_stop
        # The privileged service bounds each request: no call starts past ``deadline`` (on ``clock``),
        # and with ``may_wait`` False it never waits for budget (that is the search's to do). The IPs
        # left are answered ``pending``, and ``retry_in`` says when budget returns; the search asks again.
        self.deadline = deadline
        self.may_wait = may_wait
        self.out_of_time = False
        self.retry_in = 0.0
        self.fatal: Optional[DefenderIpStatsError] = None
        self.retired: Optional[Retired] = None
        self.budget_returns_in = 0.0  # when budget ran out: seconds until it comes back
        self.rate_limited = 0
        self.stopped = False  # the search was cancelled or finalised: no more calls
        self.gave_up: Optional[str] = None  # why the remaining IPs are not sent (the API kept failing)
        self._failures_in_a_row = 0
        self._acquire_lock = threading.Lock()
        self._fatal_lock = threading.Lock()
        self._back_off_lock = threading.Lock()
        self._backing_off_until = float("-inf")

    def fetch_many(self, ips: List[str]) -> Dict[str, IpStats]:
        if len(ips) <= 1 or self.workers == 1:
            results = [self._fetch_one(ip) for ip in ips]
        else:
            with ThreadPoolExecutor(max_workers=min(self.workers, len(ips))) as pool:
                results = list(pool.map(self._fetch_one, ips))
        return {stats.ip: stats for stats in results}

    def _acquire(self, delay: float = 0.0) -> bool:
        """Budget for one call, waiting while the allowance lasts; False when it cannot be had.

        ``delay``: seconds to wait first (a retry's backoff), from the retry allowance.
        """
        if delay > 0 and not self._back_off(delay):
            return False
        with self._acquire_lock:  # one waiter at a time, so waits are counted once
            while True:
                if self._stopping():
                    return False
                wait = self.limiter.try_acquire()
                if wait <= 0:
                    return True
                if wait > self.allowance.remaining:
                    self.budget_returns_in = max(self.budget_returns_in, wait)
                    return False
                if not self.may_wait or self._past_deadline(min(wait, WAIT_STEP)):
                    self.retry_in = wait
                    self.out_of_time = True
                    return False
                self._wait_step(wait)

    def _wait_step(self, seconds: float) -> float:
        """Sleep for ``seconds`` or one step, whichever is shorter; return the step."""
        step = min(seconds, WAIT_STEP)
        started = self.clock()
        self.sleep(step)
        self.allowance.spend(self.clock() - started)
        return step

    def _back_off(self, delay: float) -> bool:
        """Sleep a retry's backoff; False when it does not fit the retry allowance.

        Threads back off side by side (a burst of 503s must not be waited out one IP after the
        other); the allowance is charged the wall time the backoffs add, paid up front.
        """
        with self._back_off_lock:
            now = self.clock()
            until = now + delay
            added = until - max(now, self._backing_off_until)
            if added > self.retry_allowance.remaining:
                return False
            if added > 0:
                self.retry_allowance.spend(added)
                self._backing_off_until = until
        while not self._stopping():
            left = until - self.clock()
            if left <= 0:
                break
            self.sleep(min(left, WAIT_STEP))
        return not self.stopped

    def _past_deadline(self, ahead: float = 0.0) -> bool:
        if not self.out_of_time and self.deadline is not None and self.clock() + ahead > self.deadline:
            self.out_of_time = True
        return self.out_of_time

    def _stopping(self) -> bool:
        if not self.stopped and self.should_stop is not None and self.should_stop():
            self.stopped = True
        return self.stopped

    def clear_retry(self, delay: float) -> bool:
        """The client's retry gate: may this thread's call be tried again after ``delay`` seconds?"""
        self.limiter.completed()  # the failed attempt is over: it counts from now
        if self.fatal is not None or self._stopping() or self._past_deadline(delay):
            return False
        return self._acquire(delay)

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
            if self._past_deadline():
                return pending(ip)
            if not self._acquire():
                if self.stopped:
                    return failed(ip, STOPPED_REASON)
                if self.out_of_time:
                    return pending(ip)
                self.rate_limited += 1
                return rate_limited(ip, "API budget used up; it returns in about %d s"
                                    % max(1, round(self.budget_returns_in)))
            try:
                answer = self.client.ip_stats(ip, self.lookback_hours, retry_gate=self.clear_retry)
            except DefenderIpStatsError as error:
                with self._fatal_lock:
                    if self.fatal is None:
                        self.fatal = error
                return failed(ip, _short_reason(error))
            finally:
                self.limiter.completed()
            self._note_outcome(answer)
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
