"""HTTP to Microsoft: the app's session, API retries, and what a failure is called.

The one session is used for Entra ID (msal), Defender and Graph alike.

TLS is always verified, against the account's ``ca_bundle`` when it names one. requests lets
REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE in the environment replace a session's ``verify`` unless
each request passes it explicitly, so this session always does; it also gives every request
a timeout, since msal's own calls carry none when it is handed an http_client.
"""

import random
import re
import time
from email.utils import parsedate_to_datetime
from typing import Callable, Optional, Tuple, TypeVar

import requests
from requests.adapters import HTTPAdapter
from requests.utils import should_bypass_proxies
from urllib3.exceptions import InvalidHeader, MaxRetryError, NewConnectionError, ResponseError
from urllib3.exceptions import TimeoutError as Urllib3Timeout
from urllib3.util.retry import Retry


class AppSession(requests.Session):
    """verify, timeout and proxy for every request of the app (token and API calls alike).

    ``proxy_url`` (which may carry credentials) is used for every request, except hosts matched by
    ``no_proxy`` (server.conf [proxyConfig] style: host names, domain suffixes, IPs, CIDR blocks).
    Without one the requests go direct: the environment's HTTPS_PROXY is never consulted, so what the
    admin configured is what happens.
    """

    def __init__(self, verify=True, timeout: float = 30, proxies=None, pool_size: int = 4,
                 proxy_url: str = "", no_proxy: str = ""):
        super().__init__()
        if verify is False:  # there is no switch to turn verification off
            raise ValueError("TLS verification cannot be disabled")
        self.verify = verify
        self.default_timeout = timeout
        if proxies and not proxy_url:
            proxy_url = proxies.get("https") or proxies.get("http") or ""
        self.proxy_url = proxy_url or ""
        self.no_proxy = no_proxy or ""
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool_size)
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def proxies_for(self, url: str) -> dict:
        # Explicit None values keep requests from adding the environment's proxies.
        if self.proxy_url and not (self.no_proxy and bypasses_proxy(url, self.no_proxy)):
            return {"http": self.proxy_url, "https": self.proxy_url}
        return {"http": None, "https": None}

    def request(self, method, url, **kwargs):
        kwargs["verify"] = self.verify
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout
        kwargs["proxies"] = self.proxies_for(url)
        return super().request(method, url, **kwargs)


def bypasses_proxy(url: str, no_proxy: str) -> bool:
    entries = ",".join(part.strip() for part in re.split(r"[,\s]+", no_proxy) if part.strip())
    return bool(entries) and should_bypass_proxies(url, no_proxy=entries)


def describe_failure(error, timeout: Optional[float] = None) -> str:
    """A requests exception as a short reason fit for a user (never a URL: a proxy's may carry credentials).

    The one translator of transport failures: the Defender and Graph clients, the connection test
    and the sign-in all describe what went wrong with it.
    """
    after = " after %ss" % _seconds(timeout) if timeout else ""
    if isinstance(error, requests.exceptions.ProxyError):
        return describe_proxy_error(error)
    if isinstance(error, requests.exceptions.SSLError):
        return "TLS certificate verification failed"
    if isinstance(error, requests.exceptions.Timeout):
        return "timed out" + after
    if isinstance(error, requests.exceptions.ConnectionError):
        # the last of several attempts that timed out arrives wrapped in urllib3's MaxRetryError
        return "timed out" + after if _timed_out(error) else "connection failed"
    if isinstance(error, requests.exceptions.RequestException):
        return "request failed (%s)" % type(error).__name__
    text = str(error)  # not from requests (msal may raise its own OSError)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "TLS certificate verification failed"
    if "timed out" in text.lower():
        return "timed out" + after
    if "Connection refused" in text:
        return "connection failed"
    return type(error).__name__


def _seconds(value: float) -> str:
    return "%d" % value if float(value).is_integer() else "%s" % value


def _timed_out(error) -> bool:
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return isinstance(reason, Urllib3Timeout) and not isinstance(reason, NewConnectionError)


Answer = TypeVar("Answer")


def with_fresh_token(tokens, call: Callable[[str], Tuple[bool, Answer]],
                     instead_of_retry: Optional[Callable[[], Optional[Answer]]] = None) -> Answer:
    """``call(token)`` once, and once more with a fresh token when it reports a 401.

    ``call`` answers (was_401, answer). After a 401 the token is invalidated (only if it is still the
    current one: several calls that fail with the same expired token share one fresh token) and
    ``call`` runs again, its answer final, 401 or not; unless ``instead_of_retry()`` answers something
    other than None (the retry is an API call the caller's budget may refuse): then that is the answer.
    """
    token = tokens.token()
    unauthorised, answer = call(token)
    if not unauthorised:
        return answer
    tokens.invalidate(token)
    if instead_of_retry is not None:
        instead = instead_of_retry()
        if instead is not None:
            return instead
    return call(tokens.token())[1]


class LazyValidator:
    """jsonschema validation of API answers; jsonschema is imported on first use (start-up time)."""

    def __init__(self, schema: dict):
        self.schema = schema
        self._validator = None

    def __call__(self, document) -> None:
        if self._validator is None:
            import jsonschema  # at first use: a process that never parses an answer need not import it

            self._validator = jsonschema.Draft7Validator(self.schema)
        self._validator.validate(document)


def error_message(response) -> str:
    """The error envelope's message (Defender and Graph share its shape), short, never a token."""
    try:
        body = response.json()
        message = (body.get("error") or {}).get("message") or ""
    except (ValueError, AttributeError):
        message = ""
    message = re.sub(r"\s+", " ", str(message)).strip()
    return message[:200]


def retry_after_seconds(value, default: float = 60.0) -> float:
    """Retry-After as seconds (delta form; an HTTP date is rare here and handled too)."""
    if value is None:
        return default
    text = str(value).strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return default


def describe_proxy_error(error) -> str:
    """A proxy failure in words an admin can act on (never the proxy URL: it may carry credentials)."""
    text = str(error)
    match = re.search(r"Tunnel connection failed: (\d{3})([^'\")]*)", text)
    if match:
        reason = match.group(2).strip()
        return "the proxy refused the connection (%s%s)" % (match.group(1), " " + reason if reason else "")
    if "Connection refused" in text or "NewConnectionError" in text or "Failed to establish" in text:
        return "could not connect to the proxy"
    if "timed out" in text.lower():
        return "the proxy timed out"
    return "the proxy failed (%s)" % type(error).__name__


# -- retries of API calls ------------------------------------------------------------------------
# Retried: 5xx, connection failures, timeouts and resets. Never a 4xx: a 401 is the client's (one
# fresh token), a 429 the shared limiter's (every search on the host pauses), 400/403/404 are answers.
RETRY_STATUSES = frozenset(range(500, 600))
MAX_RETRIES = 2  # three attempts at most
BACKOFF_FACTOR = 0.5  # 0.5 s before the first retry, 1 s before the second...
BACKOFF_JITTER = 0.5  # ...plus up to this much at random
BACKOFF_MAX = 8.0


class BudgetedRetry(Retry):
    """urllib3's Retry, where every further attempt must first be cleared by ``admit(delay)``.

    ``admit`` waits ``delay`` seconds (the backoff, or a 5xx's Retry-After) within the search's wait
    allowance and takes one call of API budget, since a retry is an API call like any other. When it
    says no, no attempt is made: the last answer (a 5xx) is returned, or the last error raised, as
    when the retries are used up.
    """

    def __init__(self, *args, admit: Optional[Callable[[float], bool]] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.admit = admit

    def new(self, **kw):
        retry = super().new(**kw)
        retry.admit = self.admit
        return retry

    def get_backoff_time(self) -> float:
        # urllib3 makes the first retry at once; here every retry backs off, with jitter, so that the
        # searches of a host that met the same 503 do not all come back at the same moment.
        attempts = len(self.history)
        if attempts == 0:
            return 0.0
        delay = self.backoff_factor * (2 ** (attempts - 1)) + random.random() * self.backoff_jitter
        return min(self.backoff_max, delay)

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        retry = super().increment(method, url, response=response, error=error, _pool=_pool,
                                  _stacktrace=_stacktrace)  # raises MaxRetryError when used up
        delay = retry.get_backoff_time()
        if response is not None:
            try:
                delay = max(delay, retry.get_retry_after(response) or 0.0)
            except InvalidHeader:
                pass
        if self.admit is not None and not self.admit(delay):
            reason = error or ResponseError("retry not admitted: no wait allowance or API budget left")
            raise MaxRetryError(_pool, url, reason) from reason
        return retry

    def sleep(self, response=None) -> None:
        if self.admit is None:
            super().sleep(response)
        # else the wait happened in admit(), in steps that watch for a cancelled search


def api_retry(admit: Optional[Callable[[float], bool]] = None) -> BudgetedRetry:
    return BudgetedRetry(
        total=MAX_RETRIES, connect=MAX_RETRIES, read=MAX_RETRIES, status=MAX_RETRIES,
        other=0,  # TLS failures and the like: retrying cannot help
        redirect=False, allowed_methods=frozenset({"GET"}), status_forcelist=RETRY_STATUSES,
        backoff_factor=BACKOFF_FACTOR, backoff_jitter=BACKOFF_JITTER, backoff_max=BACKOFF_MAX,
        raise_on_status=False,  # the last 5xx comes back as a response, for the client to describe
        respect_retry_after_header=False,  # else urllib3 would retry a 429 itself; Retry-After of a 5xx is used above
        admit=admit,
    )


def mount_api_retries(session: requests.Session, api_url: str, admit: Callable[[float], bool],
                      pool_size: int = 4) -> None:
    """API calls (only they: a token request spends no API budget) go through a retrying adapter."""
    adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool_size, max_retries=api_retry(admit))
    session.mount(api_url.rstrip("/") + "/api/", adapter)
