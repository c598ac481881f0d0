"""Settings, accounts and the secret read through splunkd REST (the stand-in), as a search would."""

import pytest

from defender_ipstats import splunkd as splunkd_rest
from defender_ipstats.errors import ConfigurationError, CredentialError, SplunkdError
from harness import AppHarness


@pytest.fixture
def config(splunkd):
    return splunkd_rest.SplunkdConfig(splunkd_rest.connect(splunkd.base_url, splunkd.new_session_key("admin")))


def test_shipped_defaults(config):
    settings = config.settings()
    assert (settings.default_account, settings.lookback_hours, settings.backend) == ("default", 720, "auto")


def test_local_settings_override_defaults(splunkd, defender, tmp_path, config):
    AppHarness(splunkd, defender, tmp_path).settings(lookback_hours="12", log_level="DEBUG")
    settings = config.settings()
    assert (settings.lookback_hours, settings.log_level, settings.cache_ttl) == (12, "DEBUG", 86400)


def test_account_and_secret(splunkd, defender, tmp_path, config):
    harness = AppHarness(splunkd, defender, tmp_path)
    harness.configure_account("soc:eu", secret="c2VjcmV0:with:colons", cloud="eu")
    account = config.account("soc:eu")
    assert (account.cloud, account.api_url, account.timeout) == ("eu", defender.base_url, 30)
    assert config.secret("soc:eu") == "c2VjcmV0:with:colons"


def test_no_account_unknown_account_missing_secret(splunkd, defender, tmp_path, config):
    with pytest.raises(ConfigurationError, match="No Defender account is configured"):
        config.account("default")
    harness = AppHarness(splunkd, defender, tmp_path)
    harness.set_stanza("defenderipstats_accounts", "lab", tenant_id="t", client_id="c")
    with pytest.raises(ConfigurationError, match=r"Unknown account 'x'. Configured accounts: lab\."):
        config.account("x")
    with pytest.raises(CredentialError, match="No client secret is stored for account 'lab'"):
        config.secret("lab")


def test_splunkd_failures_are_one_clear_error(splunkd, config):
    splunkd.inject_fault("conf-defenderipstats", status=500)
    with pytest.raises(SplunkdError, match="splunkd answered 500"):
        config.settings()


def test_expired_session_is_explained(splunkd):
    key = splunkd.new_session_key("admin")
    splunkd.expire_session(key)
    config = splunkd_rest.SplunkdConfig(splunkd_rest.connect(splunkd.base_url, key))
    with pytest.raises(SplunkdError, match="401"):
        config.settings()
