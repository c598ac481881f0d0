"""One search's enrichment, wired from its options, settings and account.

Builds the lookup core's collaborators (KV store cache, rate limiter, API fetcher), keeps
the search's figures, and queues the few messages a user should see (each at most once).
The splunklib adapter in ``command`` only feeds it chunks and passes the messages on.
"""

import time
from typing import List, Optional, Tuple

from .cache import KVStoreCache
from .fetcher import Fetcher, WaitAllowance
from .logs import redact
from .lookup import ChunkEnricher, Resolver
from .model import ERROR, OUTPUT_SUFFIXES, RATE_LIMITED
from .ratelimit import SlidingWindowLimiter

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
    """Creates the HTTP session, msal app and API client only when an IP must be fetched."""

    def __init__(self, build):
        self._build = build
        self.fetcher: Optional[Fetcher] = None

    def fetch_many(self, ips):
        if self.fetcher is None:
            self.fetcher = self._build()
        return self.fetcher.fetch_many(ips)


class Enrichment:
    def __init__(self, options, settings, account, credential, service, logger, sid: str = "",
                 should_stop=None):
        self.options = options
        self.settings = settings
        self.account = account
        self.logger = logger
        self.sid = sid
        self.should_stop = should_stop
        self._credential = credential
        redact(credential)
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
        self.limiter = SlidingWindowLimiter([(settings.rate_per_minute, 60.0), (settings.rate_per_hour, 3600.0)])
        self.allowance = WaitAllowance(options.max_wait)
        self.lazy_fetcher = LazyFetcher(self._build_fetcher)
        self.tokens = None
        self.client = None
        self.resolver = Resolver(cache, self.lazy_fetcher, options.cache)
        self.enricher = ChunkEnricher(options.field, options.prefix, self.resolver.resolve,
                                      on_error=self._chunk_failed)

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
    def _build_fetcher(self) -> Fetcher:
        from .auth import TokenProvider
        from .client import DefenderClient
        from .transport import AppSession

        account = self.account
        proxies = {"https": account.proxy_url} if account.proxy_url else None
        session = AppSession(verify=account.verify, timeout=account.timeout, proxies=proxies,
                             pool_size=FETCH_WORKERS)
        self.tokens = TokenProvider(account.client_id, self._credential, account.effective_authority,
                                    account.effective_scope, http_client=session)
        self.client = DefenderClient(account.effective_api_url, _RedactingTokens(self.tokens), session,
                                     timeout=account.timeout)
        return Fetcher(self.client, self.limiter, self.options.lookback_hours, self.allowance,
                       workers=FETCH_WORKERS, should_stop=self.should_stop)

    def enrich(self, records: list) -> list:
        self.events += len(records)
        answers = self.enricher.enrich(records)
        for ip, stats in answers.items():  # per distinct IP, not per event: cheap
            self.ip_status[ip] = stats.status
        self._report_fetch_problems()
        return records

    def _report_fetch_problems(self):
        fetcher = self.lazy_fetcher.fetcher
        if fetcher is None:
            return
        if fetcher.fatal is not None:
            self.say("ERROR", str(fetcher.fatal))
        if fetcher.rate_limited:
            self.say("WARN", "The Defender API budget (%d calls a minute, %d an hour) ran out: some IPs were not "
                     "enriched (status rate_limited). Budget returns in about %d s; run the search again then, "
                     "or raise maxwait." % (self.settings.rate_per_minute, self.settings.rate_per_hour,
                                           max(1, round(fetcher.budget_returns_in))))

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
            "throttled": client.throttled if client is not None else 0,
            "token_requests": self.tokens.requests if self.tokens is not None else 0,
            "waited_s": round(self.allowance.waited, 1),
            "errors": sum(1 for status in self.ip_status.values() if status == ERROR),
            "rate_limited": sum(1 for status in self.ip_status.values() if status == RATE_LIMITED),
            "duration_s": round(time.time() - self.started, 3),
        }


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
