"""The hunting backend's policy: batches of IPs through one query each, within the hunting budget.

Graph's answers (``core.outcomes``) decide: a quota answer pauses the shared hunting limiter (every
search on the host waits, since resubmitting early only prolongs the throttling) and the batch is
tried again within the search's wait allowance; a 5xx is retried once after a short backoff.
"""

import time
from typing import Callable, Dict, List, Optional

from .contract import HuntingQueries
from .errors import DefenderIpStatsError
from .gate import STOPPED_REASON, BudgetGate, GatedFetcher, WaitAllowance
from .model import ERROR, SOURCE_HUNTING, IpStats, failed, pending, rate_limited
from .outcomes import HuntingFailure, QuotaExceeded

# The CPU quota: how many quota answers a batch may meet, and the pause when Graph gives no Retry-After.
# Microsoft: queries "are blocked if the tenant has reached 100% of the allocated resources until after
# the next 15-minute cycle"; the cycle's alignment is not documented, so a whole cycle is the pause that
# surely outlasts it (asking earlier only meets the same answer and spends a call).
MAX_QUOTA_ANSWERS = 3
QUOTA_CYCLE_SECONDS = 900.0
SERVER_ERROR_BACKOFF = 2.0  # seconds before the one retry of a 5xx
# At most this many IPs a query: as many result rows at most, far under Graph's 100,000-row limit.
MAX_BATCH_IPS = 2500


class HuntingFetcher(GatedFetcher):
    """Answers many IPs with few queries, within the hunting budget and the wait allowance.

    ``split``: cuts the IPs into the batches of one query each (the client's ``batches``, which knows
    how long a query may be); without it, batches of at most ``MAX_BATCH_IPS``.
    """

    def __init__(self, client: HuntingQueries, limiter, lookback_hours: int, allowance: WaitAllowance,
                 split: Optional[Callable[[List[str]], List[List[str]]]] = None,
                 sleep=time.sleep, clock=time.monotonic, should_stop: Optional[Callable[[], bool]] = None,
                 deadline: Optional[float] = None, may_wait: bool = True, quota_streak: int = 0,
                 max_quota_answers: int = MAX_QUOTA_ANSWERS):
        self.client = client
        self.limiter = limiter
        self.lookback_hours = lookback_hours
        self.allowance = allowance
        self.split = split or in_batches_of(MAX_BATCH_IPS)
        # As for the per-IP Fetcher: no query starts past ``deadline`` (on ``clock``), and with ``may_wait``
        # False budget that is not free now makes the batch ``pending`` (``retry_in``), not a wait here.
        self.gate = BudgetGate(limiter, allowance, sleep=sleep, clock=clock, should_stop=should_stop,
                               deadline=deadline, may_wait=may_wait)
        self.fatal: Optional[DefenderIpStatsError] = None
        self.gave_up: Optional[str] = None  # hunting never gives up early: a failed batch fails alone
        self.rate_limited = 0
        # Quota answers in a row, carried from the search's earlier requests (the service is stateless).
        self.quota_streak = quota_streak
        self.max_quota_answers = max_quota_answers

    def fetch_many(self, ips: List[str]) -> Dict[str, IpStats]:
        answers: Dict[str, IpStats] = {}
        for batch in self.split(ips):
            answers.update(self._fetch_batch(batch))
        return answers

    def _fetch_batch(self, batch):
        quota_answers = self.quota_streak
        retried_server_error = False
        quota: Optional[QuotaExceeded] = None
        while True:
            if self.fatal is not None:
                return {ip: failed(ip, "hunting unavailable", SOURCE_HUNTING) for ip in batch}
            if self.gate.past_deadline():
                return {ip: pending(ip) for ip in batch}
            if not self.gate.acquire():
                return self._without_budget(batch, quota)
            try:
                answer = self.client.query(batch, self.lookback_hours)
            except DefenderIpStatsError as error:
                self.fatal = error
                continue
            finally:
                self.gate.completed()  # the query counts from when it surely reached Graph
            if isinstance(answer, QuotaExceeded):
                quota = answer
                quota_answers += 1
                self.quota_streak = quota_answers
                if quota_answers > self.max_quota_answers:
                    self.rate_limited += len(batch)
                    reason = "Graph hunting quota exceeded (%d) %d times in a row" % (answer.status, quota_answers)
                    return {ip: rate_limited(ip, reason, SOURCE_HUNTING) for ip in batch}
                # every search on the host waits: resubmitting early only prolongs the throttling
                self.gate.pause_for(quota_delay(answer))
                continue
            if isinstance(answer, HuntingFailure):
                if answer.retryable and not retried_server_error and self.gate.back_off(SERVER_ERROR_BACKOFF):
                    retried_server_error = True
                    continue
                if self.gate.stopped:
                    return {ip: failed(ip, STOPPED_REASON, SOURCE_HUNTING) for ip in batch}
                return {ip: IpStats(ip=ip, status=ERROR, source=SOURCE_HUNTING, error=answer.reason) for ip in batch}
            self.quota_streak = 0
            return answer

    def _without_budget(self, batch, quota: Optional[QuotaExceeded]) -> Dict[str, IpStats]:
        """The batch's answers when the gate said no: cancelled, out of the request's time, or no budget."""
        if self.gate.stopped:
            return {ip: failed(ip, STOPPED_REASON, SOURCE_HUNTING) for ip in batch}
        if self.gate.out_of_time:
            return {ip: pending(ip) for ip in batch}
        self.rate_limited += len(batch)
        returns_in = max(1, round(self.gate.budget_returns_in))
        if quota is not None:
            reason = "Graph hunting quota exceeded (%d); try again in about %d s" % (quota.status, returns_in)
        else:
            reason = self.budget_spent("hunting budget")
        return {ip: rate_limited(ip, reason, SOURCE_HUNTING) for ip in batch}


def quota_delay(answer: QuotaExceeded) -> float:
    """Seconds to pause hunting after a quota answer: its Retry-After, else until the CPU cycle surely ended."""
    if answer.retry_after is not None:
        return answer.retry_after
    return QUOTA_CYCLE_SECONDS


def in_batches_of(size: int) -> Callable[[List[str]], List[List[str]]]:
    return lambda ips: [ips[start:start + size] for start in range(0, len(ips), size)]
