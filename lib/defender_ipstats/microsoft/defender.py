"""The Defender for Endpoint per-IP statistics endpoint: GET /api/ips/{ip}/stats.

One call per canonical IP. Every answer becomes an ``IpStats`` (or ``Throttled`` for a 429),
so the caller decides about waiting; only a 403 is raised, since it concerns the whole search.
5xx, connection failures and timeouts are retried by the session (``http.BudgetedRetry``), a 401
once here with a fresh token; each further attempt is an API call, cleared first by the caller's
``retry_gate`` (wait within the allowance, take budget) and counted in ``calls``.
"""

import threading
import time
from typing import Callable, Optional, Union

import requests

from ..core.errors import AuthenticationError, AuthorizationError
from ..core.lookup import is_canonical_ip
from ..core.model import ERROR, FOUND, INVALID, NOT_SEEN, SOURCE_API, IpStats, rate_limited
from ..core.outcomes import Retired, Throttled
from .http import (
    LazyValidator,
    describe_failure,
    error_message,
    mount_api_retries,
    retry_after_seconds,
    with_fresh_token,
)

_TIMESTAMP = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$"

# What a 200 must look like before anything of it is used (or cached).
STATS_SCHEMA = {
    "type": "object",
    "required": ["organizationPrevalence"],
    "properties": {
        "ipAddress": {"type": ["string", "null"]},
        "organizationPrevalence": {"type": "integer", "minimum": 0},
        "orgFirstSeen": {"anyOf": [{"type": "null"}, {"type": "string", "pattern": _TIMESTAMP}]},
        "orgLastSeen": {"anyOf": [{"type": "null"}, {"type": "string", "pattern": _TIMESTAMP}]},
    },
}

_validate = LazyValidator(STATS_SCHEMA)


# The per-IP endpoint is part of the Defender for Endpoint API that Microsoft retires (MC1220762).
# A retired endpoint is recognised by 410, or by 404 on every one of the first calls of a search.
RETIRED_404_STREAK = 5


class DefenderClient:
    """Calls the statistics endpoint with a token from ``tokens`` (a TokenProvider)."""

    def __init__(self, api_url: str, tokens, session, timeout: float = 30, clock=time.time):
        self.api_url = api_url.rstrip("/")
        self.tokens = tokens
        self.session = session
        self.timeout = timeout
        self.clock = clock
        self.calls = 0  # attempts that went (or tried to go) to the API, retries included
        self.retries = 0
        self.throttled = 0
        self._count_lock = threading.Lock()
        self._call = threading.local()  # the retry gate of the call this thread is making

        mount_api_retries(session, self.api_url, self.admit_retry)
        self.answered_200 = 0
        self.answered_404 = 0
        self.answered_410 = 0

    @property
    def looks_retired(self) -> bool:
        """410 seen, or nothing but 404s so far: the endpoint itself is gone, not the IPs."""
        return self.answered_410 > 0 or (self.answered_200 == 0 and self.answered_404 >= RETIRED_404_STREAK)

    def url_for(self, ip: str) -> str:
        if not is_canonical_ip(ip):  # defence in depth: callers already normalised
            raise ValueError("not a canonical IP")
        return "%s/api/ips/%s/stats" % (self.api_url, ip)

    def ip_stats(self, ip: str, lookback_hours: int,
                 retry_gate: Optional[Callable[[float], bool]] = None) -> Union[IpStats, Throttled, Retired]:
        """``retry_gate(delay)`` clears each further attempt (see the module doc); None: always, after ``delay``."""
        url = self.url_for(ip)
        self._call.gate = retry_gate
        refused = rate_limited(ip, "API budget used up before the retry with a fresh token")

        def attempt(token):
            response = self._get(ip, url, lookback_hours, token)
            if isinstance(response, IpStats):
                return False, response
            return response.status_code == 401, response

        response = with_fresh_token(self.tokens, attempt,
                                    instead_of_retry=lambda: None if self._cleared(0.0) else refused)
        if isinstance(response, IpStats):
            return response
        return self._interpret(ip, response)

    def _cleared(self, delay: float) -> bool:
        gate = getattr(self._call, "gate", None)
        if gate is None:
            if delay > 0:
                time.sleep(delay)
            return True
        return gate(delay)

    def admit_retry(self, delay: float) -> bool:
        """The session asks before each retry of a 5xx, timeout or broken connection."""
        if not self._cleared(delay):
            return False
        with self._count_lock:
            self.calls += 1
            self.retries += 1
        return True

    def _get(self, ip, url, lookback_hours, token):
        with self._count_lock:
            self.calls += 1
        try:
            return self.session.get(
                url,
                params={"lookBackHours": str(int(lookback_hours))},
                headers={"Authorization": "Bearer " + token, "Accept": "application/json"},
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.exceptions.RequestException as error:
            return _error(ip, describe_failure(error, self.timeout))

    def _interpret(self, ip: str, response) -> Union[IpStats, Throttled, Retired]:
        status = response.status_code
        if status == 200:
            self.answered_200 += 1
            return self._parse_ok(ip, response)
        if status == 410:
            self.answered_410 += 1
            return Retired(status, error_message(response))
        if status == 404:
            self.answered_404 += 1
            return IpStats(ip=ip, status=NOT_SEEN, prevalence=0, source=SOURCE_API, fetched_at=self.clock())
        if status == 400:
            return IpStats(ip=ip, status=INVALID, source=SOURCE_API, error="")
        if status == 429:
            self.throttled += 1
            return Throttled(retry_after_seconds(response.headers.get("Retry-After")), error_message(response))
        if status == 401:
            raise AuthenticationError(
                "Defender rejected a fresh access token (401): check that the app registration "
                "belongs to this tenant and the API URL matches its cloud."
            )
        if status == 403:
            raise AuthorizationError(
                "Defender refused access (403): the app registration needs the WindowsDefenderATP "
                "application permission Ip.Read.All with admin consent. %s" % error_message(response)
            )
        if 500 <= status < 600:
            return IpStats(ip=ip, status=ERROR, source=SOURCE_API, error="Defender API error %d" % status)
        return IpStats(ip=ip, status=ERROR, source=SOURCE_API, error="unexpected HTTP %d" % status)

    def _parse_ok(self, ip, response) -> IpStats:
        import jsonschema  # at the first answer to parse: slow to import, and only the service needs it

        try:
            document = response.json()
        except ValueError:
            return IpStats(ip=ip, status=ERROR, source=SOURCE_API, error="malformed JSON in the API answer")
        try:
            _validate(document)
        except jsonschema.ValidationError as error:
            where = "/".join(str(part) for part in error.absolute_path) or "body"
            return IpStats(ip=ip, status=ERROR, source=SOURCE_API,
                           error="unexpected API answer (%s: %s)" % (where, error.validator))
        prevalence = document["organizationPrevalence"]
        return IpStats(
            ip=ip,
            status=FOUND if prevalence > 0 else NOT_SEEN,
            prevalence=prevalence,
            first_seen=document.get("orgFirstSeen") or None,
            last_seen=document.get("orgLastSeen") or None,
            source=SOURCE_API,
            fetched_at=self.clock(),
        )


def _error(ip, reason):
    return IpStats(ip=ip, status=ERROR, source=SOURCE_API, error=reason)

