"""Settings, accounts and the secret read through splunkd REST (the stand-in), as a search would."""

import pytest

from defender_ipstats.core.errors import ConfigurationError, CredentialError, SplunkdError
from defender_ipstats.splunk import conf as splunkd_rest
from defender_ipstats.splunk.passwords import CredentialStore
from defender_ipstats.splunk.rest import connect
from harness import AppHarness


@pytest.fixture
def service(splunkd):
    return connect(splunkd.base_url, splunkd.new_session_key("admin"))


@pytest.fixture
def conf(service):
    return splunkd_rest.ConfStore(service)


@pytest.fixture
def credentials(service):
    return CredentialStore(service)


def test_shipped_defaults(conf):
    settings = conf.settings()
    assert (settings.default_account, settings.lookback_hours, settings.backend) == ("", 720, "auto")


def test_local_settings_override_defaults(splunkd, defender, tmp_path, conf):
    AppHarness(splunkd, defender, tmp_path).settings(lookback_hours="12", log_level="DEBUG")
    settings = conf.settings()
    assert (settings.lookback_hours, settings.log_level, settings.cache_ttl) == (12, "DEBUG", 86400)


def test_account_and_secret(splunkd, defender, tmp_path, conf, credentials):
    harness = AppHarness(splunkd, defender, tmp_path)
    harness.configure_account("soc-eu", secret="c2VjcmV0:with:colons", cloud="eu")
    account = conf.account_directory().resolve("soc-eu")
    assert (account.cloud, account.api_url, account.timeout) == ("eu", defender.base_url, 30)
    assert credentials.secret("soc-eu") == "c2VjcmV0:with:colons"


def test_the_one_account_is_the_default_and_default_is_never_an_account(splunkd, defender, tmp_path, conf):
    harness = AppHarness(splunkd, defender, tmp_path)
    harness.set_stanza("defenderipstats_accounts", "default", tenant_id="t", client_id="c")
    with pytest.raises(ConfigurationError, match="No Defender account is configured"):
        conf.account_directory().resolve("")
    with pytest.raises(ConfigurationError, match="not 'default'"):
        conf.account_directory().resolve("default")
    harness.set_stanza("defenderipstats_accounts", "lab", tenant_id="t", client_id="c")
    assert conf.account_directory().resolve("").name == "lab"
    harness.set_stanza("defenderipstats_accounts", "lab2", tenant_id="t", client_id="c")
    with pytest.raises(ConfigurationError, match="Several Defender accounts are configured and none is named"):
        conf.account_directory().resolve("")
    assert conf.account_directory().resolve("", default_account="lab2").name == "lab2"


def test_a_stanza_another_app_shares_globally_is_not_an_account(splunkd, defender, tmp_path, conf):
    harness = AppHarness(splunkd, defender, tmp_path)
    harness.configure_account("contoso")
    splunkd.add_app("evil_app")
    splunkd.set_conf("defenderipstats_accounts", "contoso", app="evil_app", layer="default",
                     proxy_url="http://proxy.evil.example:3128")
    splunkd.set_conf("defenderipstats_accounts", "fabrikam", app="evil_app", layer="default", tenant_id="t",
                     client_id="c")
    assert conf.account_directory().resolve("contoso").proxy_url == ""  # not shared yet
    splunkd.set_meta("evil_app", "", export="system")
    # splunkd now merges evil_app's key into the app's own stanza, as it would serve it to anyone
    assert splunkd.conf("defenderipstats_accounts", "contoso")["proxy_url"] == "http://proxy.evil.example:3128"
    directory = conf.account_directory()
    assert directory.names() == ["contoso"]  # fabrikam belongs to evil_app
    with pytest.raises(ConfigurationError, match="the app 'evil_app' shares a stanza of the same name globally"):
        directory.resolve("contoso")
    with pytest.raises(ConfigurationError, match="Unknown account 'fabrikam'"):
        directory.resolve("fabrikam")


def test_no_account_unknown_account_missing_secret(splunkd, defender, tmp_path, conf, credentials):
    with pytest.raises(ConfigurationError, match="No Defender account is configured"):
        conf.account_directory().resolve("")
    harness = AppHarness(splunkd, defender, tmp_path)
    harness.set_stanza("defenderipstats_accounts", "lab", tenant_id="t", client_id="c")
    with pytest.raises(ConfigurationError, match=r"Unknown account 'x'. Configured accounts: lab\."):
        conf.account_directory().resolve("x", list_names=True)
    with pytest.raises(ConfigurationError, match=r"\AUnknown account 'x' \(or one you may not use"):  # nor the others
        conf.account_directory().resolve("x")
    with pytest.raises(CredentialError, match="No client secret is stored for account 'lab'"):
        credentials.secret("lab")


def test_splunkd_failures_are_one_clear_error(splunkd, conf):
    splunkd.inject_fault("conf-defenderipstats", status=500)
    with pytest.raises(SplunkdError, match="splunkd answered 500"):
        conf.settings()


def test_expired_session_is_explained(splunkd):
    key = splunkd.new_session_key("admin")
    splunkd.expire_session(key)
    conf = splunkd_rest.ConfStore(connect(splunkd.base_url, key))
    with pytest.raises(SplunkdError, match="401"):
        conf.settings()
