"""One request to the privileged service: who asks, and the system session that answers.

splunkd hands the handler the caller's own session (``passSession``) and a system session
(``passSystemAuth``). The caller's session is used only to learn who the caller is (roles and
capabilities, from ``authentication/current-context``) and to watch the caller's own search job;
everything else (settings, accounts, secrets, the cache) is read and written with the system session.
"""

import json
from dataclasses import dataclass
from typing import Tuple

from splunklib import binding

from ..core.errors import SplunkdError
from ..splunk import rest
from ..splunk.conf import ConfStore
from ..splunk.passwords import CredentialStore

ADMIN_CAPABILITIES = ("defenderipstats_admin", "admin_all_objects")


def pairs(value) -> dict:
    """splunkd's ``[[name, value], ...]`` form or query, as a dict (the last value of a name wins)."""
    out = {}
    for item in value or []:
        if isinstance(item, (list, tuple)) and len(item) == 2:
            out[str(item[0])] = str(item[1])
    return out


@dataclass(frozen=True)
class Caller:
    user: str
    roles: Tuple[str, ...]
    capabilities: Tuple[str, ...]

    @property
    def is_admin(self) -> bool:
        return any(cap in self.capabilities for cap in ADMIN_CAPABILITIES)


class RequestContext:
    """What a handler needs from one decoded request of splunkd's persistent protocol."""

    def __init__(self, request: dict, logger):
        self.request = request
        self.logger = logger
        self.method = str(request.get("method") or "GET").upper()
        self.path_info = str(request.get("path_info") or "").strip("/")
        self.form = pairs(request.get("form"))
        self.query = pairs(request.get("query"))
        session = request.get("session") or {}
        self.user = str(session.get("user") or "")
        self._caller_key = session.get("authtoken")
        self._uri = (request.get("server") or {}).get("rest_uri")
        self._system_key = request.get("system_authtoken")
        self._conf = self._credentials = None
        self._caller = None

    @property
    def params(self) -> dict:
        """The request's parameters: the query string, and for POST the form on top."""
        return dict(self.query, **self.form)

    def system_service(self, timeout: float = rest.SPLUNKD_TIMEOUT):
        if not self._system_key or not self._uri:
            raise SplunkdError("splunkd passed no system session to the app's service (restmap.conf passSystemAuth).")
        return rest.connect(self._uri, self._system_key, timeout=timeout)

    def caller_service(self, timeout: float = rest.SPLUNKD_TIMEOUT):
        if not self._caller_key or not self._uri:
            raise SplunkdError("splunkd passed no caller session to the app's service (restmap.conf passSession).")
        return rest.connect(self._uri, self._caller_key, timeout=timeout)

    @property
    def conf(self) -> ConfStore:
        """The app's .conf files (settings, accounts), on the system session."""
        if self._conf is None:
            self._conf = ConfStore(self.system_service())
        return self._conf

    @property
    def credentials(self) -> CredentialStore:
        """storage/passwords (secrets, proxy credentials, tokens), on the system session."""
        if self._credentials is None:
            self._credentials = CredentialStore(self.system_service())
        return self._credentials

    @property
    def caller(self) -> Caller:
        """The caller's roles and capabilities, as splunkd knows them for the caller's own session."""
        if self._caller is None:
            try:
                response = self.caller_service().get("authentication/current-context", output_mode="json")
                entries = json.loads(response.body.read().decode("utf-8")).get("entry") or []
            except binding.HTTPError as error:
                raise SplunkdError("splunkd did not say who the caller is (%s)." % error.status)
            except (OSError, ValueError) as error:
                raise SplunkdError("splunkd did not say who the caller is (%s)." % type(error).__name__)
            content = (entries[0].get("content") if entries else None) or {}
            self._caller = Caller(user=str(content.get("username") or self.user),
                                  roles=tuple(str(r) for r in content.get("roles") or ()),
                                  capabilities=tuple(str(c) for c in content.get("capabilities") or ()))
        return self._caller
