"""Proxies: the account's proxy_url (credentials from storage/passwords), else Splunk's server.conf
[proxyConfig]; used for the token and the API calls alike, through a real local CONNECT proxy.

The proxy opens its upstream connections from its own address (127.0.0.2), and the Defender/Entra ID
stand-in records the address of every request it gets: "every call went through the proxy" is checked
on the server's side, not inferred from the proxy's tunnel count alone.
"""

import pytest

from defender_ipstats.core.accounts import Account
from defender_ipstats.core.errors import ConfigurationError, CredentialError
from defender_ipstats.microsoft.http import AppSession, bypasses_proxy
from defender_ipstats.service.profile import resolve_proxy, with_proxy_credentials
from harness import ACCOUNT, events, expected_fields
from standins import dataset
from standins.proxy import ConnectProxy

PROXY_USER, PROXY_PASSWORD = "svc-splunk", "p@ss:w/rd %1"


@pytest.fixture
def proxy():
    standin = ConnectProxy(credentials=(PROXY_USER, PROXY_PASSWORD)).start()
    try:
        yield standin
    finally:
        standin.stop()


def _search_ok(app, count=3, seed=51):
    ips = dataset.ips(count, status="found", seed=seed)
    run = app.search(["field=src_ip", "backend=ipstats"], [events(ips)])
    assert run.returncode == 0, run.stderr
    assert run.errors == [], run.errors
    for record, ip in zip(run.records, ips):
        assert {k: record[k] for k in expected_fields(ip)} == expected_fields(ip)
    return run


def _all_through(proxy, defender):
    assert proxy.source_ip, "this host cannot bind a second loopback address"
    assert defender.peers, "the stand-in saw no request"
    return set(defender.peers) == {proxy.source_ip}


def test_every_call_goes_through_the_accounts_proxy_with_its_credentials(app, proxy):
    app.configure_account(proxy_url=proxy.url)
    app.set_proxy_credentials(ACCOUNT, PROXY_USER, PROXY_PASSWORD)
    run = _search_ok(app)
    assert app.defender.token_calls(status=200) == 1 and app.defender.api_calls() == 3
    assert _all_through(proxy, app.defender)  # discovery, token and every API call
    assert proxy.count() >= 1 and proxy.count(status=407) == 0
    assert {t.user for t in proxy.tunnels} == {PROXY_USER}
    assert PROXY_PASSWORD not in app.log_text() + repr(run.messages) + run.stderr
    assert app.leaks([run]) == []


def test_server_conf_proxy_applies_when_the_account_has_none(app, proxy, splunkd):
    splunkd.set_conf("server", "proxyConfig", app="system", https_proxy=proxy.url, no_proxy="")
    app.set_proxy_credentials(ACCOUNT, PROXY_USER, PROXY_PASSWORD)
    _search_ok(app)
    assert _all_through(proxy, app.defender)


def test_server_conf_no_proxy_exceptions_go_direct(app, proxy, splunkd):
    splunkd.set_conf("server", "proxyConfig", app="system", https_proxy=proxy.url, no_proxy="localhost, 127.0.0.1")
    _search_ok(app)
    assert proxy.count(status=None) == 0
    assert proxy.source_ip not in app.defender.peers


def test_the_environments_proxy_is_not_used(defender, monkeypatch, proxy):
    """Only what the admin configured in Splunk applies: HTTPS_PROXY in splunkd's environment does not."""
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("https_proxy", proxy.url)
    session = AppSession(verify=defender.ca_bundle)
    assert session.get(defender.authority() + "/v2.0/.well-known/openid-configuration").status_code == 200
    assert proxy.count(status=None) == 0


def test_wrong_proxy_credentials_are_one_clear_error(app, proxy):
    app.configure_account(proxy_url=proxy.url)
    app.set_proxy_credentials(ACCOUNT, PROXY_USER, "wrong")
    sent = events(dataset.ips(2, status="found", seed=52))
    run = app.search(["field=src_ip", "backend=ipstats"], [sent])
    assert len(run.records) == len(sent)
    assert any("the proxy refused the connection (407 Proxy Authentication Required)" in text
               for text in run.errors), run.errors
    assert app.defender.peers == []


def test_a_proxy_that_refuses_is_named(app):
    with ConnectProxy(refuse=403) as refusing:
        app.configure_account(proxy_url=refusing.url)
        run = app.search(["field=src_ip", "backend=ipstats"], [events(["10.1.1.1"])])
    assert any("the proxy refused the connection (403" in text for text in run.errors), run.errors


def test_an_unreachable_proxy_is_named(app):
    import socket

    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    app.configure_account(proxy_url="http://127.0.0.1:%d" % port)
    run = app.search(["field=src_ip", "backend=ipstats"], [events(["10.1.1.1"])])
    assert any("could not connect to the proxy" in text for text in run.errors), run.errors


def test_credentials_in_proxy_url_are_refused(app):
    app.configure_account(proxy_url="http://user:secret@proxy.example:3128")
    run = app.search(["field=src_ip"], [events(["10.1.1.1"])])
    assert any("must not hold credentials" in text for text in run.errors), run.errors
    assert "secret@" not in repr(run.messages)


# -- units ------------------------------------------------------------------------------------------

def _account(**conf):
    return Account.from_conf("acme", dict({"tenant_id": "t", "client_id": "c"}, **conf))


def test_proxy_resolution_order():
    account_proxy = resolve_proxy(_account(proxy_url="http://a.example:3128"),
                                  {"https_proxy": "http://s.example:8080"}, None)
    assert (account_proxy.proxy_url, account_proxy.proxy_source) == ("http://a.example:3128", "account")
    server = resolve_proxy(_account(), {"http_proxy": "s.example:8080", "no_proxy": "*.corp"}, "u:p")
    assert (server.proxy_url, server.no_proxy, server.proxy_source) == ("http://u:p@s.example:8080", "*.corp",
                                                                        "server.conf")
    embedded = resolve_proxy(_account(), {"https_proxy": "http://x:y@s.example:8080"}, "u:p")
    assert embedded.proxy_url == "http://x:y@s.example:8080"  # Splunk's own setting, taken as it is
    assert resolve_proxy(_account(), {}, "u:p").proxy_url == ""
    with pytest.raises(ConfigurationError, match="server.conf"):
        resolve_proxy(_account(), {"https_proxy": "ftp://s.example"}, None)


def test_proxy_credentials_are_percent_encoded():
    assert with_proxy_credentials("http://p.example:3128", "dom\\user:p@ss:w/rd") == \
        "http://dom%5Cuser:p%40ss%3Aw%2Frd@p.example:3128"
    with pytest.raises(CredentialError):
        with_proxy_credentials("http://p.example:3128", "no-colon")


@pytest.mark.parametrize("url, no_proxy, bypass", [
    ("https://127.0.0.1:8443/x", "localhost, 127.0.0.1, ::1", True),
    ("https://login.microsoftonline.com/t", "localhost, 127.0.0.1", False),
    ("https://api.corp.example/x", ".corp.example", True),
    ("https://10.2.3.4/x", "10.0.0.0/8", True),
])
def test_no_proxy_matching(url, no_proxy, bypass):
    assert bypasses_proxy(url, no_proxy) is bypass
    session = AppSession(proxy_url="http://p.example:3128", no_proxy=no_proxy)
    assert (session.proxies_for(url)["https"] is None) is bypass
