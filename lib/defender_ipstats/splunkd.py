"""Reading the app's configuration and credential through splunkd's REST API.

Always through REST with the search's own session key (never from files on disk), so
splunkd's layering (default/local), permissions and the credential store apply.
"""

import json
from typing import Dict
from urllib.parse import urlsplit

from . import APP_NAME
from .errors import CredentialError, SplunkdError
from .settings import AccountDirectory, Settings

SETTINGS_CONF = "defenderipstats"
ACCOUNTS_CONF = "defenderipstats_accounts"
CREDENTIAL_REALM = APP_NAME
PROXY_REALM = APP_NAME + "-proxy"
SPLUNKD_TIMEOUT = 30
# The KV store cache is worth waiting for only so long: past this, the search goes on without it.
KVSTORE_TIMEOUT = 10


_logged_once = set()


def log_once(logger, text: str) -> None:
    """A warning logged once per process (a handler process answers many requests)."""
    if text not in _logged_once:
        _logged_once.add(text)
        logger.warning(text)


def connect(splunkd_uri: str, session_key: str, timeout: float = SPLUNKD_TIMEOUT):
    """A splunklib Service in the app's namespace, authenticated with the search's session key."""
    from splunklib import binding, client

    parts = urlsplit(splunkd_uri)
    return client.Service(
        handler=binding.handler(timeout=timeout),
        scheme=parts.scheme,
        host=parts.hostname,
        port=parts.port,
        token=session_key,
        owner="nobody",
        app=APP_NAME,
    )


def http_status(error) -> int:
    return getattr(error, "status", 0) or 0


def credential_name(realm: str, username: str) -> str:
    """storage/passwords entry name: ``realm:username:`` with ':' escaped as splunkd does."""
    return "%s:%s:" % (realm.replace(":", "\\:"), username.replace(":", "\\:"))


class SplunkdConfig:
    """Settings, accounts and secrets of the app, as splunkd serves them to this search."""

    def __init__(self, service):
        self.service = service

    def _get_json(self, path: str, **query) -> dict:
        from splunklib import binding

        try:
            response = self.service.get(binding.UrlEncoded(path, skip_encode=True), output_mode="json", **query)
            return json.loads(response.body.read().decode("utf-8"))
        except binding.HTTPError:
            raise
        except (OSError, ValueError) as error:
            raise SplunkdError("splunkd did not answer %s: %s" % (path.split("/")[0], _short(error)))

    def _stanza(self, conf: str, stanza: str) -> Dict[str, str]:
        from splunklib import binding

        path = "configs/conf-%s/%s" % (conf, binding.UrlEncoded(stanza, encode_slash=True))
        data = self._get_json(path)
        entries = data.get("entry") or []
        if not entries:
            raise KeyError(stanza)
        content = entries[0].get("content") or {}
        return {key: value for key, value in content.items() if not key.startswith("eai:")}

    def account_directory(self, logger=None) -> AccountDirectory:
        """The app's own account stanzas (one wildcard listing of every app's instances).

        Stanzas that other apps own are left out (and logged); a name that another app shares
        globally is marked shadowed, since splunkd would merge that app's keys into the app's own.
        """
        from splunklib import binding

        try:
            data = self._get_json("configs/conf-%s" % ACCOUNTS_CONF, count=0, owner="nobody", app="-")
        except binding.HTTPError as error:
            raise SplunkdError(_rest_failure("list defenderipstats_accounts.conf", error))
        own, shadowed = {}, {}
        for entry in data.get("entry") or []:
            name = entry.get("name") or ""
            acl = entry.get("acl") or {}
            content = {key: value for key, value in (entry.get("content") or {}).items()
                       if not key.startswith("eai:")}
            if acl.get("app") == APP_NAME:
                own[name] = content
            elif str(acl.get("sharing")) in ("global", "system"):
                shadowed.setdefault(name, str(acl.get("app")))
        if logger is not None:
            for name, app in sorted(shadowed.items()):
                log_once(logger, "the app %s shares a defenderipstats_accounts.conf stanza [%s] globally: it is "
                         "ignored, and an account of that name in this app is refused" % (app, name))
        return AccountDirectory(own, shadowed)

    def save_stanza(self, conf: str, name: str, values: Dict[str, str], create: bool) -> None:
        """Create or change ``[name]`` of ``conf`` in the app (its local layer), through REST."""
        from splunklib import binding

        try:
            if create:
                self.service.post("configs/conf-%s" % conf, name=name, **values)
            else:
                path = "configs/conf-%s/%s" % (conf, binding.UrlEncoded(name, encode_slash=True))
                self.service.post(binding.UrlEncoded(path, skip_encode=True), **values)
        except binding.HTTPError as error:
            raise SplunkdError(_rest_failure("save [%s] in %s.conf" % (name, conf), error))

    def delete_stanza(self, conf: str, name: str) -> bool:
        """Remove ``[name]`` from ``conf``; False when there was none."""
        from splunklib import binding

        path = "configs/conf-%s/%s" % (conf, binding.UrlEncoded(name, encode_slash=True))
        try:
            self.service.delete(binding.UrlEncoded(path, skip_encode=True))
            return True
        except binding.HTTPError as error:
            if http_status(error) == 404:
                return False
            raise SplunkdError(_rest_failure("delete [%s] from %s.conf" % (name, conf), error))

    def settings(self) -> Settings:
        from splunklib import binding

        try:
            return Settings.from_conf(self._stanza(SETTINGS_CONF, "settings"))
        except (KeyError, binding.HTTPError) as error:
            if isinstance(error, KeyError) or http_status(error) == 404:
                return Settings()
            raise SplunkdError(_rest_failure("read defenderipstats.conf", error))

    def password(self, realm: str, username: str, what: str = "credential"):
        """The clear password of ``realm:username:`` in storage/passwords, or None when there is none."""
        from splunklib import binding

        name = credential_name(realm, username)
        path = "storage/passwords/%s" % binding.UrlEncoded(name, encode_slash=True)
        try:
            data = self._get_json(path)
        except binding.HTTPError as error:
            status = http_status(error)
            if status == 404:
                return None
            if status == 403:
                raise CredentialError(
                    "This user may not read the %s of account '%s' (splunkd answered 403); "
                    "ask an admin to grant access to the app's credential." % (what, username)
                )
            raise SplunkdError(_rest_failure("read the %s" % what, error))
        entries = data.get("entry") or []
        return (entries[0].get("content") or {}).get("clear_password") if entries else None

    def secret(self, account: str, what: str = "client secret") -> str:
        secret = self.password(CREDENTIAL_REALM, account, what)
        if secret is None:
            raise CredentialError(
                "No %s is stored for account '%s': add it to storage/passwords with "
                "realm %s and username %s." % (what, account, CREDENTIAL_REALM, account)
            )
        if not secret:
            raise CredentialError("The %s stored for account '%s' is empty." % (what, account))
        return secret

    def store_password(self, realm: str, username: str, password: str) -> None:
        """Create or replace ``realm:username:`` in storage/passwords (the app's namespace)."""
        from splunklib import binding

        try:
            self.service.post("storage/passwords", name=username, realm=realm, password=password)
        except binding.HTTPError as error:
            if http_status(error) != 409:
                raise SplunkdError(_rest_failure("store a credential", error))
            name = binding.UrlEncoded(credential_name(realm, username), encode_slash=True)
            try:
                self.service.post(binding.UrlEncoded("storage/passwords/%s" % name, skip_encode=True),
                                  password=password)
            except binding.HTTPError as again:
                raise SplunkdError(_rest_failure("store a credential", again))

    def delete_password(self, realm: str, username: str) -> bool:
        from splunklib import binding

        name = binding.UrlEncoded(credential_name(realm, username), encode_slash=True)
        try:
            self.service.delete(binding.UrlEncoded("storage/passwords/%s" % name, skip_encode=True))
            return True
        except binding.HTTPError as error:
            if http_status(error) == 404:
                return False
            raise SplunkdError(_rest_failure("delete a credential", error))

    def proxy_credentials(self, account: str):
        """``<proxy user>:<proxy password>`` for the account's proxy, or None."""
        return self.password(PROXY_REALM, account, "proxy credentials") or None

    def server_proxy(self) -> Dict[str, str]:
        """Splunk's own proxy settings, server.conf [proxyConfig] (empty when unset or unreadable)."""
        from splunklib import binding

        try:
            return self._stanza("server", "proxyConfig")
        except (KeyError, binding.HTTPError):
            return {}


def _rest_failure(what: str, error) -> str:
    status = http_status(error)
    if status == 401:
        return "Could not %s: splunkd rejected the search's session (401)." % what
    if status == 403:
        return "Could not %s: this user lacks permission (splunkd answered 403)." % what
    return "Could not %s: splunkd answered %s." % (what, status or _short(error))


def _short(error) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:200]
