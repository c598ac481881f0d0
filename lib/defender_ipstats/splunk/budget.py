"""Spending the API budget: sliding windows (100 a minute, 1,500 an hour) and 429 pauses.

Every call must fit in every window; a 429's Retry-After pauses the limiter as a whole. Two
limiters share one interface:

- ``try_acquire()``: take one call of budget and return 0, or return the seconds until one is free;
- ``completed()``: the calling thread's last call has finished; its time in the windows moves to
  now, so a call counts from when it surely reached the API, not from when budget was taken (the
  API counts arrivals; a slow TLS handshake or token request must not let the next window open early);
- ``pause_for(seconds)``: nobody calls before then (a 429's Retry-After);
- ``available_in()``: seconds until a call would be admitted, taking nothing.

``SharedWindowLimiter`` keeps the windows and the pause in a SQLite file under
``$SPLUNK_HOME/var/run/TA-defender-ipstats/``, shared by every search on the host for one app
registration and tenant (the unit Microsoft counts). ``SlidingWindowLimiter`` lives in one process:
the fallback when that file cannot be used, and the fake-clock unit tests.
"""

import bisect
import hashlib
import logging
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from typing import Iterable, List, Sequence, Tuple

from .. import APP_NAME

# A Retry-After longer than the longest window is not believed (nor a pause left by a clock set back).
MAX_PAUSE = 3600.0
# When the shared state cannot be read or written (locked past the busy timeout), callers are told to
# come back after this long: never spend budget that could not be checked.
STATE_TROUBLE_WAIT = 1.0
# Calls stamped further in the future than this (the wall clock was set back) count as made now.
CLOCK_SKEW = 5.0
BUSY_TIMEOUT = 10.0

Limits = Sequence[Tuple[int, float]]


def normalised_limits(limits: Iterable[Tuple[int, float]]) -> List[Tuple[int, float]]:
    return sorted(((int(count), float(seconds)) for count, seconds in limits), key=lambda limit: limit[1])


def seconds_until_free(stamps: Sequence[float], limits: Limits, now: float) -> float:
    """0 when one more call fits every window at ``now``, else the seconds until it does.

    ``stamps`` are the times of earlier calls, sorted. A window of ``count`` calls per ``seconds``
    is full when ``count`` stamps lie in ``(now - seconds, now]``; the stamp whose departure frees
    a place is then the ``count``-th most recent.
    """
    wait = 0.0
    for count, seconds in limits:
        in_window = len(stamps) - bisect.bisect_right(stamps, now - seconds)
        if in_window >= count:
            freeing = stamps[len(stamps) - count] if count > 0 else now
            wait = max(wait, freeing + seconds - now)
    return wait


class SlidingWindowLimiter:
    """The windows of one process (thread-safe)."""

    def __init__(self, limits: Iterable[Tuple[int, float]], clock=time.monotonic):
        self.limits = normalised_limits(limits)
        self.clock = clock
        self._stamps: List[float] = []  # sorted
        self._paused_until = 0.0
        self._lock = threading.Lock()
        self._mine = threading.local()

    def _forget_old(self, now: float) -> None:
        longest = self.limits[-1][1] if self.limits else 0.0
        del self._stamps[:bisect.bisect_right(self._stamps, now - longest)]

    def try_acquire(self) -> float:
        """Take one call of budget and return 0, or return the seconds until one is free."""
        with self._lock:
            now = self.clock()
            if now < self._paused_until:
                return self._paused_until - now
            self._forget_old(now)
            wait = seconds_until_free(self._stamps, self.limits, now)
            if wait > 0:
                return wait
            bisect.insort(self._stamps, now)
            self._mine.stamp = now
            return 0.0

    def record(self) -> None:
        """Count a call made now whatever the windows hold (a call another budget admitted)."""
        with self._lock:
            now = self.clock()
            self._forget_old(now)
            bisect.insort(self._stamps, now)
            self._mine.stamp = now

    def completed(self) -> None:
        self._unstamp(restamp=True)

    def release(self) -> None:
        self._unstamp(restamp=False)

    def _unstamp(self, restamp: bool) -> None:
        """Takes this thread's last call out of the windows: again from now (``restamp``), or for good."""
        stamp = getattr(self._mine, "stamp", None)
        self._mine.stamp = None
        if stamp is None:
            return
        with self._lock:
            index = bisect.bisect_left(self._stamps, stamp)
            if index < len(self._stamps) and self._stamps[index] == stamp:
                del self._stamps[index]
                if restamp:
                    bisect.insort(self._stamps, max(stamp, self.clock()))

    def available_in(self) -> float:
        with self._lock:
            now = self.clock()
            self._forget_old(now)
            return max(self._paused_until - now, seconds_until_free(self._stamps, self.limits, now), 0.0)

    def pause_until(self, when: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, when)

    def pause_for(self, seconds: float) -> None:
        self.pause_until(self.clock() + min(max(0.0, float(seconds)), MAX_PAUSE))


_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS calls_by_time ON calls (at);
CREATE TABLE IF NOT EXISTS pause (id INTEGER PRIMARY KEY CHECK (id = 1), until REAL NOT NULL);
CREATE TABLE IF NOT EXISTS label (id INTEGER PRIMARY KEY CHECK (id = 1), text TEXT NOT NULL);
"""


class SharedWindowLimiter:
    """The windows and the 429 pause of every process on the host, in one SQLite file.

    Each operation is one ``BEGIN IMMEDIATE`` transaction: it takes SQLite's write lock before
    reading, so two processes never both see the last free place (no lost updates). SQLite's
    locks are the operating system's byte-range locks on the file: they go with the process
    that held them, so a killed search leaves no stale lock, and its unfinished transaction is
    rolled back from the journal by the next process. Times are wall-clock epoch seconds, the
    one clock all processes share.
    """

    def __init__(self, path: str, limits: Iterable[Tuple[int, float]], clock=time.time,
                 busy_timeout: float = BUSY_TIMEOUT, logger: logging.Logger = None, label: str = ""):
        self.path = path
        self.label = label  # whose budget this is (a user's share), for the setup page's figures
        self.limits = normalised_limits(limits)
        self.clock = clock
        self.busy_timeout = busy_timeout
        self.logger = logger or logging.getLogger("defender_ipstats")
        self._lock = threading.Lock()  # one connection, one thread at a time
        self._db = None
        self._mine = threading.local()
        self._local_pause = float("-inf")  # a pause that could not be written is still kept by this process
        self._troubled = False
        with self._transaction() as db:  # create the file and schema now: an unusable place fails here
            if label:
                db.execute("INSERT OR REPLACE INTO label (id, text) VALUES (1, ?)", (label,))

    # -- SQLite ---------------------------------------------------------------------
    def _connect(self):
        db = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
        try:
            # A killed process loses nothing without fsync (the pages are the OS's); only an OS crash
            # could damage the file, and a damaged file is replaced by an empty one (_reset).
            db.execute("PRAGMA synchronous=OFF")
            db.executescript(_SCHEMA)
        except BaseException:
            db.close()
            raise
        return db

    def _reset(self, error) -> None:
        """The file is not a usable database: start over with empty windows (logged)."""
        self.logger.warning("rate limiter state %s is damaged (%s); starting it afresh", self.path, error)
        if self._db is not None:
            self._db.close()
            self._db = None
        for suffix in ("", "-journal"):
            try:
                os.remove(self.path + suffix)
            except OSError:
                pass

    @contextmanager
    def _transaction(self):
        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._db is None:
                        self._db = self._connect()
                    self._db.execute("BEGIN IMMEDIATE")
                    break
                except sqlite3.OperationalError:
                    raise  # locked past the busy timeout, read-only, no space...: the caller decides
                except sqlite3.DatabaseError as error:
                    if attempt == 2:
                        raise
                    self._reset(error)
            db = self._db
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                try:  # never leave a transaction open on the shared connection
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                raise

    def _trouble(self, error) -> None:
        if not self._troubled:
            self._troubled = True
            self.logger.warning("rate limiter state %s unavailable (%s); holding calls back until it answers",
                                self.path, error)

    @staticmethod
    def _paused_until(db, now: float) -> float:
        row = db.execute("SELECT until FROM pause WHERE id = 1").fetchone()
        until = row[0] if row else float("-inf")
        if until > now + MAX_PAUSE:  # the wall clock was set back
            until = now + MAX_PAUSE
            db.execute("UPDATE pause SET until = ? WHERE id = 1", (until,))
        return until

    def _windows(self, db, now: float) -> List[float]:
        longest = self.limits[-1][1] if self.limits else 0.0
        db.execute("DELETE FROM calls WHERE at <= ?", (now - longest,))
        db.execute("UPDATE calls SET at = ? WHERE at > ?", (now, now + CLOCK_SKEW))
        return [row[0] for row in db.execute("SELECT at FROM calls ORDER BY at")]

    # -- the limiter interface --------------------------------------------------------
    def try_acquire(self) -> float:
        try:
            with self._transaction() as db:
                now = self.clock()
                paused = max(self._paused_until(db, now), self._local_pause)
                if paused > now:
                    return paused - now
                wait = seconds_until_free(self._windows(db, now), self.limits, now)
                if wait > 0:
                    return wait
                self._mine.ticket = db.execute("INSERT INTO calls (at) VALUES (?)", (now,)).lastrowid
                return 0.0
        except sqlite3.Error as error:
            self._trouble(error)
            return STATE_TROUBLE_WAIT

    def record(self) -> None:
        """Count a call made now whatever the windows hold (a call another budget admitted)."""
        try:
            with self._transaction() as db:
                self._mine.ticket = db.execute("INSERT INTO calls (at) VALUES (?)", (self.clock(),)).lastrowid
        except sqlite3.Error as error:
            self._trouble(error)

    def completed(self) -> None:
        # if the state cannot be written, the call keeps its earlier stamp: a little less margin
        self._on_ticket("UPDATE calls SET at = MAX(at, ?) WHERE rowid = ?", self.clock)

    def release(self) -> None:
        # if the state cannot be written, the place stays counted: a little less budget, never more
        self._on_ticket("DELETE FROM calls WHERE rowid = ?")

    def _on_ticket(self, statement: str, clock=None) -> None:
        """Runs ``statement`` on this thread's last call (its row id last; ``clock``'s time before it)."""
        ticket = getattr(self._mine, "ticket", None)
        self._mine.ticket = None
        if ticket is None:
            return
        try:
            with self._transaction() as db:
                db.execute(statement, ((clock(), ticket) if clock is not None else (ticket,)))
        except sqlite3.Error as error:
            self._trouble(error)

    def available_in(self) -> float:
        try:
            with self._transaction() as db:
                now = self.clock()
                paused = max(self._paused_until(db, now), self._local_pause)
                return max(paused - now, seconds_until_free(self._windows(db, now), self.limits, now), 0.0)
        except sqlite3.Error as error:
            self._trouble(error)
            return STATE_TROUBLE_WAIT

    def pause_for(self, seconds: float) -> None:
        now = self.clock()
        until = now + min(max(0.0, float(seconds)), MAX_PAUSE)
        self._local_pause = max(self._local_pause, until)
        try:
            with self._transaction() as db:
                db.execute("INSERT OR IGNORE INTO pause (id, until) VALUES (1, ?)", (until,))
                db.execute("UPDATE pause SET until = MAX(until, ?) WHERE id = 1", (until,))
        except sqlite3.Error as error:
            self._trouble(error)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def state_folder(splunk_home: str) -> str:
    return os.path.join(splunk_home, "var", "run", APP_NAME)


def state_file_name(api: str, registration: str) -> str:
    return "ratelimit-%s-%s.sqlite" % (api, registration)


def registration_key(tenant_id: str, client_id: str) -> str:
    """Names the state of one app registration in one tenant: Microsoft's unit for the quota.

    Two account names for the same registration share it; nothing readable about the tenant or
    the client is in the file name.
    """
    text = "%s|%s" % (str(tenant_id).strip().lower(), str(client_id).strip().lower())
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def host_limiter(api: str, tenant_id: str, client_id: str, limits: Iterable[Tuple[int, float]],
                 splunk_home: str = None, logger: logging.Logger = None, label: str = ""):
    """The limiter every search on this host shares for ``api`` (e.g. ``ipstats``) and one registration.

    Without ``$SPLUNK_HOME``, or when its state folder cannot be used, the search keeps to the
    windows on its own (logged): it still never exceeds them alone, only not together with others.
    """
    logger = logger or logging.getLogger("defender_ipstats")
    splunk_home = splunk_home if splunk_home is not None else os.environ.get("SPLUNK_HOME")
    if splunk_home:
        folder = state_folder(splunk_home)
        path = os.path.join(folder, state_file_name(api, registration_key(tenant_id, client_id)))
        try:
            os.makedirs(folder, exist_ok=True)
            return SharedWindowLimiter(path, limits, logger=logger, label=label)
        except (OSError, sqlite3.Error) as error:
            logger.warning("cannot share the API budget with other searches through %s (%s); "
                           "this search keeps to it alone", path, error)
    return SlidingWindowLimiter(limits)
