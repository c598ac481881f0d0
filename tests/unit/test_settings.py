"""Settings, accounts and command options from the text splunkd hands over."""

import pytest

from defender_ipstats.core.accounts import Account
from defender_ipstats.core.errors import ConfigurationError
from defender_ipstats.core.options import Options
from defender_ipstats.core.settings import Settings

ACCOUNT = {"tenant_id": "contoso.onmicrosoft.com", "client_id": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"}


def test_settings_defaults_match_the_interface():
    s = Settings.from_conf({})
    assert (s.default_account, s.lookback_hours, s.cache_ttl, s.not_seen_ttl, s.max_wait, s.rate_per_minute,
            s.rate_per_hour, s.log_level, s.backend) == ("", 720, 86400, 3600, 60, 100, 1500, "INFO", "auto")


def test_settings_parse_and_reject_with_the_key_named():
    s = Settings.from_conf({"lookback_hours": " 24 ", "log_level": "debug", "backend": "IPSTATS"})
    assert (s.lookback_hours, s.log_level, s.backend) == (24, "DEBUG", "ipstats")
    with pytest.raises(ConfigurationError, match=r"\[settings\] lookback_hours must be a number of hours from 1"):
        Settings.from_conf({"lookback_hours": "721"})
    with pytest.raises(ConfigurationError, match="rate_per_minute"):
        Settings.from_conf({"rate_per_minute": "lots"})


def test_options_take_defaults_from_settings():
    o = Options.resolve({"field": "src_ip"}, Settings(lookback_hours=48, max_wait=5, default_account="soc"))
    assert (o.field, o.lookback_hours, o.account, o.prefix, o.cache, o.max_wait, o.backend) == (
        "src_ip", 48, "soc", "defender_", "use", 5, "auto")


@pytest.mark.parametrize("raw, message", [
    ({}, 'A value for "field" is required'),
    ({"field": "ip", "lookbackhours": "0"}, "lookbackhours must be a number of hours from 1 to 720, not '0'"),
    ({"field": "ip", "lookbackhours": "721"}, "from 1 to 720"),
    ({"field": "ip", "lookbackhours": "1.5"}, "lookbackhours"),
    ({"field": "ip", "cache": "maybe"}, "cache must be one of use|refresh|off"),
    ({"field": "ip", "backend": "x"}, "backend must be one of ipstats|hunting|auto"),
    ({"field": "ip", "maxwait": "-1"}, "maxwait must be a number of seconds"),
    ({"field": "ip", "prefix": "a b"}, "prefix must be usable in a field name"),
    ({"field": "ip", "account": " "}, "account must name a configured account"),
])
def test_option_errors_are_readable(raw, message):
    with pytest.raises(ConfigurationError) as caught:
        Options.resolve(raw, Settings())
    assert message in str(caught.value)
    assert "Traceback" not in str(caught.value)


def test_account_defaults_to_the_global_cloud():
    a = Account.from_conf("default", ACCOUNT)
    assert a.effective_api_url == "https://api.security.microsoft.com"
    assert a.effective_authority == "https://login.microsoftonline.com/contoso.onmicrosoft.com"
    assert a.effective_scope == "https://api.securitycenter.microsoft.com/.default"
    assert a.verify is True


def test_account_overrides_and_ca_bundle():
    a = Account.from_conf("lab", dict(ACCOUNT, cloud="eu", api_url="https://127.0.0.1:8443/api/",
                                      authority="https://127.0.0.1:8443/t", scope="x/.default",
                                      ca_bundle="/tmp/ca.pem", timeout="5"))
    assert a.effective_api_url == "https://127.0.0.1:8443"
    assert (a.effective_authority, a.effective_scope, a.verify, a.timeout) == (
        "https://127.0.0.1:8443/t", "x/.default", "/tmp/ca.pem", 5)


@pytest.mark.parametrize("stanza, message", [
    ({}, "set tenant_id and client_id"),
    ({"tenant_id": "t"}, "set client_id"),
    (dict(ACCOUNT, cloud="mars"), "cloud must be one of"),
    (dict(ACCOUNT, api_url="http://plain.example"), "api_url must be an https:// URL"),
    (dict(ACCOUNT, tenant_id="a/b"), "tenant_id must be a tenant GUID or domain"),
    (dict(ACCOUNT, auth="certificate"), "needs certificate_thumbprint"),
    (dict(ACCOUNT, timeout="0"), "timeout must be a number of seconds from 1 to 300"),
])
def test_account_errors(stanza, message):
    with pytest.raises(ConfigurationError, match=message):
        Account.from_conf("x", stanza)


def test_hunting_budget_settings():
    assert (Settings().hunting_rate_per_minute, Settings().hunting_rate_per_hour) == (45, 1500)
    parsed = Settings.from_conf({"hunting_rate_per_minute": "30", "hunting_rate_per_hour": "900"})
    assert (parsed.hunting_rate_per_minute, parsed.hunting_rate_per_hour) == (30, 900)
    for key in ("hunting_rate_per_minute", "hunting_rate_per_hour"):
        with pytest.raises(ConfigurationError, match=r"\[settings\] %s" % key):
            Settings.from_conf({key: "0"})


def test_refresh_min_age_setting():
    assert Settings.from_conf({}).refresh_min_age == 300
    assert Settings.from_conf({"refresh_min_age": "0"}).refresh_min_age == 0
    assert Settings.from_conf({"refresh_min_age": "86400"}).refresh_min_age == 86400
    for bad in ("-1", "86401", "soon"):
        with pytest.raises(ConfigurationError, match=r"\[settings\] refresh_min_age must be a number of seconds "
                                                     r"from 0 to 86400"):
            Settings.from_conf({"refresh_min_age": bad})


def test_shipped_settings_match_the_defaults():
    """default/defenderipstats.conf ships every setting, with the value the code defaults to."""
    import configparser
    import os

    conf = configparser.ConfigParser(interpolation=None)
    conf.read(os.path.join(os.path.dirname(__file__), "..", "..", "default", "defenderipstats.conf"))
    shipped = dict(conf["settings"])
    assert shipped["refresh_min_age"] == "300"
    assert Settings.from_conf(shipped) == Settings()
