"""DefenderClient and TokenProvider over real HTTPS against the Defender + Entra ID stand-in."""

import pytest

from defender_ipstats.core.errors import AuthenticationError, AuthorizationError
from defender_ipstats.core.lookup import is_canonical_ip
from defender_ipstats.core.outcomes import Throttled
from defender_ipstats.microsoft.defender import DefenderClient
from defender_ipstats.microsoft.entra import TokenProvider
from defender_ipstats.microsoft.http import AppSession, retry_after_seconds
from standins import dataset
from standins import defender as d

SCOPE = "https://api.securitycenter.microsoft.com/.default"


@pytest.fixture(autouse=True)
def no_ca_env(monkeypatch):
    # This machine sets these; the app must not depend on them (and they would mask ca_bundle bugs).
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


def make_client(defender, secret=d.DEFAULT_SECRET, timeout=5, verify=None):
    session = AppSession(verify=verify or defender.ca_bundle, timeout=timeout)
    tokens = TokenProvider(d.DEFAULT_CLIENT_ID, secret, defender.authority(), SCOPE, http_client=session)
    return DefenderClient(defender.base_url, tokens, session, timeout=timeout), tokens


def test_found_and_not_seen_match_the_dataset(defender):
    client, tokens = make_client(defender)
    for ip in dataset.ips(3, status="found", seed=20) + dataset.ips(2, status="not_seen", seed=20):
        stats = client.ip_stats(ip, 48)
        expected = dataset.ip_stats(ip, 48)
        assert stats.ip == ip
        assert stats.prevalence == expected["organizationPrevalence"]
        assert stats.first_seen == expected["orgFirstSeen"] and stats.last_seen == expected["orgLastSeen"]
        assert stats.status == dataset.status_of(ip, 48)
    assert tokens.requests == 1  # one token serves every call
    assert [r.path.split("?")[1] for r in defender.api_requests] == ["lookBackHours=48"] * 5


def test_url_is_built_only_from_a_canonical_ip(defender):
    client, _ = make_client(defender)
    for bad in ("1.2.3.4/../x", "::ffff:1.2.3.4", "2001:DB8::1", "1.2.3.4?a", " 1.2.3.4"):
        assert not is_canonical_ip(bad)
        with pytest.raises(ValueError):
            client.url_for(bad)
    assert client.url_for("2001:db8::1") == defender.base_url + "/api/ips/2001:db8::1/stats"


def test_tls_is_verified(defender):
    client, _ = make_client(defender, verify=True)  # the system CAs do not know the throwaway CA
    with pytest.raises(AuthenticationError, match="TLS certificate verification failed"):
        client.ip_stats("1.2.3.4", 720)


def test_ca_bundle_wins_over_the_environment(defender, monkeypatch, tmp_path):
    other = tmp_path / "other-ca.pem"
    import trustme

    other.write_bytes(trustme.CA().cert_pem.bytes())
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other))
    client, _ = make_client(defender)
    assert client.ip_stats(dataset.ips(1, seed=21)[0], 720).status in ("found", "not_seen")


def test_bad_secret_is_explained(defender):
    client, _ = make_client(defender, secret="Zq8~not-the-right-secret")
    with pytest.raises(AuthenticationError) as caught:
        client.ip_stats("1.2.3.4", 720)
    assert "client secret is wrong" in str(caught.value)
    assert "Zq8~not-the-right-secret" not in str(caught.value)


def test_unknown_client_is_explained(defender):
    session = AppSession(verify=defender.ca_bundle)
    tokens = TokenProvider("00000000-0000-0000-0000-000000000000", "x", defender.authority(), SCOPE,
                           http_client=session)
    with pytest.raises(AuthenticationError, match="client id is not known"):
        tokens.token()


def test_403_names_the_permission(defender):
    defender.set_roles(d.DEFAULT_CLIENT_ID, [])
    client, _ = make_client(defender)
    with pytest.raises(AuthorizationError, match="Ip.Read.All"):
        client.ip_stats("1.2.3.4", 720)


def test_401_gets_one_fresh_token_then_gives_up(defender):
    client, tokens = make_client(defender)
    defender.inject("expire_tokens")
    assert client.ip_stats(dataset.ips(1, status="found", seed=22)[0], 720).status == "found"
    assert tokens.requests == 2
    defender.inject(401, times=2)
    with pytest.raises(AuthenticationError, match="401"):
        client.ip_stats("1.2.3.4", 720)


def test_429_gives_retry_after(defender):
    defender.set_limits(rate_per_minute=1)
    client, _ = make_client(defender)
    client.ip_stats("1.2.3.4", 720)
    answer = client.ip_stats("1.2.3.5", 720)
    assert isinstance(answer, Throttled)
    assert 1 <= answer.retry_after <= 60
    assert "quota" in answer.message


@pytest.mark.parametrize("fault, reason", [
    (500, "Defender API error 500"), (502, "Defender API error 502"), ("malformed", "malformed JSON"),
    ("schema_invalid", "unexpected API answer"), ("reset", "connection failed"),
])
def test_faults_become_error_answers(defender, fault, reason):
    client, _ = make_client(defender)
    client.tokens.token()
    retried = fault not in ("malformed", "schema_invalid")  # 5xx and resets: three attempts
    defender.inject(fault, times=3 if retried else 1)
    stats = client.ip_stats("1.2.3.4", 720)
    assert stats.status == "error" and reason in stats.error and not stats.cacheable
    assert client.calls == defender.api_calls() == (3 if retried else 1)


def test_timeout(defender):
    client, _ = make_client(defender, timeout=1)
    client.tokens.token()
    defender.inject("slow:2", times=3)
    stats = client.ip_stats("1.2.3.4", 720)
    assert stats.status == "error" and "timed out" in stats.error
    assert client.calls == 3 and client.retries == 2


@pytest.mark.parametrize("fault", [500, 503, 502, "reset", "slow:2"])
def test_a_passing_fault_is_retried_with_backoff(defender, fault):
    client, _ = make_client(defender, timeout=1)
    client.tokens.token()
    defender.inject(fault)
    delays = []
    ip = dataset.ips(1, status="found", seed=23)[0]
    stats = client.ip_stats(ip, 720, retry_gate=lambda delay: delays.append(delay) or True)
    assert stats.status == "found"
    assert client.calls == defender.api_calls() == 2 and client.retries == 1
    assert len(delays) == 1 and 0.5 <= delays[0] <= 1.0  # backoff 0.5 s + jitter up to 0.5 s
    assert [r.path for r in defender.api_requests] == ["/api/ips/%s/stats?lookBackHours=720" % ip] * 2


@pytest.mark.parametrize("status", [400, 403, 404, 429])
def test_4xx_are_never_retried_by_the_session(defender, status):
    client, _ = make_client(defender)
    client.tokens.token()
    defender.inject(status)
    try:
        client.ip_stats("1.2.3.4", 720, retry_gate=lambda delay: pytest.fail("4xx retried"))
    except AuthorizationError:
        assert status == 403
    assert defender.api_calls() == 1 and client.retries == 0


def test_a_refused_retry_returns_the_last_answer(defender):
    client, _ = make_client(defender)
    client.tokens.token()
    defender.inject(503, times=5)
    stats = client.ip_stats("1.2.3.4", 720, retry_gate=lambda delay: False)
    assert stats.status == "error" and "503" in stats.error
    assert client.calls == defender.api_calls() == 1


def test_the_401_retry_needs_budget_too(defender):
    client, tokens = make_client(defender)
    client.tokens.token()
    defender.inject("expire_tokens")
    stats = client.ip_stats("1.2.3.4", 720, retry_gate=lambda delay: False)
    assert stats.status == "rate_limited" and defender.api_calls() == 1


def test_400_is_invalid(defender):
    defender.inject(400)
    client, _ = make_client(defender)
    assert client.ip_stats("1.2.3.4", 720).status == "invalid"


@pytest.mark.parametrize("header, seconds", [("7", 7.0), ("0", 0.0), (None, 60.0), ("soon", 60.0)])
def test_retry_after_parsing(header, seconds):
    assert retry_after_seconds(header) == seconds
