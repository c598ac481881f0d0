"""Microsoft Graph advanced hunting for the Defender stand-in: ``POST /v1.0/security/runHuntingQuery``.

It accepts exactly the query shape the app sends (lib/defender_ipstats/hunting.py), parses the IP
list and the look-back, and answers from the same deterministic dataset as the per-IP endpoint,
in Graph's ``{"schema": [...], "results": [...]}`` shape. Anything else is 400, as a KQL the
service cannot run would be. Tokens must be Graph tokens (scope https://graph.microsoft.com/.default)
with the ThreatHunting.Read.All role; the calls have their own per-(tenant, client) windows
(45 a minute, 1,500 an hour by default).
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
except ImportError:  # pragma: no cover
    import dataset as _dataset  # type: ignore

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
THREAT_HUNTING_READ_ALL = "ThreatHunting.Read.All"
GRAPH_CONTEXT = "https://graph.microsoft.com/v1.0/$metadata#microsoft.graph.security.huntingQueryResults"
HUNTING_PATH = "/v1.0/security/runHuntingQuery"

_QUERY = re.compile(
    r"DeviceNetworkEvents"
    r" \| where Timestamp > ago\((?P<hours>[0-9]{1,3})h\)"
    r" \| where RemoteIP in~ \((?P<list>[^()]*)\)"
    r' \| extend IP = iff\(RemoteIP startswith "::ffff:", substring\(RemoteIP, 7\), RemoteIP\)'
    r" \| summarize FirstSeen = min\(Timestamp\), LastSeen = max\(Timestamp\) by IP, DeviceId"
    r" \| summarize DeviceCount = count\(\), FirstSeen = min\(FirstSeen\), LastSeen = max\(LastSeen\)"
    r" by RemoteIP = IP\Z"
)
_LISTED = re.compile(r'"([0-9A-Fa-f.:]{1,45})"')
SCHEMA = [
    {"name": "RemoteIP", "type": "String"},
    {"name": "DeviceCount", "type": "Int64"},
    {"name": "FirstSeen", "type": "DateTime"},
    {"name": "LastSeen", "type": "DateTime"},
]


class HuntingRecord:
    def __init__(self, ips: List[str], lookback: Optional[int], status: int, token: Optional[str]):
        self.ips, self.lookback, self.status, self.token = ips, lookback, status, token
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

    def calls(self, status=None) -> int:
        return sum(1 for r in self.requests if status is None or r.status == status)

    def inject(self, fault, times: int = 1) -> None:
        """A status (400, 500, 503, 429...) or "malformed" for the next ``times`` queries."""
        with self._lock:
            self.faults.extend([fault] * times)

    def handle(self, handler, raw_body: bytes) -> None:
        token = _bearer(handler.headers.get("Authorization") or "")
        record = HuntingRecord([], None, 0, token)
        with self._lock:
            self.requests.append(record)
            fault = self.faults.popleft() if self.faults else None
        if handler.command != "POST":
            return self._error(handler, record, 405, "Request_BadRequest", "Only POST is supported.")
        if fault == "malformed":
            record.status = 200
            return handler._send(200, b'{"schema": [], "results": [{"RemoteIP": "1.', "application/json")
        if isinstance(fault, int):
            headers = {"Retry-After": "1"} if fault == 429 else None
            return self._error(handler, record, fault, "InjectedFault", "Injected error.", headers)
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
        match = _QUERY.match(query) if isinstance(query, str) else None
        if match is None:
            return self._error(handler, record, 400, "BadRequest", "Query could not be parsed.")
        hours = int(match.group("hours"))
        timespan = body.get("Timespan")
        if not 1 <= hours <= 720 or (timespan is not None and timespan != "PT%dH" % hours):
            return self._error(handler, record, 400, "BadRequest", "Invalid time range.")
        listed = match.group("list")
        ips = _LISTED.findall(listed)
        if not ips or ", ".join('"%s"' % ip for ip in ips) != listed:
            return self._error(handler, record, 400, "BadRequest", "Query could not be parsed.")
        record.ips, record.lookback = ips, hours
        rows = {}
        for text in ips:
            try:
                canonical = _dataset.canonical(text)
            except ValueError:
                return self._error(handler, record, 400, "BadRequest", "Invalid IP literal %s." % text)
            stats = _dataset.ip_stats(canonical, hours)
            if stats and stats["organizationPrevalence"] > 0:
                rows[canonical] = {"RemoteIP": canonical, "DeviceCount": stats["organizationPrevalence"],
                                   "FirstSeen": stats["orgFirstSeen"], "LastSeen": stats["orgLastSeen"]}
        record.status = 200
        handler._send_json(200, {"@odata.context": GRAPH_CONTEXT, "schema": SCHEMA, "results": list(rows.values())},
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

    @staticmethod
    def _error(handler, record, status, code, message, headers=None):
        record.status = status
        body = {"error": {"code": code, "message": message,
                          "innerError": {"date": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                         "request-id": str(uuid.uuid4()), "client-request-id": str(uuid.uuid4())}}}
        handler._send_json(status, body, "application/json", headers)


def _bearer(header: str) -> Optional[str]:
    return header[7:].strip() if header[:7].lower() == "bearer " else None
