"""The service's one countable line per request: who asked, on which account, and what it spent.

The dashboard adds these lines up, and props.conf extracts their fields with one anchored pattern
(``KV_MODE = none``), so nothing a caller sends may shape them: the user is splunkd's name for the
caller's session (quoted, escaped), the account and backend are validated names, the figures are the
service's own counts, and the ``sid`` is taken only as Splunk forms one (a request with any other ``sid``
is refused before it costs anything)::

    ... INFO pid=42 defender_ipstats.usage - usage request=lookup user="alice" account=contoso
        backend=ipstats ips=3 api_calls=3 hunting_calls=0 throttled=0 cache_writes=3 outcome=ok sid=1733550000.42
"""

import logging

from ..core.accounts import ACCOUNT_NAME
from ..core.errors import ConfigurationError, DefenderIpStatsError
from ..core.sids import is_sid

USAGE_LOGGER = "defender_ipstats.usage"


def check_sid(value) -> str:
    """The caller's ``sid``, or "" when none came; anything Splunk would not form is refused."""
    text = str(value or "")
    if text and not is_sid(text):
        raise ConfigurationError("sid must be a search id as Splunk forms it (letters, digits, _ . @ -; at most "
                                 "200 characters).")
    return text


def quoted(text: str) -> str:
    return '"%s"' % str(text).replace("\\", "\\\\").replace('"', '\\"')


class Usage:
    """What one request spent; ``log`` writes its line once, whatever the outcome."""

    def __init__(self, request: str, user: str):
        self.request = request
        self.user = user
        self.account = self.backend = "-"
        self.sid = ""
        self.ips = self.api_calls = self.hunting_calls = self.throttled = self.cache_writes = 0
        self.outcome = "ok"

    def of_account(self, name: str) -> None:
        self.account = name if ACCOUNT_NAME.match(str(name or "")) else "-"

    def spent(self, metrics: dict, cache_writes: int) -> None:
        self.api_calls, self.hunting_calls = int(metrics["api_calls"]), int(metrics["hunting_calls"])
        self.throttled, self.cache_writes = int(metrics["throttled"]), int(cache_writes)

    def failed(self, error: Exception) -> None:
        self.outcome = "refused" if isinstance(error, DefenderIpStatsError) else "error"

    def __enter__(self) -> "Usage":
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        if error is not None:
            self.failed(error)
        self.log()
        return False  # the failure goes on to the router, which answers it

    def log(self) -> None:
        logger = logging.getLogger(USAGE_LOGGER)
        logger.setLevel(logging.INFO)  # counted whatever log_level says: the dashboard adds these lines up
        logger.info(
            "usage request=%s user=%s account=%s backend=%s ips=%d api_calls=%d hunting_calls=%d throttled=%d "
            "cache_writes=%d outcome=%s sid=%s", self.request, quoted(self.user), self.account, self.backend,
            self.ips, self.api_calls, self.hunting_calls, self.throttled, self.cache_writes, self.outcome,
            self.sid or "-")
