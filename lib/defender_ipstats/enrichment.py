"""One search's enrichment, wired from its options, settings and account.

Builds the lookup core's collaborators (KV store cache, rate limiter, API fetcher), keeps
the search's figures, and queues the few messages a user should see (each at most once).
The splunklib adapter in ``command`` only feeds it chunks and passes the messages on.
"""

import time
from typing import List, Tuple

from .cache import KVStoreCache
from .clusterbudget import budget_for
from .fetcher import Fetcher, WaitAllowance
from .logs import redact
from .lookup import ChunkEnricher, Resolver
from .model import ERROR, OUTPUT_SUFFIXES, RATE_LIMITED

FETCH_WORKERS = 4


class SafeCache:
    """The KV store cache, or nothing: a failing KV store costs one warning, not the search."""

    def __init__(self, cache, warn, logger):
        self.cache = cache
        self.warn = warn
        self.logger = logger
        self.failed = False

    def _fail(self, what, error):
        self.failed = True
        self.logger.warning("KV store %s failed, continuing without the cache: %s", what, _describe(error))
        self.warn("The KV store cache is unavailable (%s); this search continues without it." % _describe(error))

    def get_many(self, ips):
        if self.failed:
            return {}
        try:
            return self.cache.get_many(ips)
        except Exception as error:  # any KV store trouble: carry on uncached
            self._fail("read", error)
            return {}

    def put_many(self, results):
        if self.failed:
            return
        try:
            self.cache.put_many(results)
        except Exception as error:
            self._fail("write", error)


class LazyFetcher:
    """Creates the HTTP session, msal apps and API clients only when an IP must be fetched."""

    def __init__(self, build):
        self._build = build
        self.fetcher = None  # the backends.BackendRouter, once built

    def fetch_many(self, ips):
        if self.fetcher is None:
            self.fetcher = self._build()
        return self.fetcher.fetch_many(ips)


class Enrichment:
    def __init__(self, options, settings, account, access, service, logger, sid: str = "",
                 should_stop=None):
        self.options = options
        self.settings = settings
        self.account = account
        self.logger = logger
        self.sid = sid
        self.should_stop = should_stop
        self.access = access  # sessions and token providers for the account (access.py)
        self.service = service
        self._messages: List[Tuple[str, str]] = []
        self._said = set()
        self.started = time.time()
        self.events = 0
        self.ip_status = {}  # distinct IP -> its latest status in this search
        cache = None
        if options.cache != "off":
            cache = SafeCache(
                KVStoreCache(service, account.name, options.lookback_hours, settings.cache_ttl,
                             settings.not_seen_ttl),
                self.warn, logger,
            )
        self.cache = cache
        self._limiter = None
        self.allowance = WaitAllowance(options.max_wait)
        self.lazy_fetcher = LazyFetcher(self._build_fetcher)
        self.tokens = self.graph_tokens = None
        self.client = self.hunting_client = None
        self.router = None
        self.fetchers = []
        self.resolver = Resolver(cache, self.lazy_fetcher, options.cache)
        self.enricher = ChunkEnricher(options.field, options.prefix, self.resolver.resolve,
                                      on_error=self._chunk_failed)

    @property
    def limiter(self):
        """The per-IP API budget shared by every search on the host (or search head cluster), opened on first need."""
        if self._limiter is None:
            self._limiter = budget_for("ipstats", self.account.tenant_id, self.account.client_id,
                                       [(self.settings.rate_per_minute, 60.0), (self.settings.rate_per_hour, 3600.0)],
                                       self.service, logger=self.logger, say=self.say)
        return self._limiter

    # -- messages ---------------------------------------------------------------------
    def say(self, level: str, text: str) -> None:
        if text not in self._said:
            self._said.add(text)
            self._messages.append((level, text))

    def warn(self, text: str) -> None:
        self.say("WARN", text)

    def take_messages(self) -> List[Tuple[str, str]]:
        messages, self._messages = self._messages, []
        return messages

    # -- work -------------------------------------------------------------------------
    def _build_fetcher(self):
        from .backends import BackendRouter
        from .client import DefenderClient
        from .hunting import HUNTING_PER_HOUR, HUNTING_PER_MINUTE, HuntingClient, HuntingFetcher

        account, options = self.account, self.options
        first = "graph" if options.backend == "hunting" else "api"  # the token the search needs first
        session = self.access.session(pool_size=FETCH_WORKERS, resource=first)
        per_ip = per_ip_no_wait = hunting = None
        if options.backend in ("ipstats", "auto"):
            self.tokens = self.access.tokens(account.effective_scope, session)
            self.client = DefenderClient(account.effective_api_url, _RedactingTokens(self.tokens), session,
                                         timeout=account.timeout)
            per_ip = Fetcher(self.client, self.limiter, options.lookback_hours, self.allowance,
                             workers=FETCH_WORKERS, should_stop=self.should_stop)
            per_ip_no_wait = Fetcher(self.client, self.limiter, options.lookback_hours, WaitAllowance(0),
                                     workers=FETCH_WORKERS, should_stop=self.should_stop,
                                     retry_allowance=self.allowance)
        if options.backend in ("hunting", "auto"):
            self.graph_tokens = self.access.tokens(account.graph_scope, session)
            self.hunting_client = HuntingClient(account.effective_graph_url, _RedactingTokens(self.graph_tokens),
                                                session)
            hunting_limiter = budget_for("hunting", account.tenant_id, account.client_id,
                                         [(HUNTING_PER_MINUTE, 60.0), (HUNTING_PER_HOUR, 3600.0)],
                                         self.service, logger=self.logger, say=self.say)
            hunting = HuntingFetcher(self.hunting_client, hunting_limiter, options.lookback_hours, self.allowance,
                                     should_stop=self.should_stop)
        self.router = BackendRouter(options.backend, self.say, per_ip=per_ip, per_ip_no_wait=per_ip_no_wait,
                                    hunting=hunting)
        self.fetchers = [f for f in (per_ip, per_ip_no_wait, hunting) if f is not None]
        return self.router

    def enrich(self, records: list, last: bool = False) -> list:
        """Enrich a chunk of records (dicts) in place: the splunklib path."""
        self.events += len(records)
        self._took(self.enricher.enrich(records), last)
        return records

    def enrich_values(self, values: list, last: bool = False) -> dict:
        """The output values of each of a chunk's field values (``ChunkEnricher.resolve_values``'s
        ``row_of``): the lean path, which writes them into the rows itself."""
        self.events += len(values)
        answers, row_of = self.enricher.resolve_values(values)
        self._took(answers, last)
        return row_of

    def _took(self, answers, last):
        for ip, stats in answers.items():  # per distinct IP, not per event: cheap
            self.ip_status[ip] = stats.status
        self._report_fetch_problems(answers)
        if last:
            self._report_rate_limited()

    def _report_fetch_problems(self, answers):
        if self.lazy_fetcher.fetcher is None:
            return
        for fetcher in self.fetchers:
            fatal = getattr(fetcher, "fatal", None)
            if fatal is not None and (self.options.backend != "auto" or fetcher is not self.router.hunting):
                self.say("ERROR", str(fatal))
            if getattr(fetcher, "stopped", False):
                self.warn("The search was cancelled or finalised: defenderipstats stopped calling the Defender API; "
                          "the events that were not looked up pass through with status error.")
            gave_up = getattr(fetcher, "gave_up", None)
            if gave_up:
                self.warn("The Defender API kept failing (server errors or timeouts, each retried): the remaining "
                          "IPs of this search were not sent (status error). See defenderipstats.log.")

    def _report_rate_limited(self):
        """One message for the whole search, on its last chunk: how many IPs, and when budget returns."""
        limited = sum(1 for status in self.ip_status.values() if status == RATE_LIMITED)
        if limited:
            returns_in = max([getattr(f, "budget_returns_in", 0) for f in self.fetchers] or [0])
            if self._limiter is not None:  # now, from the host's shared windows: other searches spend too
                returns_in = self._limiter.available_in()
            self.say("WARN", "The Defender API budget ran out: %d IPs were not enriched (status rate_limited); "
                     "budget returns in about %d s (at %s UTC). Run the search again then (cached answers are "
                     "reused), or raise maxwait." % (limited, max(1, round(returns_in)),
                                                     time.strftime("%H:%M:%S", time.gmtime(time.time() + returns_in))))

    def _chunk_failed(self, error):
        self.logger.exception("sid=%s enrichment of a chunk failed; its events pass through marked error", self.sid)
        self.warn("Some events could not be enriched (internal error: %s); they pass through with status error. "
                  "See defenderipstats.log." % type(error).__name__)

    def summary(self) -> dict:
        client, cache = self.client, self.cache
        return {
            "sid": self.sid,
            "account": self.account.name,
            "events": self.events,
            "distinct_ips": len(self.ip_status),
            "cache_hits": cache.cache.hits if cache is not None else 0,
            "api_calls": client.calls if client is not None else 0,
            "retries": client.retries if client is not None else 0,
            "throttled": sum(c.throttled for c in (client, self.hunting_client) if c is not None),
            "hunting_calls": self.hunting_client.calls if self.hunting_client is not None else 0,
            "token_requests": sum(t.requests for t in (self.tokens, self.graph_tokens) if t is not None),
            "waited_s": round(self.allowance.waited, 1),
            "errors": sum(1 for status in self.ip_status.values() if status == ERROR),
            "rate_limited": sum(1 for status in self.ip_status.values() if status == RATE_LIMITED),
            "stopped": int(any(getattr(f, "stopped", False) for f in self.fetchers)),
            "duration_s": round(time.time() - self.started, 3),
        }

    def metrics(self, summary: dict = None):
        """The summary's figures as job-inspector metrics: ``(name, (seconds, count, in, out))``.

        splunklib's ``write_metric`` takes SearchMetric tuples (elapsed seconds, invocations, input
        count, output count), which the job inspector lists under ``metric.<name>``. The command's
        own row carries its duration and events in/out; every other figure is its count, with the
        seconds where it has some (time waited for budget).
        """
        summary = summary if summary is not None else self.summary()
        figures = [("events", (summary["duration_s"], 1, summary["events"], summary["events"]))]
        for name in ("distinct_ips", "cache_hits", "api_calls", "retries", "throttled", "errors",
                     "rate_limited", "token_requests"):
            figures.append((name, (0.0, int(summary.get(name, 0)), 0, 0)))
        figures.append(("waited", (summary["waited_s"], 1 if summary["waited_s"] else 0, 0, 0)))
        return [("defenderipstats." + name, value) for name, value in figures]


class _RedactingTokens:
    """Registers every access token with the log filter before anyone can use it."""

    def __init__(self, tokens):
        self._tokens = tokens

    def token(self) -> str:
        token = self._tokens.token()
        redact(token)
        return token

    def invalidate(self, stale=None) -> None:
        self._tokens.invalidate(stale)


def _describe(error) -> str:
    status = getattr(error, "status", None)
    if status:
        return "splunkd answered %s" % status
    text = str(error).splitlines()[0] if str(error) else ""
    return ("%s: %s" % (type(error).__name__, text))[:120] if text else type(error).__name__


__all__ = ["Enrichment", "OUTPUT_SUFFIXES"]
