"""Microsoft Graph advanced hunting for the Defender stand-in: ``POST /v1.0/security/runHuntingQuery``.

The query is parsed and run by a small KQL interpreter (``kql.py``) over a synthetic
``DeviceNetworkEvents`` table (``device_events.py``), so any query with the same meaning gets the
same answer, and a wrong query a wrong one; what the interpreter does not know is 400, as a KQL
the service cannot run would be. Answers have Graph's ``{"schema": [...], "results": [...]}`` shape,
datetimes with 7 fractional digits as in Microsoft's examples (``2020-08-30T06:38:35.7664356Z``);
a time without a fraction is written without one (assumed, not documented). ``Timespan`` in the body limits the rows
by ``Timestamp``, as documented.

Tokens must be Graph tokens (scope https://graph.microsoft.com/.default) with the
ThreatHunting.Read.All role; the calls have their own per-(tenant, client) windows (45 a minute,
1,500 an hour by default).

Not confirmed by Microsoft, modelled here: a query text over ``MAX_QUERY_CHARS`` is refused (400);
Microsoft documents no figure (the app keeps its queries under the same figure, with headroom).
Injected faults (``inject``) model the documented quota answers: 429, and 400 "Query execution
has exceeded the allowed limits" (the tenant's CPU quota), each with or without Retry-After;
5xx; a malformed answer; a slow answer (``delay``).

Query time (issue 19): a query takes ``seconds_per_ip_hour`` x IPs x look-back hours (default 0: at once).
Microsoft documents that a query running over 3 minutes times out with an error ("Query exceeded the
timeout period.", learn.microsoft.com/defender-xdr/advanced-hunting-errors); the status is not
documented: assumed 400 BadRequest with that message, after ``max_query_seconds`` (180). CPU: each
tenant's query time is metered per ``cpu_window_seconds`` window (900: the documented 15-minute cycle,
aligned here to multiples of it on the stand-in's clock); once a window's total reaches
``cpu_quota_seconds`` (None: unmetered) every query is answered 429 with Retry-After the seconds until
the window resets, as documented ("429 ... reaching quota limit ... by CPU").
"""

import json
import re
import threading
import time
import uuid
from collections import deque
from typing import Any, Dict, List, Optional

try:
    from . import dataset as _dataset
    from . import device_events as _events
    from . import kql as _kql
except ImportError:  # pragma: no cover
    import dataset as _dataset  # type: ignore
    import device_events as _events  # type: ignore
    import kql as _kql  # type: ignore

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
THREAT_HUNTING_READ_ALL = "ThreatHunting.Read.All"
GRAPH_CONTEXT = "https://graph.microsoft.com/v1.0/$metadata#microsoft.graph.security.huntingQueryResults"
HUNTING_PATH = "/v1.0/security/runHuntingQuery"
MAX_QUERY_CHARS = 100000
QUOTA_MESSAGE = ("Query execution has exceeded the allowed limits. The query used too many resources "
                 "(CPU quota for this 15-minute cycle). Try again later.")
_TIMESPAN = re.compile(r"PT?(?:(\d+)D)?T?(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?\Z")


class HuntingRecord:
    def __init__(self, ips: List[str], lookback: Optional[int], status: int, token: Optional[str]):
        self.ips, self.lookback, self.status, self.token = ips, lookback, status, token
        self.query: Optional[str] = None
        self.time = time.time()

    def __repr__(self):
        return "HuntingRecord(%d ips, lookback=%s, status=%s)" % (len(self.ips), self.lookback, self.status)


class HuntingService:
    """State and behaviour of the endpoint; the Defender stand-in owns one."""

    def __init__(self, standin, rate_per_minute: int = 45, rate_per_hour: int = 1500):
        self.standin = standin
        self.rate_per_minute = rate_per_minute
        self.rate_per_hour = rate_per_hour
        self.requests: List[HuntingRecord] = []
        self.faults = deque()
        self._windows: Dict[Any, Any] = {}
        self._lock = threading.Lock()
        self.seconds_per_ip_hour = 0.0
        self.max_query_seconds = 180.0
        self.cpu_quota_seconds: Optional[float] = None
        self.cpu_window_seconds = 900.0
        self._cpu: Dict[Any, Any] = {}  # (tenant, window start) -> seconds of query time spent
        self.running = 0  # queries being answered now (the tests see concurrency)
        self.most_running = 0

    def calls(self, status=None) -> int:
        return sum(1 for r in self.requests if status is None or r.status == status)

    def inject(self, fault, times: int = 1, retry_after: Optional[str] = "default", delay: float = 0.0) -> None:
        """A status (400, 500, 503, 429...), "quota" (400 "exceeded the allowed limits"), "malformed" or
        "slow" (answer normally after ``delay`` seconds) for the next ``times`` queries. ``retry_after``:
        the Retry-After header of a 429 or quota answer ("default": "1" on a 429, none on a quota 400;
        None: none)."""
        if retry_after == "default":
            retry_after = "1" if fault == 429 else None
        with self._lock:
            self.faults.extend([(fault, retry_after, delay)] * times)

    def handle(self, handler, raw_body: bytes) -> None:
        token = _bearer(handler.headers.get("Authorization") or "")
        record = HuntingRecord([], None, 0, token)
        with self._lock:
            self.requests.append(record)
            fault, retry_after, delay = self.faults.popleft() if self.faults else (None, None, 0.0)
        if delay:
            time.sleep(delay)
        if handler.command != "POST":
            return self._error(handler, record, 405, "Request_BadRequest", "Only POST is supported.")
        if fault == "malformed":
            record.status = 200
            return handler._send(200, b'{"schema": [], "results": [{"RemoteIP": "1.', "application/json")
        headers = {"Retry-After": retry_after} if retry_after is not None else None
        if fault == "quota":
            return self._error(handler, record, 400, "BadRequest", QUOTA_MESSAGE, headers)
        if fault == 429:
            return self._error(handler, record, 429, "TooManyRequests", "Too many requests.", headers)
        if isinstance(fault, int):
            return self._error(handler, record, fault, "InjectedFault", "Injected error.")
        st = self.standin
        tok = st._tokens.get(token) if token else None
        if tok is None or st._is_expired(tok):
            return self._error(handler, record, 401, "InvalidAuthenticationToken",
                               "Access token is empty, invalid or has expired.")
        throttle = self._admit((tok.tenant, tok.client_id.lower()))
        if throttle is not None:
            return self._error(handler, record, 429, "TooManyRequests", throttle[1],
                               {"Retry-After": str(throttle[0])})
        if tok.scope.lower() != GRAPH_SCOPE.lower() or THREAT_HUNTING_READ_ALL not in tok.roles:
            return self._error(handler, record, 403, "Forbidden",
                               "Missing application roles. API required roles: ThreatHunting.Read.All")
        try:
            body = json.loads(raw_body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return self._error(handler, record, 400, "BadRequest", "The request body is not valid JSON.")
        query = body.get("Query") if isinstance(body, dict) else None
        if not isinstance(query, str) or not query.strip():
            return self._error(handler, record, 400, "BadRequest", "Query is required.")
        if len(query) > MAX_QUERY_CHARS:
            return self._error(handler, record, 400, "BadRequest", "Query text is too long.")
        not_before = None
        timespan = body.get("Timespan")
        if timespan is not None:
            match = _TIMESPAN.match(timespan) if isinstance(timespan, str) else None
            if match is None or not any(match.groups()):
                return self._error(handler, record, 400, "BadRequest", "Invalid Timespan.")
            d, h, m, sec = (int(g or 0) for g in match.groups())
            not_before = _events.NOW_TICKS - ((d * 24 + h) * 3600 + m * 60 + sec) * _kql.TICKS_PER_SECOND
        looked_up: List[str] = []

        def rows_for(literals):
            rows, seen = [], set()
            for literal in literals:
                try:
                    canonical = _dataset.canonical(literal)
                except ValueError:
                    continue
                looked_up.append(literal)
                if canonical not in seen:
                    seen.add(canonical)
                    rows.extend(dict(row, Timestamp=_kql.DateTime(row["Timestamp"]))
                                for row in _events.rows_for(canonical))
            return rows

        try:
            schema, results = _kql.run(query, rows_for, _events.SCHEMA, "DeviceNetworkEvents",
                                       _events.NOW_TICKS, not_before)
        except _kql.KqlError as error:
            return self._error(handler, record, 400, "BadRequest", str(error))
        record.ips, record.query = looked_up, query
        record.lookback = _lookback_hours(query)
        seconds = len(looked_up) * (record.lookback or 0) * self.seconds_per_ip_hour
        over_cpu = self._meter(tok.tenant, min(seconds, self.max_query_seconds))
        if over_cpu is not None:
            return self._error(handler, record, 429, "TooManyRequests", QUOTA_MESSAGE,
                               {"Retry-After": str(over_cpu)})
        if seconds:
            with self._lock:
                self.running += 1
                self.most_running = max(self.most_running, self.running)
            try:
                time.sleep(min(seconds, self.max_query_seconds))
            finally:
                with self._lock:
                    self.running -= 1
        if seconds > self.max_query_seconds:
            return self._error(handler, record, 400, "BadRequest", "Query exceeded the timeout period.")
        record.status = 200
        handler._send_json(200, {"@odata.context": GRAPH_CONTEXT, "schema": schema, "results": results},
                           "application/json; odata.metadata=minimal; charset=utf-8")

    def _admit(self, key):
        with self._lock:
            now = self.standin.clock()
            minute, hour = self._windows.setdefault(key, (deque(), deque()))
            while minute and minute[0] <= now - 60:
                minute.popleft()
            while hour and hour[0] <= now - 3600:
                hour.popleft()
            if len(minute) >= self.rate_per_minute:
                return max(1, int(minute[len(minute) - self.rate_per_minute] + 60 - now + 1)), \
                    "Rate limit exceeded: %d calls per minute" % self.rate_per_minute
            if len(hour) >= self.rate_per_hour:
                return max(1, int(hour[len(hour) - self.rate_per_hour] + 3600 - now + 1)), \
                    "Rate limit exceeded: %d calls per hour" % self.rate_per_hour
            minute.append(now)
            hour.append(now)
            return None

    def _meter(self, tenant, seconds: float) -> Optional[int]:
        """Charges a query's CPU to its tenant's window; the Retry-After of a refusal when the quota is spent."""
        if self.cpu_quota_seconds is None:
            return None
        with self._lock:
            now = self.standin.clock()
            start = now - now % self.cpu_window_seconds
            spent = self._cpu.get((tenant, start), 0.0)
            if spent >= self.cpu_quota_seconds:
                return max(1, int(start + self.cpu_window_seconds - now + 0.999))
            self._cpu[(tenant, start)] = spent + seconds
            return None

    @staticmethod
    def _error(handler, record, status, code, message, headers=None):
        record.status = status
        body = {"error": {"code": code, "message": message,
                          "innerError": {"date": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                         "request-id": str(uuid.uuid4()), "client-request-id": str(uuid.uuid4())}}}
        handler._send_json(status, body, "application/json", headers)


def _lookback_hours(query: str) -> Optional[int]:
    match = re.search(r"ago\((\d+)h\)", query)
    return int(match.group(1)) if match else None


def _bearer(header: str) -> Optional[str]:
    return header[7:].strip() if header[:7].lower() == "bearer " else None
