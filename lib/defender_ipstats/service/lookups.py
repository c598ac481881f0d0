"""``defenderipstats/lookup``: canonical IPs in, statistics out, for the searches (and alert actions).

GET resolves the account a search asks for (``account``, else the default one), checks the caller may use
it (``allowed_roles``) and answers with it and the command's settings: the command's getinfo needs no
other request. POST looks IPs up: from the cache (``cache=use``), then from Defender or Graph within the
host's shared budget, and writes what it learnt to the cache with the system session.

Each request is bounded (at most ~28 s): no call starts after REQUEST_WORK_SECONDS, each call has a
short timeout, and the service never waits for budget itself. IPs it could not start are answered
``pending`` with ``retry_in`` (when budget returns); the search waits in its own process, within its
``maxwait``, and asks again. Nothing here is kept between requests but what splunkd keeps (the cache,
the budget's state file, the stored token): any handler process may answer any request.

Routing memory of ``auto`` that spans a search (the per-IP endpoint answered as retired, hunting is not
permitted, how many 200s and 404s the per-IP endpoint gave) travels with the requests in ``state``.
"""

import time
from dataclasses import replace
from typing import Dict, List

from ..core.errors import DefenderIpStatsError
from ..core.fairshare import FairShareLimiter
from ..core.lookup import Resolver
from ..core.model import PENDING, RATE_LIMITED, IpStats
from ..splunk import published
from ..splunk.kvcache import KVStoreCache, SafeCache, collection_for, describe_failure
from ..splunk.rest import KVSTORE_TIMEOUT
from .budgets import QUOTA_STREAKS, caller_budget, hunting_limits, per_ip_limits, registration
from .context import RequestContext
from .lookup_params import LookupParams
from .restricted import ensure_apart
from .usage import Usage

REQUEST_WORK_SECONDS = 20.0  # no per-IP call starts later than this into a request
CALL_TIMEOUT_CAP = 8  # seconds per Defender call here, whatever the account's timeout says
REQUEST_LIMIT = 28.0
FETCH_WORKERS = 4




def settings_answer(settings) -> dict:
    return {key: str(value) for key, value in settings.__dict__.items()}


def account_for(ctx: RequestContext, requested: str):
    """(settings, account) for the caller, or a readable error; errors list other accounts to admins only.

    In the settings returned, ``default_account`` names the account a search without ``account=``
    gets (empty when that is ambiguous), whatever the .conf says (empty: the one configured account).
    """
    settings = ctx.conf.settings()
    directory = ctx.conf.account_directory(ctx.logger)
    account = directory.resolve(requested, settings.default_account, list_names=ctx.caller.is_admin,
                                roles=ctx.caller.roles)  # NotAllowed (a 403) is told to admins only
    try:
        default = account.name if not requested.strip() else directory.resolve("", settings.default_account).name
    except DefenderIpStatsError:
        default = ""
    return replace(settings, default_account=default), account


def describe(ctx: RequestContext) -> dict:
    """The account and the settings; ``restricted``: only the service may read the account's cached
    answers (its ``allowed_roles``), so the search sends every IP here instead of reading the cache."""
    with Usage("describe", ctx.user) as usage:
        settings, account = account_for(ctx, ctx.params.get("account", ""))
        usage.of_account(account.name)
        return {"account": account.name, "settings": settings_answer(settings),
                "restricted": int(account.restricted)}


class PublishingCache:
    """The cache, and next to every write the published lookup (``defenderipstats``) when the answers
    are the default account's for the default look-back. Publishing never fails a lookup."""

    def __init__(self, cache, service, account, lookback_hours: int, settings, logger):
        self.cache = cache
        self.service = service
        self.account = account  # an Account: the answers of a restricted one are never published
        self.writes = 0  # answers written, for the request's usage line
        self.lookback_hours = lookback_hours
        self.settings = settings
        self.logger = logger

    @property
    def hits(self) -> int:
        return self.cache.hits

    def get_many(self, ips):
        return self.cache.get_many(ips)

    def put_many(self, results):
        results = list(results)
        self.cache.put_many(results)
        self.writes += len(results)
        if self.account.restricted:
            return
        try:
            published.publish(self.service, results, self.account.name, self.lookback_hours, self.settings)
        except Exception as error:  # the lookup still answers; the hourly rebuild catches up
            self.logger.warning("could not publish %d answers to the lookup defenderipstats: %s", len(results),
                                describe_failure(error))


class Messages:
    def __init__(self):
        self.items: List[List[str]] = []

    def say(self, level: str, text: str) -> None:
        if [level, text] not in self.items:
            self.items.append([level, text])

    def warn(self, text: str) -> None:
        self.say("WARN", text)


def lookup(ctx: RequestContext) -> dict:
    """The lookups of one request, and its one usage line (``service/usage.py``), whatever the outcome."""
    with Usage("lookup", ctx.user) as usage:
        settings, account = account_for(ctx, ctx.params.get("account", ""))
        usage.of_account(account.name)
        params = LookupParams.parse(ctx.params, settings)
        usage.backend, usage.sid, usage.ips = params.backend, params.sid, len(params.ips)
        job = LookupJob(ctx, settings, account, params)
        try:
            answer = job.run()
        finally:  # what the job spent counts, whether it answered or failed
            usage.spent(job.metrics(job.cache), job.cache.writes if job.cache is not None else 0)
        if answer["pending"] or any(r["status"] == RATE_LIMITED for r in answer["results"].values()):
            usage.outcome = "rate_limited"
        return answer


class LookupJob:
    def __init__(self, ctx: RequestContext, settings, account, params: LookupParams, clock=time.monotonic):
        self.ctx = ctx
        self.settings = settings
        self.account = account
        self.params = params
        self.clock = clock
        self.started = clock()
        self.messages = Messages()
        self.router = None
        self.client = self.hunting_client = None
        self.tokens = []
        self.fetchers = []
        self.limiters = []
        self.cache = None

    def run(self) -> dict:
        params, logger = self.params, self.ctx.logger
        cache, mode = None, params.cache
        if params.cache != "off":
            # cache=refresh: answers younger than refresh_min_age are still used (another chunk or search of
            # the same moment just fetched them); it is cache=use with that cap on every answer's age
            max_age = self.settings.refresh_min_age if params.cache == "refresh" else None
            mode = "use"
            kv_service = self.ctx.system_service(timeout=KVSTORE_TIMEOUT)
            ensure_apart(kv_service, self.account, logger)
            cache = PublishingCache(
                SafeCache(KVStoreCache(kv_service, self.account.name, params.lookback_hours, self.settings.cache_ttl,
                                       self.settings.not_seen_ttl, backend=params.backend, max_age=max_age,
                                       collection=collection_for(self.account)), self.messages.warn, logger),
                kv_service, self.account, params.lookback_hours, self.settings, logger)
        self.cache = cache
        answers = Resolver(cache, self, mode).resolve(list(params.ips)) if params.ips else {}
        results, pending = {}, []
        for ip, stats in answers.items():
            if stats.status == PENDING:
                pending.append(ip)
            else:
                results[ip] = _as_dict(stats)
        for raw in params.not_canonical:
            results[raw] = {"ip": "", "status": "invalid"}
        self._report_problems(answers)
        answer = {
            "account": self.account.name, "lookback_hours": params.lookback_hours,
            "results": results, "pending": pending,
            "retry_in": round(max([f.retry_in for f in self.fetchers] or [0.0]), 3),
            "messages": self.messages.items, "metrics": self.metrics(cache), "state": self._state(),
        }
        hunting = self.router.hunting if self.router is not None else None
        running = set(getattr(hunting, "running", None) or ())
        if running:  # pending because a hunting job runs, not for budget: the search tells its analyst so
            answer["running"] = [ip for ip in pending if ip in running]
        if any(stats.status == RATE_LIMITED for stats in answers.values()):
            answer["budget_returns_in"] = round(max([lim.available_in() for lim in self.limiters] or [0.0]), 1)
        if (pending or answer.get("budget_returns_in")) and self._over_share():
            # the caller's own share is spent, not the account's budget: say so, and whose
            answer["share"] = {"user": self.ctx.caller.user, "percent": self.settings.user_share_percent}
        return answer

    # -- the Resolver's fetcher -------------------------------------------------------------
    def fetch_many(self, ips: List[str]) -> Dict[str, IpStats]:
        if self.router is None:
            self.router = self._build_router()
        return self.router.fetch_many(ips)

    def _build_router(self):
        # at the first cold IP: answering from the cache, or describing an account at getinfo, needs neither
        # requests, msal nor the SQLite budget files
        from ..core.backends import BackendRouter
        from ..core.fetcher import Fetcher
        from ..core.gate import WaitAllowance
        from ..microsoft.defender import DefenderClient
        from ..microsoft.graph_hunting import QUERY_TIMEOUT, HuntingClient
        from ..splunk.jobwatch import POLL_TIMEOUT, JobWatcher
        from .hunting_batches import JobHuntingFetcher
        from .hunting_jobs import JobStore
        from .profile import resolve_profile, session
        from .tokens import AccountTokens

        ctx, account, settings, params = self.ctx, self.account, self.settings, self.params
        profile = resolve_profile(ctx.conf, ctx.credentials, account)
        http = session(account, profile, pool_size=FETCH_WORKERS, timeout=min(account.timeout, CALL_TIMEOUT_CAP))
        should_stop = None
        if params.sid:  # the caller's own job: a cancelled or finalised search stops asking
            watcher = JobWatcher(ctx.caller_service(timeout=POLL_TIMEOUT), params.sid, logger=ctx.logger)
            should_stop = watcher.should_stop
        allowance = WaitAllowance(params.max_wait)
        per_ip = per_ip_no_wait = hunting = None
        if params.backend in ("ipstats", "auto"):
            tokens = AccountTokens(ctx.credentials, account, profile.credential, account.effective_scope, "api", http,
                                   logger=ctx.logger)
            self.client = DefenderClient(account.effective_api_url, tokens, http,
                                         timeout=min(account.timeout, CALL_TIMEOUT_CAP))
            self.client.answered_200 = params.state["ok_200"]
            self.client.answered_404 = params.state["nf_404"]
            limiter = self._budget("ipstats", per_ip_limits(settings))
            deadline = self.started + REQUEST_WORK_SECONDS
            per_ip = Fetcher(self.client, limiter, params.lookback_hours, allowance, workers=FETCH_WORKERS,
                             should_stop=should_stop, deadline=deadline, may_wait=False)
            per_ip_no_wait = Fetcher(self.client, limiter, params.lookback_hours, WaitAllowance(0),
                                     workers=FETCH_WORKERS, should_stop=should_stop, retry_allowance=allowance,
                                     deadline=deadline, may_wait=False)
            self.tokens.append(tokens)
            self.limiters.append(limiter)
        if params.backend in ("hunting", "auto"):
            graph_tokens = AccountTokens(ctx.credentials, account, profile.credential, account.graph_scope, "graph",
                                         http, logger=ctx.logger)
            # a job's query may run up to Graph's 3 minutes, beside the requests (service/hunting_jobs.py)
            self.hunting_client = HuntingClient(account.effective_graph_url, graph_tokens, http,
                                                timeout=QUERY_TIMEOUT)
            hunting_limiter = self._budget("hunting", hunting_limits(settings))
            job_service = ctx.system_service(timeout=KVSTORE_TIMEOUT)
            store = SafeCache(KVStoreCache(job_service, account.name, params.lookback_hours, settings.cache_ttl,
                                          settings.not_seen_ttl, backend="hunting",
                                          collection=collection_for(account)), self.messages.warn, ctx.logger)
            job_cache = PublishingCache(store, job_service, account, params.lookback_hours, settings, ctx.logger)
            hunting = JobHuntingFetcher(self.hunting_client, hunting_limiter, params.lookback_hours, allowance,
                                        JobStore(job_service), account.name, job_cache, store.get_many, ctx.logger,
                                        should_stop=should_stop)
            self.tokens.append(graph_tokens)
            self.limiters.append(hunting_limiter)
        router = BackendRouter(params.backend, self.messages.say, per_ip=per_ip, per_ip_no_wait=per_ip_no_wait,
                               hunting=hunting)
        router.per_ip_retired = bool(params.state["retired"])
        router.hunting_usable = hunting is not None and not params.state["no_hunting"]
        self.fetchers = [f for f in (per_ip, per_ip_no_wait, hunting) if f is not None]
        return router

    def _budget(self, api: str, limits):
        return caller_budget(self.ctx, self.settings, self.account, api, limits)

    def _budgets(self):
        """Every budget this request used, a user's share and the shared budget behind it apart."""
        for limiter in self.limiters:
            if isinstance(limiter, FairShareLimiter):
                yield limiter.shared
                yield limiter.personal
            else:
                yield limiter

    def _over_share(self) -> bool:
        return any(isinstance(limiter, FairShareLimiter) and limiter.over_share for limiter in self.limiters)

    # -- what the search is told ------------------------------------------------------------
    def _report_problems(self, answers) -> None:
        router = self.router
        if router is None:
            return
        # only after a lookup built the router, which imported it already
        from ..splunk.clusterbudget import ClusterWindowLimiter

        if any(isinstance(limiter, ClusterWindowLimiter) and limiter.on_share for limiter in self._budgets()):
            self.messages.warn("The search head cluster's shared Defender API budget (KV store) is unavailable: "
                               "this search head keeps to its share of the budget until the KV store answers "
                               "again. See defenderipstats.log.")
        for fetcher in self.fetchers:
            if fetcher.fatal is not None and (self.params.backend != "auto" or fetcher is not router.hunting):
                self.messages.say("ERROR", str(fetcher.fatal))
            if fetcher.stopped:
                self.messages.warn("The search was cancelled or finalised: defenderipstats stopped calling the "
                                   "Defender API; the events that were not looked up pass through with status error.")
            if fetcher.gave_up:
                self.messages.warn("The Defender API kept failing (server errors or timeouts, each retried): the "
                                   "remaining IPs of this search were not sent (status error). "
                                   "See defenderipstats.log.")

    def metrics(self, cache) -> dict:
        client, hunting = self.client, self.hunting_client
        return {
            "api_calls": client.calls if client is not None else 0,
            "retries": client.retries if client is not None else 0,
            "throttled": sum(c.throttled for c in (client, hunting) if c is not None),
            "hunting_calls": hunting.calls if hunting is not None else 0,
            "token_requests": sum(t.requests for t in self.tokens),
            "cache_hits": cache.hits if cache is not None else 0,
            "stopped": int(any(f.stopped for f in self.fetchers)),
            "seconds": round(self.clock() - self.started, 3),
        }

    def _state(self) -> dict:
        router, client = self.router, self.client
        state = dict(self.params.state)
        if router is not None:
            state["retired"] = int(router.per_ip_retired)
            state["no_hunting"] = int(router.hunting is not None and not router.hunting_usable)
        if client is not None:
            state["ok_200"], state["nf_404"] = client.answered_200, client.answered_404
        if router is not None and router.hunting is not None:
            QUOTA_STREAKS[self._registration] = router.hunting.quota_streak
        return state

    @property
    def _registration(self) -> tuple:
        return registration(self.account)


def _as_dict(stats: IpStats) -> dict:
    return {"ip": stats.ip, "status": stats.status, "prevalence": stats.prevalence, "first_seen": stats.first_seen,
            "last_seen": stats.last_seen, "source": stats.source, "error": stats.error, "fetched_at": stats.fetched_at,
            "basis": stats.basis}
