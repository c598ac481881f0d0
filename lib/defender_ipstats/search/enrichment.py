"""One search's enrichment, wired from its options and settings: the search process's side.

Warm answers come from the KV store cache, read with the searching user's session (read-only: the
search never writes it); cold IPs go to the app's privileged service (``search.service_client``),
which spends the budget, calls Microsoft and writes the cache. This module keeps the search's
figures and queues the few messages a user should see (each at most once); the splunklib adapter
in ``command`` only feeds it chunks and passes the messages on.
"""

import time
from typing import List, Tuple

from ..core.gate import WaitAllowance
from ..core.lookup import ChunkEnricher, Resolver
from ..core.model import ERROR, OUTPUT_SUFFIXES, RATE_LIMITED
from ..core.sids import is_sid
from ..splunk.kvcache import KVStoreCache, SafeCache
from .memo import SearchMemo
from .service_client import ServiceLookups


class Enrichment:
    def __init__(self, options, settings, client, kv_service, logger, sid: str = "", should_stop=None,
                 restricted: bool = False):
        """``client``: a ServiceClient (the privileged service, with the user's session); ``kv_service``:
        a splunklib Service for reading the cache (a short timeout: a slow KV store costs a warning).
        ``restricted``: the account has allowed_roles, so its cached answers are the service's to read and
        hand out: every IP goes to the service, which answers the warm ones from that cache."""
        self.options = options
        self.settings = settings
        self.logger = logger
        self.sid = sid
        self._messages: List[Tuple[str, str]] = []
        self._said = set()
        self.started = time.time()
        self.events = 0
        self.ip_status = {}  # distinct IP -> its latest status in this search
        cache = None
        if options.cache == "use" and not restricted:
            cache = SafeCache(KVStoreCache(kv_service, options.account, options.lookback_hours, settings.cache_ttl,
                                           settings.not_seen_ttl, backend=options.backend), self.warn, logger)
        self.cache = cache
        self.allowance = WaitAllowance(options.max_wait)
        self.lookups = ServiceLookups(client, options.account, options, self.allowance, self.say,
                                      should_stop=should_stop, sid=sid, logger=logger)
        self.resolver = Resolver(cache, self.lookups, options.cache, store=False)
        # what this search already has: a later chunk reuses it, whatever the cache mode (search.memo)
        self.memo = SearchMemo(self.resolver.resolve)
        self.enricher = ChunkEnricher(options.field, options.prefix, self.memo.resolve,
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
        if self.lookups.stopped:
            self.warn("The search was cancelled or finalised: defenderipstats stopped calling the Defender API; "
                      "the events that were not looked up pass through with status error.")
        if last:
            self._report_rate_limited()

    def _report_rate_limited(self):
        """One message for the whole search, on its last chunk: how many IPs, and when budget returns."""
        limited = sum(1 for status in self.ip_status.values() if status == RATE_LIMITED)
        if limited:
            returns_in = self.lookups.budget_returns_in
            share = self.lookups.share
            spent = ("Your share of the Defender API budget (user_share_percent = %s %% of each hour's limit, so that "
                     "other users keep the rest) is used up" % share.get("percent")) if share else \
                "The Defender API budget ran out"
            self.say("WARN", spent + ": %d IPs were not enriched (status rate_limited); "
                     "budget returns in about %d s (at %s UTC). Run the search again then (cached answers are "
                     "reused), or raise maxwait." % (limited, max(1, round(returns_in)),
                                                     time.strftime("%H:%M:%S", time.gmtime(time.time() + returns_in))))

    def _chunk_failed(self, error):
        self.logger.exception("sid=%s enrichment of a chunk failed; its events pass through marked error", self.sid)
        self.warn("Some events could not be enriched (internal error: %s); they pass through with status error. "
                  "See defenderipstats.log." % type(error).__name__)

    def chunk_failed(self, error) -> None:
        """A chunk's enrichment failed outside the lookups: logged, and one warning for the search."""
        self.logger.exception("sid=%s chunk failed", self.sid)
        self.warn("Some events could not be enriched (internal error: %s)." % type(error).__name__)

    def chunk_report(self, finished: bool):
        """This chunk's messages, and on the last chunk the search's figures (logged, and as metrics)."""
        messages = self.take_messages()
        metrics = []
        if finished:
            summary = self.summary()
            self.logger.info(" ".join("%s=%s" % item for item in summary.items()))
            metrics = self.metrics(summary)
        return messages, metrics

    def summary(self) -> dict:
        metrics, cache = self.lookups.metrics, self.cache
        return {
            "sid": self.sid if is_sid(self.sid) else "-",  # a job's id can be chosen over REST: only Splunk's form
            "account": self.options.account,
            "backend": self.options.backend,
            "events": self.events,
            "distinct_ips": len(self.ip_status),
            "cache_hits": (cache.hits if cache is not None else 0) + metrics["cache_hits"],
            "reused": self.memo.reused,
            "api_calls": metrics["api_calls"],
            "retries": metrics["retries"],
            "throttled": metrics["throttled"],
            "hunting_calls": metrics["hunting_calls"],
            "token_requests": metrics["token_requests"],
            "service_requests": self.lookups.requests,
            "waited_s": round(self.allowance.waited, 1),
            "errors": sum(1 for status in self.ip_status.values() if status == ERROR),
            "rate_limited": sum(1 for status in self.ip_status.values() if status == RATE_LIMITED),
            "stopped": int(self.lookups.stopped),
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
                     "rate_limited", "token_requests", "hunting_calls"):
            figures.append((name, (0.0, int(summary.get(name, 0)), 0, 0)))
        figures.append(("waited", (summary["waited_s"], 1 if summary["waited_s"] else 0, 0, 0)))
        return [("defenderipstats." + name, value) for name, value in figures]


__all__ = ["Enrichment", "OUTPUT_SUFFIXES"]
