"""How one account reaches Microsoft: its credential and its proxy (privileged side only).

``resolve_profile`` reads what an account needs besides its .conf stanza, through splunkd REST with the
system session: the credential (client secret, or PEM private key with ``auth = certificate``) from
storage/passwords, and the proxy: the account's ``proxy_url``, else Splunk's own ``server.conf
[proxyConfig]``, with proxy credentials from storage/passwords (realm ``TA-defender-ipstats-proxy``)
where the proxy needs them. ``session`` turns a profile into the HTTP session the API clients use.
"""

from dataclasses import dataclass, field
from typing import Any, Dict
from urllib.parse import quote, urlsplit

from ..core.accounts import Account, check_proxy_url
from ..core.errors import CredentialError
from ..microsoft.certs import certificate_credential
from ..splunk.logs import redact


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


def resolve_profile(conf, credentials, account: Account) -> ConnectionProfile:
    """Credential and proxy of ``account``, read through splunkd: ``conf`` (a ConfStore) for Splunk's own
    proxy settings, ``credentials`` (a CredentialStore) for the secret and the proxy's credentials."""
    what = "certificate key" if account.auth == "certificate" else "client secret"
    credential = msal_credential(account, credentials.secret(account.name, what))
    server_proxy = conf.server_proxy() if not account.proxy_url else {}
    proxy_credentials = credentials.proxy_credentials(account.name) if (account.proxy_url or server_proxy) else None
    proxy = resolve_proxy(account, server_proxy, proxy_credentials)
    return ConnectionProfile(credential, proxy.proxy_url, proxy.no_proxy, proxy.proxy_source)


def session(account: Account, profile: ConnectionProfile, pool_size: int = 4, timeout: float = None):
    """One HTTP session for the account: TLS verified (its CA bundle, else certifi), its proxy, a timeout."""
    from ..microsoft.http import AppSession  # at call time: describing an account needs no requests

    return AppSession(verify=account.verify, timeout=account.timeout if timeout is None else timeout,
                      pool_size=pool_size, proxy_url=profile.proxy_url, no_proxy=profile.no_proxy)
