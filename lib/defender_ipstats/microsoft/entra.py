"""Access tokens from Entra ID with msal (client credentials).

The secret goes to msal and nowhere else; tokens are kept in msal's in-memory cache of this
process. Error texts from Entra ID are passed on without anything msal echoes back.
"""

import re
import threading
from urllib.parse import urlsplit

from ..core.errors import AuthenticationError
from .http import describe_failure

# AADSTS codes an admin can act on, in plain words.
_AADSTS_HINTS = {
    "7000215": "the client secret is wrong",
    "7000222": "the client secret has expired",
    "700016": "the client id is not known in this tenant",
    "90002": "the tenant was not found",
    "900023": "the tenant id is not valid",
    "70011": "the token scope is not valid for this application",
    "700027": "the client certificate was not accepted",
}


class TokenProvider:
    """Gets (and re-gets on demand) an app-only token for one account."""

    def __init__(self, client_id: str, credential, authority: str, scope: str, http_client):
        self._client_id = client_id
        self._credential = credential
        self._authority = authority
        self._scope = scope
        self._http_client = http_client  # an http.AppSession: verify, proxy and timeout live there
        self._app = None
        self._current = None
        self._lock = threading.Lock()
        self.requests = 0  # token requests that reached (or tried to reach) Entra ID

    def _application(self):
        if self._app is None:
            import msal  # at first use: getinfo must not pay for it

            self._app = msal.ConfidentialClientApplication(
                self._client_id,
                client_credential=self._credential,
                authority=self._authority,
                # Known Microsoft hosts need no discovery; a custom authority (sovereign
                # override, test identity provider) must not be sent to the public one.
                instance_discovery=False,
                http_client=self._http_client,
            )
        return self._app

    def token(self) -> str:
        return self.token_with_lifetime()[0]

    def token_with_lifetime(self):
        """(access token, seconds it stays valid)."""
        with self._lock:
            try:
                app = self._application()
                result = app.acquire_token_for_client(scopes=[self._scope])
            except ValueError as error:  # msal raises this for an unusable authority/discovery
                raise AuthenticationError("Sign-in failed for %s: %s" % (_host(self._authority), _clean(error)))
            except OSError as error:  # connection refused, TLS failure, timeout (requests errors)
                raise AuthenticationError("Could not reach the sign-in service %s: %s"
                                          % (_host(self._authority), _describe_network_error(error)))
            if result.get("token_source") != "cache":
                self.requests += 1
            token = result.get("access_token")
            if token:
                self._current = token
                try:
                    lifetime = int(result.get("expires_in") or 0)
                except (TypeError, ValueError):
                    lifetime = 0
                return token, lifetime if lifetime > 0 else 3599
            raise AuthenticationError(describe_token_error(result))

    def invalidate(self, stale: str = None) -> None:
        """Forget the cached token so the next call asks Entra ID again (after a 401).

        With ``stale``, only if that is still the current token: when several calls fail with
        the same expired token at once, one fresh token serves them all.
        """
        with self._lock:
            if stale is not None and stale != self._current:
                return
            self._current = None
            if self._app is not None:
                self._app.remove_tokens_for_client()


def describe_token_error(result: dict) -> str:
    error = str(result.get("error") or "error")
    description = str(result.get("error_description") or "")
    match = re.search(r"AADSTS(\d+)", description)
    code = match.group(1) if match else ""
    hint = _AADSTS_HINTS.get(code)
    first_line = _clean(description.split("\r\n")[0].split("\n")[0]) if description else ""
    text = "Entra ID refused the token request (%s)" % error
    if hint:
        text += ": %s" % hint
    if first_line:
        text += ". %s" % first_line
    return text


def _host(url: str) -> str:
    return urlsplit(url).netloc or url


def _clean(value) -> str:
    text = " ".join(str(value).split())
    return text[:300]


def _describe_network_error(error) -> str:
    reason = describe_failure(error)
    if reason.startswith("TLS"):
        return reason + " (set ca_bundle for a private CA)"
    return reason
