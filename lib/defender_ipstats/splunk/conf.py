"""The app's .conf files through splunkd: settings, the account directory, stanza changes."""

from typing import Dict

from splunklib import binding

from .. import APP_NAME
from ..core.accounts import AccountDirectory
from ..core.errors import SplunkdError
from ..core.settings import Settings
from .rest import get_json, http_status, rest_failure

SETTINGS_CONF = "defenderipstats"
ACCOUNTS_CONF = "defenderipstats_accounts"


_logged_once = set()


def log_once(logger, text: str) -> None:
    """A warning logged once per process (a handler process answers many requests)."""
    if text not in _logged_once:
        _logged_once.add(text)
        logger.warning(text)


class ConfStore:
    """The app's conf stanzas, as splunkd serves them to ``service``'s session."""

    def __init__(self, service):
        self.service = service

    def stanza(self, conf: str, stanza: str) -> Dict[str, str]:
        path = "configs/conf-%s/%s" % (conf, binding.UrlEncoded(stanza, encode_slash=True))
        data = get_json(self.service, path)
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
        try:
            data = get_json(self.service, "configs/conf-%s" % ACCOUNTS_CONF, count=0, owner="nobody", app="-")
        except binding.HTTPError as error:
            raise SplunkdError(rest_failure("list defenderipstats_accounts.conf", error))
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
        try:
            if create:
                self.service.post("configs/conf-%s" % conf, name=name, **values)
            else:
                path = "configs/conf-%s/%s" % (conf, binding.UrlEncoded(name, encode_slash=True))
                self.service.post(binding.UrlEncoded(path, skip_encode=True), **values)
        except binding.HTTPError as error:
            raise SplunkdError(rest_failure("save [%s] in %s.conf" % (name, conf), error))

    def delete_stanza(self, conf: str, name: str) -> bool:
        """Remove ``[name]`` from ``conf``; False when there was none."""
        path = "configs/conf-%s/%s" % (conf, binding.UrlEncoded(name, encode_slash=True))
        try:
            self.service.delete(binding.UrlEncoded(path, skip_encode=True))
            return True
        except binding.HTTPError as error:
            if http_status(error) == 404:
                return False
            raise SplunkdError(rest_failure("delete [%s] from %s.conf" % (name, conf), error))

    def settings(self) -> Settings:
        try:
            return Settings.from_conf(self.stanza(SETTINGS_CONF, "settings"))
        except (KeyError, binding.HTTPError) as error:
            if isinstance(error, KeyError) or http_status(error) == 404:
                return Settings()
            raise SplunkdError(rest_failure("read defenderipstats.conf", error))

    def server_proxy(self) -> Dict[str, str]:
        """Splunk's own proxy settings, server.conf [proxyConfig] (empty when unset or unreadable)."""
        try:
            return self.stanza("server", "proxyConfig")
        except (KeyError, binding.HTTPError):
            return {}
