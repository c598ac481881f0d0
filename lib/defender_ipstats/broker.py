"""The token broker: the app's privileged side, a persistent REST handler in splunkd.

splunkd runs it (restmap.conf ``[script:defenderipstats_token]``, ``scripttype = persist``) for
``POST /servicesNS/nobody/TA-defender-ipstats/defenderipstats/token`` after checking that the caller
holds the capability ``defenderipstats_use``, and hands it a system session key
(``passSystemAuth = true``). With that key it reads the account's credential and proxy credentials
from storage/passwords, gets an access token with msal, and answers the search with the token, its
lifetime and the proxy to use. The credential never leaves this process; searchers need no
``list_storage_passwords``.

Tokens are kept for reuse across searches, each of which runs the command in a new process:
in this process's memory (splunkd keeps the handler's process between requests), and in
storage/passwords, realm ``TA-defender-ipstats-token`` (encrypted at rest by splunkd, readable only
with ``list_storage_passwords`` or admin rights), so a restarted handler process, or another one,
reuses them too. A cached token is bound to a fingerprint of everything that made it (tenant,
client, authority, scope, credential): change any of those and the next search gets a new token.
"""

import hashlib
import json
import threading
import time
from typing import Callable, Dict, Optional, Tuple

from . import APP_NAME
from .errors import AuthenticationError, ConfigurationError, CredentialError, DefenderIpStatsError, SplunkdError

TOKEN_REALM = APP_NAME + "-token"
CAPABILITY = "defenderipstats_use"
RESOURCES = ("api", "graph")
# A token is handed out only while it has this long left: a search may run for a while with it.
MIN_LIFETIME = 300


def token_digest(token: str) -> str:
    """What the command sends back to say "this token was refused" (never the token itself)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:32]


def credential_fingerprint(account, credential, scope: str) -> str:
    material = credential if isinstance(credential, str) else json.dumps(credential, sort_keys=True)
    parts = [account.tenant_id.lower(), account.client_id.lower(), account.effective_authority.lower(), scope,
             hashlib.sha256(material.encode("utf-8")).hexdigest()]
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()


class TokenCache:
    """Access tokens by (account, resource): memory first, then storage/passwords (realm ...-token)."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self.clock = clock
        self._memory: Dict[Tuple[str, str], dict] = {}
        self._lock = threading.Lock()

    @staticmethod
    def entry_name(account: str, resource: str) -> str:
        return "%s.%s" % (account, resource)

    def _usable(self, entry: Optional[dict], fingerprint: str, stale: str) -> bool:
        return bool(entry) and entry.get("fingerprint") == fingerprint \
            and float(entry.get("expires_at", 0)) - self.clock() > MIN_LIFETIME \
            and not (stale and token_digest(entry.get("access_token", "")) == stale)

    def get(self, config, account: str, resource: str, fingerprint: str, stale: str = "") -> Optional[dict]:
        key = (account, resource)
        with self._lock:
            entry = self._memory.get(key)
        if self._usable(entry, fingerprint, stale):
            return dict(entry, token_source="memory")
        try:
            stored = config.password(TOKEN_REALM, self.entry_name(account, resource), "token cache")
            entry = json.loads(stored) if stored else None
        except (DefenderIpStatsError, ValueError):
            entry = None
        if self._usable(entry, fingerprint, stale):
            with self._lock:
                self._memory[key] = entry
            return dict(entry, token_source="stored")
        return None

    def put(self, config, account: str, resource: str, entry: dict, logger=None) -> None:
        with self._lock:
            self._memory[(account, resource)] = entry
        try:
            config.store_password(TOKEN_REALM, self.entry_name(account, resource), json.dumps(entry))
        except Exception as error:  # the token still serves this search; the next one may ask again
            if logger is not None:
                logger.warning("could not store the access token of account %s in the token cache: %s",
                               account, type(error).__name__)

    def forget(self, account: str) -> None:
        with self._lock:
            for key in [k for k in self._memory if k[0] == account]:
                del self._memory[key]


_CACHE = TokenCache()  # one per handler process: splunkd keeps the process between requests


def issue_token(config, account_name: str, resource: str, stale: str = "", cache: TokenCache = _CACHE,
                logger=None) -> dict:
    """An access token for ``account_name`` (``resource``: "api" or "graph") and how to reach Microsoft.

    ``config`` is a SplunkdConfig with the system session key.
    """
    from .access import LocalAccess, resolve_profile
    from .logs import redact

    if resource not in RESOURCES:
        raise ConfigurationError("resource must be one of %s, not %r." % ("|".join(RESOURCES), resource))
    account = config.account(account_name)
    profile = resolve_profile(config, account)
    scope = account.effective_scope if resource == "api" else account.graph_scope
    fingerprint = credential_fingerprint(account, profile.credential, scope)
    entry = cache.get(config, account.name, resource, fingerprint, stale)
    if entry is None:
        access = LocalAccess(account, profile)
        provider = access.tokens(scope, access.session(pool_size=1))
        started = cache.clock()
        token, expires_in = provider.token_with_lifetime()
        redact(token)
        entry = {"access_token": token, "expires_at": started + expires_in, "fingerprint": fingerprint}
        cache.put(config, account.name, resource, entry, logger)
        entry = dict(entry, token_source="identity_provider")
    return {
        "access_token": entry["access_token"],
        "expires_in": max(0, int(float(entry["expires_at"]) - cache.clock())),
        "token_source": entry["token_source"],
        "proxy_url": profile.proxy_url,
        "no_proxy": profile.no_proxy,
    }


# -- the REST request ------------------------------------------------------------------------------------

def _pairs(value) -> Dict[str, str]:
    out = {}
    for item in value or []:
        if isinstance(item, (list, tuple)) and len(item) == 2:
            out[str(item[0])] = str(item[1])
    return out


def reply(status: int, body: dict) -> dict:
    return {"status": status, "payload": json.dumps(body), "headers": {"Content-Type": "application/json"}}


def error_reply(error: Exception) -> dict:
    if isinstance(error, AuthenticationError):
        return reply(502, {"error": str(error), "kind": "authentication"})
    if isinstance(error, (ConfigurationError, CredentialError)):
        return reply(400, {"error": str(error), "kind": "configuration"})
    if isinstance(error, SplunkdError):
        return reply(503, {"error": str(error), "kind": "splunkd"})
    return reply(500, {"error": "internal error in the token service (%s); see defenderipstats.log"
                       % type(error).__name__, "kind": "internal"})


def system_config(request: dict):
    """SplunkdConfig on the system session key splunkd passed in (passSystemAuth)."""
    from . import splunkd

    key = request.get("system_authtoken")
    uri = (request.get("server") or {}).get("rest_uri")
    if not key or not uri:
        raise SplunkdError("splunkd passed no system session to the token service (restmap.conf passSystemAuth).")
    return splunkd.SplunkdConfig(splunkd.connect(uri, key))


def handle_token(request: dict, logger, config_factory=system_config) -> dict:
    if request.get("method") != "POST":
        return reply(405, {"error": "use POST"})
    form = _pairs(request.get("form"))
    account = form.get("account", "").strip()
    if not account:
        return reply(400, {"error": "account is required", "kind": "configuration"})
    user = (request.get("session") or {}).get("user", "")
    try:
        answer = issue_token(config_factory(request), account, form.get("resource", "api").strip(),
                             form.get("stale", "").strip(), logger=logger)
    except Exception as error:  # every failure is an answer, never a dead handler
        if isinstance(error, DefenderIpStatsError):
            logger.warning("token for user=%s account=%s refused: %s", user, account, error)
        else:
            logger.exception("token for user=%s account=%s failed", user, account)
        return error_reply(error)
    logger.info("token for user=%s account=%s resource=%s source=%s", user, account,
                form.get("resource", "api"), answer["token_source"])
    return reply(200, answer)


def handle_admin(request: dict, logger, config_factory=system_config) -> dict:
    """The setup page's endpoints (capability defenderipstats_admin, checked by splunkd):

    GET  defenderipstats/settings                 the defaults          POST: change them
    GET  defenderipstats/accounts                 accounts (no secrets) POST: add one (name, fields, secret)
    POST defenderipstats/accounts/<name>          change it             DELETE: remove it and its credentials
    POST defenderipstats/accounts/<name>/test     get a token and call the API for one IP
    """
    from . import admin

    method = request.get("method")
    parts = [p for p in str(request.get("rest_path") or "").split("/") if p]
    parts = parts[parts.index("defenderipstats") + 1:] if "defenderipstats" in parts else []
    form = _pairs(request.get("form"))
    user = (request.get("session") or {}).get("user", "")
    try:
        config = config_factory(request)
        if parts == ["settings"]:
            if method == "GET":
                return reply(200, admin.get_settings(config))
            if method == "POST":
                logger.info("settings changed by user=%s: %s", user, sorted(k for k in form if k != "output_mode"))
                return reply(200, admin.save_settings(config, form))
        elif parts == ["accounts"]:
            if method == "GET":
                return reply(200, admin.list_accounts(config))
            if method == "POST":
                name = form.get("name", "").strip()
                logger.info("account %s added by user=%s", name, user)
                return reply(201, admin.save_account(config, name, form, create=True))
        elif len(parts) == 2 and parts[0] == "accounts":
            if method == "POST":
                logger.info("account %s changed by user=%s", parts[1], user)
                return reply(200, admin.save_account(config, parts[1], form, create=False))
            if method == "DELETE":
                logger.info("account %s deleted by user=%s", parts[1], user)
                return reply(200, admin.delete_account(config, parts[1]))
        elif len(parts) == 3 and parts[0] == "accounts" and parts[2] == "test" and method == "POST":
            result = admin.test_connection(config, parts[1], form)
            logger.info("connection test of account %s by user=%s: %s", parts[1], user,
                        "ok" if result["ok"] else result["stage"] + " failed")
            return reply(200, result)
        else:
            return reply(404, {"error": "unknown endpoint"})
        return reply(405, {"error": "method not allowed"})
    except Exception as error:
        if not isinstance(error, DefenderIpStatsError):
            logger.exception("setup request failed")
        return error_reply(error)


def handle(request: dict, logger) -> dict:
    """Entry point of bin/defenderipstats_rest.py: one decoded request of splunkd's persistent protocol."""
    path = str(request.get("rest_path") or "")
    if path.rstrip("/").endswith("/defenderipstats/token"):
        return handle_token(request, logger)
    if "/defenderipstats/accounts" in path or path.rstrip("/").endswith("/defenderipstats/settings"):
        return handle_admin(request, logger)
    return reply(404, {"error": "unknown endpoint %s" % path})
