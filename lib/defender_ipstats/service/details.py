"""``defenderipstats/details``: one IP's devices and devices per day (``| defenderipdetails``).

POST ``account``, ``ip``, ``lookback_hours``, ``max_wait``. The service checks the caller may use the
account (``allowed_roles``, on every request), answers from its own collection while the answer is
younger than ``details_ttl`` (``splunk/details_store.py``: admins and the service only, so no caller
reads it around this check), else runs one hunting query within the same hunting budget as the
lookups (the account's registration, the caller's fair share, Graph's quota pauses).

The answer's ``status``:

- ``done``: ``ip``, ``account``, ``lookback_hours``, ``source`` (hunting|cache), ``portal`` (the
  account's Defender portal), ``ip_devices``, ``ip_first_seen``, ``ip_last_seen``, ``devices``,
  ``days``, ``fetched_at``;
- ``pending``: ask again after ``retry_in`` seconds (budget not free this moment, or the request's
  time is up; later also a hunting job still running);
- ``rate_limited``: ``error`` says why and when budget returns (``retry_in``), beyond the caller's
  ``max_wait``;
- ``error``: ``error`` says what failed (a missing Graph permission, a rejected query...).

Nothing but ``done`` answers is kept. Each request is bounded like a lookup request.
"""

import time

from ..core.clouds import portal_of
from ..core.errors import ConfigurationError
from ..core.lookup import normalise_ip
from ..core.model import PENDING, RATE_LIMITED
from ..core.settings import LOOKBACK_RANGE, parse_int
from ..splunk.details_store import DetailsStore
from ..splunk.kvcache import describe_failure
from ..splunk.rest import KVSTORE_TIMEOUT
from .budgets import QUOTA_STREAKS, caller_budget, hunting_limits, registration
from .context import RequestContext
from .lookup_params import _max_wait
from .lookups import REQUEST_LIMIT, account_for
from .usage import Usage

# One IP's query is small (its rows are one IP's events), so it still runs inside the request, bounded like
# a lookup request; a tenant where even that takes longer gets "pending" and asks again (the command loops).
DETAILS_TIMEOUT_CAP = 25


def details(ctx: RequestContext) -> dict:
    with Usage("details", ctx.user) as usage:
        settings, account = account_for(ctx, ctx.params.get("account", ""))
        usage.of_account(account.name)
        usage.backend = "hunting"
        params = ctx.params
        raw_ip = str(params.get("ip") or "").strip()
        ip = normalise_ip(raw_ip)
        if ip is None:
            raise ConfigurationError("ip must be an IPv4 or IPv6 address, not %r." % raw_ip[:64])
        hours = parse_int("lookback_hours", params.get("lookback_hours") or settings.lookback_hours,
                          *LOOKBACK_RANGE, what="a number of hours")
        max_wait = _max_wait(params.get("max_wait") or settings.max_wait)
        usage.ips = 1
        frame = {"account": account.name, "ip": ip, "lookback_hours": hours, "portal": portal_of(account.cloud)}
        store = _store(ctx)
        answer = _read(store, ctx, account.name, hours, ip, settings.details_ttl)
        if answer is not None:
            return dict(answer, status="done", source="cache", **frame)
        query = DetailsQuery(ctx, settings, account)
        try:
            outcome = query.run(ip, hours, max_wait)
        finally:
            usage.spent({"api_calls": 0, "hunting_calls": query.calls, "throttled": query.throttled}, 0)
        if outcome.get("status") == "done":
            if store is not None and settings.details_ttl > 0:
                try:
                    store.put(account.name, hours, ip, outcome["answer"])
                    usage.cache_writes = 1
                except Exception as error:  # the analyst still gets the answer; the next call asks again
                    ctx.logger.warning("could not keep the details of an IP: %s", describe_failure(error))
            return dict(outcome["answer"], status="done", source="hunting", **frame)
        usage.outcome = "rate_limited" if outcome["status"] in (PENDING, RATE_LIMITED) else "error"
        return dict(outcome, **frame)


def _store(ctx):
    try:
        return DetailsStore(ctx.system_service(timeout=KVSTORE_TIMEOUT))
    except Exception as error:
        ctx.logger.warning("the details collection is unavailable: %s", describe_failure(error))
        return None


def _read(store, ctx, account: str, hours: int, ip: str, ttl: int):
    if store is None or ttl <= 0:
        return None
    try:
        return store.get(account, hours, ip, ttl)
    except Exception as error:  # a KV store outage costs a query, not the answer
        ctx.logger.warning("could not read the details collection: %s", describe_failure(error))
        return None


class DetailsQuery:
    """One hunting query for one IP, through the lookups' budget objects (``service/budgets.py``: the
    registration's hunting budget, the caller's share in front of it, kept open per process)."""

    def __init__(self, ctx: RequestContext, settings, account, clock=time.monotonic):
        self.ctx = ctx
        self.settings = settings
        self.account = account
        self.clock = clock
        self.started = clock()
        self.client = None

    @property
    def calls(self) -> int:
        return self.client.calls if self.client is not None else 0

    @property
    def throttled(self) -> int:
        return self.client.throttled if self.client is not None else 0

    def run(self, ip: str, hours: int, max_wait: float) -> dict:
        # at the first query, as in lookups: an answer from the collection needs neither requests nor msal
        from ..core.gate import WaitAllowance
        from ..core.hunting_fetcher import HuntingFetcher
        from ..microsoft.graph_details import DetailsClient
        from ..microsoft.graph_hunting import QUERY_TIMEOUT
        from .profile import resolve_profile, session
        from .tokens import AccountTokens

        ctx, account = self.ctx, self.account
        timeout = min(QUERY_TIMEOUT, DETAILS_TIMEOUT_CAP)
        profile = resolve_profile(ctx.conf, ctx.credentials, account)
        http = session(account, profile, pool_size=1, timeout=timeout)
        tokens = AccountTokens(ctx.credentials, account, profile.credential, account.graph_scope, "graph", http,
                               logger=ctx.logger)
        self.client = DetailsClient(account.effective_graph_url, tokens, http, timeout=timeout)
        limiter = caller_budget(ctx, self.settings, account, "hunting", hunting_limits(self.settings))
        key = registration(account)
        fetcher = HuntingFetcher(self.client, limiter, hours, WaitAllowance(max_wait), split=lambda ips: [ips],
                                 deadline=self.started + REQUEST_LIMIT - timeout, may_wait=False,
                                 quota_streak=QUOTA_STREAKS.get(key, 0))
        result = fetcher.fetch_many([ip])[ip]
        QUOTA_STREAKS[key] = fetcher.quota_streak
        if fetcher.fatal is not None:
            return {"status": "error", "error": str(fetcher.fatal)}
        if isinstance(result, dict):
            return {"status": "done", "answer": result}
        if result.status == PENDING:
            return {"status": "pending", "retry_in": round(max(fetcher.retry_in, 1.0), 1)}
        if result.status == RATE_LIMITED:
            return {"status": "rate_limited", "error": result.error,
                    "retry_in": round(max(fetcher.budget_returns_in, 1.0), 1)}
        return {"status": "error", "error": result.error or "the hunting query failed"}
