"""The search's way to the privileged service (``defenderipstats/lookup``), with the searching user's
own session. The search sends canonical IPs and gets statistics back: never a token or a secret.

``ServiceLookups.fetch_many`` is the lookup core's fetcher: it posts a chunk's cold IPs, keeps asking
for those the service answered ``pending`` (waiting for budget here, in the search process, within
the search's ``maxwait`` and in steps that notice a cancelled search), and gathers the service's
messages and figures for the search.
"""

import json
import time
from dataclasses import replace
from typing import Callable, Dict, List, Optional

from splunklib import binding

from ..core.errors import AuthenticationError, ConfigurationError, CredentialError, DefenderIpStatsError, SplunkdError
from ..core.gate import STOPPED_REASON, WAIT_STEP, budget_spent_reason
from ..core.model import PENDING, SOURCE_HUNTING, IpStats, failed, rate_limited

LOOKUP_PATH = "defenderipstats/lookup"
DETAILS_PATH = "defenderipstats/details"
# What one request may carry. The service bounds its own time (about 30 s); the HTTP timeout of the
# search's connection to splunkd leaves room for splunkd queueing a request behind others.
MAX_IPS_PER_REQUEST = 2500
REQUEST_TIMEOUT = 90
# Answers that made no progress and gave no reason to wait: the service is not getting anywhere.
IDLE_ROUNDS = 3
STILL_RUNNING = "hunting query still running; its answer will be cached"
METRIC_KEYS = ("api_calls", "retries", "throttled", "hunting_calls", "token_requests", "cache_hits")


class ServiceClient:
    def __init__(self, service):
        self.service = service  # splunklib Service with the searching user's session key

    def describe(self, account: str) -> dict:
        """{"account": the account the search uses, "settings": the command's settings, as text}."""
        return self._call("GET", account=account)

    def lookup(self, **form) -> dict:
        return self._call("POST", **form)

    def details(self, **form) -> dict:
        """One IP's devices and days (``| defenderipdetails``)."""
        return self._call("POST", DETAILS_PATH, **form)

    def _call(self, method: str, path: str = LOOKUP_PATH, **form) -> dict:
        form = {key: value for key, value in form.items() if value is not None}
        form["output_mode"] = "json"
        try:
            if method == "GET":
                response = self.service.get(path, **form)
            else:
                response = self.service.post(path, **form)
            answer = json.loads(response.body.read().decode("utf-8"))
        except binding.HTTPError as error:
            raise _translate(error)
        except (OSError, ValueError) as error:
            raise SplunkdError("The app's service (%s) did not answer: %s." % (path, type(error).__name__))
        if not isinstance(answer, dict):
            raise SplunkdError("The app's service (%s) gave an answer it should not." % path)
        return answer


def _translate(error) -> DefenderIpStatsError:
    status = getattr(error, "status", 0)
    try:
        body = error.body if isinstance(error.body, str) else error.body.decode("utf-8")
        detail = json.loads(body)
    except (AttributeError, TypeError, ValueError):
        detail = {}
    detail = detail if isinstance(detail, dict) else {}
    text, kind = detail.get("error"), detail.get("kind")
    if status == 401:
        return SplunkdError("splunkd rejected the search's session (401).")
    if status == 403 and kind == "forbidden":
        return CredentialError(text)
    if status == 403:
        return CredentialError("This user may not run defenderipstats: the role defenderipstats_user (capability "
                               "defenderipstats_use) is needed. Ask an admin.")
    if status == 404 and not kind:
        return SplunkdError("The app's service (defenderipstats/lookup, restmap.conf) is not loaded: restart Splunk "
                            "after installing or upgrading the app.")
    if kind == "authentication":
        return AuthenticationError(text)
    if kind == "configuration":
        return ConfigurationError(text)
    return SplunkdError("The app's service failed (%s): %s" % (status, text or "no reason given"))


class ServiceLookups:
    """The lookup core's fetcher for one search: ``fetch_many(ips) -> {ip: IpStats}``."""

    def __init__(self, client: ServiceClient, account: str, options, allowance, say: Callable[[str, str], None],
                 should_stop: Optional[Callable[[], bool]] = None, sid: str = "", sleep=time.sleep,
                 clock=time.monotonic, logger=None):
        self.client = client
        self.account = account
        self.options = options
        self.allowance = allowance  # fetcher.WaitAllowance: the search's maxwait
        self.say = say
        self.should_stop = should_stop
        self.sid = sid
        self.sleep = sleep
        self.clock = clock
        self.logger = logger
        self.state: Dict[str, int] = {}
        self.metrics = dict.fromkeys(METRIC_KEYS, 0)
        self.requests = 0
        self.stopped = False
        self.budget_returns_in = 0.0
        self.share: Optional[dict] = None  # the service says this user's own share is spent
        self.fatal: Optional[DefenderIpStatsError] = None
        self.waited_for: set = set()  # IPs the service said a hunting job runs for

    def fetch_many(self, ips: List[str]) -> Dict[str, IpStats]:
        answers: Dict[str, IpStats] = {}
        parts = [ips[start:start + MAX_IPS_PER_REQUEST] for start in range(0, len(ips), MAX_IPS_PER_REQUEST)]
        if len(parts) > 1 and self.options.backend != "ipstats":
            self._start_jobs(parts[1:], answers)
        for part in parts:
            todo = [ip for ip in part if ip not in answers]
            if todo:
                answers.update(self._fetch_batch(todo))
        return answers

    def _start_jobs(self, parts: List[List[str]], answers: Dict[str, IpStats]) -> None:
        """One ask for each later part first: the service starts their hunting jobs now, so long queries
        run side by side instead of one request's after another's."""
        for part in parts:
            if self.fatal is not None or self._stopping():
                return
            try:
                self._take(self._ask(part), part, answers)
            except DefenderIpStatsError:
                return  # the part's own loop asks again, and says what failed

    def _fetch_batch(self, ips: List[str]) -> Dict[str, IpStats]:
        answers: Dict[str, IpStats] = {}
        todo, idle = list(ips), 0
        while todo:
            if self.fatal is not None:
                return dict(answers, **{ip: failed(ip, _short(self.fatal)) for ip in todo})
            if self._stopping():
                return dict(answers, **{ip: failed(ip, STOPPED_REASON) for ip in todo})
            try:
                answer = self._ask(todo)
            except DefenderIpStatsError as error:
                self.fatal = error
                self.say("ERROR", str(error))
                continue
            done = self._take(answer, todo, answers)
            todo = [ip for ip in todo if ip not in answers]
            if not todo:
                break
            wait = float(answer.get("retry_in") or 0)
            running = set(answer.get("running") or ())
            if wait > self.allowance.remaining:
                # a running hunting job's IPs are pending (its answer lands in the cache); the rest wait for budget
                if any(ip not in running for ip in todo):
                    self.budget_returns_in = max(self.budget_returns_in, wait)
                return dict(answers, **{ip: still_running(ip) if ip in running
                                        else rate_limited(ip, self._why_limited(wait)) for ip in todo})
            idle = 0 if done or wait > 0 else idle + 1
            if idle >= IDLE_ROUNDS:
                return dict(answers, **{ip: failed(ip, "the app's service did not look it up") for ip in todo})
            self._wait(wait)
        return answers

    def _why_limited(self, wait: float) -> str:
        return budget_spent_reason(wait, self.share.get("percent") if self.share else None)

    def _ask(self, ips: List[str]) -> dict:
        self.requests += 1
        options = self.options
        answer = self.client.lookup(account=self.account, lookback_hours=str(options.lookback_hours),
                                    backend=options.backend, cache=options.cache, ips=",".join(ips),
                                    max_wait="%.1f" % self.allowance.remaining, sid=self.sid,
                                    **{key: str(value) for key, value in self.state.items()})
        return answer

    def _take(self, answer: dict, asked: List[str], answers: Dict[str, IpStats]) -> int:
        """Keeps what the service answered; returns how many IPs got their answer."""
        results = answer.get("results") or {}
        done = 0
        for ip in asked:
            item = results.get(ip)
            if not isinstance(item, dict) or item.get("status") in (None, PENDING):
                continue
            stats = _stats(ip, item)
            if ip in self.waited_for and stats.source == "cache" and stats.basis == SOURCE_HUNTING:
                stats = replace(stats, source=SOURCE_HUNTING)  # the job it waited for answered, through the cache
            answers[ip] = stats
            done += 1
        self.waited_for.update(answer.get("running") or ())
        for level, text in answer.get("messages") or []:
            self.say(str(level), str(text))
        for key in METRIC_KEYS:
            self.metrics[key] += int((answer.get("metrics") or {}).get(key) or 0)
        if (answer.get("metrics") or {}).get("stopped"):
            self.stopped = True
        share = answer.get("share")
        self.share = share if isinstance(share, dict) else None
        if answer.get("budget_returns_in") is not None:
            self.budget_returns_in = max(self.budget_returns_in, float(answer["budget_returns_in"]))
        state = answer.get("state")
        if isinstance(state, dict):
            self.state = {str(k): int(v) for k, v in state.items() if isinstance(v, (int, bool))}
        return done

    def _wait(self, seconds: float) -> None:
        """Waits for budget here (never in the service), a step at a time, charged to maxwait."""
        until = self.clock() + min(max(seconds, 0.2), self.allowance.remaining)
        while not self._stopping():
            left = until - self.clock()
            if left <= 0:
                break
            started = self.clock()
            self.sleep(min(left, WAIT_STEP))
            self.allowance.spend(self.clock() - started)

    def _stopping(self) -> bool:
        if not self.stopped and self.should_stop is not None and self.should_stop():
            self.stopped = True
        return self.stopped


def still_running(ip: str) -> IpStats:
    return IpStats(ip=ip, status=PENDING, source=SOURCE_HUNTING, error=STILL_RUNNING)


def _stats(ip: str, item: dict) -> IpStats:
    status = str(item.get("status"))
    prevalence = item.get("prevalence")
    try:
        prevalence = None if prevalence in (None, "") else int(prevalence)
    except (TypeError, ValueError):
        prevalence = None
    return IpStats(ip=str(item.get("ip") or ip) if status != "invalid" else "", status=status, prevalence=prevalence,
                   first_seen=item.get("first_seen") or None, last_seen=item.get("last_seen") or None,
                   source=str(item.get("source") or ""), error=str(item.get("error") or ""),
                   fetched_at=item.get("fetched_at"), basis=str(item.get("basis") or ""))


def _short(error: DefenderIpStatsError) -> str:
    text = str(error)
    if isinstance(error, AuthenticationError):
        return "authentication failed"
    if isinstance(error, CredentialError):
        return "not permitted"
    return text[:80]

