"""Is this search still wanted? The job's state, polled from splunkd's ``search/jobs/<sid>``.

A cancelled job disappears (404), a finalised one says ``isFinalized``/``dispatchState``
FINALIZING; in both cases the command must stop calling the API and let the events through.
splunkd is asked at most once per ``interval`` seconds, whichever worker thread asks; the others
get the last answer at once. Anything unclear (splunkd slow or failing, a job never seen) is not
taken for a stop: a search is only stopped for a reason splunkd gave.
"""

import json
import logging
import threading
import time

from splunklib import binding

POLL_INTERVAL = 3.0  # seconds between two questions to splunkd
POLL_TIMEOUT = 5  # seconds splunkd has to answer (a separate connection from the KV store's)
STOPPED_STATES = frozenset(("FINALIZING", "FAILED", "DONE"))


def _true(value) -> bool:
    return value is True or str(value).strip().lower() in ("1", "true")


class JobWatcher:
    def __init__(self, service, sid: str, interval: float = POLL_INTERVAL, clock=time.monotonic,
                 logger: logging.Logger = None):
        self.service = service
        self.sid = sid
        self.interval = interval
        self.clock = clock
        self.logger = logger or logging.getLogger("defender_ipstats")
        self.stopped_because = None  # e.g. "cancelled", "finalised"
        self.polls = 0
        self._seen = False  # a 404 means "cancelled" only for a job that existed before
        self._next_poll = 0.0
        self._lock = threading.Lock()

    def should_stop(self) -> bool:
        if self.stopped_because is not None or not self.sid:
            return self.stopped_because is not None
        if self.clock() < self._next_poll or not self._lock.acquire(blocking=False):
            return False  # asked recently, or another thread is asking right now
        try:
            self._next_poll = self.clock() + self.interval
            self._poll()
        finally:
            self._lock.release()
        return self.stopped_because is not None

    def _poll(self) -> None:
        self.polls += 1
        path = binding.UrlEncoded("search/jobs/%s" % binding.UrlEncoded(self.sid, encode_slash=True), skip_encode=True)
        try:
            response = self.service.get(path, output_mode="json")
            entries = json.loads(response.body.read().decode("utf-8")).get("entry") or []
        except binding.HTTPError as error:
            if error.status == 404 and self._seen:
                self._stop("cancelled")
            else:
                self.logger.debug("sid=%s job state not available (splunkd answered %s)", self.sid, error.status)
            return
        except Exception as error:  # slow or failing splunkd: keep going, ask again later
            self.logger.debug("sid=%s job state not available (%s)", self.sid, type(error).__name__)
            return
        if not entries:
            return
        self._seen = True
        content = entries[0].get("content") or {}
        state = str(content.get("dispatchState") or "").upper()
        if _true(content.get("isFinalized")) or state == "FINALIZING":
            self._stop("finalised")
        elif _true(content.get("isFailed")) or _true(content.get("isZombie")) or state in STOPPED_STATES:
            self._stop("ended (%s)" % (state.lower() or "failed"))

    def _stop(self, why: str) -> None:
        self.stopped_because = why
        self.logger.info("sid=%s the search was %s: no more Defender API calls", self.sid, why)
