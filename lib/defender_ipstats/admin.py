"""Account administration for the setup page: list, save, delete, test the connection, defaults.

Runs in the app's persistent REST handler (broker.py routes to it) with the system session; splunkd
admits only callers with the capability ``defenderipstats_admin`` (restmap.conf, authorize.conf).
Secrets are write-only: they go to storage/passwords and are never sent back, only whether one is
stored.
"""

import re
from typing import Dict, Optional

from .broker import _CACHE, TOKEN_REALM
from .errors import AuthenticationError, ConfigurationError, DefenderIpStatsError
from .settings import Account, Settings
from .splunkd import ACCOUNTS_CONF, CREDENTIAL_REALM, PROXY_REALM, SETTINGS_CONF

ACCOUNT_FIELDS = ("tenant_id", "client_id", "cloud", "api_url", "authority", "scope", "graph_url", "auth",
                  "certificate_thumbprint", "ca_bundle", "proxy_url", "timeout")
SETTINGS_FIELDS = ("default_account", "lookback_hours", "cache_ttl", "not_seen_ttl", "max_wait", "rate_per_minute",
                   "rate_per_hour", "log_level", "backend")
NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
TEST_IP = "192.0.2.1"  # documentation range (RFC 5737): says nothing about the organisation


def _json(config, path: str, **query) -> dict:
    return config._get_json(path, **query)


def _entries(config, conf: str) -> Dict[str, dict]:
    data = _json(config, "configs/conf-%s" % conf, count=0)
    return {entry["name"]: {k: v for k, v in (entry.get("content") or {}).items() if not k.startswith("eai:")}
            for entry in data.get("entry") or []}


def list_accounts(config) -> dict:
    accounts = []
    for name, content in sorted(_entries(config, ACCOUNTS_CONF).items()):
        if not (content.get("tenant_id") or content.get("client_id")):
            continue
        item = {key: str(content.get(key) or "") for key in ACCOUNT_FIELDS}
        item["name"] = name
        item["has_secret"] = config.password(CREDENTIAL_REALM, name) is not None
        item["has_proxy_credentials"] = config.password(PROXY_REALM, name) is not None
        proxy_credentials = config.password(PROXY_REALM, name)
        item["proxy_user"] = proxy_credentials.partition(":")[0] if proxy_credentials else ""
        accounts.append(item)
    return {"accounts": accounts, "settings": get_settings(config)}


def get_settings(config) -> dict:
    return {key: str(value) for key, value in config.settings().__dict__.items()}


def save_settings(config, form: Dict[str, str]) -> dict:
    values = {key: form[key].strip() for key in SETTINGS_FIELDS if key in form}
    current = get_settings(config)
    Settings.from_conf(dict(current, **values))  # validates, with messages naming the key
    if values:
        config.service.post("configs/conf-%s/settings" % SETTINGS_CONF, **values)
    return get_settings(config)


def _check_name(name: str) -> str:
    if not NAME.match(name or ""):
        raise ConfigurationError("Account names are 1 to 64 letters, digits, '_', '-' or '.', not %r." % name)
    return name


def candidate_account(config, name: str, form: Dict[str, str]) -> Account:
    """The account as it would be saved: the stored stanza with the form's fields on top, validated."""
    stored = _entries(config, ACCOUNTS_CONF).get(name, {})
    merged = {key: str(stored.get(key) or "") for key in ACCOUNT_FIELDS}
    merged.update({key: form[key].strip() for key in ACCOUNT_FIELDS if key in form})
    return Account.from_conf(name, merged)


def save_account(config, name: str, form: Dict[str, str], create: bool) -> dict:
    from splunklib import binding

    _check_name(name)
    exists = name in {a["name"] for a in list_accounts(config)["accounts"]}
    if create and exists:
        raise ConfigurationError("An account named '%s' exists already." % name)
    if not create and not exists:
        raise ConfigurationError("Unknown account '%s'." % name)
    candidate_account(config, name, form)
    secret = form.get("secret") or ""
    if create and not secret:
        raise ConfigurationError("A new account needs its client secret (or, with auth = certificate, "
                                 "the PEM private key).")
    values = {key: form[key].strip() for key in ACCOUNT_FIELDS if key in form}
    try:
        if create and name != "default":
            config.service.post("configs/conf-%s" % ACCOUNTS_CONF, name=name, **values)
        else:
            path = "configs/conf-%s/%s" % (ACCOUNTS_CONF, binding.UrlEncoded(name, encode_slash=True))
            config.service.post(binding.UrlEncoded(path, skip_encode=True), **values)
    except binding.HTTPError as error:
        raise ConfigurationError("splunkd refused to save the account (%s)." % error.status)
    if secret:
        config.store_password(CREDENTIAL_REALM, name, secret)
    proxy_user, proxy_password = form.get("proxy_user", "").strip(), form.get("proxy_password", "")
    if form.get("clear_proxy_credentials") in ("1", "true"):
        config.delete_password(PROXY_REALM, name)
    elif proxy_user and proxy_password:
        config.store_password(PROXY_REALM, name, "%s:%s" % (proxy_user, proxy_password))
    forget_tokens(config, name)
    return next(a for a in list_accounts(config)["accounts"] if a["name"] == name)


def forget_tokens(config, name: str) -> None:
    _CACHE.forget(name)
    for resource in ("api", "graph"):
        try:
            config.delete_password(TOKEN_REALM, "%s.%s" % (name, resource))
        except DefenderIpStatsError:
            pass


def delete_account(config, name: str) -> dict:
    from splunklib import binding

    _check_name(name)
    try:
        path = "configs/conf-%s/%s" % (ACCOUNTS_CONF, binding.UrlEncoded(name, encode_slash=True))
        config.service.delete(binding.UrlEncoded(path, skip_encode=True))
    except binding.HTTPError as error:
        if error.status != 404:
            raise ConfigurationError("splunkd refused to delete the account (%s)." % error.status)
        if name != "default":
            raise ConfigurationError("Unknown account '%s'." % name)
    for realm in (CREDENTIAL_REALM, PROXY_REALM):
        config.delete_password(realm, name)
    forget_tokens(config, name)
    return {"deleted": name}


def test_connection(config, name: str, form: Optional[Dict[str, str]] = None, ip: str = TEST_IP) -> dict:
    """Gets a fresh token and calls the API for one IP, with the account as saved or as in the form.

    {"ok": True, "message": ...} or {"ok": False, "stage": "configuration"|"sign-in"|"api", "message": ...}.
    """
    import requests

    from .access import ConnectionProfile, LocalAccess, msal_credential, resolve_profile, resolve_proxy
    from .transport import describe_proxy_error

    form = form or {}
    try:
        account = candidate_account(config, _check_name(name), form)
        if form.get("secret"):
            server_proxy = config.server_proxy() if not account.proxy_url else {}
            user, password = form.get("proxy_user", "").strip(), form.get("proxy_password", "")
            proxy = resolve_proxy(account, server_proxy, "%s:%s" % (user, password) if user and password
                                  else config.proxy_credentials(name) if (account.proxy_url or server_proxy) else None)
            profile = ConnectionProfile(msal_credential(account, form["secret"]), proxy.proxy_url, proxy.no_proxy,
                                        proxy.proxy_source)
        else:
            profile = resolve_profile(config, account)
    except DefenderIpStatsError as error:
        return {"ok": False, "stage": "configuration", "message": str(error)}
    access = LocalAccess(account, profile)
    session = access.session(pool_size=1)
    via = " through the proxy %s" % profile.proxy_host if profile.proxy_url else ""
    try:
        token = access.tokens(account.effective_scope, session).token()
    except AuthenticationError as error:
        return {"ok": False, "stage": "sign-in", "message": str(error)}
    url = "%s/api/ips/%s/stats" % (account.effective_api_url, ip)
    try:
        response = session.get(url, params={"lookBackHours": "1"}, allow_redirects=False,
                               headers={"Authorization": "Bearer " + token, "Accept": "application/json"})
    except requests.exceptions.ProxyError as error:
        return {"ok": False, "stage": "api", "message": "Could not reach the Defender API: %s."
                % describe_proxy_error(error)}
    except requests.exceptions.SSLError:
        return {"ok": False, "stage": "api", "message": "Could not reach the Defender API: TLS certificate "
                "verification failed (set ca_bundle for a private CA or a TLS-inspecting proxy)."}
    except requests.exceptions.RequestException as error:
        return {"ok": False, "stage": "api", "message": "Could not reach the Defender API: %s."
                % type(error).__name__}
    status = response.status_code
    if status in (200, 404):
        return {"ok": True, "message": "Connected: signed in to %s and the Defender API %s answered for %s%s."
                % (account.effective_authority, account.effective_api_url, ip, via)}
    if status == 403:
        return {"ok": False, "stage": "api", "message": "Defender refused access (403): the app registration lacks "
                "the WindowsDefenderATP application permission Ip.Read.All, or admin consent was not granted."}
    if status == 401:
        return {"ok": False, "stage": "api", "message": "Defender rejected a fresh access token (401): check the "
                "cloud and the api_url, authority and scope overrides."}
    return {"ok": False, "stage": "api", "message": "The Defender API answered %d." % status}
