"""Advanced hunting through Microsoft Graph: many IPs per call (backend=hunting).

``POST {graph}/v1.0/security/runHuntingQuery`` with a KQL query over ``DeviceNetworkEvents``
that counts, per remote IP of a batch, the distinct devices that connected to it and the first
and last time, within the look-back. It approximates the per-IP statistics endpoint (what
counts as a connection may differ); IPs absent from the result were not seen. Why the query has
its shape, and the service limits it is sized for: docs/hunting.md.

The query text is built only from canonical IPs (checked again here) and integers: no field
value ever reaches it.

Answers and what becomes of them:

- 200: every IP of the batch gets found/not_seen (cached);
- 429, or 400 "exceeded the allowed limits" (the tenant's CPU quota for the 15-minute cycle):
  ``QuotaExceeded``; the fetcher pauses the shared hunting limiter (Retry-After, else a capped
  exponential delay), so every search on the host waits, then tries again within ``maxwait``;
  never cached;
- 5xx: retried once after a short backoff, then ``error``;
- 401 once: a fresh token and again; 401/403 after that: fatal for the search;
- anything else (other 400s, a timeout, a broken connection, a malformed answer): ``error``.
"""

import re
import time
from typing import Dict, List, Optional, Union

import requests

from ..core.errors import AuthenticationError, AuthorizationError
from ..core.hunting_fetcher import MAX_BATCH_IPS
from ..core.lookup import is_canonical_ip, normalise_ip
from ..core.model import FOUND, NOT_SEEN, SOURCE_HUNTING, IpStats
from ..core.outcomes import HuntingFailure, QuotaExceeded
from .http import LazyValidator, describe_failure, error_message, retry_after_seconds, with_fresh_token

# Graph stops a hunting query after 3 minutes and answers so; the app waits a little longer, so that
# Graph's own answer, not a cut connection, ends a query (it runs as a job: service/hunting_jobs.py).
QUERY_TIMEOUT = 190.0
# Size of one query. Microsoft documents no limit on the query text; the app keeps each query under
# MAX_QUERY_CHARS and fills batches to QUERY_BUDGET (10 % headroom), measured on the text itself:
# an IPv4 address costs up to 45 characters (it is listed twice, plain and IPv4-mapped), an IPv6
# address up to 43. Worst case, about 2,000 IPs a query; random IPv4s, about 2,300.
MAX_QUERY_CHARS = 100000
QUERY_BUDGET = 90000

_QUOTA_MESSAGE = re.compile(r"exceeded the allowed limits", re.IGNORECASE)

RESULT_SCHEMA = {
    "type": "object",
    "required": ["results"],
    "properties": {
        "schema": {"type": "array"},
        "results": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["RemoteIP", "DeviceCount"],
                "properties": {
                    "RemoteIP": {"type": "string"},
                    "DeviceCount": {"type": "integer", "minimum": 0},
                    "FirstSeen": {"type": ["string", "null"]},
                    "LastSeen": {"type": ["string", "null"]},
                },
            },
        },
    },
}

_validate = LazyValidator(RESULT_SCHEMA)

# The query, cheapest filter first (docs/hunting.md): the time range, then the listed IPs on the table
# column (in~: the letter case of stored IPv6 is not documented), then each row's IP in one spelling
# (IPv4-mapped folded into IPv4, lower case), then exact distinct devices per IP.
_QUERY_TEMPLATE = (
    "DeviceNetworkEvents"
    " | where Timestamp > ago(%dh)"
    " | where RemoteIP in~ (%s)"
    ' | extend IP = tolower(iff(RemoteIP startswith "::ffff:", substring(RemoteIP, 7), RemoteIP))'
    " | summarize FirstSeen = min(Timestamp), LastSeen = max(Timestamp) by IP, DeviceId"
    " | summarize DeviceCount = count(), FirstSeen = min(FirstSeen), LastSeen = max(LastSeen) by RemoteIP = IP"
)
_SEPARATOR = ", "


def _listed(ip: str) -> str:
    """The string literals for one IP: an IPv4 also as IPv4-mapped IPv6, which DeviceNetworkEvents may record."""
    if not is_canonical_ip(ip):
        raise ValueError("not a canonical IP")
    if ":" in ip:
        return '"%s"' % ip
    return '"%s", "::ffff:%s"' % (ip, ip)


def build_query(ips: List[str], lookback_hours: int) -> str:
    """The KQL for one batch. Devices are counted exactly (two summarize steps, not dcount)."""
    hours = int(lookback_hours)
    if not 1 <= hours <= 720:
        raise ValueError("lookback_hours out of range")
    if not ips:
        raise ValueError("no IPs")
    return _QUERY_TEMPLATE % (hours, _SEPARATOR.join(_listed(ip) for ip in ips))


def batches(ips: List[str], budget: int = QUERY_BUDGET, max_ips: int = MAX_BATCH_IPS) -> List[List[str]]:
    """``ips`` in order, cut into batches whose query text (any look-back) stays within ``budget``."""
    fixed = len(_QUERY_TEMPLATE % (720, ""))  # 720: the look-back with the most digits
    out: List[List[str]] = []
    batch: List[str] = []
    length = fixed
    for ip in ips:
        cost = len(_listed(ip)) + (len(_SEPARATOR) if batch else 0)
        if batch and (length + cost > budget or len(batch) >= max_ips):
            out.append(batch)
            batch, length = [], fixed
            cost = len(_listed(ip))
        if fixed + cost > budget:
            raise ValueError("query budget too small for one IP")
        batch.append(ip)
        length += cost
    if batch:
        out.append(batch)
    return out


def _timestamp_key(text: Optional[str]):
    """A sortable key for Graph's ISO 8601 times (up to 7 fractional digits, or none)."""
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,7}))?Z?$", text or "")
    if match is None:
        return (text or "", 0)
    return (match.group(1), int((match.group(2) or "").ljust(7, "0")))


class HuntingClient:
    def __init__(self, graph_url: str, tokens, session, timeout: float = QUERY_TIMEOUT, clock=time.time):
        self.url = graph_url.rstrip("/") + "/v1.0/security/runHuntingQuery"
        self.tokens = tokens
        self.session = session
        self.timeout = timeout
        self.clock = clock
        self.calls = 0
        self.throttled = 0  # quota answers: 429s and 400 "exceeded the allowed limits"

    def query(self, ips: List[str], lookback_hours: int) -> Union[Dict[str, IpStats], QuotaExceeded, HuntingFailure]:
        return self._run(ips, build_query(ips, lookback_hours), lookback_hours)

    def _run(self, ips: List[str], query: str, lookback_hours: int):
        """Graph's answer to ``query``, once more with a fresh token after a 401, read by ``_parse``."""
        body = {"Query": query, "Timespan": "PT%dH" % int(lookback_hours)}

        def attempt(token):
            response = self._post(body, token)
            return not isinstance(response, HuntingFailure) and response.status_code == 401, response

        response = with_fresh_token(self.tokens, attempt)
        if isinstance(response, HuntingFailure):
            return response
        return self._interpret(ips, response)

    def batches(self, ips: List[str], budget: int = QUERY_BUDGET, max_ips: int = MAX_BATCH_IPS) -> List[List[str]]:
        """``ips`` cut into the batches of one query each (see ``batches``)."""
        return batches(ips, budget, max_ips)

    def _post(self, body, token):
        self.calls += 1
        try:
            return self.session.post(
                self.url, json=body, timeout=self.timeout, allow_redirects=False,
                headers={"Authorization": "Bearer " + token, "Accept": "application/json",
                         "Content-Type": "application/json; charset=utf-8"},
            )
        except requests.exceptions.RequestException as error:
            # a timeout is not retried: a query that ran this long has spent its CPU, and would again
            reason = describe_failure(error, self.timeout)
            return HuntingFailure("hunting query " + reason if reason.startswith("timed out") else reason)

    def _interpret(self, ips, response):
        status = response.status_code
        if status == 200:
            return self._parse(ips, response)
        message = error_message(response)
        if status == 429 or (status == 400 and _QUOTA_MESSAGE.search(message)):
            self.throttled += 1
            header = response.headers.get("Retry-After")
            return QuotaExceeded(status, retry_after_seconds(header) if header is not None else None, message)
        if status == 401:
            raise AuthenticationError("Microsoft Graph rejected a fresh access token (401).")
        if status == 403:
            raise AuthorizationError(
                "Microsoft Graph refused the hunting query (403): the app registration needs the Microsoft "
                "Graph application permission ThreatHunting.Read.All with admin consent. %s" % message
            )
        if status == 400:
            return HuntingFailure("hunting query rejected (400): %s" % message[:120])
        return HuntingFailure("Graph API error %d" % status, retryable=500 <= status <= 599)

    @staticmethod
    def _document(response, validate):
        """The answer's JSON document, checked by ``validate``, or a HuntingFailure."""
        import jsonschema  # at the first answer to parse: slow to import, and only the service needs it

        try:
            document = response.json()
        except ValueError:
            return HuntingFailure("malformed JSON in the hunting answer")
        try:
            validate(document)
        except jsonschema.ValidationError as error:
            return HuntingFailure("unexpected hunting answer (%s)" % error.validator)
        return document

    def _parse(self, ips, response):
        document = self._document(response, _validate)
        if isinstance(document, HuntingFailure):
            return document
        now = self.clock()
        wanted = set(ips)
        answers: Dict[str, IpStats] = {}
        for row in document["results"]:
            ip = normalise_ip(row["RemoteIP"])
            if ip is None or ip not in wanted:
                continue
            count, first, last = row["DeviceCount"], row.get("FirstSeen") or None, row.get("LastSeen") or None
            previous = answers.get(ip)
            if previous is not None:
                # the same IP in two rows (written two ways, or repeated): the devices of each row may
                # overlap, so the larger count is the one that is surely right; the times widen
                count = max(count, previous.prevalence or 0)
                first = min((t for t in (first, previous.first_seen) if t), key=_timestamp_key, default=None)
                last = max((t for t in (last, previous.last_seen) if t), key=_timestamp_key, default=None)
            answers[ip] = IpStats(ip=ip, status=FOUND if count > 0 else NOT_SEEN, prevalence=count,
                                  first_seen=first, last_seen=last, source=SOURCE_HUNTING, fetched_at=now)
        for ip in ips:
            if ip not in answers:
                answers[ip] = IpStats(ip=ip, status=NOT_SEEN, prevalence=0, source=SOURCE_HUNTING, fetched_at=now)
        return answers
