"""How one account reaches Microsoft: its credential, its proxy, and the tokens made from them.

``resolve_profile`` reads what an account needs besides its .conf stanza, through splunkd REST: the
credential (client secret, or PEM private key with ``auth = certificate``) from storage/passwords, and
the proxy: the account's ``proxy_url``, else Splunk's own ``server.conf [proxyConfig]``, with proxy
credentials from storage/passwords (realm ``TA-defender-ipstats-proxy``) where the proxy needs them.

``LocalAccess`` turns a profile into what a search needs: one HTTP session (TLS verification, proxy,
timeout) and msal token providers per token scope.
"""

from dataclasses import dataclass, field
from typing import Any, Dict
from urllib.parse import quote, urlsplit

from .errors import ConfigurationError, CredentialError
from .logs import redact
from .settings import Account, check_proxy_url


@dataclass(frozen=True)
class ConnectionProfile:
    credential: Any = field(repr=False)  # the client secret, or msal's certificate credential dict
    proxy_url: str = field(default="", repr=False)  # with credentials when the proxy needs them
    no_proxy: str = ""
    proxy_source: str = ""  # "account", "server.conf" or "" (direct)

    @property
    def proxy_host(self) -> str:
        """The proxy as host:port, for messages and logs (never its credentials)."""
        return urlsplit(self.proxy_url).netloc.rsplit("@", 1)[-1] if self.proxy_url else ""


def msal_credential(account: Account, stored: str):
    """What msal gets as client_credential: the secret, or the certificate's key and thumbprint."""
    redact(stored)
    if account.auth == "certificate":
        from .certs import certificate_credential

        credential = certificate_credential(stored, account.certificate_thumbprint)
        redact(credential["private_key"])
        return credential
    return stored


def with_proxy_credentials(proxy_url: str, user_and_password: str) -> str:
    """``scheme://user:password@host:port`` (both percent-encoded), from ``user:password``."""
    user, sep, password = user_and_password.partition(":")
    if not sep or not user:
        raise CredentialError("The stored proxy credentials must be '<proxy user>:<proxy password>'.")
    parts = urlsplit(proxy_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    redact(password, user_and_password)
    url = "%s://%s:%s@%s" % (parts.scheme, quote(user, safe=""), quote(password, safe=""), host)
    redact(url)
    return url


def resolve_proxy(account: Account, server_proxy: Dict[str, str], proxy_credentials) -> ConnectionProfile:
    """The proxy part of a profile (credential left empty)."""
    proxy_url, no_proxy, source = account.proxy_url, "", "account"
    if not proxy_url:
        proxy_url = (server_proxy.get("https_proxy") or server_proxy.get("http_proxy") or "").strip()
        no_proxy = (server_proxy.get("no_proxy") or "").strip()
        source = "server.conf" if proxy_url else ""
        if proxy_url:
            redact(proxy_url)
            full = proxy_url if "://" in proxy_url else "http://" + proxy_url
            checked = check_proxy_url(full, "server.conf [proxyConfig] ", "https_proxy", allow_credentials=True)
            if urlsplit(full).username is not None:  # Splunk's own setting may carry its credentials
                return ConnectionProfile(None, full, no_proxy, source)
            proxy_url = checked
    if proxy_url and proxy_credentials:
        proxy_url = with_proxy_credentials(proxy_url, proxy_credentials)
    return ConnectionProfile(None, proxy_url, no_proxy, source)


def resolve_profile(config, account: Account) -> ConnectionProfile:
    """Credential and proxy of ``account``, read through splunkd (``config``: a SplunkdConfig)."""
    what = "certificate key" if account.auth == "certificate" else "client secret"
    credential = msal_credential(account, config.secret(account.name, what))
    server_proxy = config.server_proxy() if not account.proxy_url else {}
    proxy_credentials = config.proxy_credentials(account.name) if (account.proxy_url or server_proxy) else None
    proxy = resolve_proxy(account, server_proxy, proxy_credentials)
    return ConnectionProfile(credential, proxy.proxy_url, proxy.no_proxy, proxy.proxy_source)


class LocalAccess:
    """Sessions and msal token providers for one account, in this process."""

    def __init__(self, account: Account, profile: ConnectionProfile):
        self.account = account
        self.profile = profile

    def session(self, pool_size: int = 4, resource: str = "api"):
        from .transport import AppSession

        return AppSession(verify=self.account.verify, timeout=self.account.timeout, pool_size=pool_size,
                          proxy_url=self.profile.proxy_url, no_proxy=self.profile.no_proxy)

    def tokens(self, scope: str, session):
        from .auth import TokenProvider

        return TokenProvider(self.account.client_id, self.profile.credential, self.account.effective_authority,
                             scope, http_client=session)


# -- the search's side of the token broker ---------------------------------------------------------------

BROKER_PATH = "defenderipstats/token"
# A token is used until this many seconds before it expires; then the broker is asked again.
REFRESH_MARGIN = 120


class BrokerAccess:
    """Sessions and tokens for one account, from the app's token broker (broker.py), with the searching
    user's session: the search never sees the account's secret, only short-lived access tokens."""

    def __init__(self, service, account: Account, clock=None):
        import time

        self.service = service
        self.account = account
        self.clock = clock or time.time
        self._first: Dict[str, dict] = {}  # resource -> the broker's first answer, until its provider takes it
        self._proxy = None
        self.error = None  # what the broker answered instead of the first token, if it failed

    def resource_of(self, scope: str) -> str:
        return "graph" if scope == self.account.graph_scope and scope != self.account.effective_scope else "api"

    def ask(self, resource: str, stale: str = "") -> dict:
        """One POST to the broker: {access_token, expires_in, token_source, proxy_url, no_proxy}."""
        import json

        from splunklib import binding

        from .errors import AuthenticationError, SplunkdError

        form = {"account": self.account.name, "resource": resource, "output_mode": "json"}
        if stale:
            form["stale"] = stale
        try:
            response = self.service.post(BROKER_PATH, **form)
            answer = json.loads(response.body.read().decode("utf-8"))
        except binding.HTTPError as error:
            status = getattr(error, "status", 0)
            try:
                detail = json.loads(error.body.decode("utf-8") if isinstance(error.body, bytes) else error.body)
            except (TypeError, ValueError, AttributeError):
                detail = {}
            text = detail.get("error") if isinstance(detail, dict) else None
            if status == 403:
                raise CredentialError(
                    "This user may not use the Defender accounts: the role defenderipstats_user (capability "
                    "defenderipstats_use) is needed to run defenderipstats. Ask an admin.")
            if status == 404 and not text:
                raise SplunkdError("The app's token service (defenderipstats/token, restmap.conf) is not loaded: "
                                   "restart Splunk after installing or upgrading the app.")
            kind = detail.get("kind") if isinstance(detail, dict) else None
            if kind == "authentication":
                raise AuthenticationError(text)
            if kind == "configuration":
                raise ConfigurationError(text)
            raise SplunkdError("The app's token service failed (%s): %s" % (status, text or "no reason given"))
        except (OSError, ValueError) as error:
            raise SplunkdError("The app's token service did not answer: %s" % type(error).__name__)
        redact(answer.get("access_token", ""), answer.get("proxy_url", ""))
        return answer

    def _profile(self, resource: str) -> dict:
        from .errors import DefenderIpStatsError

        if self._proxy is None:
            try:
                answer = self.ask(resource)
            except DefenderIpStatsError as error:
                # Kept for the token providers: every call needs a token first, so none is made, and the
                # fetchers report the reason once, as for any sign-in failure.
                self.error = error
                answer = {}
            else:
                self._first[resource] = answer
            self._proxy = (answer.get("proxy_url") or "", answer.get("no_proxy") or "")
        return {"proxy_url": self._proxy[0], "no_proxy": self._proxy[1]}

    def session(self, pool_size: int = 4, resource: str = "api"):
        from .transport import AppSession

        proxy = self._profile(resource)
        return AppSession(verify=self.account.verify, timeout=self.account.timeout, pool_size=pool_size,
                          proxy_url=proxy["proxy_url"], no_proxy=proxy["no_proxy"])

    def tokens(self, scope: str, session=None):
        resource = self.resource_of(scope)
        return BrokerTokens(self, resource, self._first.pop(resource, None))


class BrokerTokens:
    """TokenProvider's interface (token, invalidate, requests) over the broker."""

    def __init__(self, access: BrokerAccess, resource: str, first: dict = None):
        import threading

        self.access = access
        self.resource = resource
        self.requests = 0  # token requests the broker had to make to Entra ID for this search
        self._lock = threading.Lock()
        self._current = None
        self._expires_at = 0.0
        self._stale = ""
        if first:
            self._take(first)

    def _take(self, answer: dict) -> str:
        token = answer.get("access_token") or ""
        if not token:
            from .errors import SplunkdError

            raise SplunkdError("The app's token service answered without a token.")
        self._current = token
        self._expires_at = self.access.clock() + float(answer.get("expires_in") or 0)
        if answer.get("token_source") == "identity_provider":
            self.requests += 1
        return token

    def token(self) -> str:
        with self._lock:
            if self.access.error is not None:
                raise self.access.error
            if self._current and self._expires_at - self.access.clock() > REFRESH_MARGIN:
                return self._current
            stale, self._stale = self._stale, ""
            return self._take(self.access.ask(self.resource, stale))

    def invalidate(self, stale: str = None) -> None:
        from .broker import token_digest

        with self._lock:
            if stale is not None and stale != self._current:
                return
            if self._current:
                self._stale = token_digest(self._current)
            self._current = None
