"""The hunting backend of a service request: each batch is a job (``hunting_jobs``), never a query
inside the request.

For each batch the request either finds its answers in the cache (a finished job), learns that its job
runs (``pending``, ask again in ASK_AGAIN_SECONDS), claims and starts its job when budget allows now
(``pending`` too), or answers it ``pending`` with the time budget returns. A request starts only the
batches the budget allows at once: later batches start when the search asks again, so a search that was
cancelled starts none.
"""

import time
from dataclasses import replace
from typing import Callable, Dict, List, Optional

from ..core.gate import STOPPED_REASON, BudgetGate, GatedFetcher, WaitAllowance
from ..core.model import SOURCE_HUNTING, IpStats, pending, rate_limited
from .hunting_jobs import (
    ASK_AGAIN_SECONDS,
    JobRun,
    JobStore,
    JobStoreUnavailable,
    claim,
    failed_answers,
    fatal_error,
    job_id,
)

BASIS = "hunting"
JOIN_SECONDS = 10.0  # how long a request waits for the jobs it started before it answers them pending


class JobHuntingFetcher(GatedFetcher):
    """The router's hunting fetcher in the service: ``fetch_many(ips) -> {ip: IpStats}``."""

    def __init__(self, client, limiter, lookback_hours: int, allowance: WaitAllowance, store: JobStore,
                 account: str, job_cache, read_answers: Callable[[List[str]], Dict[str, IpStats]], logger,
                 should_stop: Optional[Callable[[], bool]] = None, clock=time.time):
        self.client = client
        self.limiter = limiter
        self.lookback_hours = lookback_hours
        self.store = store
        self.account = account
        self.job_cache = job_cache  # where a job writes its answers (the request's cache may be off)
        self.read_answers = read_answers  # a finished job's answers, from that cache
        self.logger = logger
        self.clock = clock
        self.gate = BudgetGate(limiter, allowance, should_stop=should_stop, may_wait=False)
        self.fatal = None
        self.gave_up: Optional[str] = None
        self.rate_limited = 0
        self.quota_streak = 0
        self.running: List[str] = []  # IPs whose job runs: the search tells them apart from a spent budget
        self.started = 0  # jobs this request started

    @property
    def retry_in(self) -> float:
        wait = self.gate.retry_in
        return max(wait, ASK_AGAIN_SECONDS) if self.running else wait

    def fetch_many(self, ips: List[str]) -> Dict[str, IpStats]:
        answers: Dict[str, IpStats] = {}
        started = []
        # sorted: the same IPs make the same batches (the same job ids) in whatever order a search sends them
        for batch in self.client.batches(sorted(set(ips))):
            answer, thread = self._batch(batch)
            answers.update(answer)
            if thread is not None:
                started.append((batch, thread))
        # a quick query's answer is given in the request that started it; a long one is told pending
        until = time.monotonic() + JOIN_SECONDS
        for batch, thread in started:
            thread.join(max(0.0, until - time.monotonic()))
            if not thread.is_alive():
                self.running = [ip for ip in self.running if ip not in set(batch)]
                answers.update(self._batch(batch)[0])  # started again only after a quota pause
        return answers

    def _batch(self, batch: List[str]):
        """The batch's answers now, and the thread of the job this request started for it (or None)."""
        jid = job_id(self.account, self.lookback_hours, BASIS, batch)
        document = {"account": self.account, "lookback_hours": self.lookback_hours, "basis": BASIS,
                    "job": jid, "ips": len(batch)}
        try:
            found = claim(self.store, jid, document, self._acquire, clock=self.clock)
        except JobStoreUnavailable as error:
            return failed_answers(batch, "hunting jobs unavailable (KV store: %s)" % error), None
        if found.outcome == "run":
            run = JobRun(self.store, found.key, dict(document, quota=found.quota), self._query,
                         batch, self.job_cache, self.limiter, self.logger)
            thread = run.start()
            self.started += 1
            self.running.extend(batch)
            return {ip: pending(ip) for ip in batch}, thread
        return self._told(batch, found), None

    def _query(self, part: List[str]):
        return self.client.query(part, self.lookback_hours)

    def _told(self, batch: List[str], found) -> Dict[str, IpStats]:
        if found.outcome == "running":
            self.running.extend(batch)
            return {ip: pending(ip) for ip in batch}
        if found.outcome == "finished":
            # the job this search waited for computed them: hunting answered, through the cache
            answers = {ip: replace(stats, source=SOURCE_HUNTING) for ip, stats in self.read_answers(batch).items()}
            missing = [ip for ip in batch if ip not in answers]
            self.running.extend(missing)  # written but not yet readable here: ask again
            return dict({ip: pending(ip) for ip in missing}, **answers)
        if found.outcome == "failed":
            if found.fatal:  # the account cannot hunt (a 403, a rejected token): the whole search is told
                self.fatal = fatal_error(found.fatal, found.reason)
                return failed_answers(batch, "hunting unavailable")
            return failed_answers(batch, found.reason)
        if found.outcome == "quota":
            self.rate_limited += len(batch)
            return {ip: rate_limited(ip, found.reason, SOURCE_HUNTING) for ip in batch}
        return self._without_budget(batch, found)

    def _acquire(self) -> bool:
        return not self.gate.stopping() and self.gate.acquire()

    def _without_budget(self, batch: List[str], found) -> Dict[str, IpStats]:
        if self.gate.stopped:
            return failed_answers(batch, STOPPED_REASON)
        if self.gate.out_of_time:  # budget returns within the search's maxwait: the search waits, asks again
            return {ip: pending(ip) for ip in batch}
        self.rate_limited += len(batch)
        reason = self.budget_spent("hunting budget")
        if found.quota:  # paused by Graph's quota answer: say when hunting returns
            returns_in = max(1, round(self.budget_returns_in))
            reason = "Graph hunting quota exceeded; hunting returns in about %d s" % returns_in
        return {ip: rate_limited(ip, reason, SOURCE_HUNTING) for ip in batch}
