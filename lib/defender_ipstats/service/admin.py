"""Account administration for the setup page: list, save, delete, test the connection, defaults.

Runs in the app's privileged service with the system session; splunkd admits only callers with the
capability ``defenderipstats_admin`` (restmap.conf, authorize.conf). Secrets are write-only: they go to
storage/passwords and are never sent back, only whether one is stored.

A stored credential only ever goes where it was stored for: changing where an account signs in or what
it calls (tenant, client, cloud, authority, api_url, graph_url, scope, proxy_url, ca_bundle) needs the
credential again, and the connection test of changed settings needs it too, so a form can never send
the stored secret (or the stored proxy password) to a host it names.
"""

from typing import Dict, Optional

from ..core.accounts import Account, check_account_name
from ..core.errors import AuthenticationError, ConfigurationError, DefenderIpStatsError
from ..core.model import FOUND, INVALID, NOT_SEEN, IpStats
from ..core.outcomes import Retired, Throttled
from ..core.settings import Settings
from ..splunk.conf import ACCOUNTS_CONF, SETTINGS_CONF
from ..splunk.passwords import CREDENTIAL_REALM, PROXY_REALM
from .profile import ConnectionProfile, msal_credential, resolve_profile, resolve_proxy, session
from .restricted import keep_apart
from .tokens import STORE, TOKEN_REALM, AccountTokens, TokenStore, entry_name

ACCOUNT_FIELDS = ("tenant_id", "client_id", "cloud", "api_url", "authority", "scope", "graph_url", "auth",
                  "certificate_thumbprint", "ca_bundle", "proxy_url", "timeout", "allowed_roles")
# Where a credential goes: changing any of these needs the credential again.
DESTINATION_FIELDS = ("tenant_id", "client_id", "cloud", "authority", "api_url", "graph_url", "scope", "proxy_url",
                      "ca_bundle")
SETTINGS_FIELDS = tuple(Settings.__dataclass_fields__)  # every [settings] key: the setup page sets them all
TEST_IP = "192.0.2.1"  # documentation range (RFC 5737): says nothing about the organisation


def _stored_accounts(conf) -> Dict[str, Dict[str, str]]:
    return conf.account_directory().stanzas


def list_accounts(conf, credentials) -> dict:
    accounts = []
    stored = _stored_accounts(conf)
    spend = _hourly_spend(conf, stored)
    for name, content in sorted(stored.items()):
        item = {key: str(content.get(key) or "") for key in ACCOUNT_FIELDS}
        item["name"] = name
        item["has_secret"] = credentials.password(CREDENTIAL_REALM, name) is not None
        proxy_credentials = credentials.password(PROXY_REALM, name)
        item["has_proxy_credentials"] = proxy_credentials is not None
        item["proxy_user"] = proxy_credentials.partition(":")[0] if proxy_credentials else ""
        item["spend"] = spend.get(name, {})
        accounts.append(item)
    return {"accounts": accounts, "settings": get_settings(conf)}


def _hourly_spend(conf, stored: Dict[str, Dict[str, str]]) -> dict:
    """What each user spent of each account's budgets in the last hour; nothing where it cannot be read."""
    accounts = []
    for name, content in stored.items():
        try:
            accounts.append(Account.from_conf(name, content))
        except ConfigurationError:
            continue  # an incomplete account spends nothing
    from ..splunk.spend import hourly_spend  # the page's figures only: SQLite stays out of getinfo's way

    try:
        return hourly_spend(conf.service, accounts)
    except Exception:  # the page still lists the accounts
        return {}


def get_settings(conf) -> dict:
    return {key: str(value) for key, value in conf.settings().__dict__.items()}


def save_settings(conf, form: Dict[str, str]) -> dict:
    values = {key: form[key].strip() for key in SETTINGS_FIELDS if key in form}
    if values.get("default_account"):
        check_account_name(values["default_account"], "default_account")
    Settings.from_conf(dict(get_settings(conf), **values))  # validates, with messages naming the key
    if values:
        conf.save_stanza(SETTINGS_CONF, "settings", values, create=False)
    return get_settings(conf)


def _destination_changes(stored: Optional[Dict[str, str]], form: Dict[str, str]):
    """The destination fields the form changes (all that it sets, for an account not stored yet)."""
    if stored is None:
        return [key for key in DESTINATION_FIELDS if form.get(key, "").strip()] or ["tenant_id"]
    return [key for key in DESTINATION_FIELDS
            if key in form and form[key].strip() != str(stored.get(key) or "").strip()]


def candidate_account(stored: Optional[Dict[str, str]], name: str, form: Dict[str, str]) -> Account:
    """The account as it would be saved: the stored stanza with the form's fields on top, validated."""
    merged = {key: str((stored or {}).get(key) or "") for key in ACCOUNT_FIELDS}
    merged.update({key: form[key].strip() for key in ACCOUNT_FIELDS if key in form})
    return Account.from_conf(name, merged)


def save_account(conf, credentials, name: str, form: Dict[str, str], create: bool) -> dict:
    check_account_name(name, "The account name")
    stored_accounts = _stored_accounts(conf)
    stored = stored_accounts.get(name)
    if create and stored is not None:
        raise ConfigurationError("An account named '%s' exists already." % name)
    if not create and stored is None:
        raise ConfigurationError("Unknown account '%s'." % name)
    account = candidate_account(stored, name, form)
    secret = form.get("secret") or ""
    changed = _destination_changes(stored, form)
    if changed and not secret:
        raise ConfigurationError(
            "A new account needs its client secret (or, with auth = certificate, the PEM private key)." if create else
            "Changing %s changes where the credential is sent: enter the client secret (or certificate key) again."
            % ", ".join(changed))
    proxy_user, proxy_password = form.get("proxy_user", "").strip(), form.get("proxy_password", "")
    clear_proxy = form.get("clear_proxy_credentials") in ("1", "true")
    if not create and "proxy_url" in changed and not clear_proxy and not proxy_password \
            and credentials.password(PROXY_REALM, name) is not None:
        raise ConfigurationError("Changing proxy_url changes where the proxy password is sent: enter the proxy "
                                 "password again (or clear the stored proxy credentials).")
    # Every key is written, empty ones too: a key the app's stanza does not set could be filled in by
    # another app's globally shared stanza of the same name.
    values = {key: str(form[key].strip() if key in form else (stored or {}).get(key) or "") for key in ACCOUNT_FIELDS}
    values["allowed_roles"] = ";".join(account.allowed_roles)
    conf.save_stanza(ACCOUNTS_CONF, name, values, create=create)
    if secret:
        credentials.store_password(CREDENTIAL_REALM, name, secret)
    if clear_proxy:
        credentials.delete_password(PROXY_REALM, name)
    elif proxy_user and proxy_password:
        credentials.store_password(PROXY_REALM, name, "%s:%s" % (proxy_user, proxy_password))
    forget_tokens(credentials, name)
    answer = next(a for a in list_accounts(conf, credentials)["accounts"] if a["name"] == name)
    if account.restricted:
        answer["kept_apart"] = keep_apart(conf.service, name)
    return answer


def forget_tokens(credentials, name: str) -> None:
    STORE.forget(name)
    for resource in ("api", "graph"):
        try:
            credentials.delete_password(TOKEN_REALM, entry_name(name, resource))
        except DefenderIpStatsError:
            pass


def delete_account(conf, credentials, name: str) -> dict:
    check_account_name(name, "The account name")
    if not conf.delete_stanza(ACCOUNTS_CONF, name):
        raise ConfigurationError("Unknown account '%s'." % name)
    for realm in (CREDENTIAL_REALM, PROXY_REALM):
        credentials.delete_password(realm, name)
    forget_tokens(credentials, name)
    return {"deleted": name}


def test_connection(conf, credentials, name: str, form: Optional[Dict[str, str]] = None, ip: str = TEST_IP) -> dict:
    """Gets a fresh token and calls the API for one IP, with the account as saved or as in the form.

    Settings the form changes are tested only with the credential the form brings: the stored one is
    never sent to a host the form names. Answers {"ok": True, "message": ...} or
    {"ok": False, "stage": "configuration"|"sign-in"|"api", "message": ...}.
    """
    from ..microsoft.defender import DefenderClient  # at call time: listing and editing accounts needs no requests

    form = form or {}
    try:
        check_account_name(name, "The account name")
        stored = _stored_accounts(conf).get(name)
        account = candidate_account(stored, name, form)
        changed = _destination_changes(stored, form)
        secret = form.get("secret") or ""
        if changed and not secret:
            raise ConfigurationError("Enter the client secret (or certificate key) to test changed settings (%s): "
                                     "a stored credential is sent only where it was saved for." % ", ".join(changed))
        user, password = form.get("proxy_user", "").strip(), form.get("proxy_password", "")
        if secret:
            server_proxy = conf.server_proxy() if not account.proxy_url else {}
            stored_proxy = None
            if not (user and password) and (account.proxy_url or server_proxy):
                if "proxy_url" in changed and credentials.password(PROXY_REALM, name) is not None:
                    raise ConfigurationError("Enter the proxy password to test a changed proxy_url.")
                stored_proxy = credentials.proxy_credentials(name)
            proxy = resolve_proxy(account, server_proxy, "%s:%s" % (user, password) if user and password
                                  else stored_proxy)
            profile = ConnectionProfile(msal_credential(account, secret), proxy.proxy_url, proxy.no_proxy,
                                        proxy.proxy_source)
        else:
            profile = resolve_profile(conf, credentials, account)
    except DefenderIpStatsError as error:
        return {"ok": False, "stage": "configuration", "message": str(error)}
    http = session(account, profile, pool_size=1)
    via = " through the proxy %s" % profile.proxy_host if profile.proxy_url else ""
    tokens = AccountTokens(credentials, account, profile.credential, account.effective_scope, "api", http,
                           store=TokenStore(persist=False))  # a test never reuses nor keeps a token
    client = DefenderClient(account.effective_api_url, tokens, http)
    try:
        try:
            tokens.token()
        except AuthenticationError as error:
            return {"ok": False, "stage": "sign-in", "message": str(error)}
        try:
            # one call, no retry of a 5xx (a test reports what the API answers); a 401 gets one fresh token
            answer = client.ip_stats(ip, 1, retry_gate=lambda delay: delay <= 0)
        except DefenderIpStatsError as error:  # 401 with a fresh token, 403
            return {"ok": False, "stage": "api", "message": str(error)}
    finally:
        tokens.store.forget(name)
    if isinstance(answer, (Throttled, Retired)) or answer.status == INVALID:
        status = 429 if isinstance(answer, Throttled) else 400 if isinstance(answer, IpStats) else answer.status
        return {"ok": False, "stage": "api", "message": "The Defender API answered %d." % status}
    if answer.status in (FOUND, NOT_SEEN):
        return {"ok": True, "message": "Connected: signed in to %s and the Defender API %s answered for %s%s."
                % (account.effective_authority, account.effective_api_url, ip, via)}
    reason = answer.error or "no answer"
    if reason.startswith("TLS"):
        reason += " (set ca_bundle for a private CA or a TLS-inspecting proxy)"
    return {"ok": False, "stage": "api", "message": "The Defender API did not answer as expected: %s." % reason}
