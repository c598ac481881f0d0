"""Access tokens, kept inside the privileged service: never answered to any caller.

Tokens are reused across requests and handler processes: in this process's memory, and in
storage/passwords, realm ``TA-defender-ipstats-token`` (encrypted at rest by splunkd, readable only by
admins and the system session). A stored token is bound to a fingerprint of everything that made it
(tenant, client, authority, scope, credential): change any of those and the next request gets a new
token. Memory is only a shortcut: any process may answer any request.

A 401 from Microsoft forgets the token, but a forced refresh happens at most once a minute per
account and resource (the time of the last one travels in the stored entry, so every process sees
it): a misconfigured account or a revoked consent cannot make the service hammer Entra ID.
"""

import hashlib
import json
import threading
import time
from typing import Callable, Dict, Optional, Tuple

from .. import APP_NAME
from ..core.errors import DefenderIpStatsError
from ..splunk.logs import redact

TOKEN_REALM = APP_NAME + "-token"
# A stored token is used only while it has this long left: a request may run for a while with it.
MIN_LIFETIME = 300
# Forced refreshes (after a 401) at most this often per account and resource.
FORCED_REFRESH_INTERVAL = 60.0


def credential_fingerprint(account, credential, scope: str) -> str:
    material = credential if isinstance(credential, str) else json.dumps(credential, sort_keys=True)
    parts = [account.tenant_id.lower(), account.client_id.lower(), account.effective_authority.lower(), scope,
             hashlib.sha256(material.encode("utf-8")).hexdigest()]
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()


def entry_name(account: str, resource: str) -> str:
    return "%s.%s" % (account, resource)


class TokenStore:
    """Access tokens by (account, resource): this process's memory, then storage/passwords."""

    def __init__(self, clock: Callable[[], float] = time.time, persist: bool = True):
        self.clock = clock
        self.persist = persist  # False: this process's memory only (the setup page's connection test)
        self._memory: Dict[Tuple[str, str], dict] = {}
        self._forced: Dict[Tuple[str, str], float] = {}  # when a 401 last forced a new token
        self._lock = threading.Lock()

    def _usable(self, entry: Optional[dict], fingerprint: str) -> bool:
        return bool(entry) and entry.get("fingerprint") == fingerprint \
            and float(entry.get("expires_at", 0)) - self.clock() > MIN_LIFETIME

    def get(self, credentials, account: str, resource: str, fingerprint: str) -> Optional[dict]:
        with self._lock:
            entry = self._memory.get((account, resource))
        if self._usable(entry, fingerprint) or not self.persist:
            return entry if self._usable(entry, fingerprint) else None
        try:
            stored = credentials.password(TOKEN_REALM, entry_name(account, resource), "token cache")
            entry = json.loads(stored) if stored else None
        except (DefenderIpStatsError, ValueError):
            entry = None
        if isinstance(entry, dict) and entry.get("forced_at"):
            with self._lock:
                key = (account, resource)
                self._forced[key] = max(self._forced.get(key, 0.0), float(entry["forced_at"]))
        if self._usable(entry, fingerprint):
            redact(entry.get("access_token", ""))
            with self._lock:
                self._memory[(account, resource)] = entry
            return entry
        return None

    def put(self, credentials, account: str, resource: str, entry: dict, logger=None) -> None:
        with self._lock:
            self._memory[(account, resource)] = entry
        self._store(credentials, account, resource, entry, logger)

    def last_forced(self, account: str, resource: str) -> float:
        with self._lock:
            return self._forced.get((account, resource), 0.0)

    def discard(self, credentials, account: str, resource: str, token: str, logger=None) -> bool:
        """Forget ``token`` (refused with a 401), unless a 401 already forced a new token within the
        last minute. Returns whether it was forgotten, i.e. whether the next ``get`` makes a new one."""
        key = (account, resource)
        with self._lock:
            entry = self._memory.get(key)
            if entry is None or entry.get("access_token") != token:
                return True  # already replaced (by this or another request)
            now = self.clock()
            if now - max(self._forced.get(key, 0.0), float(entry.get("forced_at") or 0)) < FORCED_REFRESH_INTERVAL:
                return False
            self._forced[key] = now
            self._memory.pop(key, None)
        self._store(credentials, account, resource, dict(entry, expires_at=0, forced_at=now), logger)
        return True

    def forget(self, account: str) -> None:
        with self._lock:
            for key in [k for k in self._memory if k[0] == account]:
                del self._memory[key]

    def _store(self, credentials, account, resource, entry, logger):
        if not self.persist:
            return
        try:
            credentials.store_password(TOKEN_REALM, entry_name(account, resource), json.dumps(entry))
        except Exception as error:  # the token still serves this request; the next one may ask again
            if logger is not None:
                logger.warning("could not store the access token of account %s in the token cache: %s",
                               account, type(error).__name__)


STORE = TokenStore()  # one per handler process; a shortcut in front of storage/passwords


class AccountTokens:
    """One account's tokens for one resource ("api" or "graph"), the interface the API clients use:
    ``token()``, ``invalidate(stale)`` and the count of token ``requests`` made to Entra ID."""

    def __init__(self, credentials, account, credential, scope: str, resource: str, session,
                 store: TokenStore = STORE, logger=None):
        self.credentials = credentials  # storage/passwords (a CredentialStore), where the token is kept
        self.account = account
        self.credential = credential
        self.scope = scope
        self.resource = resource
        self.session = session
        self.store = store
        self.logger = logger
        self.fingerprint = credential_fingerprint(account, credential, scope)
        self.requests = 0
        self._lock = threading.Lock()

    def token(self) -> str:
        with self._lock:
            entry = self.store.get(self.credentials, self.account.name, self.resource, self.fingerprint)
            if entry is None:
                entry = self._new_token()
            return entry["access_token"]

    def _new_token(self) -> dict:
        from ..microsoft.entra import TokenProvider  # at the first token: msal and requests are slow to import

        provider = TokenProvider(self.account.client_id, self.credential, self.account.effective_authority,
                                 self.scope, http_client=self.session)
        issued = self.store.clock()
        try:
            token, lifetime = provider.token_with_lifetime()
        finally:
            self.requests += provider.requests
        redact(token)
        entry = {"access_token": token, "expires_at": issued + lifetime, "issued_at": issued,
                 "fingerprint": self.fingerprint,
                 "forced_at": self.store.last_forced(self.account.name, self.resource)}
        self.store.put(self.credentials, self.account.name, self.resource, entry, self.logger)
        return entry

    def invalidate(self, stale: str = None) -> None:
        with self._lock:
            if stale is None:
                return
            if not self.store.discard(self.credentials, self.account.name, self.resource, stale, self.logger) \
                    and self.logger is not None:
                self.logger.warning("account %s: Microsoft refused the access token (401) again within a minute "
                                    "of the last forced refresh; no new token before that minute has passed",
                                    self.account.name)
