"""Accounts (defenderipstats_accounts.conf) and the directory of them: parsed and validated.

No I/O here (``splunk.conf`` reads the stanzas through splunkd's REST API).
"""

import re
from dataclasses import dataclass, field
from typing import Dict, Mapping, Tuple
from urllib.parse import urlsplit

from .clouds import CLOUD_NAMES, CLOUDS
from .errors import ConfigurationError
from .settings import parse_choice, parse_int

AUTH_KINDS = ("secret", "certificate")
# Account names: what a stanza name, a storage/passwords username and a log value can all carry as is.
ACCOUNT_NAME = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")
# Splunk's shared-defaults stanza in every .conf file: never an account.
RESERVED_ACCOUNT_NAMES = ("default",)
ROLE_NAME = re.compile(r"\A[A-Za-z0-9_.-]{1,100}\Z")


def normalise_thumbprint(text: str) -> str:
    """A SHA-1 thumbprint as 40 lowercase hex digits (spaces and colons, as certificate viewers show
    them, are dropped). Raises ValueError otherwise."""
    value = re.sub(r"[\s:]", "", str(text or "")).lower()
    if not re.fullmatch(r"[0-9a-f]{40}", value):
        raise ValueError("certificate_thumbprint must be the certificate's SHA-1 thumbprint: 40 hex digits")
    return value


def check_account_name(name, what: str = "account") -> str:
    """``name`` if it is a usable account name, else a ConfigurationError that shows it safely."""
    text = name if isinstance(name, str) else ""
    if not ACCOUNT_NAME.match(text) or text.lower() in RESERVED_ACCOUNT_NAMES:
        shown = repr(text[:70]) if text else "an empty name"
        raise ConfigurationError(
            "%s must name a configured account: 1 to 64 letters, digits, '_' or '-' (and not 'default', "
            "which is Splunk's shared-defaults stanza), not %s." % (what, shown))
    return text


def parse_roles(text, where: str = "") -> Tuple[str, ...]:
    """``allowed_roles``: role names separated by ';' or ','; empty means every role with the capability."""
    roles = []
    for part in re.split(r"[;,]", str(text or "")):
        role = part.strip()
        if not role:
            continue
        if not ROLE_NAME.match(role):
            raise ConfigurationError("%sallowed_roles must list role names separated by ';', not %r." % (where, role))
        if role not in roles:
            roles.append(role)
    return tuple(roles)


def _https_url(name: str, value: str, where: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise ConfigurationError("%s%s must be an https:// URL, not %r." % (where, name, value))
    return value.rstrip("/")


def check_proxy_url(value: str, where: str = "", name: str = "proxy_url", allow_credentials: bool = False) -> str:
    """``http://host:port`` or ``https://host:port``; credentials belong in storage/passwords."""
    parts = urlsplit(value if "://" in value else "http://" + value)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None \
            or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigurationError("%s%s must look like http://proxy.example:3128, not %r."
                                 % (where, name, _without_credentials(value)))
    if (parts.username or parts.password) and not allow_credentials:
        raise ConfigurationError(
            "%s%s must not hold credentials: store them in storage/passwords (realm %s-proxy, username = "
            "the account name, password = <proxy user>:<proxy password>)." % (where, name, "TA-defender-ipstats"))
    return "%s://%s" % (parts.scheme, parts.netloc)


def _without_credentials(value: str) -> str:
    return value.split("@", 1)[1] if "@" in value else value


class NotAllowed(ConfigurationError):
    """The caller may not use this account (``allowed_roles``); told as such to admins only."""


def allows(allowed_roles, roles) -> bool:
    """May a caller holding ``roles`` use an account with these ``allowed_roles`` (empty: every role)?"""
    return not allowed_roles or bool(set(allowed_roles) & set(roles))


def not_yours(name: str) -> str:
    """What a caller who may not list the accounts hears for an account that does not exist and for one
    that is not theirs alike, so that the answer does not tell which tenants are configured."""
    return ("Unknown account '%s' (or one you may not use: an admin can limit an account to certain roles)."
            % name)


@dataclass(frozen=True)
class Account:
    name: str
    tenant_id: str
    client_id: str
    cloud: str = "global"
    api_url: str = ""
    authority: str = ""
    scope: str = ""
    graph_url: str = ""
    auth: str = "secret"
    certificate_thumbprint: str = ""
    ca_bundle: str = ""
    proxy_url: str = ""
    timeout: int = 30
    allowed_roles: Tuple[str, ...] = ()  # empty: every role with the capability defenderipstats_use
    extra: Dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_conf(cls, name: str, stanza: Mapping[str, str]) -> "Account":
        where = "defenderipstats_accounts.conf [%s] " % name

        def text(key):
            value = stanza.get(key)
            return "" if value is None else str(value).strip()

        tenant_id, client_id = text("tenant_id"), text("client_id")
        missing = [key for key, value in (("tenant_id", tenant_id), ("client_id", client_id)) if not value]
        if missing:
            raise ConfigurationError(
                "Account '%s' is incomplete: set %s in defenderipstats_accounts.conf [%s]."
                % (name, " and ".join(missing), name)
            )
        if "/" in tenant_id or "?" in tenant_id or "#" in tenant_id:
            raise ConfigurationError("%stenant_id must be a tenant GUID or domain, not %r." % (where, tenant_id))
        api_url, authority, graph_url = text("api_url"), text("authority"), text("graph_url")
        if api_url:
            api_url = _https_url("api_url", api_url, where)
            if api_url.endswith("/api"):
                api_url = api_url[: -len("/api")]
        if authority:
            authority = _https_url("authority", authority, where)
        if graph_url:
            graph_url = _https_url("graph_url", graph_url, where)
        auth = parse_choice("auth", text("auth") or "secret", AUTH_KINDS, where)
        thumbprint = text("certificate_thumbprint")
        if auth == "certificate":
            if not thumbprint:
                raise ConfigurationError("%sauth = certificate needs certificate_thumbprint." % where)
            try:
                thumbprint = normalise_thumbprint(thumbprint)
            except ValueError as error:
                raise ConfigurationError("%s%s, not %r." % (where, error, thumbprint))
        proxy_url = text("proxy_url")
        if proxy_url:
            proxy_url = check_proxy_url(proxy_url, where)
        return cls(
            name=name,
            tenant_id=tenant_id,
            client_id=client_id,
            cloud=parse_choice("cloud", text("cloud") or "global", CLOUD_NAMES, where),
            api_url=api_url,
            authority=authority,
            scope=text("scope"),
            graph_url=graph_url,
            auth=auth,
            certificate_thumbprint=thumbprint,
            ca_bundle=text("ca_bundle"),
            proxy_url=proxy_url,
            timeout=parse_int("timeout", text("timeout") or "30", 1, 300, what="a number of seconds", where=where),
            allowed_roles=parse_roles(text("allowed_roles"), where),
        )

    def allows(self, roles) -> bool:
        """May a caller holding ``roles`` use this account (``allowed_roles``)?"""
        return allows(self.allowed_roles, roles)

    @property
    def restricted(self) -> bool:
        """Only some roles may use it: what is learnt through it is kept from the others too."""
        return bool(self.allowed_roles)

    @property
    def endpoints(self):
        return CLOUDS[self.cloud]

    @property
    def effective_api_url(self) -> str:
        return self.api_url or self.endpoints.api_url

    @property
    def effective_authority(self) -> str:
        return self.authority or self.endpoints.authority(self.tenant_id)

    @property
    def effective_scope(self) -> str:
        return self.scope or self.endpoints.scope

    @property
    def effective_graph_url(self) -> str:
        return self.graph_url or self.endpoints.graph_url

    @property
    def graph_scope(self) -> str:
        """Token scope for Microsoft Graph (hunting): the cloud's Graph, even when graph_url is overridden."""
        return self.endpoints.graph_url + "/.default"

    @property
    def verify(self):
        """What requests and msal get as ``verify``: the CA bundle path, else True. Never False."""
        return self.ca_bundle or True


class AccountDirectory:
    """The accounts an admin configured in this app, and which one a search means.

    ``stanzas``: account stanza name -> its settings, only the stanzas the app itself owns
    (``eai:acl`` app = TA-defender-ipstats); ``shadowed``: stanza name -> the other app that shares a
    stanza of that name globally. Splunk merges such a stanza's keys into the app's own, so an
    account of that name would take its authority, proxy or CA from another app: it is refused.
    ``[default]`` is Splunk's shared-defaults stanza, never an account; a stanza without tenant
    and client is not an account either.
    """

    def __init__(self, stanzas: Mapping[str, Mapping[str, str]], shadowed: Mapping[str, str] = None):
        self.stanzas = {name: values for name, values in stanzas.items()
                        if name.lower() not in RESERVED_ACCOUNT_NAMES and ACCOUNT_NAME.match(name)
                        and (values.get("tenant_id") or values.get("client_id"))}
        self.shadowed = dict(shadowed or {})

    def names(self):
        return sorted(self.stanzas)

    def resolve(self, requested: str, default_account: str = "", list_names: bool = False, roles=None) -> Account:
        """The Account a search asks for (``requested``, else ``default_account``, else the only one).

        ``list_names``: whether the error may list the configured accounts (admins only: an analyst
        is not told which other tenants exist). ``roles``: the caller's roles, when the caller must be
        allowed to use the account (``allowed_roles``); to a caller who may not list the accounts, an
        account that exists but is not theirs and one that does not exist give the same error.
        """
        name = (requested or default_account or "").strip()
        known = self.names()
        listing = (" Configured accounts: %s." % ", ".join(known)) if list_names and known else ""
        if not name:
            if not known:
                raise ConfigurationError(
                    "No Defender account is configured: an admin adds one on the app's setup page (or in "
                    "defenderipstats_accounts.conf with its client secret in storage/passwords, realm "
                    "TA-defender-ipstats). See the app's README.")
            if len(known) > 1:
                raise ConfigurationError(
                    "Several Defender accounts are configured and none is named: add account=<name> to the "
                    "search, or ask an admin to set default_account in defenderipstats.conf [settings] "
                    "(the setup page's defaults).%s" % listing)
            name = known[0]
        check_account_name(name, "account")
        stanza = self.stanzas.get(name)
        allowed = stanza is not None and (roles is None or allows(parse_roles(stanza.get("allowed_roles")), roles))
        if not allowed and not list_names:
            if not (requested or "").strip():  # the default account: its name is not the caller's to learn
                raise ConfigurationError("The default Defender account is not one you may use: name an account "
                                         "with account=<name> (an admin can tell you which).")
            raise ConfigurationError(not_yours(name))
        if stanza is None:
            raise ConfigurationError("Unknown account '%s'.%s" % (name, listing))
        if not allowed:
            raise NotAllowed("You may not use the Defender account '%s': an admin limited it to certain roles "
                             "(allowed_roles)." % name)
        if name in self.shadowed:
            raise ConfigurationError(
                "Account '%s' cannot be used: the app '%s' shares a stanza of the same name globally, and "
                "Splunk would merge its settings into this account. An admin must rename the account or stop "
                "that app sharing its stanza." % (name, self.shadowed[name]))
        if str(stanza.get("disabled", "0")).strip().lower() in ("1", "true"):
            raise ConfigurationError("Account '%s' is disabled." % name)
        return Account.from_conf(name, stanza)
