"""Advanced hunting through Microsoft Graph: many IPs per call (backend=hunting).

``POST {graph}/v1.0/security/runHuntingQuery`` with a KQL query over ``DeviceNetworkEvents``
that counts, per remote IP of a batch, the distinct devices that connected to it and the first
and last time, within the look-back. It approximates the per-IP statistics endpoint (what
counts as a connection may differ); IPs absent from the result were not seen.

The query text is built only from canonical IPs (checked again here) and integers: no field
value ever reaches it.
"""

import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Union

from .client import LazyValidator, Throttled, error_message, is_canonical_ip, retry_after_seconds
from .errors import AuthenticationError, AuthorizationError, DefenderIpStatsError
from .model import ERROR, FOUND, NOT_SEEN, SOURCE_HUNTING, IpStats, failed, pending, rate_limited

# 2,500 IPs make a query of under 100 kB (an IPv4 address is listed in two forms) and at most
# 2,500 result rows: far inside the 100,000-row limit, and light on the per-query CPU quota.
# A chunk of events needs one call per 2,500 of its cold IPs.
BATCH_SIZE = 2500
HUNTING_PER_MINUTE = 45
HUNTING_PER_HOUR = 1500
QUERY_TIMEOUT = 200  # seconds: the service allows a single query to run about that long

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


def build_query(ips: List[str], lookback_hours: int) -> str:
    """The KQL for one batch. Devices are counted exactly (two summarize steps, not dcount)."""
    hours = int(lookback_hours)
    if not 1 <= hours <= 720:
        raise ValueError("lookback_hours out of range")
    listed = []
    for ip in ips:
        if not is_canonical_ip(ip):
            raise ValueError("not a canonical IP")
        listed.append('"%s"' % ip)
        if ":" not in ip:  # DeviceNetworkEvents may record an IPv4 peer as IPv4-mapped IPv6
            listed.append('"::ffff:%s"' % ip)
    return (
        "DeviceNetworkEvents"
        " | where Timestamp > ago(%dh)"
        " | where RemoteIP in~ (%s)"
        ' | extend IP = iff(RemoteIP startswith "::ffff:", substring(RemoteIP, 7), RemoteIP)'
        " | summarize FirstSeen = min(Timestamp), LastSeen = max(Timestamp) by IP, DeviceId"
        " | summarize DeviceCount = count(), FirstSeen = min(FirstSeen), LastSeen = max(LastSeen) by RemoteIP = IP"
        % (hours, ", ".join(listed))
    )


@dataclass(frozen=True)
class HuntingFailure:
    """A failed query: every IP of the batch gets ``reason``."""

    reason: str


class HuntingClient:
    def __init__(self, graph_url: str, tokens, session, timeout: float = QUERY_TIMEOUT, clock=time.time):
        self.url = graph_url.rstrip("/") + "/v1.0/security/runHuntingQuery"
        self.tokens = tokens
        self.session = session
        self.timeout = timeout
        self.clock = clock
        self.calls = 0
        self.throttled = 0

    def query(self, ips: List[str], lookback_hours: int) -> Union[Dict[str, IpStats], Throttled, HuntingFailure]:
        body = {"Query": build_query(ips, lookback_hours), "Timespan": "PT%dH" % int(lookback_hours)}
        for attempt in (1, 2):
            token = self.tokens.token()
            response = self._post(body, token)
            if isinstance(response, HuntingFailure):
                return response
            if response.status_code == 401 and attempt == 1:
                self.tokens.invalidate(token)
                continue
            return self._interpret(ips, response)
        raise AssertionError("unreachable")

    def _post(self, body, token):
        import requests

        self.calls += 1
        try:
            return self.session.post(
                self.url, json=body, timeout=self.timeout, allow_redirects=False,
                headers={"Authorization": "Bearer " + token, "Accept": "application/json",
                         "Content-Type": "application/json; charset=utf-8"},
            )
        except requests.exceptions.ProxyError as error:
            from .transport import describe_proxy_error

            return HuntingFailure(describe_proxy_error(error))
        except requests.exceptions.SSLError:
            return HuntingFailure("TLS certificate verification failed")
        except requests.exceptions.Timeout:
            return HuntingFailure("hunting query timed out")
        except requests.exceptions.ConnectionError:
            return HuntingFailure("connection failed")
        except requests.exceptions.RequestException as error:
            return HuntingFailure("request failed (%s)" % type(error).__name__)

    def _interpret(self, ips, response):
        status = response.status_code
        if status == 200:
            return self._parse(ips, response)
        if status == 429:
            self.throttled += 1
            return Throttled(retry_after_seconds(response.headers.get("Retry-After")), error_message(response))
        if status == 401:
            raise AuthenticationError("Microsoft Graph rejected a fresh access token (401).")
        if status == 403:
            raise AuthorizationError(
                "Microsoft Graph refused the hunting query (403): the app registration needs the Microsoft "
                "Graph application permission ThreatHunting.Read.All with admin consent. %s" % error_message(response)
            )
        if status == 400:
            return HuntingFailure("hunting query rejected (400): %s" % error_message(response)[:120])
        return HuntingFailure("Graph API error %d" % status)

    def _parse(self, ips, response):
        import jsonschema

        try:
            document = response.json()
        except ValueError:
            return HuntingFailure("malformed JSON in the hunting answer")
        try:
            _validate(document)
        except jsonschema.ValidationError as error:
            return HuntingFailure("unexpected hunting answer (%s)" % error.validator)
        from .lookup import normalise_ip

        now = self.clock()
        wanted = set(ips)
        answers: Dict[str, IpStats] = {}
        for row in document["results"]:
            ip = normalise_ip(row["RemoteIP"])
            if ip is None or ip not in wanted:
                continue
            count = row["DeviceCount"]
            previous = answers.get(ip)
            if previous is not None:  # the same IP written two ways: keep the larger count
                count = max(count, previous.prevalence or 0)
            answers[ip] = IpStats(ip=ip, status=FOUND if count > 0 else NOT_SEEN, prevalence=count,
                                  first_seen=row.get("FirstSeen") or None, last_seen=row.get("LastSeen") or None,
                                  source=SOURCE_HUNTING, fetched_at=now)
        for ip in ips:
            if ip not in answers:
                answers[ip] = IpStats(ip=ip, status=NOT_SEEN, prevalence=0, source=SOURCE_HUNTING, fetched_at=now)
        return answers


class HuntingFetcher:
    """Answers many IPs with few queries, within the hunting budget and the wait allowance."""

    def __init__(self, client: HuntingClient, limiter, lookback_hours: int, allowance, batch_size: int = BATCH_SIZE,
                 sleep=time.sleep, clock=time.monotonic, should_stop=None, deadline=None, may_wait=True):
        self.client = client
        self.limiter = limiter
        self.lookback_hours = lookback_hours
        self.allowance = allowance
        self.batch_size = batch_size
        self.sleep = sleep
        self.clock = clock
        self.should_stop = should_stop
        self.deadline = deadline  # as for fetcher.Fetcher: no query starts past it
        self.may_wait = may_wait  # False: budget not free now means pending, not a wait here
        self.out_of_time = False
        self.retry_in = 0.0
        self.stopped = False
        self.fatal: Optional[DefenderIpStatsError] = None
        self.rate_limited = 0
        self.budget_returns_in = 0.0

    def fetch_many(self, ips: List[str]) -> Dict[str, IpStats]:
        answers: Dict[str, IpStats] = {}
        for start in range(0, len(ips), self.batch_size):
            batch = ips[start:start + self.batch_size]
            answers.update(self._fetch_batch(batch))
        return answers

    def _fetch_batch(self, batch):
        throttles = 0
        while True:
            if self.fatal is not None:
                return {ip: failed(ip, "hunting unavailable", SOURCE_HUNTING) for ip in batch}
            if self.stopped or (self.should_stop is not None and self.should_stop()):
                from .fetcher import STOPPED_REASON

                self.stopped = True
                return {ip: failed(ip, STOPPED_REASON, SOURCE_HUNTING) for ip in batch}
            if self.out_of_time or (self.deadline is not None and self.clock() > self.deadline):
                self.out_of_time = True
                return {ip: pending(ip) for ip in batch}
            if not self._acquire():
                if self.out_of_time:
                    return {ip: pending(ip) for ip in batch}
                self.rate_limited += len(batch)
                reason = "hunting budget used up; it returns in about %d s" % max(1, round(self.budget_returns_in))
                return {ip: rate_limited(ip, reason, SOURCE_HUNTING) for ip in batch}
            try:
                answer = self.client.query(batch, self.lookback_hours)
            except DefenderIpStatsError as error:
                self.fatal = error
                continue
            finally:
                self.limiter.completed()  # the query counts from when it surely reached Graph
            if isinstance(answer, Throttled):
                throttles += 1
                self.limiter.pause_for(answer.retry_after)
                if throttles > 3:
                    self.rate_limited += len(batch)
                    return {ip: rate_limited(ip, "Graph answered 429 repeatedly", SOURCE_HUNTING) for ip in batch}
                continue
            if isinstance(answer, HuntingFailure):
                return {ip: IpStats(ip=ip, status=ERROR, source=SOURCE_HUNTING, error=answer.reason) for ip in batch}
            return answer

    def _acquire(self) -> bool:
        while True:
            wait = self.limiter.try_acquire()
            if wait <= 0:
                return True
            if wait > self.allowance.remaining:
                self.budget_returns_in = max(self.budget_returns_in, wait)
                return False
            if not self.may_wait:
                self.retry_in = wait
                self.out_of_time = True
                return False
            started = self.clock()
            self.sleep(min(wait, 1.0))
            self.allowance.spend(self.clock() - started)
