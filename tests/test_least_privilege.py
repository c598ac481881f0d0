"""Least privilege and the token cache, on Splunk's own mechanisms as the splunkd stand-in models them.

* The app ships the role ``defenderipstats_user`` (authorize.conf: imports ``user``, adds the capability
  ``defenderipstats_use``), and no ``list_storage_passwords``.
* The command gets access tokens from the app's token broker, a persistent REST handler
  (restmap.conf ``[script:defenderipstats_token]``): splunkd checks ``capability =
  defenderipstats_use`` before it hands the request, with a system session key (``passSystemAuth``),
  to the handler process, which reads the secret and keeps the tokens.
* Tokens are cached in that process and in storage/passwords (realm ``TA-defender-ipstats-token``):
  a burst of searches, each a new command process, costs one token request.
"""

import json

import pytest

from defender_ipstats.broker import TOKEN_REALM
from harness import ACCOUNT, APP, events, expected_fields
from standins import dataset
from standins.defender import DEFAULT_SECRET

ANALYST = "analyst"


@pytest.fixture
def analyst_app(app):
    app.splunkd.add_user(ANALYST, "analyst-pw", roles=["defenderipstats_user"])
    return app


def _rest(app, user, user_password, method, path, **form):
    """A REST call as ``user`` (HTTP Basic, as curl -u would), JSON answer."""
    import base64
    import urllib.error
    import urllib.parse
    import urllib.request

    data = urllib.parse.urlencode(dict(form, output_mode="json")).encode() if method == "POST" else None
    query = "" if method == "POST" else "?output_mode=json"
    request = urllib.request.Request(app.splunkd.base_url + path + query, data=data, method=method)
    basic = base64.b64encode(("%s:%s" % (user, user_password)).encode()).decode()
    request.add_header("Authorization", "Basic " + basic)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _ns(path):
    return "/servicesNS/nobody/%s/%s" % (APP, path)


def _search(app, user, seed, count=2):
    ips = dataset.ips(count, status="found", seed=seed)
    run = app.search(["field=src_ip", "backend=ipstats"], [events(ips)], username=user)
    assert run.returncode == 0, run.stderr
    assert run.errors == [], run.errors
    for record, ip in zip(run.records, ips):
        assert {k: record[k] for k in expected_fields(ip)} == expected_fields(ip)
    return run


def test_the_apps_role_runs_the_command_without_reading_any_secret(analyst_app):
    app = analyst_app
    assert "list_storage_passwords" not in app.splunkd.capabilities_of(ANALYST)
    assert "defenderipstats_use" in app.splunkd.capabilities_of(ANALYST)
    app.splunkd.reset_requests()  # forget the admin's configuration
    run = _search(app, ANALYST, seed=71)
    assert app.leaks([run]) == []
    # The search process read no credential: storage/passwords was only read with the system session.
    readers = {r.username for r in app.splunkd.requests if "storage/passwords" in r.path}
    assert readers == {"splunk-system-user"}

    # The same user, by hand: no secret, no proxy credential, no token cache.
    for path in ("storage/passwords",
                 "storage/passwords/%s:default:" % APP,
                 "storage/passwords/%s:default.api:" % TOKEN_REALM):
        status, body = _rest(app, ANALYST, "analyst-pw", "GET", _ns(path))
        assert status == 403, (path, status, body)
        assert "list_storage_passwords" in body
        assert DEFAULT_SECRET not in body
    for path in ("storage/passwords", "storage/passwords/%s:default:" % APP):
        assert _rest(app, ANALYST, "analyst-pw", "GET", "/services/" + path)[0] == 403
    # ...and cannot write accounts or secrets either.
    assert _rest(app, ANALYST, "analyst-pw", "POST", _ns("storage/passwords"), name="x", realm=APP,
                 password="y")[0] == 403
    assert _rest(app, ANALYST, "analyst-pw", "POST", _ns("configs/conf-defenderipstats_accounts/default"),
                 tenant_id="evil")[0] == 403


def test_the_token_cache_is_there_for_admins_only(analyst_app):
    app = analyst_app
    _search(app, ANALYST, seed=72)
    status, body = _rest(app, "admin", "changeme", "GET", _ns("storage/passwords/%s:default.api:" % TOKEN_REALM))
    assert status == 200
    cached = json.loads(json.loads(body)["entry"][0]["content"]["clear_password"])
    assert cached["access_token"] in app.defender.issued_tokens
    assert DEFAULT_SECRET not in body  # the cache holds the token, never the secret
    assert _rest(app, ANALYST, "analyst-pw", "GET",
                 _ns("storage/passwords/%s:default.api:" % TOKEN_REALM))[0] == 403


def test_a_user_without_the_apps_role_is_told_what_is_missing(app):
    app.splunkd.add_user("plain", "plain-pw", roles=["user"])
    run = app.search(["field=src_ip", "backend=ipstats"], [events(["10.9.8.7"])], username="plain")
    assert len(run.records) == 1
    assert any("defenderipstats_user" in text for text in run.errors), run.errors
    assert app.defender.token_calls() == 0 and app.defender.api_calls() == 0
    status, body = _rest(app, "plain", "plain-pw", "POST", _ns("defenderipstats/token"), account="default")
    assert status == 403 and "defenderipstats_use" in body


def test_the_broker_hands_out_tokens_not_secrets(analyst_app):
    app = analyst_app
    status, body = _rest(app, ANALYST, "analyst-pw", "POST", _ns("defenderipstats/token"), account="default")
    assert status == 200, body
    answer = json.loads(body)
    assert answer["access_token"] in app.defender.issued_tokens
    assert 0 < answer["expires_in"] <= 3599
    assert DEFAULT_SECRET not in body
    status, body = _rest(app, ANALYST, "analyst-pw", "POST", _ns("defenderipstats/token"), account="nope")
    assert status == 400 and "Unknown account 'nope'" in body


def test_ten_back_to_back_searches_make_one_token_request(analyst_app):
    app = analyst_app
    for number in range(10):
        _search(app, ANALYST, seed=100 + number, count=1)
    assert app.defender.token_calls() == 1
    assert app.defender.api_calls() == 10
    assert app.splunkd.handler_starts == 1  # one persistent handler process served all ten


def test_the_token_outlives_the_handler_process(analyst_app):
    """splunkd may restart the handler process: the token cache in storage/passwords carries over."""
    app = analyst_app
    _search(app, ANALYST, seed=81)
    app.splunkd.stop_handlers()
    _search(app, ANALYST, seed=82)
    assert app.splunkd.handler_starts == 2
    assert app.defender.token_calls() == 1


def test_a_rejected_token_is_replaced_once_for_everyone(analyst_app):
    app = analyst_app
    _search(app, ANALYST, seed=83)
    app.defender.expire_tokens()  # Defender now answers 401 to the cached token
    _search(app, ANALYST, seed=84)
    assert app.defender.token_calls() == 2
    _search(app, ANALYST, seed=85)  # and the fresh one is what the next search gets
    assert app.defender.token_calls() == 2


def test_a_changed_secret_is_not_served_an_old_token(analyst_app):
    app = analyst_app
    _search(app, ANALYST, seed=86)
    app.set_secret(ACCOUNT, "rotated-but-wrong")
    run = app.search(["field=src_ip", "backend=ipstats"], [events(["10.20.30.40"])], username=ANALYST)
    assert any("client secret is wrong" in text for text in run.errors), run.errors
    assert app.defender.token_calls() == 2


def test_a_hunting_search_asks_the_broker_for_a_graph_token_only(analyst_app):
    from standins.defender import GRAPH_SCOPE

    app = analyst_app
    ips = dataset.ips(3, status="found", seed=87)
    run = app.search(["field=src_ip", "backend=hunting"], [events(ips)], username=ANALYST)
    assert run.errors == [], run.errors
    assert {r["defender_source"] for r in run.records} == {"hunting"}
    assert [t.scope for t in app.defender.token_requests] == [GRAPH_SCOPE]
