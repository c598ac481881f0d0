"""Hunting queries as jobs: a batch's query runs beside the requests, up to Graph's 3 minutes.

A request that meets a cold batch claims its job and starts the query in a background thread of this
handler process, then answers the batch ``pending`` at once; the query's answer lands in the cache
(basis ``hunting``), where every search that waits for those IPs finds it on its next ask.

Why a thread of the persistent handler: splunkd keeps the process between requests, so the query
outlives the request that started it without a process of our own to supervise; the process may still
die (splunkd stops an idle or busy one at will), which the lease covers.

Jobs are documents of ``defenderipstats_hunting_jobs``. A job's id is derived from what it computes
(account, look-back, basis, the batch's sorted IPs), so two searches that want the same batch share it.
A run of a job is claimed by inserting ``<job id>.<generation>``: the KV store refuses a taken
``_key`` (409), so exactly one claimant runs each generation, whatever the reads show. The owner
renews the run's heartbeat every HEARTBEAT_SECONDS; a run whose heartbeat is older than LEASE_SECONDS
(its owner died) is taken over by claiming the next generation. Reads only decide whether to try a
claim (a read that lags makes a request answer ``pending`` once more, never run a query twice).
"""

import hashlib
import os
import socket
import threading
import time
from typing import Callable, Dict, List, Optional

from splunklib import binding

from ..core.errors import AuthenticationError, AuthorizationError, DefenderIpStatsError
from ..core.hunting_fetcher import quota_delay
from ..core.model import ERROR, SOURCE_HUNTING, IpStats
from ..core.outcomes import HuntingFailure, QuotaExceeded
from ..splunk.kvcollection import KVCollection

COLLECTION = "defenderipstats_hunting_jobs"
LEASE_SECONDS = 30.0
HEARTBEAT_SECONDS = 10.0
# A finished run answers "in the cache" this long; later the same batch may run again (the cache's
# own freshness decides before that: a warm IP never reaches a job).
FINISHED_KEEP_SECONDS = 600.0
FAILED_KEEP_SECONDS = 60.0  # a failed run's reason is told to the searches that wait for it, then forgotten
ASK_AGAIN_SECONDS = 5.0  # how soon a search asks again about a running job
MAX_GENERATIONS = 1000
MAX_QUOTA_ANSWERS = 3  # quota answers in a row for one batch before its searches are told rate_limited
SERVER_ERROR_BACKOFF = 2.0  # seconds before the one retry of a 5xx

RUNNING, FINISHED, FAILED, RELEASED = "running", "finished", "failed", "released"


def job_id(account: str, lookback_hours: int, basis: str, ips: List[str]) -> str:
    text = "%s|%d|%s|%s" % (account, lookback_hours, basis, ",".join(sorted(ips)))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:40]


def owner_name() -> str:
    return "%s:%d:%d" % (socket.gethostname(), os.getpid(), threading.get_ident())


class JobStoreUnavailable(Exception):
    """The KV store did not answer as expected."""


class JobStore(KVCollection):
    """The jobs collection through splunkd's REST API (system session)."""

    unavailable = JobStoreUnavailable
    passed_on = (404, 409)

    def __init__(self, service, collection: str = COLLECTION):
        super().__init__(service, collection)

    def get(self, key: str) -> Optional[dict]:
        try:
            document = self._call("get", key)
        except binding.HTTPError:
            return None
        return document if isinstance(document, dict) else None

    def update(self, key: str, document: dict) -> None:
        try:
            self._call("post", key, body=document)
        except binding.HTTPError as error:
            raise JobStoreUnavailable("splunkd answered %s" % error.status)


class Claim:
    """What a request learnt of a batch's job: ``run`` (ours to run, as ``key``), ``running``, ``finished``
    (the answers are in the cache), ``failed`` (``reason``), or ``busy`` (no budget now)."""

    def __init__(self, outcome: str, key: str = "", reason: str = "", quota: int = 0, fatal: int = 0):
        self.outcome, self.key, self.reason = outcome, key, reason
        self.quota = quota  # quota answers in a row of the runs before (``quota`` outcome: too many)
        self.fatal = fatal  # 0, or the error that ended the run concerns the search: 1, 2 a 403, 3 sign-in


def claim(store: JobStore, jid: str, document: dict, acquire: Callable[[], bool], clock=time.time) -> Claim:
    """Claims the batch's next run when no live run holds it, after ``acquire`` gave budget for it."""
    acquired = False
    quota = 0
    for generation in range(1, MAX_GENERATIONS + 1):
        key = "%s.%d" % (jid, generation)
        seen = store.get(key)
        now = clock()
        if seen is not None:
            state, beat = seen.get("state"), float(seen.get("heartbeat") or 0)
            if state == RUNNING and now - beat < LEASE_SECONDS:
                return Claim("running", key)
            if state == FINISHED and now - beat < FINISHED_KEEP_SECONDS:
                return Claim("finished", key)
            if state == FAILED and now - beat < FAILED_KEEP_SECONDS:
                return Claim("failed", key, str(seen.get("reason") or "hunting query failed"),
                             fatal=int(seen.get("fatal") or 0))
            quota = int(seen.get("quota") or 0) if state == RELEASED and now - beat < FAILED_KEEP_SECONDS else 0
            if quota > MAX_QUOTA_ANSWERS:
                return Claim("quota", key, "Graph hunting quota exceeded %d times in a row" % quota, quota)
            continue  # its owner died (lease over), or it ended long ago: the next generation
        if not acquired:
            if not acquire():
                return Claim("busy", key, quota=quota)
            acquired = True
        record = dict(document, _key=key, generation=generation, state=RUNNING, heartbeat=now, owner=owner_name())
        if store.insert(record):
            return Claim("run", key, quota=quota)
        # taken by another claimant: its document tells what it is (or, read lagging, not yet)
        seen = store.get(key)
        if seen is None or seen.get("state") == RUNNING:
            return Claim("running", key)
    return Claim("failed", "", "too many runs of one hunting job")


class JobRun:
    """One claimed run, in a background thread: the query, heartbeats, the cache write, the end state."""

    def __init__(self, store: JobStore, key: str, document: dict, query: Callable, batch: List[str],
                 cache, limiter, logger, heartbeat: float = HEARTBEAT_SECONDS, clock=time.time):
        self.store, self.key = store, key
        self.document = dict(document, _key=key, generation=int(key.rsplit(".", 1)[1]), owner=owner_name())
        self.query, self.batch, self.cache, self.limiter = query, batch, cache, limiter
        self.logger, self.heartbeat, self.clock = logger, heartbeat, clock
        self.done = threading.Event()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="hunting-job-" + self.key[:12], daemon=True)
        thread.start()
        return thread

    def _beat(self) -> None:
        while not self.done.wait(self.heartbeat):
            try:
                self.store.update(self.key, dict(self.document, state=RUNNING, heartbeat=self.clock()))
            except JobStoreUnavailable as error:  # the lease may lapse: a taker-over runs it again
                self.logger.warning("hunting job %s: heartbeat failed: %s", self.key, error)

    def run(self) -> None:
        self.document["owner"] = owner_name()  # this thread's
        beats = threading.Thread(target=self._beat, daemon=True)
        beats.start()
        state, reason, extra = FAILED, "hunting query failed", {}
        try:
            state, reason = self._run()
        except DefenderIpStatsError as error:  # a 403, a token Graph rejects: fit to show the search
            kind = {AuthorizationError: 2, AuthenticationError: 3}.get(type(error), 1)
            reason, extra = str(error), {"fatal": kind}
        except Exception as error:  # the thread's end is recorded whatever happened
            reason = "hunting job failed: %s" % type(error).__name__
            self.logger.warning("hunting job %s failed: %s", self.key, error)
        finally:
            self.done.set()
            beats.join()  # a heartbeat in flight must not land after the end state and undo it
            try:
                self.store.update(self.key, dict(self.document, state=state, reason=reason, heartbeat=self.clock(),
                                                 **extra))
            except JobStoreUnavailable as error:
                self.logger.warning("hunting job %s: could not record its end: %s", self.key, error)

    def _run(self):
        answers: Dict[str, IpStats] = {}
        halves = [self.batch]
        split = False
        first, retried = True, False
        while halves:
            part = halves.pop(0)
            if not first:
                self._wait_for_budget()
            first = False
            try:
                answer = self.query(part)
            finally:
                self.limiter.completed()
            if isinstance(answer, QuotaExceeded):
                # Graph's CPU cycles are 15 minutes, their alignment undocumented: without Retry-After hunting
                # pauses a whole cycle (core.hunting_fetcher.quota_delay), for every process and member
                self.document["quota"] = int(self.document.get("quota") or 0) + 1
                self.limiter.pause_for(quota_delay(answer))  # every process holds off
                self._keep(answers)
                return RELEASED, "Graph hunting quota exceeded (%d)" % answer.status
            if isinstance(answer, HuntingFailure):
                if _timed_out(answer) and not split and len(part) > 1:
                    # a query over Graph's time limit: its two halves each, once, not the whole again
                    split = True
                    middle = len(part) // 2
                    halves = [part[:middle], part[middle:]] + halves
                    continue
                if answer.retryable and not retried:
                    retried = True
                    time.sleep(SERVER_ERROR_BACKOFF)
                    halves.insert(0, part)
                    continue
                self._keep(answers)
                return FAILED, answer.reason
            answers.update(answer)
        self._keep(answers)
        return FINISHED, ""

    def _wait_for_budget(self) -> None:
        # the claim paid for the first query; each half of a split batch pays its own
        while True:
            wait = self.limiter.try_acquire()
            if wait <= 0:
                return
            time.sleep(min(wait, 1.0))

    def _keep(self, answers: Dict[str, IpStats]) -> None:
        if answers:
            self.cache.put_many([a for a in answers.values() if a.status != ERROR])


def _timed_out(failure: HuntingFailure) -> bool:
    return "timed out" in failure.reason or "timeout" in failure.reason.lower()


def fatal_error(kind: int, reason: str) -> DefenderIpStatsError:
    return {2: AuthorizationError, 3: AuthenticationError}.get(kind, DefenderIpStatsError)(reason)


def failed_answers(ips: List[str], reason: str) -> Dict[str, IpStats]:
    return {ip: IpStats(ip=ip, status=ERROR, source=SOURCE_HUNTING, error=reason) for ip in ips}
