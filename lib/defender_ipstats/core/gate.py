"""The budget gate: how a fetcher waits for API budget, shared by the per-IP and the hunting fetcher.

A call needs budget from the host's limiter (``try_acquire``: 0, or the seconds until some is free).
The gate waits for it within the search's ``WaitAllowance`` (its ``maxwait``), one waiter at a time so
that waits are counted once, in steps of at most ``WAIT_STEP`` seconds that ask ``should_stop`` (a
cancelled or finalised search). It answers False, and says why, when budget cannot be had:

- ``stopped``: the search was cancelled or finalised;
- ``out_of_time``: the privileged service's request bound (``deadline``, on ``clock``) would pass, or
  ``may_wait`` is off (the service never waits: the search asks again after ``retry_in`` seconds);
- otherwise the budget returns later than the allowance lasts (``budget_returns_in``).

Retries' backoffs (``back_off``) run side by side and are charged to ``retry_allowance`` up front.
"""

import threading
import time
from typing import Callable, Optional

from .contract import Limiter

WAIT_STEP = 1.0  # seconds; a cancelled search is noticed within one step (plus the job poll interval)
STOPPED_REASON = "not looked up: the search was cancelled or finalised"


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


class BudgetGate:
    def __init__(self, limiter: Limiter, allowance: WaitAllowance, retry_allowance: Optional[WaitAllowance] = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 should_stop: Optional[Callable[[], bool]] = None, deadline: Optional[float] = None,
                 may_wait: bool = True):
        self.limiter = limiter
        self.allowance = allowance
        # What a retry's backoff may spend: the search's maxwait, also for a fetcher that never waits for budget.
        self.retry_allowance = retry_allowance if retry_allowance is not None else allowance
        self.sleep = sleep
        self.clock = clock
        self.should_stop = should_stop
        self.deadline = deadline
        self.may_wait = may_wait
        self.stopped = False
        self.out_of_time = False
        self.retry_in = 0.0  # out of time while budget was not free: seconds until it is
        self.budget_returns_in = 0.0  # budget ran out beyond the allowance: seconds until it comes back
        self._acquire_lock = threading.Lock()
        self._back_off_lock = threading.Lock()
        self._backing_off_until = float("-inf")

    def stopping(self) -> bool:
        """The search was cancelled or finalised (asked of ``should_stop`` until it says so once)."""
        if not self.stopped and self.should_stop is not None and self.should_stop():
            self.stopped = True
        return self.stopped

    def past_deadline(self, ahead: float = 0.0) -> bool:
        """No call may start: the request's bound has passed, or would ``ahead`` seconds from now."""
        if not self.out_of_time and self.deadline is not None and self.clock() + ahead > self.deadline:
            self.out_of_time = True
        return self.out_of_time

    def acquire(self, delay: float = 0.0) -> bool:
        """Budget for one call, waiting while the allowance lasts; False when it cannot be had (see above).

        ``delay``: seconds to wait first (a retry's backoff), from the retry allowance.
        """
        if delay > 0 and not self.back_off(delay):
            return False
        with self._acquire_lock:  # one waiter at a time, so waits are counted once
            while True:
                if self.stopping():
                    return False
                wait = self.limiter.try_acquire()
                if wait <= 0:
                    return True
                if wait > self.allowance.remaining:
                    self.budget_returns_in = max(self.budget_returns_in, wait)
                    return False
                if not self.may_wait or self.past_deadline(min(wait, WAIT_STEP)):
                    self.retry_in = wait
                    self.out_of_time = True
                    return False
                self._wait_step(wait)

    def back_off(self, delay: float) -> bool:
        """Sleep a retry's backoff; False when it does not fit the retry allowance or the search stops.

        Threads back off side by side (a burst of 503s must not be waited out one call after the
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
        while not self.stopping():
            left = until - self.clock()
            if left <= 0:
                break
            self.sleep(min(left, WAIT_STEP))
        return not self.stopped

    def completed(self) -> None:
        """The call that took budget is over (a window's call counts from its end)."""
        self.limiter.completed()

    def pause_for(self, seconds: float) -> None:
        """Every search on the host holds off for ``seconds`` (a 429, a hunting quota answer)."""
        self.limiter.pause_for(seconds)

    def _wait_step(self, seconds: float) -> None:
        started = self.clock()
        self.sleep(min(seconds, WAIT_STEP))
        self.allowance.spend(self.clock() - started)


class GatedFetcher:
    """What both fetchers tell of their ``gate`` (a BudgetGate): a stopped search, a request out of
    time, when to ask again, and when budget returns."""

    gate: BudgetGate

    @property
    def stopped(self) -> bool:
        return self.gate.stopped

    @property
    def out_of_time(self) -> bool:
        return self.gate.out_of_time

    @property
    def retry_in(self) -> float:
        return self.gate.retry_in

    @property
    def budget_returns_in(self) -> float:
        return self.gate.budget_returns_in

    def budget_spent(self, budget: str = "API budget") -> str:
        """Why a call found no budget (``budget_spent_reason``); a ``FairShareLimiter`` says whose."""
        limiter = self.gate.limiter
        share = limiter.percent if getattr(limiter, "over_share", False) else None
        return budget_spent_reason(self.budget_returns_in, share, budget)


def budget_spent_reason(returns_in: float, share_percent=None, budget: str = "API budget") -> str:
    """The account's ``budget`` is used up, or the caller's own share of it (``share_percent``), and when
    it returns: the one wording of a ``rate_limited`` answer, in the service and in the search alike."""
    returns_in = max(1, round(returns_in))
    if share_percent is not None:
        return ("your share of the hourly %s is used up (user_share_percent = %s %%); it returns in about %d s"
                % (budget, share_percent, returns_in))
    return "%s used up; it returns in about %d s" % (budget, returns_in)
